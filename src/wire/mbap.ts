// Modbus TCP framing (MBAP, Modbus Messaging on TCP/IP Implementation Guide v1.0b §3.1.3).
// Pure: bytes in, a verdict out. The caller owns the socket and the receive buffer.
//
//   byte  0      1      2      3      4      5      6      7 ............ 6+length-1
//       +------+------+------+------+------+------+------+------------------------+
//       | transaction | protocol id |   length    | unit | PDU: function code and |
//       |     id      |  (always 0) | (unit + PDU)|  id  | data, length-1 bytes   |
//       +------+------+------+------+------+------+------+------------------------+
//       '----------------- MBAP header, 7 bytes ----------'
//   every field big-endian; length counts the unit id and the PDU, so 2..254
//   (a PDU is 1..253 bytes: at least its function code, at most 253 by the Modbus spec).
//
// Three outcomes, never two merged into one: the bytes so far are a valid prefix
// ("need-more": wait for the socket), the stream is broken ("malformed": the header can
// never become valid, so there is no way to resynchronise and the connection must close),
// or a whole frame is there. A bad protocol id or length is malformed as soon as that field
// is complete: the body is never waited for.

export const MBAP_HEADER_LENGTH = 7;
export const MIN_PDU_LENGTH = 1;
export const MAX_PDU_LENGTH = 253;
/** The largest frame on the wire: header + the largest PDU. */
export const MAX_FRAME_LENGTH = MBAP_HEADER_LENGTH + MAX_PDU_LENGTH;
/** Bounds of the MBAP length field (unit id + PDU). */
export const MIN_LENGTH_FIELD = 1 + MIN_PDU_LENGTH;
export const MAX_LENGTH_FIELD = 1 + MAX_PDU_LENGTH;

export interface MbapFrame {
  readonly kind: "frame";
  readonly transactionId: number;
  /** Always 0 (anything else is malformed); kept so a log line can show the header as sent. */
  readonly protocolId: number;
  readonly unitId: number;
  /** The PDU as a view into the caller's buffer (no copy): copy it to keep it past the next read. */
  readonly pdu: Buffer;
  /** Bytes of the buffer this frame takes from `offset` (header + PDU): where the next frame starts. */
  readonly length: number;
}

export type FrameResult =
  | { readonly kind: "need-more" }
  | { readonly kind: "malformed"; readonly reason: string; readonly closeConnection: true }
  | MbapFrame;

const NEED_MORE: FrameResult = Object.freeze({ kind: "need-more" });

function malformed(reason: string): FrameResult {
  return { kind: "malformed", reason, closeConnection: true };
}

/**
 * Reads one frame starting at `offset`. Never throws on any byte content; throws a
 * RangeError only for an offset outside the buffer (a caller bug, not a peer's).
 */
export function readFrame(buf: Buffer, offset = 0): FrameResult {
  if (!Number.isInteger(offset) || offset < 0 || offset > buf.length) {
    throw new RangeError(`readFrame: offset ${offset} is outside the buffer (length ${buf.length})`);
  }
  const available = buf.length - offset;
  if (available >= 4) {
    const protocolId = buf.readUInt16BE(offset + 2);
    if (protocolId !== 0) return malformed(`MBAP protocol id is ${protocolId}, must be 0 (Modbus)`);
  }
  if (available >= 6) {
    const length = buf.readUInt16BE(offset + 4);
    if (length < MIN_LENGTH_FIELD || length > MAX_LENGTH_FIELD) {
      return malformed(`MBAP length is ${length}, must be ${MIN_LENGTH_FIELD}..${MAX_LENGTH_FIELD} (unit id + PDU of at most ${MAX_PDU_LENGTH} bytes)`);
    }
    const total = 6 + length;
    if (available >= total) {
      return {
        kind: "frame",
        transactionId: buf.readUInt16BE(offset),
        protocolId: 0,
        unitId: buf[offset + 6] as number,
        pdu: buf.subarray(offset + MBAP_HEADER_LENGTH, offset + total),
        length: total,
      };
    }
  }
  return NEED_MORE;
}

/**
 * Builds one frame. Throws a RangeError for values that cannot be framed (a caller bug:
 * the gateway must never put an unframeable message on the wire).
 */
export function encodeFrame(transactionId: number, unitId: number, pdu: Uint8Array): Buffer {
  if (!Number.isInteger(transactionId) || transactionId < 0 || transactionId > 0xffff) {
    throw new RangeError(`encodeFrame: transaction id ${transactionId} is not 0..65535`);
  }
  if (!Number.isInteger(unitId) || unitId < 0 || unitId > 0xff) throw new RangeError(`encodeFrame: unit id ${unitId} is not 0..255`);
  if (pdu.length < MIN_PDU_LENGTH || pdu.length > MAX_PDU_LENGTH) {
    throw new RangeError(`encodeFrame: PDU of ${pdu.length} bytes, must be ${MIN_PDU_LENGTH}..${MAX_PDU_LENGTH}`);
  }
  const out = Buffer.allocUnsafe(MBAP_HEADER_LENGTH + pdu.length);
  out.writeUInt16BE(transactionId, 0);
  out.writeUInt16BE(0, 2);
  out.writeUInt16BE(pdu.length + 1, 4);
  out[6] = unitId;
  out.set(pdu, MBAP_HEADER_LENGTH);
  return out;
}
