// Modbus response PDUs: what the simulated PLC sends (encodeResponse, encodeException) and
// what the upstream client checks a device's answer with (parseResponse) before anything
// reaches a client. Pure.
//
//   normal response     +----+---------------------------------------------+
//                       | fc | data: byte count + values, or an echo, ...  |
//                       +----+---------------------------------------------+
//   exception response  +-----------+------+
//                       | fc | 0x80 | code |
//                       +-----------+------+

import type { Bit } from "./bytes.js";
import { header, packBits, registers, sameLength, u8, unpackBits, words } from "./bytes.js";
import { MAX_PDU_LENGTH } from "./mbap.js";
import type {
  DiagnosticsRequest,
  MaskWriteRegisterRequest,
  ModbusRequest,
  ReadCoilsRequest,
  ReadDeviceIdentificationRequest,
  ReadDiscreteInputsRequest,
  ReadHoldingRegistersRequest,
  ReadInputRegistersRequest,
  ReadWriteMultipleRegistersRequest,
  UnsupportedRequest,
  WriteMultipleCoilsRequest,
  WriteMultipleRegistersRequest,
  WriteSingleCoilRequest,
  WriteSingleRegisterRequest,
} from "./pdu.js";
import { encodeRequest, ExceptionCode, MEI_READ_DEVICE_ID } from "./pdu.js";

export interface DeviceIdObject {
  readonly id: number;
  /** Usually ASCII text; a copy of the device's bytes when parsed. */
  readonly value: Buffer;
}

//   FC43/14 response  +----+------+------+------------+-------+------+-----+-------------------------+
//                     | 2B | 0E   | code | conformity | more  | next | n   | n × (id, length, value) |
//                     |    |      |      | level      | 00/FF | id   |     |                         |
//                     +----+------+------+------------+-------+------+-----+-------------------------+
export interface DeviceIdentification {
  /** Read device id code of the answer: 1..3 for stream access, 4 for one object. */
  readonly readDeviceIdCode: number;
  /** 0x01/0x02/0x03 (stream only), 0x81/0x82/0x83 (stream and individual access). */
  readonly conformityLevel: number;
  /** More objects follow: ask again from `nextObjectId`. */
  readonly moreFollows: boolean;
  readonly nextObjectId: number;
  readonly objects: readonly DeviceIdObject[];
}

/** What encodeResponse takes for FC43/14: object values may be strings (sent as UTF-8, which is ASCII for ASCII text). */
export interface DeviceIdentificationInput extends Omit<DeviceIdentification, "readDeviceIdCode" | "objects"> {
  /** Defaults to the request's code. */
  readonly readDeviceIdCode?: number;
  readonly objects: readonly { readonly id: number; readonly value: string | Uint8Array }[];
}

/** Requests whose normal response is an echo (of the request, or of its address and quantity). */
export type EchoRequest = WriteSingleCoilRequest | WriteSingleRegisterRequest | WriteMultipleCoilsRequest | WriteMultipleRegistersRequest | MaskWriteRegisterRequest;

/**
 * The data of a normal response, by request: the bits or registers read, the diagnostics or
 * unsupported response bytes after the (sub-)function code, the device identification;
 * `undefined` for echoes.
 */
export type ResponseData<R extends ModbusRequest> = R extends ReadCoilsRequest | ReadDiscreteInputsRequest
  ? readonly Bit[]
  : R extends ReadHoldingRegistersRequest | ReadInputRegistersRequest | ReadWriteMultipleRegistersRequest
    ? readonly number[]
    : R extends DiagnosticsRequest | UnsupportedRequest
      ? Buffer
      : R extends ReadDeviceIdentificationRequest
        ? DeviceIdentification
        : undefined;

/** What encodeResponse takes after the request: nothing for echoes. */
export type ResponseArgs<R extends ModbusRequest> = R extends EchoRequest
  ? []
  : R extends ReadCoilsRequest | ReadDiscreteInputsRequest
    ? [bits: readonly (Bit | boolean)[]]
    : R extends ReadDeviceIdentificationRequest
      ? [identification: DeviceIdentificationInput]
      : R extends DiagnosticsRequest | UnsupportedRequest
        ? [data: Uint8Array]
        : [registers: readonly number[]];

export type ParseResponseResult<R extends ModbusRequest> =
  | { readonly kind: "ok"; readonly data: ResponseData<R> }
  /** The device's exception code (1..255), to pass through to the client. */
  | { readonly kind: "exception"; readonly exception: number }
  /** The answer does not fit the request: never pass it on as good. */
  | { readonly kind: "malformed"; readonly reason: string };

/** Encodes an exception response: `fc | 0x80`, code. */
export function encodeException(fc: number, code: number): Buffer {
  u8(fc, "function code");
  if (!Number.isInteger(code) || code < 1 || code > 0xff) throw new RangeError(`exception code ${code} is not 1..255`);
  return Buffer.of(fc | 0x80, code);
}

/**
 * Encodes the normal response to `req` (for the simulated PLC and the tests). Throws a
 * RangeError when the data does not fit the request (wrong count, value out of range) or
 * the response would be longer than 253 bytes.
 */
export function encodeResponse<R extends ModbusRequest>(req: R, ...args: ResponseArgs<R>): Buffer {
  const pdu = buildResponse(req as ModbusRequest, args[0]);
  if (pdu.length > MAX_PDU_LENGTH) throw new RangeError(`encodeResponse: FC${req.fc} response of ${pdu.length} bytes is longer than ${MAX_PDU_LENGTH}`);
  return pdu;
}

function need<T>(data: unknown, fc: number): T {
  if (data === undefined) throw new RangeError(`encodeResponse: FC${fc} needs response data`);
  return data as T;
}

function buildResponse(req: ModbusRequest, data: unknown): Buffer {
  switch (req.kind) {
    case "read-coils":
    case "read-discrete-inputs": {
      const bits = need<readonly (Bit | boolean)[]>(data, req.fc);
      sameLength(bits, req.quantity, `FC${req.fc} response`);
      const bytes = packBits(bits, `FC${req.fc} response`);
      return Buffer.concat([Buffer.of(req.fc, bytes.length), bytes]);
    }
    case "read-holding-registers":
    case "read-input-registers":
    case "read-write-multiple-registers": {
      const values = need<readonly number[]>(data, req.fc);
      const quantity = req.kind === "read-write-multiple-registers" ? req.read.quantity : req.quantity;
      sameLength(values, quantity, `FC${req.fc} response`);
      return Buffer.concat([Buffer.of(req.fc, (2 * quantity) & 0xff), words(values, `FC${req.fc} response`)]);
    }
    case "write-single-coil":
    case "write-single-register":
    case "mask-write-register":
      return encodeRequest(req);
    case "write-multiple-coils":
    case "write-multiple-registers":
      return header(req.fc, req.address, req.quantity);
    case "diagnostics":
      return Buffer.concat([header(8, req.subFunction), need<Uint8Array>(data, 8)]);
    case "read-device-identification":
      return encodeDeviceId(req, need<DeviceIdentificationInput>(data, 43));
    case "unsupported":
      return Buffer.concat([Buffer.of(req.fc), need<Uint8Array>(data, req.fc)]);
  }
}

function encodeDeviceId(req: ReadDeviceIdentificationRequest, id: DeviceIdentificationInput): Buffer {
  const parts: Uint8Array[] = [
    Buffer.of(
      43,
      MEI_READ_DEVICE_ID,
      u8(id.readDeviceIdCode ?? req.readDeviceIdCode, "FC43/14 read device id code"),
      u8(id.conformityLevel, "FC43/14 conformity level"),
      id.moreFollows ? 0xff : 0x00,
      u8(id.nextObjectId, "FC43/14 next object id"),
      u8(id.objects.length, "FC43/14 number of objects"),
    ),
  ];
  for (const o of id.objects) {
    const value = typeof o.value === "string" ? Buffer.from(o.value, "utf8") : o.value;
    parts.push(Buffer.of(u8(o.id, "FC43/14 object id"), u8(value.length, `FC43/14 object ${o.id} length`)), value);
  }
  return Buffer.concat(parts);
}

/**
 * Checks a device's answer against the request it answers (one that parseRequest gave or
 * encodeRequest accepts): function code, byte counts, lengths, echoes. Never throws, whatever
 * the answer's bytes. An answer of kind "ok" may be passed on to the client as it is. Lenient
 * only where a client cannot be misled: the padding bits of a coil byte are ignored, FC43/14
 * conformity levels are not checked, and the answer to an `unsupported` request cannot be
 * checked at all (its bytes are passed on as they are).
 */
export function parseResponse<R extends ModbusRequest>(req: R, pdu: Buffer): ParseResponseResult<R> {
  return checkResponse(req as ModbusRequest, pdu) as ParseResponseResult<R>;
}

type AnyResponse = ParseResponseResult<ModbusRequest>;

function bad(reason: string): AnyResponse {
  return { kind: "malformed", reason };
}

function good(data: ResponseData<ModbusRequest>): AnyResponse {
  return { kind: "ok", data };
}

function checkResponse(req: ModbusRequest, pdu: Buffer): AnyResponse {
  if (pdu.length === 0) return bad("empty response PDU");
  if (pdu.length > MAX_PDU_LENGTH) return bad(`response PDU of ${pdu.length} bytes is longer than ${MAX_PDU_LENGTH}`);
  const fc = pdu[0] as number;
  if (fc === (req.fc | 0x80)) {
    if (pdu.length !== 2) return bad(`exception response is ${pdu.length} bytes, must be 2`);
    const code = pdu[1] as number;
    return code === 0 ? bad("exception code 0") : { kind: "exception", exception: code };
  }
  if (fc !== req.fc) return bad(`function code ${fc} answers a request with function code ${req.fc}`);
  switch (req.kind) {
    case "read-coils":
    case "read-discrete-inputs": {
      const why = byteCounted(pdu, Math.ceil(req.quantity / 8));
      if (why) return bad(`FC${fc} response: ${why}`);
      return good(unpackBits(pdu, 2, req.quantity, false) as Bit[]);
    }
    case "read-holding-registers":
    case "read-input-registers":
    case "read-write-multiple-registers": {
      const quantity = req.kind === "read-write-multiple-registers" ? req.read.quantity : req.quantity;
      const why = byteCounted(pdu, 2 * quantity);
      if (why) return bad(`FC${fc} response: ${why}`);
      return good(registers(pdu, 2, quantity));
    }
    case "write-single-coil":
    case "write-single-register":
    case "mask-write-register":
    case "write-multiple-coils":
    case "write-multiple-registers": {
      const echo = req.kind === "write-multiple-coils" || req.kind === "write-multiple-registers" ? header(fc, req.address, req.quantity) : encodeRequest(req);
      return echo.equals(pdu) ? good(undefined) : bad(`FC${fc} response ${pdu.toString("hex")} is not the echo ${echo.toString("hex")}`);
    }
    case "diagnostics": {
      if (pdu.length < 3) return bad(`FC8 response is ${pdu.length} bytes, needs at least 3`);
      const sub = pdu.readUInt16BE(1);
      if (sub !== req.subFunction) return bad(`FC8 response sub-function ${sub} answers sub-function ${req.subFunction}`);
      const data = Buffer.from(pdu.subarray(3));
      // Sub-function 0 (Return Query Data) is defined as an echo.
      if (sub === 0 && !data.equals(req.data)) return bad("FC8/0 response does not echo the query data");
      return good(data);
    }
    case "read-device-identification":
      return checkDeviceId(req, pdu);
    case "unsupported":
      return good(Buffer.from(pdu.subarray(1)));
  }
}

/** `fc, byte count, data`: the byte count must be `expected` and the PDU exactly that long. */
function byteCounted(pdu: Buffer, expected: number): string | undefined {
  if (pdu.length < 2) return "no byte count";
  const count = pdu[1] as number;
  if (count !== expected) return `byte count ${count}, the request needs ${expected}`;
  if (pdu.length !== 2 + count) return `${pdu.length} bytes, byte count ${count} makes it ${2 + count}`;
  return undefined;
}

function checkDeviceId(req: ReadDeviceIdentificationRequest, pdu: Buffer): AnyResponse {
  if (pdu.length < 7) return bad(`FC43/14 response is ${pdu.length} bytes, needs at least 7`);
  if (pdu[1] !== MEI_READ_DEVICE_ID) return bad(`FC43 response MEI type ${pdu[1]} answers MEI type 14`);
  const code = pdu[2] as number;
  // A device asked for more than its conformity level answers at its own level (Modbus spec 6.21).
  const codeOk = req.readDeviceIdCode === 4 ? code === 4 : code >= 1 && code <= 3;
  if (!codeOk) return bad(`FC43/14 response read device id code ${code} does not answer code ${req.readDeviceIdCode}`);
  const more = pdu[4] as number;
  if (more !== 0x00 && more !== 0xff) return bad(`FC43/14 response "more follows" is 0x${more.toString(16)}, must be 0x00 or 0xFF`);
  const n = pdu[6] as number;
  const objects: DeviceIdObject[] = [];
  let at = 7;
  for (let i = 0; i < n; i++) {
    if (at + 2 > pdu.length) return bad(`FC43/14 response ends inside object ${i + 1} of ${n}`);
    const len = pdu[at + 1] as number;
    if (at + 2 + len > pdu.length) return bad(`FC43/14 response object ${pdu[at]} of ${len} bytes runs past the end`);
    objects.push({ id: pdu[at] as number, value: Buffer.from(pdu.subarray(at + 2, at + 2 + len)) });
    at += 2 + len;
  }
  if (at !== pdu.length) return bad(`FC43/14 response has ${pdu.length - at} bytes after its ${n} objects`);
  if (req.readDeviceIdCode === 4 && (n !== 1 || objects[0]?.id !== req.objectId)) return bad(`FC43/14 individual access to object ${req.objectId} answered with other objects`);
  return good({ readDeviceIdCode: code, conformityLevel: pdu[3] as number, moreFollows: more === 0xff, nextObjectId: pdu[5] as number, objects });
}

/**
 * What a device with these identification objects answers to `req` (Modbus spec 6.21), for
 * the simulated PLC: stream access (codes 1..3) returns the objects of the category and
 * below (basic 0x00..0x02, regular up to 0x7F, extended up to 0xFF) from `objectId` on,
 * restarting at the first one when `objectId` is not there, as many as fit in one PDU, with
 * `moreFollows`; individual access (code 4) returns the one object, or exception 02.
 */
export function deviceIdentificationFor(
  req: ReadDeviceIdentificationRequest,
  catalog: ReadonlyMap<number, string | Uint8Array>,
  conformityLevel: number,
): { readonly ok: true; readonly data: DeviceIdentificationInput } | { readonly ok: false; readonly exception: 2 } {
  const entry = (id: number) => ({ id, value: catalog.get(id) as string | Uint8Array });
  if (req.readDeviceIdCode === 4) {
    if (!catalog.has(req.objectId)) return { ok: false, exception: ExceptionCode.IllegalDataAddress };
    return { ok: true, data: { conformityLevel, moreFollows: false, nextObjectId: 0, objects: [entry(req.objectId)] } };
  }
  const top = req.readDeviceIdCode === 1 ? 0x02 : req.readDeviceIdCode === 2 ? 0x7f : 0xff;
  const ids = [...catalog.keys()].filter((id) => id <= top).sort((a, b) => a - b);
  const start = Math.max(0, ids.indexOf(req.objectId));
  const objects: { id: number; value: string | Uint8Array }[] = [];
  let size = 7;
  for (let i = start; i < ids.length; i++) {
    const o = entry(ids[i] as number);
    size += 2 + (typeof o.value === "string" ? Buffer.byteLength(o.value) : o.value.length);
    if (size > MAX_PDU_LENGTH && objects.length > 0) return { ok: true, data: { conformityLevel, moreFollows: true, nextObjectId: o.id, objects } };
    objects.push(o);
  }
  return { ok: true, data: { conformityLevel, moreFollows: false, nextObjectId: 0, objects } };
}
