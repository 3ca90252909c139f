// Point types and how their values sit in Modbus registers. Registers are big-endian 16-bit
// words on the wire; a value wider than one register spans several, high word first
// (`words: big`, the Modbus convention) or low word first (`words: little`).
import type { Scalar, Table } from "./operation.js";

export const REGISTER_TYPES = ["uint16", "int16", "uint32", "int32", "float32", "float64"] as const;
export type RegisterType = (typeof REGISTER_TYPES)[number];
export const OPCUA_TYPES = [
  "boolean", "sbyte", "byte", "int16", "uint16", "int32", "uint32", "int64", "uint64",
  "float", "double", "string", "datetime",
] as const;
export type OpcuaType = (typeof OPCUA_TYPES)[number];
export type PointType = "bool" | RegisterType | OpcuaType | "method";
export type WordOrder = "big" | "little";

const WORDS: Record<RegisterType, number> = { uint16: 1, int16: 1, uint32: 2, int32: 2, float32: 2, float64: 4 };

export function registerCount(type: RegisterType): number {
  return WORDS[type];
}

export function isOpcuaType(t: string): t is OpcuaType {
  return (OPCUA_TYPES as readonly string[]).includes(t);
}

export function isRegisterType(t: string): t is RegisterType {
  return (REGISTER_TYPES as readonly string[]).includes(t);
}

/** The whole numbers each OPC UA integer type holds (64-bit ones: as far as a JSON number is exact). */
export const OPCUA_INT_RANGES: Readonly<Partial<Record<OpcuaType, readonly [number, number]>>> = {
  sbyte: [-0x80, 0x7f],
  byte: [0, 0xff],
  int16: [-0x8000, 0x7fff],
  uint16: [0, 0xffff],
  int32: [-0x8000_0000, 0x7fff_ffff],
  uint32: [0, 0xffff_ffff],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  uint64: [0, Number.MAX_SAFE_INTEGER],
};

/** The largest finite float32 (OPC UA Float). */
export const FLOAT32_MAX = 3.4028234663852886e38;

export function isBitTable(table: Table): boolean {
  return table === "coil" || table === "discrete";
}

// One scratch buffer for float decoding: decisions are synchronous, so it is never shared.
const scratch = new DataView(new ArrayBuffer(8));

/** Decodes the raw words (or 0/1 bits) of one point, starting at `offset`, into its value. */
export function decodeRaw(type: PointType, order: WordOrder, raw: readonly number[], offset = 0): number | boolean {
  if (type === "bool") return raw[offset] !== 0;
  if (!isRegisterType(type)) throw new TypeError(`type ${type} has no register encoding`);
  const n = WORDS[type];
  switch (type) {
    case "uint16": return word(raw, offset, order, n, 0);
    case "int16": return (word(raw, offset, order, n, 0) << 16) >> 16;
    case "uint32": return word(raw, offset, order, n, 0) * 0x10000 + word(raw, offset, order, n, 1);
    case "int32": return (word(raw, offset, order, n, 0) << 16) | word(raw, offset, order, n, 1);
    case "float32": scratch.setUint16(0, word(raw, offset, order, n, 0)); scratch.setUint16(2, word(raw, offset, order, n, 1)); return scratch.getFloat32(0);
    case "float64": for (let i = 0; i < 4; i++) scratch.setUint16(i * 2, word(raw, offset, order, n, i)); return scratch.getFloat64(0);
  }
}

/** Word `i` (most significant first) of an `n`-word value at `offset` in `raw` (a function, not a closure per decode: this is on the decision path). */
function word(raw: readonly number[], offset: number, order: WordOrder, n: number, i: number): number {
  return (raw[offset + (order === "big" ? i : n - 1 - i)] ?? 0) & 0xffff;
}

/**
 * Encodes a value into raw words (or one 0/1 bit); the inverse of decodeRaw. Returns
 * undefined when the value does not fit the type (out of range, not a number, not whole).
 */
export function encodeValue(type: PointType, order: WordOrder, value: Scalar): number[] | undefined {
  if (type === "bool") {
    if (typeof value === "boolean") return [value ? 1 : 0];
    return value === 0 || value === 1 ? [value] : undefined;
  }
  if (!isRegisterType(type) || typeof value !== "number" || !Number.isFinite(value)) return undefined;
  const n = WORDS[type];
  const view = new DataView(new ArrayBuffer(n * 2));
  const whole = Number.isInteger(value);
  switch (type) {
    case "uint16": if (!whole || value < 0 || value > 0xffff) return undefined; view.setUint16(0, value); break;
    case "int16": if (!whole || value < -0x8000 || value > 0x7fff) return undefined; view.setInt16(0, value); break;
    case "uint32": if (!whole || value < 0 || value > 0xffffffff) return undefined; view.setUint32(0, value); break;
    case "int32": if (!whole || value < -0x80000000 || value > 0x7fffffff) return undefined; view.setInt32(0, value); break;
    case "float32": if (Math.abs(value) > 3.4028234663852886e38) return undefined; view.setFloat32(0, value); break;
    case "float64": view.setFloat64(0, value); break;
  }
  const words: number[] = [];
  for (let i = 0; i < n; i++) words.push(view.getUint16(i * 2, false));
  return order === "big" ? words : words.reverse();
}

/** A written value as a number for range checks; strings and NaN have none. */
export function numericValue(v: Scalar): number | undefined {
  if (typeof v === "boolean") return v ? 1 : 0;
  if (typeof v === "number" && !Number.isNaN(v)) return v;
  return undefined;
}
