// Fuzz of the codec (SPEC §9: bad input never crashes the gateway and never reaches a device).
// Random and mutated frames go through readFrame → parseRequest → toOperations, and random
// and mutated answers through parseResponse. Properties:
//   - nothing throws;
//   - a frame re-encodes (encodeFrame) to exactly the bytes it was read from, and "need-more"
//     and "malformed" are each given only when they are true;
//   - whatever parseRequest accepts re-encodes (encodeRequest) to exactly the same PDU, so the
//     gateway can only ever forward bytes that are a valid request;
//   - whatever parseResponse accepts re-encodes to an answer that parses to the same data.
// Seeded: FUZZ_SEED=n reproduces a run, FUZZ_ITERATIONS=n runs longer (default 100,000).
import t from "tap";
import { encodeFrame, MAX_PDU_LENGTH, readFrame } from "../../src/wire/mbap.js";
import { encodeRequest, LIMITS, parseRequest } from "../../src/wire/pdu.js";
import type { Bit, ModbusRequest } from "../../src/wire/pdu.js";
import { encodeException, encodeResponse, parseResponse } from "../../src/wire/response.js";
import { toOperations } from "../../src/wire/operations.js";
import { prng } from "../support/prng.js";
import type { Rng } from "../support/prng.js";

const SEED = Number(process.env.FUZZ_SEED ?? 0x2eed5) >>> 0;
const ITERATIONS = Number(process.env.FUZZ_ITERATIONS ?? 100_000);


/** A quantity in 1..max, often at the edges. */
function quantity(r: Rng, max: number): number {
  return r.next() < 0.3 ? r.pick([1, max, max - 1]) : r.int(1, max);
}

function rangeStart(r: Rng, q: number): number {
  return r.next() < 0.2 ? 65536 - q : r.int(0, 65536 - q);
}

const bits = (r: Rng, n: number): Bit[] => Array.from({ length: n }, () => r.int(0, 1) as Bit);
const regs = (r: Rng, n: number): number[] => Array.from({ length: n }, () => r.int(0, 0xffff));

/** A random valid request of every kind the codec knows. */
function randomRequest(r: Rng): ModbusRequest {
  switch (r.int(0, 12)) {
    case 0:
    case 1: {
      const fc = r.pick([1, 2] as const);
      const q = quantity(r, LIMITS.readBits);
      return { kind: fc === 1 ? "read-coils" : "read-discrete-inputs", fc, address: rangeStart(r, q), quantity: q } as ModbusRequest;
    }
    case 2:
    case 3: {
      const fc = r.pick([3, 4] as const);
      const q = quantity(r, LIMITS.readRegisters);
      return { kind: fc === 3 ? "read-holding-registers" : "read-input-registers", fc, address: rangeStart(r, q), quantity: q } as ModbusRequest;
    }
    case 4:
      return { kind: "write-single-coil", fc: 5, address: r.int(0, 0xffff), value: r.int(0, 1) as Bit };
    case 5:
      return { kind: "write-single-register", fc: 6, address: r.int(0, 0xffff), value: r.int(0, 0xffff) };
    case 6: {
      const q = quantity(r, LIMITS.writeCoils);
      return { kind: "write-multiple-coils", fc: 15, address: rangeStart(r, q), quantity: q, values: bits(r, q) };
    }
    case 7: {
      const q = quantity(r, LIMITS.writeRegisters);
      return { kind: "write-multiple-registers", fc: 16, address: rangeStart(r, q), quantity: q, values: regs(r, q) };
    }
    case 8:
      return { kind: "mask-write-register", fc: 22, address: r.int(0, 0xffff), andMask: r.int(0, 0xffff), orMask: r.int(0, 0xffff) };
    case 9: {
      const rq = quantity(r, LIMITS.readWriteRead);
      const wq = quantity(r, LIMITS.readWriteWrite);
      return { kind: "read-write-multiple-registers", fc: 23, read: { address: rangeStart(r, rq), quantity: rq }, write: { address: rangeStart(r, wq), quantity: wq, values: regs(r, wq) } };
    }
    case 10:
      return { kind: "read-device-identification", fc: 43, meiType: 14, readDeviceIdCode: r.int(1, 4) as 1 | 2 | 3 | 4, objectId: r.int(0, 255) };
    case 11:
      return { kind: "diagnostics", fc: 8, subFunction: r.int(0, 0xffff), data: r.bytes(r.int(0, 4)) };
    default:
      return { kind: "unsupported", fc: r.pick([7, 11, 12, 17, 20, 21, 24, 65, 100, 127]), data: r.bytes(r.int(0, 8)) };
  }
}

/** Valid response data for a request (what a healthy device would send). */
function randomAnswer(r: Rng, req: ModbusRequest): unknown {
  switch (req.kind) {
    case "read-coils":
    case "read-discrete-inputs":
      return bits(r, req.quantity);
    case "read-holding-registers":
    case "read-input-registers":
      return regs(r, req.quantity);
    case "read-write-multiple-registers":
      return regs(r, req.read.quantity);
    case "diagnostics":
      return req.subFunction === 0 ? req.data : r.bytes(2);
    case "read-device-identification": {
      const n = req.readDeviceIdCode === 4 ? 1 : r.int(0, 3);
      const objects = Array.from({ length: n }, (_, i) => ({ id: req.readDeviceIdCode === 4 ? req.objectId : i, value: r.bytes(r.int(0, 20)) }));
      return { readDeviceIdCode: req.readDeviceIdCode, conformityLevel: r.pick([1, 2, 3, 0x81, 0x82, 0x83]), moreFollows: r.next() < 0.2, nextObjectId: r.int(0, 255), objects };
    }
    case "unsupported":
      return r.bytes(r.int(0, 10));
    default:
      return undefined;
  }
}

const encodeAnswer = encodeResponse as (req: ModbusRequest, ...data: unknown[]) => Buffer;

const INTERESTING_16 = [0, 1, 2, 8, 9, 121, 122, 123, 124, 125, 126, 246, 1968, 1969, 2000, 2001, 0x7fff, 0x8000, 0xff00, 0xfffe, 0xffff];
const INTERESTING_8 = [0, 1, 2, 6, 7, 8, 0x0e, 0x7f, 0x80, 0xf6, 0xfe, 0xff];

/** One to four mutations of a frame (or of a bare PDU, with `frame` false). */
function mutate(r: Rng, input: Buffer, frame: boolean): Buffer {
  let b = Buffer.from(input);
  const body = frame ? 7 : 0;
  for (let n = r.int(1, 4); n > 0; n--) {
    const at = () => r.int(0, Math.max(0, b.length - 1));
    switch (r.int(0, 8)) {
      case 0: // flip a bit
        if (b.length) {
          const i = at();
          b[i] = (b[i] as number) ^ (1 << r.int(0, 7));
        }
        break;
      case 1: // a random byte
        if (b.length) b[at()] = r.int(0, 255);
        break;
      case 2: // an interesting byte (function codes, byte counts, MEI types)
        if (b.length) b[at()] = r.pick(INTERESTING_8);
        break;
      case 3: // an interesting 16-bit field in the PDU (quantities, addresses, coil values)
        if (b.length >= body + 3) b.writeUInt16BE(r.pick(INTERESTING_16), r.int(body + 1, b.length - 2));
        break;
      case 4: // truncate
        b = b.subarray(0, r.int(0, b.length));
        break;
      case 5: // extend
        b = Buffer.concat([b, r.bytes(r.int(1, 8))]);
        break;
      case 6: // a wrong MBAP length
        if (frame && b.length >= 6) b.writeUInt16BE(r.pick([0, 1, 2, 253, 254, 255, 300, 0xffff, r.int(0, 0xffff), b.length - 6 + r.int(-2, 2)].map((v) => v & 0xffff)), 4);
        break;
      default:
        break;
    }
  }
  // Most mutated PDUs keep a consistent MBAP length, so they reach the PDU parser.
  if (frame && b.length >= 7 && b.length <= 7 + MAX_PDU_LENGTH && r.next() < 0.6) b.writeUInt16BE(b.length - 6, 4);
  return b;
}

/** A frame-shaped buffer: random bytes, a valid header over random PDU bytes, or a valid request mutated or not. */
function candidate(r: Rng): Buffer {
  const p = r.next();
  if (p < 0.05) return r.bytes(r.int(0, 270));
  if (p < 0.25) {
    const pdu = Buffer.concat([Buffer.of(r.pick([1, 2, 3, 4, 5, 6, 8, 15, 16, 22, 23, 43, r.int(0, 255)])), r.bytes(r.int(0, 20))]);
    return encodeFrame(r.int(0, 0xffff), r.int(0, 255), pdu);
  }
  const valid = encodeFrame(r.int(0, 0xffff), r.int(0, 255), encodeRequest(randomRequest(r)));
  return p < 0.35 ? valid : mutate(r, valid, true);
}

interface Stats {
  frames: number;
  needMore: number;
  malformed: number;
  parsedOk: number;
  exceptions: Record<number, number>;
  failures: string[];
}

function fail(s: Stats, what: string, buf: Buffer): void {
  if (s.failures.length < 10) s.failures.push(`${what}: ${buf.toString("hex")}`);
}

/** Every check on one buffer; returns normally whatever the bytes (a throw is itself a failure). */
function check(s: Stats, buf: Buffer): void {
  let offset = 0;
  for (;;) {
    const f = readFrame(buf, offset);
    const available = buf.length - offset;
    if (f.kind === "need-more") {
      if (available > 0) s.needMore++;
      const len = available >= 6 ? buf.readUInt16BE(offset + 4) : -1;
      if ((available >= 4 && buf.readUInt16BE(offset + 2) !== 0) || (len !== -1 && (len < 2 || len > 254 || available >= 6 + len))) fail(s, "need-more for a malformed or complete frame", buf);
      return;
    }
    if (f.kind === "malformed") {
      s.malformed++;
      const protocolBad = available >= 4 && buf.readUInt16BE(offset + 2) !== 0;
      const lengthBad = available >= 6 && (buf.readUInt16BE(offset + 4) < 2 || buf.readUInt16BE(offset + 4) > 254);
      if (!protocolBad && !lengthBad) fail(s, "malformed for a valid header", buf);
      return;
    }
    s.frames++;
    if (f.pdu.length < 1 || f.pdu.length > MAX_PDU_LENGTH || f.length !== 7 + f.pdu.length || f.length > available) fail(s, "frame with impossible sizes", buf);
    if (!encodeFrame(f.transactionId, f.unitId, f.pdu).equals(buf.subarray(offset, offset + f.length))) fail(s, "frame does not re-encode to its bytes", buf);
    const p = parseRequest(f.pdu);
    if (p.ok) {
      s.parsedOk++;
      if (!encodeRequest(p.request).equals(f.pdu)) fail(s, "accepted request does not re-encode to the same PDU", f.pdu);
      const ops = toOperations("fuzz", f.unitId, p.request, "127.0.0.1");
      if (ops.kind === "operations") {
        for (const op of ops.operations) {
          const tg = op.target;
          if (tg.kind !== "range" || tg.count < 1 || tg.address < 0 || tg.address + tg.count > 65536) fail(s, "operation with an impossible range", f.pdu);
          if (op.action === "write" && op.raw !== null && op.raw?.length !== (tg.kind === "range" ? tg.count : -1)) fail(s, "write whose raw values do not match its range", f.pdu);
        }
      } else if (ops.kind === "refuse" && f.unitId !== 0) fail(s, "refused a unit other than 0", f.pdu);
    } else {
      s.exceptions[p.exception] = (s.exceptions[p.exception] ?? 0) + 1;
      if (p.exception !== 1 && p.exception !== 3) fail(s, `exception ${p.exception}`, f.pdu);
      if (p.fc !== f.pdu[0]) fail(s, "exception names another function code", f.pdu);
      encodeException(p.fc, p.exception);
    }
    offset += f.length;
  }
}

t.test(`${ITERATIONS} random and mutated frames (seed ${SEED})`, async (t) => {
  const r = prng(SEED);
  const s: Stats = { frames: 0, needMore: 0, malformed: 0, parsedOk: 0, exceptions: {}, failures: [] };
  for (let i = 0; i < ITERATIONS; i++) {
    const buf = candidate(r);
    try {
      check(s, buf);
    } catch (e) {
      fail(s, `threw ${(e as Error).message}`, buf);
    }
  }
  t.strictSame(s.failures, [], `no property broken (rerun with FUZZ_SEED=${SEED})`);
  // The fuzzer reaches every outcome in quantity, so it is not trivially testing one path.
  t.ok(s.frames > ITERATIONS * 0.5, `frames: ${s.frames}`);
  t.ok(s.parsedOk > ITERATIONS * 0.3, `accepted requests: ${s.parsedOk}`);
  t.ok((s.exceptions[3] ?? 0) > ITERATIONS * 0.05, `exception 03: ${s.exceptions[3]}`);
  t.ok((s.exceptions[1] ?? 0) > 0, `exception 01: ${s.exceptions[1]}`);
  t.ok(s.malformed > ITERATIONS * 0.05, `malformed: ${s.malformed}`);
  t.ok(s.needMore > ITERATIONS * 0.05, `need-more: ${s.needMore}`);
});

t.test("mutated PDUs straight into the parser (no framing in the way)", async (t) => {
  const r = prng(SEED ^ 0x9e3779b9);
  const failures: string[] = [];
  let accepted = 0;
  const n = Math.ceil(ITERATIONS / 2);
  for (let i = 0; i < n; i++) {
    const pdu = mutate(r, encodeRequest(randomRequest(r)), false).subarray(0, MAX_PDU_LENGTH);
    try {
      const p = parseRequest(pdu);
      if (p.ok) {
        accepted++;
        if (!encodeRequest(p.request).equals(pdu)) failures.push(pdu.toString("hex"));
      }
    } catch (e) {
      failures.push(`threw ${(e as Error).message}: ${pdu.toString("hex")}`);
    }
  }
  t.strictSame(failures.slice(0, 10), [], `every accepted PDU re-encodes to itself (FUZZ_SEED=${SEED})`);
  t.ok(accepted > n * 0.1, `accepted: ${accepted}`);
});

t.test("device answers, valid and mutated, checked against their requests", async (t) => {
  const r = prng(SEED ^ 0x85ebca6b);
  const failures: string[] = [];
  const kinds = { ok: 0, exception: 0, malformed: 0 };
  const n = Math.ceil(ITERATIONS / 2);
  for (let i = 0; i < n; i++) {
    const req = randomRequest(r);
    const good = r.next() < 0.1 ? encodeException(req.fc, r.int(1, 255)) : encodeAnswer(req, randomAnswer(r, req));
    const answer = r.next() < 0.2 ? good : mutate(r, good, false).subarray(0, MAX_PDU_LENGTH);
    try {
      const p = parseResponse(req, answer);
      kinds[p.kind]++;
      if (answer === good && p.kind === "malformed") failures.push(`a valid answer is malformed (${p.reason}): ${answer.toString("hex")}`);
      if (p.kind === "ok") {
        // What was accepted is a well-formed answer: encoding its data gives one that reads back the same.
        const again = parseResponse(req, encodeAnswer(req, p.data));
        if (again.kind !== "ok" || JSON.stringify(again.data) !== JSON.stringify(p.data)) failures.push(`accepted answer does not round-trip: ${answer.toString("hex")}`);
      }
    } catch (e) {
      failures.push(`threw ${(e as Error).message}: ${req.kind} ${answer.toString("hex")}`);
    }
  }
  t.strictSame(failures.slice(0, 10), [], `no property broken (FUZZ_SEED=${SEED})`);
  t.ok(kinds.ok > n * 0.2 && kinds.malformed > n * 0.2 && kinds.exception > n * 0.02, JSON.stringify(kinds));
});

t.test("a stream of frames cut into random chunks comes out whole and in order", async (t) => {
  const r = prng(SEED ^ 0xc2b2ae35);
  let mismatches = 0;
  const rounds = Math.max(200, Math.ceil(ITERATIONS / 100));
  for (let round = 0; round < rounds; round++) {
    const frames = Array.from({ length: r.int(1, 20) }, () => encodeFrame(r.int(0, 0xffff), r.int(1, 255), encodeRequest(randomRequest(r))));
    const stream = Buffer.concat(frames);
    // What a socket handler does: append each chunk, take every whole frame, keep the rest.
    let pending = Buffer.alloc(0);
    const out: Buffer[] = [];
    for (let at = 0; at < stream.length; ) {
      const chunk = stream.subarray(at, (at += r.int(1, 40)));
      pending = Buffer.concat([pending, chunk]);
      let offset = 0;
      for (let f = readFrame(pending, offset); f.kind === "frame"; f = readFrame(pending, offset)) {
        out.push(Buffer.from(pending.subarray(offset, offset + f.length)));
        offset += f.length;
      }
      pending = pending.subarray(offset);
    }
    if (pending.length !== 0 || out.length !== frames.length || out.some((b, i) => !b.equals(frames[i] as Buffer))) mismatches++;
  }
  t.equal(mismatches, 0, `${rounds} streams reassembled exactly`);
});
