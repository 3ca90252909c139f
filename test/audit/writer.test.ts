// The writer on real files: chain and durability, checkpoints by count and time, rotation by
// size and age, reopening (also after a torn tail), and what it refuses.
import { appendFileSync, existsSync, readFileSync, readdirSync, truncateSync, writeFileSync } from "node:fs";
import path from "node:path";
import t from "tap";
import { AuditUnavailableError, DecisionLog } from "../../src/audit/writer.js";
import { verifyLog } from "../../src/audit/verify.js";
import { GENESIS_PREV, Outcome, decisionBody, jcs, recomputeHash } from "../../src/audit/record.js";
import { decision, keys, outcome, readRecords, settings, testClock, testIds } from "./helpers.js";

const k = await keys();
const seg = (dir: string, n: number) => path.join(dir, `${String(n).padStart(8, "0")}.jsonl`);

t.test("append chains, queues and acknowledges; the chain goes on after reopening", async (t) => {
  const dir = t.testdir({});
  const clock = testClock();
  const log = await DecisionLog.open(settings(dir), { signingKey: k.privateKey, now: clock.now, ids: testIds() });
  const a = log.append(decision(0));
  clock.advance(0.0015);
  const b = log.append(outcome(a.id));
  t.same([a.seq, a.id, b.seq, b.id], [1, "r-1", 2, "r-2"]);
  t.same(log.head().seq, 2, "in the chain before append returns");
  await b.durable;
  const recs = readRecords(seg(dir, 1));
  t.equal(recs.length, 2, "on disk once durable");
  t.match(recs[0], { v: 1, seq: 1, id: "r-1", time: "2026-03-04T10:00:00.000000Z", type: "decision", prev: GENESIS_PREV });
  t.match(recs[1], { seq: 2, type: "outcome", ref: "r-1", time: "2026-03-04T10:00:00.000001Z", prev: recs[0]!.hash });
  for (const r of recs) t.equal(recomputeHash(r), r.hash, `hash of seq ${r.seq} recomputes`);
  t.same(log.stats().durableSeq, 2);
  await log.close();
  await t.rejects(async () => log.append(decision(2)), AuditUnavailableError, "a closed log refuses");

  const again = await DecisionLog.open(settings(dir), { signingKey: k.privateKey, now: clock.now, ids: testIds("x") });
  // The close checkpoint is seq 3: opening again finds the log signed and goes on after it.
  t.equal(again.append(decision(3)).seq, 4);
  await again.close();
  const all = readRecords(seg(dir, 1));
  t.same(all.map((r) => r.type), ["decision", "outcome", "checkpoint", "decision", "checkpoint"]);
  t.equal(all[3]!.prev, all[2]!.hash);
  t.match(await verifyLog(dir, k.publicKey), { ok: true, records: 5, checkpoints: 2, signedHead: { seq: 4 } });
});

t.test("checkpoints by record count and by time, each signing the record before it", async (t) => {
  const dir = t.testdir({});
  const clock = testClock();
  const log = await DecisionLog.open(settings(dir, { checkpointEvery: { records: 5, seconds: 60 } }), { signingKey: k.privateKey, now: clock.now });
  const heads: number[] = [];
  log.on("checkpoint", (h) => heads.push(h.seq));
  for (let i = 0; i < 12; i++) log.append(decision(i));
  await log.checkpoint();
  clock.advance(61_000);
  log.append(decision(12)); // a minute later: due by time, whatever the count
  await log.flush();
  await log.checkpoint();
  const recs = readRecords(seg(dir, 1));
  const cps = recs.filter((r) => r.type === "checkpoint");
  t.ok(cps.length >= 3, `${cps.length} checkpoints`);
  for (const c of cps) t.match(c, { head: { seq: c.seq - 1, hash: c.prev }, jws: /^ey[\w-]+\.[\w-]+\.[\w-]+$/ });
  t.same(heads, cps.map((c) => c.seq - 1));
  t.same(recs.map((r) => r.seq), recs.map((_, i) => i + 1), "records appended while signing got their seq after the checkpoint");
  t.ok(existsSync(path.join(dir, "head.jws")));
  await log.close();
  t.match(await verifyLog(dir, k.publicKey), { ok: true, uncovered: 0 });
});

t.test("segments rotate by size and by age; the chain runs across them", async (t) => {
  const dir = t.testdir({});
  const clock = testClock();
  const log = await DecisionLog.open(settings(dir, { segmentBytes: 4096, segmentMaxAgeSec: 3600 }), { signingKey: k.privateKey, now: clock.now });
  const rotated: string[] = [];
  log.on("rotate", (f) => rotated.push(path.basename(f)));
  for (let i = 0; i < 40; i++) await log.append(decision(i)).durable;
  const bySize = readdirSync(dir).filter((f) => f.endsWith(".jsonl"));
  t.ok(bySize.length >= 5, `${bySize.length} segments for ~24 KB`);
  for (const f of bySize.slice(0, -1)) {
    const size = readFileSync(path.join(dir, f)).length;
    t.ok(size <= 4096 && size > 2048, `${f} holds ${size} bytes, up to segmentBytes`);
  }
  const before = bySize.length;
  clock.advance(3600_000);
  await log.append(decision(40)).durable;
  t.equal(readdirSync(dir).filter((f) => f.endsWith(".jsonl")).length, before + 1, "an hour later the next record starts a segment");
  t.same(rotated, readdirSync(dir).filter((f) => f.endsWith(".jsonl")).slice(1));
  await log.close();
  const first = readRecords(seg(dir, 2))[0]!;
  t.equal(first.prev, readRecords(seg(dir, 1)).at(-1)!.hash, "segment 2 continues the chain of segment 1");
  t.match(await verifyLog(dir, k.publicKey), { ok: true, records: 42 });
});

t.test("strict and allow-reads are the caller's to apply; the log says when", async (t) => {
  const dir = t.testdir({});
  const strict = await DecisionLog.open(settings(dir, { durability: "strict", onFailure: "allow-reads" }), { signingKey: k.privateKey });
  t.same(["read", "browse", "write", "call", "diagnostic"].map((a) => strict.mustAwaitDurable(a as "read")), [false, false, true, true, true]);
  t.same(["read", "browse", "write"].map((a) => strict.allowsUnlogged(a as "read")), [true, false, false]);
  await strict.close();
  const group = await DecisionLog.open(settings(dir), { signingKey: k.privateKey });
  t.equal(group.mustAwaitDurable("write"), false);
  t.equal(group.allowsUnlogged("read"), false);
  await group.close();
});

t.test("a backlog beyond maxPendingBytes is refused, not buffered without bound", async (t) => {
  const dir = t.testdir({});
  const log = await DecisionLog.open(settings(dir, { syncMs: 1000 }), { signingKey: k.privateKey, maxPendingBytes: 3000 });
  let refused: unknown = null;
  try {
    for (let i = 0; i < 100; i++) log.append(decision(i));
  } catch (e) {
    refused = e;
  }
  t.match(refused, { code: "ZT_AUDIT_UNAVAILABLE", reason: "audit-unavailable", message: /behind the disk/ });
  t.ok(log.stats().refused >= 1);
  await log.close();
  t.match(await verifyLog(dir, k.publicKey), { ok: true });
});

t.test("a torn tail is moved aside on open and the chain resumes from the last whole record", async (t) => {
  const dir = t.testdir({});
  const log = await DecisionLog.open(settings(dir), { signingKey: k.privateKey });
  for (let i = 0; i < 5; i++) log.append(decision(i));
  await log.flush();
  await log.close();
  const whole = readFileSync(seg(dir, 1));
  // A crash in the middle of a write, then zeros the filesystem had allocated.
  const torn = Buffer.concat([Buffer.from('{"action":"read","asset":"boiler-plc","cli'), Buffer.alloc(300)]);
  appendFileSync(seg(dir, 1), torn);
  t.match(await verifyLog(dir, k.publicKey), { ok: true, notes: [/last line .* is incomplete/] }, "verify before reopening: a note, not damage");

  const again = await DecisionLog.open(settings(dir), { signingKey: k.privateKey });
  t.ok(again.recovered.torn, "recovery reported");
  const tornFile = again.recovered.torn!.file;
  t.match(path.basename(tornFile), /^00000001\.jsonl\.\d{8}T\d{12}Z\.torn$/);
  t.same(readFileSync(tornFile), torn, "the torn bytes are kept, byte for byte");
  t.same(readFileSync(seg(dir, 1)).subarray(0, whole.length), whole, "every whole record stays");
  again.append(decision(9));
  await again.close();
  const r = await verifyLog(dir, k.publicKey);
  t.match(r, { ok: true, records: 8 });
  t.match(r.notes, [/torn tail moved aside/]);
});

t.test("a hole inside the last, unsynced batch (a power cut): the chain resumes before it, and the whole lines after it are moved aside too", async (t) => {
  const dir = t.testdir({});
  const log = await DecisionLog.open(settings(dir, { checkpointEvery: { records: 1000, seconds: 60 } }), { signingKey: k.privateKey });
  for (let i = 0; i < 10; i++) await log.append(decision(i)).durable;
  await log.checkpoint();
  const synced = readFileSync(seg(dir, 1)).length;
  for (let i = 10; i < 18; i++) log.append(decision(i)); // one batch, seq 12..19
  await log.flush();
  // The disk kept the file's size and the batch's later lines, but its first bytes read back as zeros.
  const buf = readFileSync(seg(dir, 1));
  const tail = buf.subarray(synced);
  buf.fill(0, synced, synced + 1500);
  writeFileSync(seg(dir, 1), buf);

  const again = await DecisionLog.open(settings(dir), { signingKey: k.privateKey });
  t.equal(again.recovered.last?.seq, 11, "resumes after the last record the chain reaches (the checkpoint)");
  t.equal(again.recovered.torn?.bytes, tail.length, "everything from the hole on is moved aside, whole lines after it included");
  t.equal(again.append(decision(99)).seq, 12);
  await again.close();
  t.match(await verifyLog(dir, k.publicKey), { ok: true, records: 13 }, "the log verifies after the restart");
});

t.test("a last segment that is all torn: the chain resumes from the segment before", async (t) => {
  const dir = t.testdir({});
  const log = await DecisionLog.open(settings(dir), { signingKey: k.privateKey });
  await log.append(decision(0)).durable;
  await log.close();
  writeFileSync(seg(dir, 2), '{"v":1,"seq":3,"id":"x","ti');
  const again = await DecisionLog.open(settings(dir), { signingKey: k.privateKey });
  t.equal(again.recovered.torn?.bytes, 27);
  t.equal(again.append(decision(1)).seq, 3);
  await again.close();
  t.equal(readFileSync(seg(dir, 2), "utf8").split("\n")[0]!.includes('"seq":3'), true);
  t.match(await verifyLog(dir, k.publicKey), { ok: true, records: 4 });
});

t.test("refuses to write on top of a log that lost records its head.jws signs", async (t) => {
  const dir = t.testdir({});
  const log = await DecisionLog.open(settings(dir), { signingKey: k.privateKey });
  for (let i = 0; i < 6; i++) log.append(decision(i));
  await log.close(); // head.jws signs seq 6
  const text = readFileSync(seg(dir, 1), "utf8").split("\n");
  writeFileSync(seg(dir, 1), text.slice(0, 4).join("\n") + "\n");
  await t.rejects(DecisionLog.open(settings(dir), { signingKey: k.privateKey }), { code: "ZT_LOG_TAMPERED", message: /signs seq 6 but the log ends at seq 4/ });
  truncateSync(seg(dir, 1), 0);
  await t.rejects(DecisionLog.open(settings(dir), { signingKey: k.privateKey }), { code: "ZT_LOG_TAMPERED", message: /the log is empty/ });

  const other = await keys();
  const dir2 = t.testdir({});
  const l2 = await DecisionLog.open(settings(dir2), { signingKey: k.privateKey });
  l2.append(decision(0));
  await l2.close();
  await t.rejects(DecisionLog.open(settings(dir2), { signingKey: other.privateKey }), { code: "ZT_LOG_TAMPERED", message: /does not verify/ }, "another key");
  await t.rejects(DecisionLog.open(settings(dir2), { signingKey: k.publicKey }), { code: "ZT_LOG_KEY_INVALID" }, "a public key cannot sign");
});

t.test("each line is the record's canonical text with its hash added, on the one-pass path and off it, in any script", async (t) => {
  const dir = t.testdir({});
  const log = await DecisionLog.open(settings(dir), { signingKey: k.privateKey, ids: testIds() });
  const bodies = [
    decision(0),
    // Multi-byte UTF-8 (the hash is taken over the encoded bytes), a quote and a backslash to escape.
    decision(1, { target: { point: "Zählerstand ☃ 🔥" }, zone: 'hall "B" \\ north' }),
    // Keys out of order and an undefined field: the canonicalize library's path.
    { zone: null, type: "decision", target: { table: "holding", count: 1, address: 7 }, subject: null, rule: null, reason: "no-session", policyRevision: "r", mode: "enforce", decision: "deny", client: { transport: "tcp", protocol: "modbus" }, asset: "é", action: "read", values: undefined } as never,
    outcome("r-1"),
    { type: "outcome", ref: "r-2", status: "device-exception", latencyMs: 1.5, exception: 2 } as never,
  ];
  for (const b of bodies) log.append(b);
  await log.close();
  const lines = readFileSync(seg(dir, 1), "utf8").split("\n").filter(Boolean);
  const recs = readRecords(seg(dir, 1));
  t.equal(recs.length, bodies.length + 1, "and the close checkpoint");
  recs.forEach((r, i) => {
    t.equal(recomputeHash(r), r.hash, `seq ${r.seq}: the hash recomputes with the JCS library`);
    const { hash: _h, ...rest } = r;
    t.equal(lines[i], `${jcs(rest).slice(0, -1)},"hash":"${r.hash}"}`, `seq ${r.seq}: the line is JCS text + hash`);
  });
  t.equal((recs[1] as unknown as { target: { point: string } }).target.point, "Zählerstand ☃ 🔥");
  t.notOk("values" in (recs[2] as object), "an undefined field is left out");
  t.match(await verifyLog(dir, k.publicKey), { ok: true });
});

t.test("batches of every size in a row reuse their buffers without mixing records", async (t) => {
  const dir = t.testdir({});
  const log = await DecisionLog.open(settings(dir, { syncMs: 1 }), { signingKey: k.privateKey });
  let n = 0;
  for (const burst of [1, 3000, 2, 7000, 1, 500, 4000, 1]) {
    for (let i = 0; i < burst; i++) log.append(decision(n++));
    await log.flush();
  }
  await log.close();
  t.match(await verifyLog(dir, k.publicKey), { ok: true, records: n + log.stats().checkpoints });
});

t.test("a body logged again and again is written from the text kept for it: the same canonical lines as the first time", async (t) => {
  // decisionBody() gives a client that repeats a request the same frozen body; the writer
  // makes its text once (on the second sighting) and fills in id, prev, seq and time after.
  const principal = { sub: "hist-1", iss: "ztgate-dev", roles: ["historian"], claims: {}, sessionId: "s-1", tokenId: "j-1", via: "lease" as const };
  const client = { address: "127.0.0.1", port: 40001, protocol: "modbus" as const, transport: "tcp" };
  const d = { effect: "allow" as const, rule: "historian-read", reason: "allowed" as const, policyRevision: "0123456789abcdef", mode: "enforce" as const, zone: "cell-1" };
  const op = { asset: "boiler-plc", action: "read" as const, target: { kind: "range" as const, table: "input" as const, address: 0, count: 2 } };
  // A frozen body not in key order: no text can be kept for it, every record goes the library's way.
  const unordered = Object.freeze({ ...decision(0), type: "decision" as const, action: "read" as const });
  const cases = [
    { name: "random ids", ids: undefined },
    { name: "ids that need escaping", ids: testIds('r"\\') },
  ];
  for (const c of cases) {
    const dir = t.testdir({});
    const log = await DecisionLog.open(settings(dir), { signingKey: k.privateKey, ...(c.ids && { ids: c.ids }) });
    const bodies: object[] = [];
    for (let i = 0; i < 5; i++) {
      const body = decisionBody(d, op, principal, client);
      bodies.push(body);
      const a = log.append(body);
      log.append(outcome(a.id));
      log.append(unordered);
    }
    t.ok(bodies.every((b) => b === bodies[0]), `${c.name}: one body for the five requests`);
    await log.close();
    const lines = readFileSync(seg(dir, 1), "utf8").split("\n").filter((l) => l);
    const recs = lines.map((l) => JSON.parse(l) as Record<string, unknown> & { hash: string; seq: number; type: string });
    t.equal(recs.filter((r) => r.type === "decision").length, 10);
    lines.forEach((line, i) => {
      const { hash, ...rest } = recs[i]!;
      t.equal(line, jcs(rest).slice(0, -1) + `,"hash":"${hash}"}`, `${c.name}: line ${i + 1} is its canonical text, then the hash`);
      t.equal(recomputeHash(recs[i]!), hash);
    });
    const repeated = recs.filter((r) => r.type === "decision" && r["asset"] === "boiler-plc");
    t.equal(repeated.length, 5);
    for (const r of repeated) t.match(r, { action: "read", target: { address: 0, count: 2, table: "input" }, subject: { sub: "hist-1", jti: "j-1" }, client: { port: 40001 }, v: 1 });
    t.equal(new Set(repeated.map((r) => r["id"])).size, 5, "each its own id");
    t.match(await verifyLog(dir, k.publicKey), { ok: true, records: 16 });
  }
});

t.test("outcome records written field by field are their canonical text, whatever they carry", async (t) => {
  const dir = t.testdir({});
  const log = await DecisionLog.open(settings(dir), { signingKey: k.privateKey });
  const a = log.append(decision(0));
  const outcomes = [
    new Outcome(a.id, "ok", 0.123),
    new Outcome(a.id, "device-exception", 4.5, 2),
    new Outcome(a.id, "device-exception", 12, 'BadNodeIdUnknown "quoted" \\ é'),
    new Outcome(a.id, "ok", 0, undefined, 250),
    new Outcome(a.id, "timeout", 1000.001, 0x0b, 1e21),
    new Outcome('not "plain"', "unavailable", 3), // a ref with quotes: the general way
  ];
  for (const o of outcomes) log.append(o);
  t.same(jcs(outcomes[1]), jcs({ exception: 2, latencyMs: 4.5, ref: a.id, status: "device-exception", type: "outcome" }), "an Outcome is the plain object it stands for");
  t.notOk("exception" in outcomes[0]! || "cacheAgeMs" in outcomes[0]!, "no keys for what it does not carry");
  await log.close();
  const lines = readFileSync(seg(dir, 1), "utf8").split("\n").filter((l) => l);
  const recs = lines.map((l) => JSON.parse(l) as Record<string, unknown> & { hash: string; type: string });
  t.same(recs.filter((r) => r.type === "outcome").map((r) => [r["status"], r["exception"], r["cacheAgeMs"], r["latencyMs"]]), [
    ["ok", undefined, undefined, 0.123],
    ["device-exception", 2, undefined, 4.5],
    ["device-exception", 'BadNodeIdUnknown "quoted" \\ é', undefined, 12],
    ["ok", undefined, 250, 0],
    ["timeout", 11, 1e21, 1000.001],
    ["unavailable", undefined, undefined, 3],
  ]);
  lines.forEach((line, i) => {
    const { hash, ...rest } = recs[i]!;
    t.equal(line, jcs(rest).slice(0, -1) + `,"hash":"${hash}"}`, `line ${i + 1} is its canonical text, then the hash`);
  });
  t.match(await verifyLog(dir, k.publicKey), { ok: true, records: 8 });
});

t.test("random bodies, each appended three times (the third from its kept text): every line is the library's canonical text", async (t) => {
  // Seeded, so a failure can be replayed: strings with escapes, controls, quotes, astral and
  // lone surrogates, numbers of every JSON shape, nested objects in and out of key order.
  let seed = 0x2f6e2b1;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const chars = ["a", "Z", "0", " ", '"', "\\", "\n", "\t", "\u0000", "\u001f", "\u007f", "é", "€", "😀", "\ud800", "/", "<", "\u2028"];
  const str = () => Array.from({ length: Math.floor(rnd() * 8) }, () => pick(chars)).join("");
  const num = () => pick([0, -0, 1, -17, 0.1, 1e21, 1e-7, 123456789.125, Number.MAX_SAFE_INTEGER, 5e-324]);
  const value = (depth: number): unknown => {
    const k = Math.floor(rnd() * (depth > 2 ? 4 : 6));
    if (k === 0) return str();
    if (k === 1) return num();
    if (k === 2) return pick([true, false, null]);
    if (k === 3) return undefined;
    if (k === 4) return Array.from({ length: Math.floor(rnd() * 3) }, () => value(depth + 1) ?? null);
    return object(depth + 1);
  };
  const object = (depth: number): Record<string, unknown> => {
    const keys = Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => pick(["a", "b", "zone", "Z", "é", "10", "_x", "ref", "status", str()]));
    if (rnd() < 0.7) keys.sort();
    const o: Record<string, unknown> = {};
    for (const k of keys) o[k] = value(depth);
    return o;
  };
  const dir = t.testdir({});
  const log = await DecisionLog.open(settings(dir), { signingKey: k.privateKey });
  let appended = 0;
  const sent: Array<{ id: string; seq: number; body: object }> = [];
  for (let i = 0; i < 150; i++) {
    const body = { ...object(0), type: pick(["decision", "session", "policy"]) } as Record<string, unknown>;
    for (const envelope of ["id", "prev", "seq", "time", "v", "hash"]) delete body[envelope];
    const ordered: Record<string, unknown> = {};
    if (rnd() < 0.8) for (const key of Object.keys(body).sort()) ordered[key] = body[key];
    const frozen = Object.freeze(rnd() < 0.8 ? ordered : body);
    for (let n = 0; n < 3; n++) {
      const a = log.append(frozen as never);
      sent.push({ id: a.id, seq: a.seq, body: frozen });
      appended++;
    }
  }
  await log.close();
  const lines = readFileSync(seg(dir, 1), "utf8").split("\n").filter((l) => l);
  t.equal(lines.length, appended + 1, "every record, then the close checkpoint");
  let bad = 0;
  let wrong = 0;
  let prev = GENESIS_PREV;
  lines.slice(0, appended).forEach((line, i) => {
    const { hash, ...rest } = JSON.parse(line) as Record<string, unknown> & { hash: string };
    if (line !== jcs(rest).slice(0, -1) + `,"hash":"${hash}"}`) bad++;
    // And it is the record of what was appended: that body, with this record's own envelope.
    const { id, seq, prev: p, time, v, ...content } = rest;
    const s = sent[i] as (typeof sent)[number];
    if (id !== s.id || seq !== s.seq || p !== prev || v !== 1 || typeof time !== "string" || jcs(content) !== jcs(JSON.parse(JSON.stringify(s.body)))) wrong++;
    prev = hash;
  });
  t.equal(bad, 0, "no line differs from its canonical text");
  t.equal(wrong, 0, "each line holds the body appended, under its own id, seq and prev");
  t.match(await verifyLog(dir, k.publicKey), { ok: true, records: appended + 1 });
});

t.test("a record that cannot be written as canonical JSON is refused without a gap in the chain, also while a checkpoint is being signed", async (t) => {
  const dir = t.testdir({});
  const log = await DecisionLog.open(settings(dir), { signingKey: k.privateKey });
  const first = log.append(decision(0));
  await first.durable;
  const bad = { ...decision(1), values: [{ point: "x", value: Number.NaN }] } as unknown as Parameters<DecisionLog["append"]>[0];
  t.throws(() => log.append(bad), AuditUnavailableError, "NaN refused");
  t.equal(log.append(decision(2)).seq, first.seq + 1, "the next record takes the next seq");
  // While a checkpoint is being signed, records wait behind it: a bad one is refused at once.
  const signing = log.checkpoint();
  t.throws(() => log.append({ ...decision(3), rule: 10n } as unknown as Parameters<DecisionLog["append"]>[0]), AuditUnavailableError, "a BigInt refused while signing");
  const after = log.append(decision(4));
  await signing;
  await after.durable;
  t.ok(log.healthy(), "the log goes on");
  await log.close();
  t.match(await verifyLog(dir, k.publicKey), { ok: true }, "no gap: the log verifies");
});

t.test("a whole record removed while the gateway was down is no torn tail: it is left for verify to report", async (t) => {
  const dir = t.testdir({});
  const log = await DecisionLog.open(settings(dir, { checkpointEvery: { records: 1000, seconds: 60 } }), { signingKey: k.privateKey });
  for (let i = 0; i < 12; i++) await log.append(decision(i)).durable;
  // No close (a crash): records after the open's checkpoint are not covered by one.
  const lines = readFileSync(seg(dir, 1), "utf8").split("\n");
  const at = lines.findIndex((l) => l.includes('"seq":8,'));
  writeFileSync(seg(dir, 1), [...lines.slice(0, at), ...lines.slice(at + 1)].join("\n"));
  const again = await DecisionLog.open(settings(dir), { signingKey: k.privateKey });
  t.equal(again.recovered.torn, null, "nothing moved aside");
  await again.close();
  t.match(await verifyLog(dir, k.publicKey), { ok: false, problem: { seq: 8, why: /record 8 was removed/ } }, "verify still reports it");
});
