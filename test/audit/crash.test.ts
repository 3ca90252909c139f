// SIGKILL under load (SPEC §9): a child process appends decisions and prints each seq once it
// is durable; it is killed mid-stream, twice (the second child reopens the log the first left).
// After the restart the log verifies and every acknowledged record is there.
import { spawn } from "node:child_process";
import { childEnv } from "../support/child-env.js";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import t from "tap";
import { DecisionLog } from "../../src/audit/writer.js";
import { readLog } from "../../src/audit/query.js";
import { verifyLog } from "../../src/audit/verify.js";
import { keys, settings } from "./helpers.js";

const k = await keys();
const FIXTURE = fileURLToPath(new URL("./fixtures/crash-writer.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Runs the writer child until it has acknowledged `acks` more records, then SIGKILLs it. */
function runAndKill(dir: string, keyFile: string, acks: number): Promise<{ startedAt: number; acked: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", FIXTURE, dir, keyFile], { cwd: ROOT, env: childEnv(), stdio: ["ignore", "pipe", "pipe"] });
    let startedAt = -1;
    let acked = 0;
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    createInterface({ input: child.stdout }).on("line", (line) => {
      const [word, n] = line.split(" ");
      if (word === "ready") startedAt = Number(n);
      if (word === "ack") acked = Math.max(acked, Number(n));
      if (startedAt >= 0 && acked >= startedAt + acks) child.kill("SIGKILL");
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (signal !== "SIGKILL" || acked === 0) reject(new Error(`child ended with ${code ?? signal}, ${acked} acked: ${stderr}`));
      else resolve({ startedAt, acked });
    });
  });
}

t.test("no acknowledged record is lost to SIGKILL, and the log verifies after restart", async (t) => {
  const dir = path.join(t.testdir({}), "decisions");
  const keyFile = path.join(t.testdir({}), "signing.key.pem");
  writeFileSync(keyFile, k.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });

  const first = await runAndKill(dir, keyFile, 3000);
  t.equal(first.startedAt, 0, "the first child starts an empty log");
  const second = await runAndKill(dir, keyFile, 2000);
  t.ok(second.startedAt >= first.acked, `the second child resumed at seq ${second.startedAt}, after every acknowledged record (${first.acked})`);

  // The restart: open recovers a torn tail (if the kill left one) and checkpoints what it found.
  const log = await DecisionLog.open(settings(dir), { signingKey: k.privateKey });
  t.comment(`recovered: last seq ${log.recovered.last?.seq}, torn ${log.recovered.torn ? `${log.recovered.torn.bytes} bytes` : "none"}`);
  await log.close();

  const r = await verifyLog(dir, k.publicKey);
  t.equal(r.problem, null, "verify passes");
  t.ok(r.lastSeq >= second.acked, `the log holds seq 1..${r.lastSeq}, every acknowledged seq up to ${second.acked}`);
  const seqs = new Set<number>();
  for await (const f of readLog(dir)) if (f.record) seqs.add(f.record.seq);
  const missing = [first.acked, second.acked].filter((s) => !seqs.has(s));
  t.same(missing, [], "the last acknowledged record of each child is there");
  t.equal(seqs.size, r.lastSeq, "one record per seq, no gaps");
});

t.test("one writer per log directory: a second one is refused while the first runs, and takes over once it is killed", async (t) => {
  const dir = path.join(t.testdir({}), "decisions");
  const keyFile = path.join(t.testdir({}), "signing.key.pem");
  writeFileSync(keyFile, k.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  const child = spawn(process.execPath, ["--import", "tsx", FIXTURE, dir, keyFile], { cwd: ROOT, env: childEnv(), stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  t.teardown(() => void child.kill("SIGKILL"));
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout }).on("line", (line) => line.startsWith("ready") && resolve());
    child.on("exit", (code) => reject(new Error(`the writer child ended (${code}) before it was ready`)));
  });
  await t.rejects(DecisionLog.open(settings(dir), { signingKey: k.privateKey }), { code: "ZT_LOG_LOCKED", message: new RegExp(`pid ${child.pid}`) }, "refused while the child writes");
  child.kill("SIGKILL");
  await exited;
  const log = await DecisionLog.open(settings(dir), { signingKey: k.privateKey });
  await log.close();
  t.match(await verifyLog(dir, k.publicKey), { problem: null }, "taken over and verified after the kill");
});
