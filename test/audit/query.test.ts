// Reading the log back: filters, the last N records, and following new records across
// rotation and across a restart that cut a torn tail.
import { appendFileSync, readdirSync } from "node:fs";
import path from "node:path";
import t from "tap";
import { DecisionLog } from "../../src/audit/writer.js";
import { followLog, lastRecords, matches, parseTimeBound, queryLog } from "../../src/audit/query.js";
import type { Found, QueryFilter } from "../../src/audit/query.js";
import type { LogRecord } from "../../src/audit/record.js";
import { tableRow } from "../../src/audit/format.js";
import { decision, keys, outcome, settings, testClock, testIds } from "./helpers.js";

const k = await keys();
const T0 = Date.parse("2026-03-04T10:00:00Z");

/** 12 decisions one minute apart (see helpers.decision for the mix), an outcome after each. */
async function sample(dir: string): Promise<void> {
  const clock = testClock(T0);
  const log = await DecisionLog.open(settings(dir, { checkpointEvery: { records: 1000, seconds: 3600 } }), { signingKey: k.privateKey, now: clock.now, ids: testIds() });
  for (let i = 0; i < 12; i++) {
    const d = log.append(decision(i));
    log.append(outcome(d.id));
    clock.advance(60_000);
  }
  log.append({ type: "policy", event: "loaded", revision: "abc", files: 2 });
  await log.close();
}

async function collect(it: AsyncIterable<Found>): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  for await (const f of it) if (f.record) out.push(f.record);
  return out;
}

const dir = path.join(t.testdir({}), "log");
await sample(dir);
const q = (f: QueryFilter) => collect(queryLog(dir, f));

t.test("filters: each one, and together", async (t) => {
  t.equal((await q({})).length, 26, "12 decisions, 12 outcomes, a policy record, the close checkpoint");
  t.same((await q({ type: "decision", decision: "deny" })).map((r) => r.seq), [7, 15, 23]);
  t.ok((await q({ asset: "boiler-plc" })).every((r) => r.type === "decision" && r.asset === "boiler-plc"));
  t.equal((await q({ asset: "boiler-plc" })).length, 6);
  t.equal((await q({ subject: "mes-1" })).length, 4);
  t.equal((await q({ action: "write", rule: "mes-setpoint" })).length, 3, "one of the 4 writes was denied (rule null)");
  t.equal((await q({ reason: "no-matching-rule" })).length, 3);
  t.same((await q({ type: "policy" })).map((r) => r.type), ["policy"]);
  t.same((await q({ since: "2026-03-04T10:02:00.000000Z", until: "2026-03-04T10:04:00.000000Z", type: "decision" })).map((r) => r.time), [
    "2026-03-04T10:02:00.000000Z",
    "2026-03-04T10:03:00.000000Z",
  ], "since inclusive, until exclusive");
  t.same((await q({ limit: 3 })).map((r) => r.seq), [1, 2, 3], "limit: the first N, oldest first");
  t.same(await q({ limit: 0 }), []);
  t.same(await q({ asset: "nope" }), []);
  t.notOk(matches({ type: "outcome" } as LogRecord, { subject: "x" }), "a filter on a field the record lacks fails");
});

t.test("time bounds: ISO in any offset, or a duration back from now", async (t) => {
  const now = Date.parse("2026-03-04T12:00:00Z");
  t.equal(parseTimeBound("2026-03-04T10:00:00Z", now), "2026-03-04T10:00:00.000000Z");
  t.equal(parseTimeBound("2026-03-04T11:00:00+01:00", now), "2026-03-04T10:00:00.000000Z");
  t.equal(parseTimeBound("2026-03-04", now), "2026-03-04T00:00:00.000000Z");
  t.equal(parseTimeBound("2026-03-04T10:00:00.123456Z", now), "2026-03-04T10:00:00.123456Z", "microseconds kept");
  t.equal(parseTimeBound("15m", now), "2026-03-04T11:45:00.000000Z");
  t.equal(parseTimeBound("2h", now), "2026-03-04T10:00:00.000000Z");
  t.equal(parseTimeBound("1d", now), "2026-03-03T12:00:00.000000Z");
  t.equal(parseTimeBound("90s", now), "2026-03-04T11:58:30.000000Z");
  for (const bad of ["yesterday", "15", "2026-13-45", "-1h"]) t.equal(parseTimeBound(bad, now), null, bad);
});

t.test("the last N records, across segments", async (t) => {
  const { records, position } = await lastRecords(dir, 3);
  t.same(records.map((f) => f.record?.seq), [24, 25, 26]);
  t.equal(position.index, 1);
  t.ok(position.offset > 0, "following starts after the last record");
  const small = path.join(t.testdir({}), "log");
  const log = await DecisionLog.open(settings(small, { segmentBytes: 4096 }), { signingKey: k.privateKey });
  for (let i = 0; i < 30; i++) await log.append(decision(i)).durable;
  await log.close();
  const last = await lastRecords(small, 12);
  t.same(last.records.map((f) => f.record?.seq), Array.from({ length: 12 }, (_, i) => 20 + i), "reaches back into earlier segments");
  t.same((await lastRecords(small, 0)).records, []);
  t.same(await lastRecords(path.join(small, "none"), 5), { records: [], position: { index: 1, offset: 0 } });
});

t.test("follow: every record once, in order, across rotation and a restart with a torn tail", async (t) => {
  const live = path.join(t.testdir({}), "log");
  const ac = new AbortController();
  const seen: number[] = [];
  const done = (async () => {
    for await (const f of followLog(live, { index: 1, offset: 0 }, ac.signal, 5)) if (f.record) seen.push(f.record.seq);
  })();
  const until = async (n: number) => {
    for (let i = 0; i < 1500 && seen.length < n; i++) await new Promise((r) => setTimeout(r, 10));
  };

  const log = await DecisionLog.open(settings(live, { segmentBytes: 4096 }), { signingKey: k.privateKey });
  for (let i = 0; i < 25; i++) {
    log.append(decision(i));
    if (i % 5 === 0) await log.flush();
  }
  await log.close(); // 25 decisions + the close checkpoint, over several segments
  await until(26);
  // A crash leaves half a line; the follower does not print it, and goes on after the restart.
  const segs = readdirSync(live).filter((f) => f.endsWith(".jsonl")).sort();
  appendFileSync(path.join(live, segs.at(-1)!), '{"half":');
  const again = await DecisionLog.open(settings(live, { segmentBytes: 4096 }), { signingKey: k.privateKey });
  await again.append(decision(99)).durable;
  await again.close();
  await until(28);
  ac.abort();
  await done;
  t.ok(segs.length >= 4, `${segs.length} segments`);
  // 25 decisions, close checkpoint (26); reopened after the checkpoint: one decision, close checkpoint.
  t.same(seen, Array.from({ length: 28 }, (_, i) => i + 1), "seq 1..28: nothing skipped, nothing twice, no torn line");
});

t.test("table rows say what a write wrote: the value, the raw words, or an FC22's masks", async (t) => {
  const row = (values: unknown) => tableRow({ file: "x", line: "", record: { v: 1, seq: 1, id: "i", time: "2026-03-04T10:00:00.000000Z", type: "decision", prev: "", hash: "", decision: "allow", reason: "allowed", rule: "r", action: "write", client: { address: "10.0.0.1", port: 1, protocol: "modbus", transport: "tcp" }, values } as unknown as LogRecord });
  t.match(row([{ point: "setpoint", raw: [50], value: 50 }]), /setpoint=50$/);
  t.match(row([{ address: 7, raw: [1, 2], table: "holding" }]), /holding:7=raw \[1,2\]$/);
  t.match(row([{ address: 100, mask: { and: 0xf2, or: 0x25 }, point: "setpoint", table: "holding" }]), /setpoint=mask and 0x00f2 or 0x0025$/);
});
