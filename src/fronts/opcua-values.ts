// Values between the OPC UA front and the rest of the gateway: a point's type as an OPC UA
// DataType, a written Variant as the Scalar the policy checks, a device reading as a DataValue,
// and what became of a forwarded operation as the outcome the decision log records.
// Nothing here reaches a device or decides anything.
import { DataType, DataValue, StatusCode, StatusCodes, Variant } from "node-opcua";
import type { OutcomeStatus } from "../audit/record.js";
import type { PointReading, PointWriteResult } from "../devices/types.js";
import { OPCUA_DATA_TYPES } from "../devices/opcua-points.js";
import type { Point } from "../pdp/policy-set.js";
import type { Scalar } from "../pdp/operation.js";
import type { PointType } from "../pdp/values.js";

/** OPC UA point types as themselves; Modbus point types decoded (coils → Boolean, float32 → Float). */
const DATA_TYPES: Record<Exclude<PointType, "method">, DataType> = {
  ...OPCUA_DATA_TYPES,
  bool: DataType.Boolean,
  float32: DataType.Float,
  float64: DataType.Double,
};

/** The DataType a point is exposed with (Modbus points decoded: float32 → Float, coils → Boolean). */
export function dataTypeOf(point: Point): DataType {
  return point.type === "method" ? DataType.Null : DATA_TYPES[point.type];
}

/** Causes that mean "the device could not be reached" rather than "the device said no". */
const UNREACHABLE = new Set(["BadServerNotConnected", "BadCommunicationError", "BadNotConnected", "BadNoCommunication", "BadConnectionClosed", "BadSecureChannelClosed", "BadSessionClosed", "BadSessionIdInvalid", "unavailable"]);
const TIMEOUT = new Set(["BadTimeout", "BadRequestTimeout", "timeout"]);

/** A status name (`BadTimeout`) or a Modbus cause (`timeout`, `exception-02`) as an OPC UA status code. */
export function statusOf(cause: string): StatusCode {
  if (cause === "Good") return StatusCodes.Good;
  const named = (StatusCodes as unknown as Record<string, StatusCode | undefined>)[cause];
  if (named instanceof StatusCode) return named;
  if (TIMEOUT.has(cause)) return StatusCodes.BadTimeout;
  if (UNREACHABLE.has(cause)) return StatusCodes.BadServerNotConnected;
  // A Modbus exception from the device: it was reached, and refused.
  return StatusCodes.BadCommunicationError;
}

/** The outcome record of an operation whose device answer had this status. */
export function outcomeOf(status: StatusCode): { status: OutcomeStatus; exception?: string } {
  if (status.isGoodish()) return { status: "ok" };
  const name = status.name;
  if (TIMEOUT.has(name)) return { status: "timeout" };
  if (UNREACHABLE.has(name)) return { status: "unavailable" };
  return { status: "device-exception", exception: name };
}

/** A point write's result as the OPC UA status of that write. */
export function writeStatusOf(r: PointWriteResult): StatusCode {
  switch (r.status) {
    case "ok":
      return StatusCodes.Good;
    case "timeout":
      return StatusCodes.BadTimeout;
    case "unavailable":
      return StatusCodes.BadServerNotConnected;
    case "device-exception":
      return typeof r.exception === "string" ? statusOf(r.exception) : StatusCodes.BadCommunicationError;
  }
}

/** A reading of any device as a DataValue: a bad reading carries no value, never a stale one. */
export function dataValueOf(point: Point, r: PointReading): DataValue {
  const sourceTimestamp = new Date(r.timestamp);
  const ts = Number.isNaN(sourceTimestamp.getTime()) ? new Date() : sourceTimestamp;
  if (r.quality !== "good" || r.value === null) {
    return new DataValue({ statusCode: r.quality === "good" ? StatusCodes.BadNoData : statusOf(r.status), sourceTimestamp: ts, serverTimestamp: new Date() });
  }
  return new DataValue({ value: variantOf(point, r.value), statusCode: StatusCodes.Good, sourceTimestamp: ts, serverTimestamp: new Date() });
}

/** A bad DataValue (no value) with this status. */
export function badValue(status: StatusCode): DataValue {
  const now = new Date();
  return new DataValue({ statusCode: status, sourceTimestamp: now, serverTimestamp: now });
}

function variantOf(point: Point, value: Scalar): Variant {
  const dataType = dataTypeOf(point);
  if (dataType === DataType.Boolean) return new Variant({ dataType, value: value === true || value === 1 });
  if (dataType === DataType.String) return new Variant({ dataType, value: String(value) });
  if (dataType === DataType.DateTime) return new Variant({ dataType, value: new Date(typeof value === "boolean" ? Number(value) : value) });
  if (dataType === DataType.Int64 || dataType === DataType.UInt64) {
    const n = BigInt(Math.trunc(Number(value)));
    return new Variant({ dataType, value: [Number(n >> 32n) >>> 0, Number(n & 0xffffffffn)] });
  }
  return new Variant({ dataType, value: Number(value) });
}

/**
 * A written Variant as the value the policy checks (and PointIO writes), or undefined when it
 * does not fit the point's type (wrong DataType, array, not a number): BadTypeMismatch.
 */
export function scalarOf(point: Point, v: Variant | null | undefined): Scalar | undefined {
  if (!v || v.arrayType !== undefined && v.arrayType !== 0) return undefined;
  const want = dataTypeOf(point);
  if (v.dataType !== want) return undefined;
  const value: unknown = v.value;
  switch (want) {
    case DataType.Boolean:
      return typeof value === "boolean" ? value : undefined;
    case DataType.String:
      return typeof value === "string" ? value : undefined;
    case DataType.DateTime:
      return value instanceof Date && !Number.isNaN(value.getTime()) ? value.toISOString() : undefined;
    case DataType.Int64:
    case DataType.UInt64: {
      if (!Array.isArray(value) || value.length !== 2) return undefined;
      const [hi, lo] = value as [number, number];
      const n = want === DataType.Int64 ? (BigInt(hi | 0) << 32n) + BigInt(lo >>> 0) : (BigInt(hi >>> 0) << 32n) + BigInt(lo >>> 0);
      return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : undefined;
    }
    default:
      return typeof value === "number" && Number.isFinite(value) ? value : undefined;
  }
}
