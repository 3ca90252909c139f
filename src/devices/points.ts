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
import { DataType, StatusCodes, Variant, VariantArrayType, coerceInt64, coerceUInt64 } from "node-opcua";
import type { DataValue, StatusCode } from "node-opcua";
import type { Asset, Point } from "../pdp/policy-set.js";
import type { Scalar, Table } from "../pdp/operation.js";
import { decodeRaw, encodeValue, isRegisterType } from "../pdp/values.js";
import type { OpcuaType } from "../pdp/values.js";
import { encodeRequest } from "../wire/pdu.js";
import type { ModbusRequest } from "../wire/pdu.js";
import { parseResponse } from "../wire/response.js";
import type { DeviceResult } from "./modbus.js";
import type { DeviceRegistry } from "./registry.js";
import type { PointIO, PointReading, PointWriteResult } from "./types.js";

/** The OPC UA DataType of each OPC UA point type. */
export const OPCUA_DATA_TYPES: Readonly<Record<OpcuaType, DataType>> = {
  boolean: DataType.Boolean,
  sbyte: DataType.SByte,
  byte: DataType.Byte,
  int16: DataType.Int16,
  uint16: DataType.UInt16,
  int32: DataType.Int32,
  uint32: DataType.UInt32,
  int64: DataType.Int64,
  uint64: DataType.UInt64,
  float: DataType.Float,
  double: DataType.Double,
  string: DataType.String,
  datetime: DataType.DateTime,
};

const INT_RANGES: Partial<Record<OpcuaType, readonly [number, number]>> = {
  sbyte: [-0x80, 0x7f],
  byte: [0, 0xff],
  int16: [-0x8000, 0x7fff],
  uint16: [0, 0xffff],
  int32: [-0x8000_0000, 0x7fff_ffff],
  uint32: [0, 0xffff_ffff],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  uint64: [0, Number.MAX_SAFE_INTEGER],
};

function isOpcuaType(t: string): t is OpcuaType {
  return Object.hasOwn(OPCUA_DATA_TYPES, t);
}

/**
 * The Variant an OPC UA point of `type` is written with; undefined when `value` does not fit
 * the type (out of range, not whole, not a number, not a date).
 */
export function variantOf(type: string, value: Scalar): Variant | undefined {
  if (!isOpcuaType(type)) return undefined;
  const dataType = OPCUA_DATA_TYPES[type];
  switch (type) {
    case "boolean":
      if (typeof value === "boolean") return new Variant({ dataType, value });
      return value === 0 || value === 1 ? new Variant({ dataType, value: value === 1 }) : undefined;
    case "string":
      return typeof value === "string" ? new Variant({ dataType, value }) : undefined;
    case "datetime": {
      const d = typeof value === "string" || typeof value === "number" ? new Date(value) : undefined;
      return d && !Number.isNaN(d.getTime()) ? new Variant({ dataType, value: d }) : undefined;
    }
    case "float":
      if (typeof value !== "number" || !Number.isFinite(value) || Math.abs(value) > 3.4028234663852886e38) return undefined;
      return new Variant({ dataType, value });
    case "double":
      return typeof value === "number" && !Number.isNaN(value) ? new Variant({ dataType, value }) : undefined;
    default: {
      const [lo, hi] = INT_RANGES[type] as readonly [number, number];
      if (typeof value !== "number" || !Number.isInteger(value) || value < lo || value > hi) return undefined;
      // 64-bit values are [high, low] pairs: node-opcua cannot tell one from an array.
      if (type === "int64") return new Variant({ dataType, arrayType: VariantArrayType.Scalar, value: coerceInt64(value) });
      if (type === "uint64") return new Variant({ dataType, arrayType: VariantArrayType.Scalar, value: coerceUInt64(value) });
      return new Variant({ dataType, value });
    }
  }
}

/** A Variant's value as a Scalar: 64-bit integers as numbers (a string past 2^53), dates as ISO strings; null for none or an array. */
export function scalarOf(v: Variant | null | undefined): Scalar | null {
  if (!v) return null;
  const value: unknown = v.value;
  if (value === null || value === undefined || v.arrayType !== 0) return null;
  if (v.dataType === DataType.Int64 || v.dataType === DataType.UInt64) {
    if (Array.isArray(value) && value.length === 2) {
      const [hi, lo] = value as [number, number];
      const big = (BigInt(v.dataType === DataType.Int64 ? hi | 0 : hi >>> 0) << 32n) + BigInt(lo >>> 0);
      return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big.toString();
    }
  }
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "string") return value;
  if (typeof value === "object" && "text" in value) return String((value as { text: unknown }).text ?? "");
  return String(value);
}

/** A DataValue as a PointReading: a value only when the status is Good. */
export function readingOf(dv: DataValue, now: () => Date = () => new Date()): PointReading {
  const good = dv.statusCode.isGood();
  const at = dv.sourceTimestamp ?? dv.serverTimestamp ?? now();
  return { value: good ? scalarOf(dv.value) : null, quality: good ? "good" : "bad", status: dv.statusCode.name, timestamp: at.toISOString() };
}

/** An OPC UA status of a write or call as an outcome. */
export function outcomeOf(sc: StatusCode): PointWriteResult {
  if (sc.isGood()) return { status: "ok" };
  const v = sc.value;
  if (v === StatusCodes.BadTimeout.value || v === StatusCodes.BadRequestTimeout.value) return { status: "timeout" };
  if (UNAVAILABLE.has(v)) return { status: "unavailable" };
  return { status: "device-exception", exception: sc.name };
}

const UNAVAILABLE = new Set([
  StatusCodes.BadServerNotConnected.value,
  StatusCodes.BadCommunicationError.value,
  StatusCodes.BadNotConnected.value,
  StatusCodes.BadConnectionClosed.value,
  StatusCodes.BadSecureChannelClosed.value,
  StatusCodes.BadSessionClosed.value,
  StatusCodes.BadSessionIdInvalid.value,
]);

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
    if (point.type === "method" || point.node === undefined) return this.bad(StatusCodes.BadNotReadable.name);
    const device = this.devices.opcua(asset.id);
    if (!device) return this.bad(StatusCodes.BadServerNotConnected.name);
    const r = await device.readWithin(point.node, maxAgeMs);
    return r.cacheAgeMs !== undefined ? { ...readingOf(r.value, this.now), cacheAgeMs: r.cacheAgeMs } : readingOf(r.value, this.now);
  }

  private async writeOpcua(asset: Asset, point: Point, value: Scalar): Promise<PointWriteResult> {
    if (isRegisterType(point.type) && !isOpcuaType(point.type)) throw new TypeError(`point "${point.name}" of asset "${asset.id}" has Modbus type ${point.type}`);
    const variant = variantOf(point.type, value);
    if (!variant) throw new RangeError(`value ${JSON.stringify(value)} does not fit point "${point.name}" of asset "${asset.id}" (${point.type})`);
    const device = this.devices.opcua(asset.id);
    if (!device) return { status: "unavailable" };
    return outcomeOf(await device.write(point.node as string, variant));
  }
}
