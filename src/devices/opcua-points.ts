// OPC UA values of named points (devices/points.ts loads this module only for an OPC UA
// point, so that a gateway with no OPC UA asset, front or simulator never loads node-opcua):
// the Variant a point is written with, a Variant or DataValue as a Scalar or PointReading, and
// a write's or call's status as an outcome.
import { DataType, StatusCodes, Variant, VariantArrayType, coerceInt64, coerceUInt64 } from "node-opcua";
import type { DataValue, StatusCode } from "node-opcua";
import type { Scalar } from "../pdp/operation.js";
import { FLOAT32_MAX, OPCUA_INT_RANGES, isOpcuaType } from "../pdp/values.js";
import type { OpcuaType } from "../pdp/values.js";
import type { PointReading, PointWriteResult } from "./types.js";

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
      if (typeof value !== "number" || !Number.isFinite(value) || Math.abs(value) > FLOAT32_MAX) return undefined;
      return new Variant({ dataType, value });
    case "double":
      return typeof value === "number" && !Number.isNaN(value) ? new Variant({ dataType, value }) : undefined;
    default: {
      const [lo, hi] = OPCUA_INT_RANGES[type] as readonly [number, number];
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
