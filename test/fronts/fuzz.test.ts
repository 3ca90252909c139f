// Fuzz of the Modbus front over real sockets (SPEC §9): random and mutated frames, many per
// connection, split at random points, against the whole gateway (lease session, policy,
// decision log) and the simulated PLC. Properties:
//   - the gateway never crashes and keeps serving (a plain read works after the run);
//   - every well-framed request gets exactly one answer, in order, with its transaction id;
//   - a framing error closes the connection (and only that one);
//   - the simulated PLC never sees a malformed frame or an invalid request.
// Seeded: FUZZ_SEED=n reproduces a run; FUZZ_FRAMES=n sends more (default 100,000).
import t from "tap";
import { encodeRequest } from "../../src/wire/pdu.js";
import type { ModbusRequest } from "../../src/wire/pdu.js";
import { WireClient, mbap, startHarness } from "./harness.js";
import { prng } from "../support/prng.js";
import type { Rng } from "../support/prng.js";

t.setTimeout(600_000);

const SEED = Number(process.env["FUZZ_SEED"] ?? 0x5eed1) >>> 0;
const FRAMES = Number(process.env["FUZZ_FRAMES"] ?? 100_000);
const CONNECTIONS = 4;
const BATCH = 500;


/** Addresses near the points of the test policies, so some requests are allowed and reach the PLC. */
const address = (r: Rng) => (r.next() < 0.7 ? r.pick([0, 1, 2, 3, 100, 101, 200, 201, 210, 211, 300, 350, 399]) : r.int(0, 0xffff));
const quantity = (r: Rng, max: number) => (r.next() < 0.6 ? r.int(1, 3) : r.int(1, max));
const value = (r: Rng) => (r.next() < 0.5 ? r.int(0, 120) : r.int(0, 0xffff));

/** A valid request PDU (or null when the random fields do not make one). */
function validPdu(r: Rng): Buffer | null {
  const a = address(r);
  let req: ModbusRequest;
  switch (r.int(0, 9)) {
    case 0: req = { kind: "read-coils", fc: 1, address: a, quantity: quantity(r, 2000) }; break;
    case 1: req = { kind: "read-discrete-inputs", fc: 2, address: a, quantity: quantity(r, 2000) }; break;
    case 2: req = { kind: "read-holding-registers", fc: 3, address: a, quantity: quantity(r, 125) }; break;
    case 3: req = { kind: "read-input-registers", fc: 4, address: a, quantity: quantity(r, 125) }; break;
    case 4: req = { kind: "write-single-coil", fc: 5, address: a, value: r.int(0, 1) as 0 | 1 }; break;
    case 5: req = { kind: "write-single-register", fc: 6, address: a, value: value(r) }; break;
    case 6: {
      const q = quantity(r, 123);
      req = { kind: "write-multiple-registers", fc: 16, address: a, quantity: q, values: Array.from({ length: q }, () => value(r)) };
      break;
    }
    case 7: {
      const q = quantity(r, 121);
      req = { kind: "read-write-multiple-registers", fc: 23, read: { address: address(r), quantity: quantity(r, 125) }, write: { address: a, quantity: q, values: Array.from({ length: q }, () => value(r)) } };
      break;
    }
    case 8: req = { kind: "mask-write-register", fc: 22, address: a, andMask: r.int(0, 0xffff), orMask: r.int(0, 0xffff) }; break;
    default: req = { kind: "read-device-identification", fc: 43, meiType: 14, readDeviceIdCode: r.int(1, 4) as 1 | 2 | 3 | 4, objectId: r.int(0, 6) };
  }
  try {
    return encodeRequest(req);
  } catch {
    return null; // e.g. a range past 65535
  }
}

/** A PDU: valid, mutated from a valid one, or random bytes. */
function pdu(r: Rng): Buffer {
  const v = validPdu(r) ?? Buffer.of(3, 0, 0, 0, 1);
  const roll = r.next();
  if (roll < 0.4) return v;
  if (roll < 0.8) {
    const m = Buffer.from(v);
    switch (r.int(0, 3)) {
      case 0: m[r.int(0, m.length - 1)] = r.int(0, 255); return m;
      case 1: return m.length > 1 ? m.subarray(0, r.int(1, m.length - 1)) : m;
      case 2: return Buffer.concat([m, r.bytes(r.int(1, 8))]).subarray(0, 253);
      default: m[0] = r.int(0, 255); return m;
    }
  }
  return r.bytes(r.int(1, r.next() < 0.9 ? 12 : 253));
}

/** A broken MBAP header: a protocol id other than 0, or a length outside 2..254. */
function malformed(r: Rng): Buffer {
  const f = mbap(r.int(0, 0xffff), 1, [3, 0, 0, 0, 1]);
  if (r.next() < 0.5) f.writeUInt16BE(r.int(1, 0xffff), 2);
  else f.writeUInt16BE(r.pick([0, 1, 255, 256, r.int(255, 0xffff)]), 4);
  return f;
}

/** Writes `data` in random pieces, so frames arrive split (need-more) and merged. */
function sendSplit(c: WireClient, r: Rng, data: Buffer): void {
  let off = 0;
  while (off < data.length) {
    const n = r.next() < 0.5 ? data.length - off : r.int(1, Math.min(300, data.length - off));
    c.send(data.subarray(off, off + n));
    off += n;
  }
}

t.test(`listener fuzz: ${FRAMES} random and mutated frames, seed ${SEED}`, async (t) => {
  const h = await startHarness(t);
  await h.leaseFor("fuzzer", ["historian", "mes"]);
  let sent = 0;
  let answered = 0;
  let outOfOrder = 0;
  let closedByFraming = 0;
  let unexpectedClose = 0;

  await Promise.all(
    Array.from({ length: CONNECTIONS }, async (_, worker) => {
      const r = prng(SEED + worker);
      let c = await WireClient.connect(h.lease.port);
      while (sent < FRAMES) {
        const n = Math.min(BATCH, FRAMES - sent);
        sent += n;
        const frames: Buffer[] = [];
        const tids: number[] = [];
        for (let i = 0; i < n; i++) {
          const tid = r.int(0, 0xffff);
          tids.push(tid);
          frames.push(mbap(tid, r.pick([1, 1, 1, 2, 2, 0, 9, 255]), pdu(r)));
        }
        if (r.next() < 0.05) {
          // A framing error somewhere in the batch: the connection must close; take a new one.
          frames.splice(r.int(0, n - 1), 1, malformed(r));
          sendSplit(c, r, Buffer.concat(frames));
          await c.closed;
          closedByFraming++;
          c = await WireClient.connect(h.lease.port);
          continue;
        }
        sendSplit(c, r, Buffer.concat(frames));
        let got: Awaited<ReturnType<WireClient["next"]>>;
        try {
          got = await c.next(n);
        } catch {
          unexpectedClose++;
          c = await WireClient.connect(h.lease.port);
          continue;
        }
        answered += got.length;
        got.forEach((a, i) => {
          if (a.tid !== tids[i]) outOfOrder++;
        });
      }
      c.close();
    }),
  );

  t.equal(unexpectedClose, 0, "no well-framed batch lost its connection");
  t.equal(outOfOrder, 0, "every answer in request order with its transaction id");
  t.ok(sent >= FRAMES, `${sent} frames sent`);
  t.ok(answered > FRAMES * 0.8, `${answered} answered`);
  t.ok(closedByFraming > 0, `${closedByFraming} connections closed by a framing error`);
  const plc = h.plc.stats();
  t.equal(plc.malformed, 0, "the PLC never saw a malformed frame or an invalid request");
  t.ok(Object.values(plc.served).reduce((a, b) => a + b, 0) > 1000, "plenty of requests were allowed and served");
  t.equal(h.leaseFront.stats().malformedFrames, closedByFraming);

  const c = await WireClient.connect(h.lease.port);
  c.send(mbap(7, 1, [4, 0, 2, 0, 1]));
  t.same((await c.next())[0]?.tid, 7, "still serving after the fuzz");
  c.close();
});
