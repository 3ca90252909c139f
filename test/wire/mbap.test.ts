// MBAP framing (SPEC §5.1): need-more vs malformed vs frame, at every byte boundary.
import t from "tap";
import { encodeFrame, MAX_FRAME_LENGTH, MAX_PDU_LENGTH, readFrame } from "../../src/wire/mbap.js";
import type { FrameResult } from "../../src/wire/mbap.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

/** tid 0x1234, protocol 0, length 6, unit 1, FC3 read 2 registers at 100. */
const FC3 = hex("1234 0000 0006 01 03 0064 0002");

function frame(r: FrameResult) {
  if (r.kind !== "frame") throw new Error(`expected a frame, got ${JSON.stringify(r)}`);
  return r;
}

t.test("a valid frame: fields, PDU as a view without a copy, bytes consumed", async (t) => {
  const f = frame(readFrame(FC3));
  t.equal(f.transactionId, 0x1234);
  t.equal(f.protocolId, 0);
  t.equal(f.unitId, 1);
  t.equal(f.length, 12);
  t.same([...f.pdu], [...hex("03 0064 0002")]);
  t.equal(f.pdu.buffer, FC3.buffer, "the PDU shares the caller's memory");
  t.equal(f.pdu.byteOffset, FC3.byteOffset + 7);
});

t.test("encodeFrame round-trips through readFrame", async (t) => {
  for (const [tid, unit, pduLen] of [
    [0, 0, 1],
    [0xffff, 0xff, MAX_PDU_LENGTH],
    [7, 1, 5],
  ] as const) {
    const pdu = Buffer.alloc(pduLen, 0xab);
    pdu[0] = 3;
    const bytes = encodeFrame(tid, unit, pdu);
    t.equal(bytes.length, 7 + pduLen);
    const f = frame(readFrame(bytes));
    t.strictSame([f.transactionId, f.unitId, f.length], [tid, unit, bytes.length], `tid ${tid} unit ${unit} pdu ${pduLen}`);
    t.ok(f.pdu.equals(pdu));
  }
  t.ok(encodeFrame(0x1234, 1, hex("03 0064 0002")).equals(FC3), "the wire bytes are the spec's");
  t.equal(MAX_FRAME_LENGTH, 260);
});

t.test("encodeFrame refuses what cannot be framed", async (t) => {
  const cases: Array<[string, () => unknown]> = [
    ["transaction id 65536", () => encodeFrame(0x10000, 1, hex("03"))],
    ["transaction id -1", () => encodeFrame(-1, 1, hex("03"))],
    ["transaction id 1.5", () => encodeFrame(1.5, 1, hex("03"))],
    ["unit id 256", () => encodeFrame(1, 256, hex("03"))],
    ["empty PDU", () => encodeFrame(1, 1, Buffer.alloc(0))],
    ["PDU of 254 bytes", () => encodeFrame(1, 1, Buffer.alloc(254, 3))],
  ];
  for (const [name, fn] of cases) t.throws(fn, RangeError, name);
});

t.test("every proper prefix of a valid frame is need-more, fed byte by byte", async (t) => {
  for (const whole of [FC3, encodeFrame(9, 2, Buffer.alloc(MAX_PDU_LENGTH, 0x10)), encodeFrame(1, 1, hex("11"))]) {
    const got: string[] = [];
    for (let n = 0; n <= whole.length; n++) {
      // A fresh buffer per step, as a socket accumulating chunks would hand over.
      const r = readFrame(Buffer.from(whole.subarray(0, n)));
      got.push(r.kind);
    }
    t.strictSame(got, [...Array(whole.length).fill("need-more"), "frame"], `${whole.length}-byte frame`);
  }
});

t.test("malformed headers close the connection, without waiting for the body", async (t) => {
  const cases: Array<[string, string]> = [
    ["protocol id 1", "0001 0001 0006 01"],
    ["protocol id 0xFFFF", "0001 ffff 0006 01"],
    ["length 0", "0001 0000 0000 01"],
    ["length 1 (unit id, no function code)", "0001 0000 0001 01"],
    ["length 255", "0001 0000 00ff 01"],
    ["length 300", "0001 0000 012c 01"],
    ["length 0xFFFF", "0001 0000 ffff 01"],
  ];
  for (const [name, header] of cases) {
    const r = readFrame(hex(header));
    t.equal(r.kind, "malformed", name);
    if (r.kind === "malformed") {
      t.equal(r.closeConnection, true);
      t.match(r.reason, /protocol id|length/);
    }
    // Followed by a body or not, the verdict is the same.
    t.equal(readFrame(Buffer.concat([hex(header), Buffer.alloc(300, 3)])).kind, "malformed", `${name} with a body`);
  }
});

t.test("a bad field is malformed as soon as it is complete, and not before", async (t) => {
  const badProtocol = hex("0001 0002 0006 01");
  t.strictSame([0, 1, 2, 3].map((n) => readFrame(badProtocol.subarray(0, n)).kind), ["need-more", "need-more", "need-more", "need-more"]);
  t.equal(readFrame(badProtocol.subarray(0, 4)).kind, "malformed", "protocol id known at 4 bytes");
  const badLength = hex("0001 0000 0100 01");
  t.strictSame([4, 5].map((n) => readFrame(badLength.subarray(0, n)).kind), ["need-more", "need-more"]);
  t.equal(readFrame(badLength.subarray(0, 6)).kind, "malformed", "length known at 6 bytes");
});

t.test("the length field's edges: 2 and 254 are frames", async (t) => {
  t.equal(frame(readFrame(hex("0001 0000 0002 01 07"))).pdu.length, 1);
  const max = Buffer.concat([hex("0001 0000 00fe 01"), Buffer.alloc(253, 4)]);
  t.equal(frame(readFrame(max)).pdu.length, 253);
  t.equal(readFrame(max.subarray(0, max.length - 1)).kind, "need-more");
});

t.test("several frames back to back in one buffer, then a partial one", async (t) => {
  const frames = [encodeFrame(1, 1, hex("03 0000 0001")), encodeFrame(2, 5, hex("06 0064 0032")), encodeFrame(3, 1, hex("2b 0e 01 00"))];
  const tail = encodeFrame(4, 1, hex("01 0000 0008")).subarray(0, 9);
  const buf = Buffer.concat([...frames, tail]);
  const seen: number[] = [];
  let offset = 0;
  for (;;) {
    const r = readFrame(buf, offset);
    if (r.kind !== "frame") {
      t.equal(r.kind, "need-more", "the partial frame at the end waits for more");
      break;
    }
    seen.push(r.transactionId);
    t.ok(r.pdu.equals((frames[seen.length - 1] as Buffer).subarray(7)));
    offset += r.length;
  }
  t.strictSame(seen, [1, 2, 3]);
  t.equal(offset, buf.length - tail.length);
  // A malformed frame after good ones is reported at its own offset.
  const broken = Buffer.concat([frames[0] as Buffer, hex("0009 0001 0006 01 03 0000 0001")]);
  t.equal(readFrame(broken).kind, "frame");
  t.equal(readFrame(broken, 12).kind, "malformed");
});

t.test("an offset outside the buffer is a caller bug", async (t) => {
  t.throws(() => readFrame(FC3, 13), RangeError);
  t.throws(() => readFrame(FC3, -1), RangeError);
  t.throws(() => readFrame(FC3, 0.5), RangeError);
  t.equal(readFrame(FC3, 12).kind, "need-more", "the end of the buffer is a valid (empty) place to read");
});
