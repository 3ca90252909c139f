// Tampering, each kind on a real log written by the writer: verify names the first bad
// file:seq and why. The log: 20 decisions, a checkpoint after every 5 (seq 6, 12, 18, 24),
// segments of ≤ 4 KB.
import { cpSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import t from "tap";
import type { Test } from "tap";
import { DecisionLog } from "../../src/audit/writer.js";
import { verifyLog } from "../../src/audit/verify.js";
import { MAX_LINE_BYTES } from "../../src/audit/segments.js";
import { decision, keys, readRecords, rehash, settings, writeRecords } from "./helpers.js";
import type { Rec } from "./helpers.js";

const k = await keys();

async function writeBase(dir: string): Promise<void> {
  const log = await DecisionLog.open(settings(dir, { segmentBytes: 4096, checkpointEvery: { records: 5, seconds: 60 } }), { signingKey: k.privateKey });
  for (let i = 0; i < 20; i++) await log.append(decision(i)).durable;
  await log.close();
}

const base = t.testdir({ log: {} });
await writeBase(path.join(base, "log"));

/** A fresh copy of the base log to tamper with. */
function copy(t: Test): string {
  const dir = path.join(t.testdir({}), "log");
  cpSync(path.join(base, "log"), dir, { recursive: true });
  return dir;
}

function segments(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.endsWith(".jsonl")).sort().map((f) => path.join(dir, f));
}

/** The segment holding `seq`, and the records of that segment. */
function locate(dir: string, seq: number): { file: string; recs: Rec[]; at: number } {
  for (const file of segments(dir)) {
    const recs = readRecords(file);
    const at = recs.findIndex((r) => r.seq === seq);
    if (at >= 0) return { file, recs, at };
  }
  throw new Error(`seq ${seq} not found`);
}

/** Every record of the log, in order, and a writer back into the same segment layout. */
function whole(dir: string): { recs: Rec[]; save(recs: Rec[]): void } {
  const files = segments(dir);
  const counts = files.map((f) => readRecords(f).length);
  return {
    recs: files.flatMap((f) => readRecords(f)),
    save(recs) {
      let i = 0;
      files.forEach((f, n) => {
        writeRecords(f, recs.slice(i, i + (counts[n] as number)));
        i += counts[n] as number;
      });
    },
  };
}

t.test("the untouched log verifies", async (t) => {
  const r = await verifyLog(path.join(base, "log"), k.publicKey);
  t.match(r, { ok: true, problem: null, records: 24, lastSeq: 24, checkpoints: 4, signedHead: { seq: 23 }, uncovered: 0 });
  t.ok(r.segments >= 3, `${r.segments} segments`);
});

t.test("one edited record: its hash no longer recomputes", async (t) => {
  const dir = copy(t);
  const { file, recs, at } = locate(dir, 8);
  recs[at] = { ...recs[at]!, decision: "deny" };
  writeRecords(file, recs);
  t.match(await verifyLog(dir, k.publicKey), { ok: false, problem: { file, seq: 8, why: /hash does not match the record's content/ } });
});

t.test("an edited record with its own hash recomputed: the next record's prev breaks", async (t) => {
  const dir = copy(t);
  const { file, recs, at } = locate(dir, 8);
  recs[at] = rehash([{ ...recs[at]!, asset: "elsewhere" }], recs[at]!.prev)[0]!;
  writeRecords(file, recs);
  t.match(await verifyLog(dir, k.publicKey), { ok: false, problem: { seq: 9, why: /prev does not match the hash of seq 8/ } });
});

t.test("a deleted record", async (t) => {
  const dir = copy(t);
  const { file, recs, at } = locate(dir, 8);
  recs.splice(at, 1);
  writeRecords(file, recs);
  t.match(await verifyLog(dir, k.publicKey), { ok: false, problem: { file, seq: 8, why: /expected seq 8, found seq 9 .*: record 8 was removed, moved or replaced/ } });
});

t.test("two swapped records", async (t) => {
  const dir = copy(t);
  const w = whole(dir);
  const recs = w.recs;
  [recs[9], recs[10]] = [recs[10]!, recs[9]!]; // seq 10 and 11
  w.save(recs);
  const { file } = locate(dir, 11);
  t.match(await verifyLog(dir, k.publicKey), { ok: false, problem: { file, seq: 10, why: /expected seq 10, found seq 11/ } });
});

t.test("a truncated tail beyond the last checkpoint: head.jws still signs what was there", async (t) => {
  const dir = copy(t);
  const w = whole(dir);
  w.save(w.recs.slice(0, 16)); // keeps seq 1..16, removes 17..24 (checkpoints 18 and 24 with them)
  for (const f of segments(dir)) if (readRecords(f).length === 0) rmSync(f);
  const last = segments(dir).at(-1);
  t.match(await verifyLog(dir, k.publicKey), { ok: false, problem: { file: last, seq: 17, why: /the log ends at seq 16 but head.jws signs seq 23: records 17\.\.23 were removed from the tail/ } });
});

t.test("a whole segment deleted in the middle", async (t) => {
  const dir = copy(t);
  const [, second, third] = segments(dir);
  const missing = readRecords(second!)[0]!.seq;
  rmSync(second!);
  t.match(await verifyLog(dir, k.publicKey), { ok: false, problem: { file: third, seq: missing, why: new RegExp(`expected seq ${missing}, found seq \\d+`) } });
});

t.test("the whole chain rewritten with recomputed hashes", async (t) => {
  t.test("checkpoints left as they were: the first one no longer names its predecessor", async (t) => {
    const dir = copy(t);
    const w = whole(dir);
    w.save(rehash(w.recs.map((r) => (r.seq === 3 ? { ...r, decision: "deny", reason: "denied-by-rule" } : r))));
    t.match(await verifyLog(dir, k.publicKey), { ok: false, problem: { file: locate(dir, 6).file, seq: 6, why: /checkpoint does not name the record before it/ } });
  });
  t.test("checkpoints' head fields rewritten too: the signature binds the old hash", async (t) => {
    const dir = copy(t);
    const w = whole(dir);
    let prev = "0".repeat(64);
    const recs = rehash(w.recs.map((r) => (r.seq === 3 ? { ...r, rule: "forged" } : r))).map((r) => r);
    // An attacker who keeps the checkpoints' own fields consistent has to re-hash again.
    const fixed: Rec[] = [];
    for (const r of recs) {
      const head = r.type === "checkpoint" ? { seq: r.seq - 1, hash: prev } : undefined;
      const next = rehash([{ ...r, ...(head && { head }) }], prev)[0]!;
      fixed.push(next);
      prev = next.hash;
    }
    w.save(fixed);
    t.match(await verifyLog(dir, k.publicKey), { ok: false, problem: { seq: 6, why: /checkpoint signs seq 5 hash .* but the chain has hash .*: the records before it were rewritten/ } });
  });
  t.test("checkpoints removed and the chain renumbered: head.jws binds the old head", async (t) => {
    const dir = copy(t);
    const w = whole(dir);
    const decisions = w.recs.filter((r) => r.type !== "checkpoint").map((r, i) => ({ ...r, seq: i + 1 }));
    w.save(rehash(decisions));
    for (const f of segments(dir)) if (readRecords(f).length === 0) rmSync(f);
    const r = await verifyLog(dir, k.publicKey);
    t.match(r, { ok: false, problem: { seq: 21, why: /the log ends at seq 20 but head.jws signs seq 23/ } });
  });
  t.test("…and head.jws deleted as well: nothing is authenticated, and verify says so", async (t) => {
    const dir = copy(t);
    const w = whole(dir);
    w.save(rehash(w.recs.filter((r) => r.type !== "checkpoint").map((r, i) => ({ ...r, seq: i + 1 }))));
    rmSync(path.join(dir, "head.jws"));
    t.match(await verifyLog(dir, k.publicKey), { ok: false, problem: { file: path.join(dir, "head.jws"), why: /no signed checkpoint and no head.jws/ } });
  });
});

t.test("signatures by another key, or a forged head.jws", async (t) => {
  const other = await keys();
  t.match(await verifyLog(path.join(base, "log"), other.publicKey), { ok: false, problem: { file: path.join(base, "log", "head.jws"), why: /head.jws: signature does not verify/ } });
  const dir = copy(t);
  rmSync(path.join(dir, "head.jws"));
  t.match(await verifyLog(dir, other.publicKey), { ok: false, problem: { seq: 6, why: /checkpoint signature does not verify/ } });
  t.match(await verifyLog(dir, k.publicKey), { ok: false, problem: { why: /head.jws is missing although the log has checkpoints/ } });
  writeFileSync(path.join(dir, "head.jws"), "eyJhbGciOiJFZERTQSJ9.eyJzZXEiOjk5fQ.AAAA\n");
  t.match(await verifyLog(dir, k.publicKey), { ok: false, problem: { why: /head.jws: signature does not verify/ } });
});

t.test("lines that are not records, and an empty or missing log", async (t) => {
  const dir = copy(t);
  const { file, recs, at } = locate(dir, 4);
  writeFileSync(file, recs.slice(0, at).map((r) => JSON.stringify(r) + "\n").join("") + "not json\n");
  t.match(await verifyLog(dir, k.publicKey), { ok: false, problem: { file, seq: 4, why: /line 4 is not JSON/ } });
  writeFileSync(file, recs.slice(0, at).map((r) => JSON.stringify(r) + "\n").join("") + "[1]\n");
  t.match(await verifyLog(dir, k.publicKey), { problem: { seq: 4, why: /not a JSON object/ } });
  writeFileSync(file, recs.slice(0, at).map((r) => JSON.stringify(r) + "\n").join("") + JSON.stringify({ ...recs[at], v: 2 }) + "\n");
  t.match(await verifyLog(dir, k.publicKey), { problem: { seq: 4, why: /unknown format version 2/ } });
  writeFileSync(file, JSON.stringify({ ...recs[0], prev: "1".repeat(64) }) + "\n");
  t.match(await verifyLog(dir, k.publicKey), { problem: { seq: 1, why: /first record's prev is not 64 zeros/ } });
  writeFileSync(file, recs.slice(0, 2).map((r) => JSON.stringify(r)).join("\n"));
  t.match(await verifyLog(dir, k.publicKey), { problem: { seq: 2, why: /line 2 has no newline, in the middle of the log/ } });

  t.match(await verifyLog(t.testdir({}), k.publicKey), { ok: true, records: 0, segments: 0 });
  t.match(await verifyLog(path.join(t.testdir({}), "nowhere"), k.publicKey), { ok: true, records: 0 });
});

t.test("a line changed into another spelling of the same record: a duplicate key, another number form, an escape, bytes that are not UTF-8", async (t) => {
  const dir = copy(t);
  const { file } = locate(dir, 8);
  const original = readFileSync(file, "latin1");
  const line8 = original.split("\n").find((l) => l.includes('"seq":8,')) as string;
  const spellings: Array<[string, string]> = [
    ["a duplicate key in front of the real one", line8.replace('{"action"', '{"decision":"deny","action"')],
    ["another number form", line8.replace('"seq":8,', '"seq":8.0e0,')],
    ["an escaped letter", line8.replace('"v":1', '"\\u0076":1')],
  ];
  for (const [what, changed] of spellings) {
    t.not(changed, line8, `${what}: the line differs`);
    writeFileSync(file, original.replace(line8, changed), "latin1");
    t.match(await verifyLog(dir, k.publicKey), { ok: false, problem: { file, seq: 8, why: /not the record's canonical JSON/ } }, what);
  }
  // A character's UTF-8 bytes (U+FFFD: EF BF BD) replaced by one byte that is no UTF-8 (FF), which decodes to U+FFFD all the same.
  const own = path.join(t.testdir({}), "log");
  const log = await DecisionLog.open(settings(own), { signingKey: k.privateKey });
  await log.append(decision(0, { rule: "r\uFFFD" })).durable;
  await log.close();
  t.match(await verifyLog(own, k.publicKey), { ok: true }, "the log as written verifies");
  const seg = segments(own)[0] as string;
  const bytes = readFileSync(seg);
  const at = bytes.indexOf(Buffer.from([0xef, 0xbf, 0xbd]));
  writeFileSync(seg, Buffer.concat([bytes.subarray(0, at), Buffer.from([0xff]), bytes.subarray(at + 3)]));
  t.match(await verifyLog(own, k.publicKey), { ok: false, problem: { seq: 1, why: /line 1 is not valid UTF-8/ } }, "invalid UTF-8");
});

t.test("a segment that is not a regular file, or a line past the size limit: an error naming it, never a hang", async (t) => {
  const dir = copy(t);
  const last = segments(dir).at(-1) as string;
  const next = path.join(dir, `${String(Number(path.basename(last, ".jsonl")) + 1).padStart(8, "0")}.jsonl`);
  symlinkSync("/dev/zero", next);
  await t.rejects(verifyLog(dir, k.publicKey), { code: "ZT_LOG_UNREADABLE", message: /not a regular file/ }, "/dev/zero");
  rmSync(next);
  writeFileSync(next, Buffer.alloc(MAX_LINE_BYTES + 10, 0x61));
  await t.rejects(verifyLog(dir, k.publicKey), { code: "ZT_LOG_UNREADABLE", message: /longer than/ }, "an endless line");
});
