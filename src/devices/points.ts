// Named points of any asset, protocol hidden (devices/types.ts PointIO): the HTTP point routes
// and the OPC UA front's Modbus folders read and write through here.
//
//   Modbus point  read  → FC1/2/3/4 of its table, address, size → decodeRaw(type, words)
//                 write → encodeValue(type, words) → FC5 (coil), FC6 (one register), FC16 (more)
//   OPC UA point  read  → OpcuaDevice.read(node)              (value only when the status is Good)
//                 write → OpcuaDevice.write(node, Variant of the point's type)
//
// Device trouble is never a rejection: a read gives quality "bad" with the cause as status
// (Modbus: `exception-02`, `timeout`, `unavailable`, `malformed`; OPC UA: the status name),
// and no value; a write gives a non-ok OutcomeStatus. What rejects is a caller's bug: a point
// of another asset, writing a point that cannot be written, a value that does not fit the
// point's type (callers check values against the point before enforcing).
// The OPC UA half (devices/opcua-points.ts, and node-opcua with it) is loaded at the first OPC
// UA point read or written: a gateway with Modbus assets only never loads node-opcua.
import type { Asset, Point } from "../pdp/policy-set.js";
import type { Scalar, Table } from "../pdp/operation.js";
import { decodeRaw, encodeValue, isOpcuaType, isRegisterType } from "../pdp/values.js";
import { encodeRequest } from "../wire/pdu.js";
import type { ModbusRequest } from "../wire/pdu.js";
import { parseResponse } from "../wire/response.js";
import type { DeviceResult } from "./modbus.js";
import type * as OpcuaPoints from "./opcua-points.js";
import type { DeviceRegistry } from "./registry.js";
import type { PointIO, PointReading, PointWriteResult } from "./types.js";

/** devices/opcua-points.ts (and node-opcua with it), loaded at the first OPC UA point read or written. */
let uaPoints: Promise<typeof OpcuaPoints> | undefined;
function opcuaPoints(): Promise<typeof OpcuaPoints> {
  return (uaPoints ??= import("./opcua-points.js"));
}

const READS: Readonly<Record<Table, ModbusRequest["kind"]>> = {
  coil: "read-coils",
  discrete: "read-discrete-inputs",
  holding: "read-holding-registers",
  input: "read-input-registers",
};
const READ_FC = { "read-coils": 1, "read-discrete-inputs": 2, "read-holding-registers": 3, "read-input-registers": 4 } as const;

/** Why a Modbus result is not a value: `exception-02`, `timeout`, `unavailable`, `malformed`. */
function modbusCause(r: Exclude<DeviceResult, { kind: "ok" }>): string {
  switch (r.kind) {
    case "exception":
      return `exception-${r.code.toString(16).padStart(2, "0")}`;
    case "timeout":
    case "unavailable":
    case "malformed":
      return r.kind;
  }
}

export interface DevicePointsOptions {
  /** The clock of readings without a device timestamp (Modbus, failures). */
  readonly now?: () => Date;
}

export class DevicePoints implements PointIO {
  private readonly now: () => Date;

  constructor(
    private readonly devices: DeviceRegistry,
    options: DevicePointsOptions = {},
  ) {
    this.now = options.now ?? (() => new Date());
  }

  async read(asset: Asset, point: Point, maxAgeMs = 0): Promise<PointReading> {
    this.check(asset, point);
    return asset.protocol === "modbus" ? this.readModbus(asset, point) : this.readOpcua(asset, point, maxAgeMs);
  }

  async write(asset: Asset, point: Point, value: Scalar): Promise<PointWriteResult> {
    this.check(asset, point);
    if (!point.writable) throw new TypeError(`point "${point.name}" of asset "${asset.id}" cannot be written (${point.type === "method" ? "a method is called" : `${point.table} is read-only`})`);
    return asset.protocol === "modbus" ? this.writeModbus(asset, point, value) : this.writeOpcua(asset, point, value);
  }

  private check(asset: Asset, point: Point): void {
    if (asset.points.get(point.name) !== point) throw new RangeError(`point "${point.name}" is not a point of asset "${asset.id}"`);
  }

  private bad(status: string): PointReading {
    return { value: null, quality: "bad", status, timestamp: this.now().toISOString() };
  }

  private async readModbus(asset: Asset, point: Point): Promise<PointReading> {
    const table = point.table as Table;
    const address = point.address as number;
    const binding = this.devices.modbus(asset.id);
    if (!binding) return this.bad("unavailable");
    const kind = READS[table] as keyof typeof READ_FC;
    const req = { kind, fc: READ_FC[kind], address, quantity: point.size } as ModbusRequest;
    const r = await binding.device.request(binding.unit, encodeRequest(req), { request: req });
    if (r.kind !== "ok") return this.bad(modbusCause(r));
    const parsed = parseResponse(req, r.pdu);
    if (parsed.kind !== "ok") return this.bad(parsed.kind === "exception" ? modbusCause({ kind: "exception", code: parsed.exception }) : "malformed");
    const raw = parsed.data as readonly number[];
    return { value: decodeRaw(point.type, point.words, raw), quality: "good", status: "Good", timestamp: this.now().toISOString() };
  }

  private async writeModbus(asset: Asset, point: Point, value: Scalar): Promise<PointWriteResult> {
    const raw = encodeValue(point.type, point.words, value);
    if (!raw) throw new RangeError(`value ${JSON.stringify(value)} does not fit point "${point.name}" of asset "${asset.id}" (${point.type})`);
    const binding = this.devices.modbus(asset.id);
    if (!binding) return { status: "unavailable" };
    const address = point.address as number;
    const req: ModbusRequest =
      point.table === "coil"
        ? { kind: "write-single-coil", fc: 5, address, value: raw[0] === 1 ? 1 : 0 }
        : raw.length === 1
          ? { kind: "write-single-register", fc: 6, address, value: raw[0] as number }
          : { kind: "write-multiple-registers", fc: 16, address, quantity: raw.length, values: raw };
    const r = await binding.device.request(binding.unit, encodeRequest(req), { request: req });
    switch (r.kind) {
      case "ok":
        return { status: "ok" };
      case "exception":
        return { status: "device-exception", exception: r.code };
      case "timeout":
      case "malformed":
        return { status: "timeout" };
      case "unavailable":
        return { status: "unavailable" };
    }
  }

  private async readOpcua(asset: Asset, point: Point, maxAgeMs: number): Promise<PointReading> {
    if (point.type === "method" || point.node === undefined) return this.bad("BadNotReadable");
    const device = this.devices.opcua(asset.id);
    if (!device) return this.bad("BadServerNotConnected");
    const [r, ua] = await Promise.all([device.readWithin(point.node, maxAgeMs), opcuaPoints()]);
    const reading = ua.readingOf(r.value, this.now);
    return r.cacheAgeMs !== undefined ? { ...reading, cacheAgeMs: r.cacheAgeMs } : reading;
  }

  private async writeOpcua(asset: Asset, point: Point, value: Scalar): Promise<PointWriteResult> {
    if (isRegisterType(point.type) && !isOpcuaType(point.type)) throw new TypeError(`point "${point.name}" of asset "${asset.id}" has Modbus type ${point.type}`);
    const ua = await opcuaPoints();
    const variant = ua.variantOf(point.type, value);
    if (!variant) throw new RangeError(`value ${JSON.stringify(value)} does not fit point "${point.name}" of asset "${asset.id}" (${point.type})`);
    const device = this.devices.opcua(asset.id);
    if (!device) return { status: "unavailable" };
    return ua.outcomeOf(await device.write(point.node as string, variant));
  }
}
