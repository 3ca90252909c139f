// Byte helpers shared by the request and response codecs (internal to src/wire).
// Writers throw a RangeError on values that do not fit: a caller bug, never a peer's bytes.

export type Bit = 0 | 1;

export function u8(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new RangeError(`${what} ${v} is not an integer 0..255`);
  return v;
}

export function u16(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`${what} ${v} is not an integer 0..65535`);
  return v;
}

/** `fc` followed by 16-bit big-endian fields. */
export function header(fc: number, ...fields: number[]): Buffer {
  const out = Buffer.allocUnsafe(1 + 2 * fields.length);
  out[0] = u8(fc, "function code");
  fields.forEach((f, i) => out.writeUInt16BE(u16(f, `FC${fc} field`), 1 + 2 * i));
  return out;
}

/** Registers as big-endian 16-bit words. */
export function words(values: readonly number[], what: string): Buffer {
  const out = Buffer.allocUnsafe(2 * values.length);
  values.forEach((v, i) => out.writeUInt16BE(u16(v, `${what} value [${i}]`), 2 * i));
  return out;
}

export function registers(pdu: Buffer, at: number, count: number): number[] {
  const out = new Array<number>(count);
  for (let i = 0; i < count; i++) out[i] = pdu.readUInt16BE(at + 2 * i);
  return out;
}

/** Bits packed LSB first (bit 0 of the first byte is the first coil), padding zero. */
export function packBits(bits: readonly (Bit | boolean)[], what: string): Buffer {
  const out = Buffer.alloc(Math.ceil(bits.length / 8));
  bits.forEach((b, i) => {
    if (b !== 0 && b !== 1 && b !== true && b !== false) throw new RangeError(`${what} bit [${i}] is ${String(b)}, must be 0 or 1`);
    if (b === 1 || b === true) out[i >> 3] = (out[i >> 3] as number) | (1 << (i & 7));
  });
  return out;
}

/** The inverse of packBits; with `strictPadding`, undefined when the unused bits of the last byte are not zero. */
export function unpackBits(pdu: Buffer, at: number, count: number, strictPadding: boolean): Bit[] | undefined {
  const bits = new Array<Bit>(count);
  for (let i = 0; i < count; i++) bits[i] = (((pdu[at + (i >> 3)] as number) >> (i & 7)) & 1) as Bit;
  const rest = count & 7;
  if (strictPadding && rest !== 0 && (pdu[at + (count >> 3)] as number) >> rest !== 0) return undefined;
  return bits;
}

export function sameLength(values: readonly unknown[], quantity: number, what: string): void {
  if (values.length !== quantity) throw new RangeError(`${what}: ${values.length} values for quantity ${quantity}`);
}
