// `ztgate log verify | query | tail`, run in-process through main(argv, io) (and logCommand
// for `tail -f`, which needs a way to stop), on logs the writer made in t.testdir.
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import t from "tap";
import { main } from "../../src/cli/index.js";
import { logCommand } from "../../src/cli/log.js";
import { DecisionLog } from "../../src/audit/writer.js";
import { decision, keys, outcome, settings, testClock, testIds } from "../audit/helpers.js";

interface Run {
  code: number;
  out: string[];
  err: string[];
}

const io = () => {
  const r = { out: [] as string[], err: [] as string[] };
  return { r, io: { out: (l: string) => r.out.push(...l.split("\n")), err: (l: string) => r.err.push(...l.split("\n")) } };
};

async function run(...argv: string[]): Promise<Run> {
  const { r, io: sink } = io();
  const code = await main(argv, sink);
  return { code, ...r };
}

const k = await keys();
const root = t.testdir({});
const dir = path.join(root, "decisions");
const pub = path.join(root, "gateway-signing.pub.pem");
const priv = path.join(root, "gateway-signing.key.pem");
writeFileSync(pub, k.publicKey.export({ type: "spki", format: "pem" }));
writeFileSync(priv, k.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
{
  const clock = testClock(Date.parse("2026-03-04T10:00:00Z"));
  const log = await DecisionLog.open(settings(dir, { checkpointEvery: { records: 4, seconds: 3600 } }), { signingKey: k.privateKey, now: clock.now, ids: testIds() });
  for (let i = 0; i < 8; i++) {
    const d = log.append(decision(i));
    log.append(outcome(d.id));
    clock.advance(1000);
  }
  // A subject name chosen to attack whoever reads the log: a spreadsheet formula, a terminal escape.
  log.append(decision(8, { subject: { sub: "=HYPERLINK(\"http://x\")\u001b[2J", iss: "evil", roles: [] }, decision: "deny", reason: "token-invalid", rule: null }));
  await log.close();
}

t.test("verify: ok with a summary, exit 0; the key from --key, or gateway.yaml's log.keyFile", async (t) => {
  const r = await run("log", "verify", dir, "--key", pub);
  t.equal(r.code, 0);
  t.match(r.out, [/^ok: \d+ records \(seq 1\.\.\d+\) in 1 segment, \d+ checkpoint signatures verified, head\.jws signs seq \d+$/]);
  t.same(r.err, []);
  t.equal((await run("log", "verify", "--dir", dir, "--key", priv)).code, 0, "a private key PEM works too");
  const conf = path.join(root, "gateway.yaml");
  writeFileSync(conf, `log:\n  dir: decisions\n  keyFile: gateway-signing.key.pem\n`);
  t.equal((await run("log", "verify", "--config", conf)).code, 0, "both from the configuration");
  writeFileSync(conf, `log:\n  dir: decisions\n  keyFile: nowhere/gateway-signing.key.pem\n`);
  const nokey = await run("log", "verify", "--config", conf);
  t.equal(nokey.code, 1);
  t.match(nokey.err, [/^ztgate: ZT_LOG_KEY_INVALID: no key to check the checkpoint signatures with: .*nowhere\/gateway-signing\.key\.pem does not exist; give --key/]);
  const badkey = await run("log", "verify", dir, "--key", conf);
  t.match(badkey, { code: 1, err: [/ZT_LOG_KEY_INVALID: .*gateway\.yaml: not a public or private key PEM/] });
});

t.test("verify: a broken log prints file:seq: why, exit 1", async (t) => {
  const copy = path.join(t.testdir({}), "d");
  const { cpSync } = await import("node:fs");
  cpSync(dir, copy, { recursive: true });
  const seg = path.join(copy, "00000001.jsonl");
  const lines = readFileSync(seg, "utf8").split("\n");
  lines[2] = lines[2]!.replace('"decision":"allow"', '"decision":"deny"'); // seq 3
  writeFileSync(seg, lines.join("\n"));
  const r = await run("log", "verify", copy, "--key", pub);
  t.equal(r.code, 1);
  t.same(r.out, [`${seg}:3: hash does not match the record's content: the record was changed`, "BROKEN: checked 2 records in 1 segments before the first problem"]);
});

t.test("query: table (default), json lines as stored, csv", async (t) => {
  const table = await run("log", "query", "--dir", dir, "--type", "decision", "--limit", "2");
  t.equal(table.code, 0);
  t.match(table.out[0], /^TIME\s+SEQ\s+TYPE\s+DECISION\s+REASON\s+RULE\s+SUBJECT\s+ASSET\s+ACTION\s+TARGET\s+DETAIL$/);
  t.match(table.out[1], /^2026-03-04T10:00:00\.000000Z\s+1\s+decision\s+allow\s+allowed\s+historian-read\s+hist-1\s+packaging-line\s+read\s+input:0-1\s+127\.0\.0\.1:40000 modbus\/tcp$/);
  t.match(table.out[2], /^2026-03-04T10:00:01\.000000Z\s+3\s+decision\s+allow\s+allowed\s+mes-setpoint\s+mes-1\s+boiler-plc\s+write\s+setpoint\s+127\.0\.0\.1:40001 modbus\/tcp setpoint=41$/);
  t.equal(table.out.length, 3);

  const json = await run("log", "query", "--dir", dir, "--format", "json", "--decision", "deny");
  const stored = readFileSync(path.join(dir, "00000001.jsonl"), "utf8").split("\n");
  t.ok(json.out.length >= 2);
  for (const l of json.out) t.ok(stored.includes(l), "json prints the stored line unchanged");
  t.ok(json.out.every((l) => (JSON.parse(l) as { decision: string }).decision === "deny"));

  const csv = await run("log", "query", "--dir", dir, "--format", "csv", "--reason", "token-invalid");
  t.equal(csv.out[0], "time,seq,id,type,decision,reason,rule,policyRevision,mode,subject,issuer,roles,session,jti,client,protocol,transport,asset,zone,action,target,values,ref,status,exception,latencyMs,cacheAgeMs,detail");
  t.equal(csv.out.length, 2);
  t.ok(csv.out[1]!.includes(`,"'=HYPERLINK(""http://x"")\u001b[2J",evil,`), "a formula is neutralised and quotes doubled");
  const outcomes = await run("log", "query", "--dir", dir, "--format", "csv", "--type", "outcome", "--limit", "1");
  t.match(outcomes.out[1], /^2026-03-04T10:00:00\.000000Z,2,r-2,outcome,,+r-1,ok,,1\.25,,$/);
});

t.test("query: the table never passes control characters to the terminal", async (t) => {
  const r = await run("log", "query", "--dir", dir, "--reason", "token-invalid");
  t.match(r.out[1], /=HYPERLINK\("http:\/\/x"\)\\u001b\[2J/);
  t.notOk(r.out.join("\n").includes("\u001b"), "no raw ESC");
});

t.test("query: filters and bounds", async (t) => {
  const count = async (...a: string[]) => (await run("log", "query", "--dir", dir, "--format", "json", ...a)).out.length;
  t.equal(await count("--since", "2026-03-04T10:00:03Z", "--until", "2026-03-04T10:00:05Z", "--type", "decision"), 2);
  t.equal(await count("--asset", "boiler-plc", "--action", "write"), 2);
  t.equal(await count("--subject", "mes-1"), 3);
  t.equal(await count("--rule", "historian-read"), 4);
  t.equal(await count("--since", "1h"), 0, "a relative bound: nothing in the last hour (the log is from 2026-03-04)");
});

t.test("tail: the last N records, then (with -f) new ones across rotation until stopped", async (t) => {
  const r = await run("log", "tail", "--dir", dir, "-n", "2", "--format", "json");
  t.equal(r.code, 0);
  t.same(r.out.map((l) => (JSON.parse(l) as { seq: number }).seq), [18, 19]);
  t.equal((await run("log", "tail", "--dir", dir)).out.length, 11, "header and 10 records by default");

  const live = path.join(t.testdir({}), "live");
  const log = await DecisionLog.open(settings(live, { segmentBytes: 4096 }), { signingKey: k.privateKey });
  await log.append(decision(0)).durable;
  const ac = new AbortController();
  const { r: got, io: sink } = io();
  const tail = logCommand(["tail", "-f", "--dir", live, "--format", "json", "-n", "1"], sink, { signal: ac.signal });
  for (let i = 0; i < 1500 && got.out.length < 1; i++) await new Promise((res) => setTimeout(res, 10));
  for (let i = 1; i < 20; i++) await log.append(decision(i)).durable;
  await log.close();
  for (let i = 0; i < 1500 && got.out.length < 21; i++) await new Promise((res) => setTimeout(res, 10));
  ac.abort();
  t.equal(await tail, 0, "exit 0 when stopped");
  t.same(got.out.map((l) => (JSON.parse(l) as { seq: number }).seq), Array.from({ length: 21 }, (_, i) => i + 1));
});

t.test("usage errors exit 2 with one line", async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [["log", "frob"], /^ztgate: unknown log command "frob"; usage: ztgate log \(verify/],
    [["log", "verify", "a", "--dir", "b"], /^ztgate: give DIR or --dir, not both/],
    [["log", "verify", "a", "b"], /^ztgate: unexpected argument "b"/],
    [["log", "query", "--dir", dir, "--decision", "maybe"], /^ztgate: --decision "maybe": must be one of allow, deny; usage: ztgate log query/],
    [["log", "query", "--dir", dir, "--type", "x"], /^ztgate: --type "x": must be one of decision, outcome, session, policy, checkpoint/],
    [["log", "query", "--dir", dir, "--format", "xml"], /^ztgate: --format "xml": must be one of table, json, csv/],
    [["log", "query", "--dir", dir, "--limit", "-1"], /^ztgate: .*--limit/],
    [["log", "query", "--dir", dir, "--limit", "ten"], /^ztgate: --limit "ten": must be a whole number/],
    [["log", "query", "--dir", dir, "--since", "yesterday"], /^ztgate: --since "yesterday": give an ISO 8601 time .* or a duration back from now/],
    [["log", "query", "--frob"], /^ztgate: Unknown option '--frob'/],
    [["log", "tail", "--dir", dir, "--format", "csv"], /^ztgate: --format "csv": must be one of table, json; usage: ztgate log tail/],
    [["log", "tail", "--dir", dir, "-n", "x"], /^ztgate: -n "x": must be a whole number/],
  ];
  for (const [argv, message] of cases) {
    const r = await run(...argv);
    t.equal(r.code, 2, argv.join(" "));
    t.same(r.out, []);
    t.equal(r.err.length, 1);
    t.match(r.err[0], message, argv.join(" "));
  }
});
