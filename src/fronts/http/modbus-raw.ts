// Raw Modbus reads and writes for the HTTP API (POST /v1/assets/:asset/read|write): a range of
// one table, sent to the asset's device with the shared codec (src/wire) and the shared
// upstream pool (devices/modbus). The caller has already enforced the operation.
//
//   read  coil → FC1, discrete → FC2, holding → FC3, input → FC4
//   write coil → FC5 (one) / FC15, holding → FC6 (one) / FC16
import type { ModbusBinding } from "../../devices/registry.js";
import type { Forwarded } from "../../pep/enforce.js";
import type { Table } from "../../pdp/operation.js";
import { LIMITS } from "../../wire/pdu.js";
import type { Bit, ModbusRequest } from "../../wire/pdu.js";
import { encodeRequest } from "../../wire/pdu.js";
import { parseResponse } from "../../wire/response.js";

/** Most addresses one read may cover, by table (the Modbus limits of FC1-4). */
export function maxRead(table: Table): number {
  return table === "coil" || table === "discrete" ? LIMITS.readBits : LIMITS.readRegisters;
}

/** Most values one write may carry, by table (FC15, FC16). */
export function maxWrite(table: Table): number {
  return table === "coil" ? LIMITS.writeCoils : LIMITS.writeRegisters;
}

function readRequest(table: Table, address: number, quantity: number): ModbusRequest {
  switch (table) {
    case "coil": return { kind: "read-coils", fc: 1, address, quantity };
    case "discrete": return { kind: "read-discrete-inputs", fc: 2, address, quantity };
    case "holding": return { kind: "read-holding-registers", fc: 3, address, quantity };
    case "input": return { kind: "read-input-registers", fc: 4, address, quantity };
  }
}

function writeRequest(table: "coil" | "holding", address: number, values: readonly number[]): ModbusRequest {
  if (table === "coil") {
    const bits = values.map((v) => (v ? 1 : 0) as Bit);
    return bits.length === 1 ? { kind: "write-single-coil", fc: 5, address, value: bits[0] as Bit } : { kind: "write-multiple-coils", fc: 15, address, quantity: bits.length, values: bits };
  }
  return values.length === 1 ? { kind: "write-single-register", fc: 6, address, value: values[0] as number } : { kind: "write-multiple-registers", fc: 16, address, quantity: values.length, values };
}

/** Sends one request and says what came of it, as the outcome record and the HTTP answer need it. */
async function send<T>(binding: ModbusBinding | undefined, req: ModbusRequest, data: (d: unknown) => T): Promise<Forwarded<T>> {
  if (!binding) return { status: "unavailable", exception: "no-device" };
  const r = await binding.device.request(binding.unit, encodeRequest(req), { request: req });
  switch (r.kind) {
    case "ok": {
      const p = parseResponse(req, r.pdu);
      if (p.kind === "ok") return { status: "ok", result: data(p.data) };
      if (p.kind === "exception") return { status: "device-exception", exception: p.exception };
      return { status: "timeout", exception: "malformed-answer" };
    }
    case "exception": return { status: "device-exception", exception: r.code };
    case "unavailable": return { status: "unavailable", exception: r.reason };
    case "timeout": return { status: "timeout" };
    case "malformed": return { status: "timeout", exception: "malformed-answer" };
  }
}

export function readRange(binding: ModbusBinding | undefined, table: Table, address: number, count: number): Promise<Forwarded<number[]>> {
  return send(binding, readRequest(table, address, count), (d) => [...(d as readonly number[])]);
}

export function writeRange(binding: ModbusBinding | undefined, table: "coil" | "holding", address: number, values: readonly number[]): Promise<Forwarded<null>> {
  return send(binding, writeRequest(table, address, values), () => null);
}
