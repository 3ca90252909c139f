// Modbus request PDUs (Modbus Application Protocol Specification V1.1b3) of the function
// codes the gateway understands; responses are in response.ts. Pure: Buffers in, plain
// values out.
//
//   request PDU   +----+---------------------------------------+
//                 | fc | data (depends on fc; see each parser) |   1..253 bytes
//                 +----+---------------------------------------+
//
// The gateway's safety rests on one property, which the fuzz test checks: whatever
// parseRequest accepts re-encodes (encodeRequest) to exactly the bytes it was given. A PDU
// with a quantity out of the spec's limits, an inconsistent byte count, a length that does
// not match its fields, or stray bits in the padding of a coil byte is refused with
// exception 03 (SPEC §5.1: "a well-framed but invalid request gets exception 03"), so
// nothing malformed can reach a device. Function codes 1..127 the gateway does not know are
// returned as `unsupported` (opaque bytes): SPEC §4.1 maps them to action `diagnostic`,
// denied unless a rule names it. Only codes that cannot be requests at all (0, 128..255)
// get exception 01 here.

import type { Bit } from "./bytes.js";
import { header, packBits, registers, sameLength, u8, unpackBits, words } from "./bytes.js";
import { MAX_PDU_LENGTH } from "./mbap.js";

export const FunctionCode = {
  ReadCoils: 1,
  ReadDiscreteInputs: 2,
  ReadHoldingRegisters: 3,
  ReadInputRegisters: 4,
  WriteSingleCoil: 5,
  WriteSingleRegister: 6,
  Diagnostics: 8,
  WriteMultipleCoils: 15,
  WriteMultipleRegisters: 16,
  MaskWriteRegister: 22,
  ReadWriteMultipleRegisters: 23,
  EncapsulatedInterfaceTransport: 43,
} as const;

/** MEI type of FC43 "Read Device Identification". */
export const MEI_READ_DEVICE_ID = 14;

export const ExceptionCode = {
  IllegalFunction: 0x01,
  IllegalDataAddress: 0x02,
  IllegalDataValue: 0x03,
  ServerDeviceFailure: 0x04,
  Acknowledge: 0x05,
  ServerDeviceBusy: 0x06,
  MemoryParityError: 0x08,
  GatewayPathUnavailable: 0x0a,
  GatewayTargetFailedToRespond: 0x0b,
} as const;

/** Quantity limits of the Modbus spec (SPEC §5.1). */
export const LIMITS = {
  readBits: 2000,
  readRegisters: 125,
  writeCoils: 1968,
  writeRegisters: 123,
  readWriteRead: 125,
  readWriteWrite: 121,
} as const;

const ADDRESS_SPACE = 0x10000;

export type { Bit };

interface Range {
  readonly address: number;
  readonly quantity: number;
}

export interface ReadCoilsRequest extends Range { readonly kind: "read-coils"; readonly fc: 1 }
export interface ReadDiscreteInputsRequest extends Range { readonly kind: "read-discrete-inputs"; readonly fc: 2 }
export interface ReadHoldingRegistersRequest extends Range { readonly kind: "read-holding-registers"; readonly fc: 3 }
export interface ReadInputRegistersRequest extends Range { readonly kind: "read-input-registers"; readonly fc: 4 }
export interface WriteSingleCoilRequest {
  readonly kind: "write-single-coil";
  readonly fc: 5;
  readonly address: number;
  /** 1 on the wire as 0xFF00, 0 as 0x0000; nothing else is valid. */
  readonly value: Bit;
}
export interface WriteSingleRegisterRequest {
  readonly kind: "write-single-register";
  readonly fc: 6;
  readonly address: number;
  readonly value: number;
}
export interface DiagnosticsRequest {
  readonly kind: "diagnostics";
  readonly fc: 8;
  readonly subFunction: number;
  /** The bytes after the sub-function (a copy). */
  readonly data: Buffer;
}
export interface WriteMultipleCoilsRequest extends Range {
  readonly kind: "write-multiple-coils";
  readonly fc: 15;
  readonly values: readonly Bit[];
}
export interface WriteMultipleRegistersRequest extends Range {
  readonly kind: "write-multiple-registers";
  readonly fc: 16;
  readonly values: readonly number[];
}
export interface MaskWriteRegisterRequest {
  readonly kind: "mask-write-register";
  readonly fc: 22;
  readonly address: number;
  /** The device computes (current AND andMask) OR (orMask AND NOT andMask). */
  readonly andMask: number;
  readonly orMask: number;
}
export interface ReadWriteMultipleRegistersRequest {
  readonly kind: "read-write-multiple-registers";
  readonly fc: 23;
  /** The device performs the write before the read. */
  readonly read: Range;
  readonly write: Range & { readonly values: readonly number[] };
}
export interface ReadDeviceIdentificationRequest {
  readonly kind: "read-device-identification";
  readonly fc: 43;
  readonly meiType: 14;
  /** 1 basic, 2 regular, 3 extended (stream access), 4 one object (individual access). */
  readonly readDeviceIdCode: 1 | 2 | 3 | 4;
  readonly objectId: number;
}
/** A function code 1..127 the gateway does not interpret (also FC43 with a MEI type other than 14). */
export interface UnsupportedRequest {
  readonly kind: "unsupported";
  readonly fc: number;
  /** The bytes after the function code (a copy), forwarded as they are if a rule allows. */
  readonly data: Buffer;
}

export type ModbusRequest =
  | ReadCoilsRequest
  | ReadDiscreteInputsRequest
  | ReadHoldingRegistersRequest
  | ReadInputRegistersRequest
  | WriteSingleCoilRequest
  | WriteSingleRegisterRequest
  | DiagnosticsRequest
  | WriteMultipleCoilsRequest
  | WriteMultipleRegistersRequest
  | MaskWriteRegisterRequest
  | ReadWriteMultipleRegistersRequest
  | ReadDeviceIdentificationRequest
  | UnsupportedRequest;

export type RequestException = 1 | 2 | 3 | 4;

export type ParseRequestResult =
  | { readonly ok: true; readonly request: ModbusRequest }
  /** `fc` is the request's function code, for encodeException(fc, exception). `reason` is for operational logs. */
  | { readonly ok: false; readonly fc: number; readonly exception: RequestException; readonly reason: string };

const READ_KINDS = { 1: "read-coils", 2: "read-discrete-inputs", 3: "read-holding-registers", 4: "read-input-registers" } as const;

function ok(request: ModbusRequest): ParseRequestResult {
  return { ok: true, request };
}

function invalid(fc: number, reason: string): ParseRequestResult {
  return { ok: false, fc, exception: ExceptionCode.IllegalDataValue, reason };
}

/** Why a quantity or range is out of bounds, or undefined when it is fine. */
function badRange(what: string, address: number, quantity: number, max: number): string | undefined {
  if (quantity < 1 || quantity > max) return `${what} quantity ${quantity} is outside 1..${max}`;
  if (address + quantity > ADDRESS_SPACE) return `${what} range ${address}+${quantity} goes past address 65535`;
  return undefined;
}

function lengthIs(pdu: Buffer, expected: number, fc: number): string | undefined {
  return pdu.length === expected ? undefined : `FC${fc} request is ${pdu.length} bytes, must be ${expected}`;
}

/** Parses one request PDU. Never throws, whatever the bytes. */
export function parseRequest(pdu: Buffer): ParseRequestResult {
  if (pdu.length === 0) return { ok: false, fc: 0, exception: ExceptionCode.IllegalFunction, reason: "empty PDU (no function code)" };
  const fc = pdu[0] as number;
  if (pdu.length > MAX_PDU_LENGTH) return invalid(fc, `PDU of ${pdu.length} bytes is longer than ${MAX_PDU_LENGTH}`);
  switch (fc) {
    case 1:
    case 2:
    case 3:
    case 4: {
      const bad = lengthIs(pdu, 5, fc);
      if (bad) return invalid(fc, bad);
      const address = pdu.readUInt16BE(1);
      const quantity = pdu.readUInt16BE(3);
      const why = badRange(`FC${fc}`, address, quantity, fc <= 2 ? LIMITS.readBits : LIMITS.readRegisters);
      if (why) return invalid(fc, why);
      return ok({ kind: READ_KINDS[fc], fc, address, quantity } as ModbusRequest);
    }
    case 5: {
      const bad = lengthIs(pdu, 5, fc);
      if (bad) return invalid(fc, bad);
      const raw = pdu.readUInt16BE(3);
      if (raw !== 0xff00 && raw !== 0x0000) return invalid(fc, `FC5 value 0x${raw.toString(16).padStart(4, "0")} is neither 0xFF00 nor 0x0000`);
      return ok({ kind: "write-single-coil", fc, address: pdu.readUInt16BE(1), value: raw === 0xff00 ? 1 : 0 });
    }
    case 6: {
      const bad = lengthIs(pdu, 5, fc);
      if (bad) return invalid(fc, bad);
      return ok({ kind: "write-single-register", fc, address: pdu.readUInt16BE(1), value: pdu.readUInt16BE(3) });
    }
    case 8: {
      if (pdu.length < 3) return invalid(fc, `FC8 request is ${pdu.length} bytes, needs at least 3 (function code and sub-function)`);
      return ok({ kind: "diagnostics", fc, subFunction: pdu.readUInt16BE(1), data: Buffer.from(pdu.subarray(3)) });
    }
    case 15:
    case 16:
      return parseWriteMultiple(pdu, fc);
    case 22: {
      const bad = lengthIs(pdu, 7, fc);
      if (bad) return invalid(fc, bad);
      return ok({ kind: "mask-write-register", fc, address: pdu.readUInt16BE(1), andMask: pdu.readUInt16BE(3), orMask: pdu.readUInt16BE(5) });
    }
    case 23:
      return parseReadWrite(pdu);
    case 43: {
      if (pdu.length < 2) return invalid(fc, "FC43 request has no MEI type");
      if (pdu[1] !== MEI_READ_DEVICE_ID) return ok({ kind: "unsupported", fc, data: Buffer.from(pdu.subarray(1)) });
      const bad = lengthIs(pdu, 4, fc);
      if (bad) return invalid(fc, bad);
      const code = pdu[2] as number;
      if (code < 1 || code > 4) return invalid(fc, `FC43/14 read device id code ${code} is outside 1..4`);
      return ok({ kind: "read-device-identification", fc, meiType: MEI_READ_DEVICE_ID, readDeviceIdCode: code as 1 | 2 | 3 | 4, objectId: pdu[3] as number });
    }
    default:
      if (fc === 0 || fc >= 0x80) return { ok: false, fc, exception: ExceptionCode.IllegalFunction, reason: `function code ${fc} is not a Modbus request function code` };
      return ok({ kind: "unsupported", fc, data: Buffer.from(pdu.subarray(1)) });
  }
}

//   FC15/16  +----+---------+----------+------------+---------------------------+
//            | fc | address | quantity | byte count | values (byte count bytes) |
//            +----+---------+----------+------------+---------------------------+
//              1       2          2           1        FC15: ceil(n/8), LSB first; FC16: 2n
function parseWriteMultiple(pdu: Buffer, fc: 15 | 16): ParseRequestResult {
  if (pdu.length < 6) return invalid(fc, `FC${fc} request is ${pdu.length} bytes, needs at least 6`);
  const address = pdu.readUInt16BE(1);
  const quantity = pdu.readUInt16BE(3);
  const byteCount = pdu[5] as number;
  const why = badRange(`FC${fc}`, address, quantity, fc === 15 ? LIMITS.writeCoils : LIMITS.writeRegisters);
  if (why) return invalid(fc, why);
  const expected = fc === 15 ? Math.ceil(quantity / 8) : 2 * quantity;
  if (byteCount !== expected) return invalid(fc, `FC${fc} byte count ${byteCount} does not match quantity ${quantity} (must be ${expected})`);
  if (pdu.length !== 6 + byteCount) return invalid(fc, `FC${fc} request is ${pdu.length} bytes, byte count ${byteCount} makes it ${6 + byteCount}`);
  if (fc === 16) return ok({ kind: "write-multiple-registers", fc, address, quantity, values: registers(pdu, 6, quantity) });
  const values = unpackBits(pdu, 6, quantity, true);
  if (!values) return invalid(fc, `FC15 padding bits after coil ${quantity} are not zero`);
  return ok({ kind: "write-multiple-coils", fc, address, quantity, values });
}

//   FC23  +----+--------------+---------------+---------------+----------------+------------+--------+
//         | fc | read address | read quantity | write address | write quantity | byte count | values |
//         +----+--------------+---------------+---------------+----------------+------------+--------+
//           1         2               2               2               2              1        2n
function parseReadWrite(pdu: Buffer): ParseRequestResult {
  const fc = 23;
  if (pdu.length < 10) return invalid(fc, `FC23 request is ${pdu.length} bytes, needs at least 10`);
  const read = { address: pdu.readUInt16BE(1), quantity: pdu.readUInt16BE(3) };
  const address = pdu.readUInt16BE(5);
  const quantity = pdu.readUInt16BE(7);
  const byteCount = pdu[9] as number;
  const why = badRange("FC23 read", read.address, read.quantity, LIMITS.readWriteRead) ?? badRange("FC23 write", address, quantity, LIMITS.readWriteWrite);
  if (why) return invalid(fc, why);
  if (byteCount !== 2 * quantity) return invalid(fc, `FC23 byte count ${byteCount} does not match write quantity ${quantity} (must be ${2 * quantity})`);
  if (pdu.length !== 10 + byteCount) return invalid(fc, `FC23 request is ${pdu.length} bytes, byte count ${byteCount} makes it ${10 + byteCount}`);
  return ok({ kind: "read-write-multiple-registers", fc, read, write: { address, quantity, values: registers(pdu, 10, quantity) } });
}

/**
 * Encodes a request. Throws a RangeError for a request that parseRequest would refuse (out
 * of the spec's limits, values not matching the quantity, fields out of range) or would
 * read back as another kind: the gateway never sends one.
 */
export function encodeRequest(req: ModbusRequest): Buffer {
  const pdu = buildRequest(req);
  const check = parseRequest(pdu);
  if (!check.ok) throw new RangeError(`encodeRequest: ${check.reason}`);
  // e.g. an `unsupported` request whose fc is one the gateway parses, or a kind with another kind's fc
  if (check.request.kind !== req.kind) throw new RangeError(`encodeRequest: a ${req.kind} request encodes as ${check.request.kind}`);
  return pdu;
}

function buildRequest(req: ModbusRequest): Buffer {
  switch (req.kind) {
    case "read-coils":
    case "read-discrete-inputs":
    case "read-holding-registers":
    case "read-input-registers":
      return header(req.fc, req.address, req.quantity);
    case "write-single-coil":
      if (req.value !== 0 && req.value !== 1) throw new RangeError(`FC5 value ${String(req.value)} must be 0 or 1`);
      return header(5, req.address, req.value === 1 ? 0xff00 : 0x0000);
    case "write-single-register":
      return header(6, req.address, req.value);
    case "diagnostics":
      return Buffer.concat([header(8, req.subFunction), req.data]);
    case "write-multiple-coils": {
      sameLength(req.values, req.quantity, "FC15");
      const bytes = packBits(req.values, "FC15");
      return Buffer.concat([header(15, req.address, req.quantity), Buffer.of(bytes.length & 0xff), bytes]);
    }
    case "write-multiple-registers":
      sameLength(req.values, req.quantity, "FC16");
      return Buffer.concat([header(16, req.address, req.quantity), Buffer.of((2 * req.quantity) & 0xff), words(req.values, "FC16")]);
    case "mask-write-register":
      return header(22, req.address, req.andMask, req.orMask);
    case "read-write-multiple-registers": {
      const w = req.write;
      sameLength(w.values, w.quantity, "FC23 write");
      return Buffer.concat([header(23, req.read.address, req.read.quantity, w.address, w.quantity), Buffer.of((2 * w.quantity) & 0xff), words(w.values, "FC23")]);
    }
    case "read-device-identification":
      return Buffer.of(43, MEI_READ_DEVICE_ID, u8(req.readDeviceIdCode, "FC43/14 read device id code"), u8(req.objectId, "FC43/14 object id"));
    case "unsupported":
      return Buffer.concat([Buffer.of(u8(req.fc, "function code")), req.data]);
  }
}
