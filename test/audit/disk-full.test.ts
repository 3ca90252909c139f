// Fail closed (SPEC §6): when the disk is full the log refuses records with
// audit-unavailable, keeps what it had accepted, and recovers when space returns.
// Two real mechanisms: a small tmpfs filled to the last byte (needs root to mount; skipped
// with the reason otherwise), and /dev/full behind the next segment's name (any Linux).
import { execFileSync } from "node:child_process";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, symlinkSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { once } from "node:events";
import path from "node:path";
import t from "tap";
import { AuditUnavailableError, DecisionLog } from "../../src/audit/writer.js";
import { readLog } from "../../src/audit/query.js";
import { verifyLog } from "../../src/audit/verify.js";
import { decision, keys, settings } from "./helpers.js";

const k = await keys();

/** Mounts a tmpfs of `size` at `dir`, or says why it cannot. */
function mountTmpfs(dir: string, size: string): string | null {
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "pipe" });
    return null;
  } catch (e) {
    return `cannot mount a tmpfs here (needs root and mount(8)): ${String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim()}`;
  }
}

/** Writes zeros to `file` until the filesystem has no byte left. */
function fill(file: string): void {
  const fd = openSync(file, "w");
  try {
    for (const chunk of [65536, 4096, 512, 1]) {
      const buf = Buffer.alloc(chunk);
      for (;;) {
        try {
          writeSync(fd, buf);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "ENOSPC") break;
          throw e;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** seq of every whole record on disk. */
async function seqs(dir: string): Promise<number[]> {
  const out: number[] = [];
  for await (const f of readLog(dir)) if (f.record) out.push(f.record.seq);
  return out;
}

// Mounted here, outside t.testdir (whose cleanup would run before the unmount).
const mnt = mkdtempSync(path.join(tmpdir(), "ztgate-full-"));
const cannotMount = mountTmpfs(mnt, "256k");
t.teardown(() => {
  if (!cannotMount) execFileSync("umount", ["-l", mnt]);
  rmSync(mnt, { recursive: true, force: true });
});

t.test("a full filesystem: refused with audit-unavailable, nothing lost, recovery when space returns", { skip: cannotMount ?? false }, async (t) => {
  const dir = path.join(mnt, "decisions");
  const log = await DecisionLog.open(settings(dir, { checkpointEvery: { records: 100_000, seconds: 3600 } }), { signingKey: k.privateKey, retryMs: 20 });
  const events: string[] = [];
  log.on("unavailable", (e) => events.push(`unavailable ${(e as NodeJS.ErrnoException).code}`));
  log.on("available", () => events.push("available"));

  for (let i = 0; i < 10; i++) await log.append(decision(i)).durable;
  fill(path.join(mnt, "filler"));

  // Accepted before the failure is known: in the chain, queued, and its `durable` rejects.
  const accepted = Array.from({ length: 20 }, (_, i) => log.append(decision(10 + i)));
  await t.rejects(accepted.at(-1)!.durable, AuditUnavailableError, "durable rejects: a strict caller denies");
  t.equal(log.healthy(), false);
  t.same(events, ["unavailable ENOSPC"]);

  // While unavailable: every new record is refused, so the caller denies with audit-unavailable.
  for (let i = 0; i < 3; i++) {
    const e = (() => {
      try {
        log.append(decision(100 + i));
      } catch (err) {
        return err;
      }
      return null;
    })();
    t.match(e, { code: "ZT_AUDIT_UNAVAILABLE", reason: "audit-unavailable", message: /no space left on device/ }, `append ${i} refused`);
  }
  t.equal(log.stats().refused, 3);
  for (const end = Date.now() + 10_000; log.stats().writeFailures < 2 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 10));
  t.ok(log.stats().writeFailures >= 2, "it keeps retrying");

  rmSync(path.join(mnt, "filler"));
  await once(log, "available");
  t.equal(log.healthy(), true);
  t.same(events, ["unavailable ENOSPC", "available"]);
  await log.append(decision(200)).durable;
  await log.close();
  const r = await verifyLog(dir, k.publicKey);
  t.equal(r.problem, null, "verify passes: the partial write was overwritten whole");
  const on = await seqs(dir);
  for (const a of accepted) t.ok(on.includes(a.seq), `accepted seq ${a.seq} is on disk`);
  t.equal(on.length, 10 + 20 + 1 + 1, "10 before, 20 accepted during, 1 after, the close checkpoint");
});

const noDevFull = existsSync("/dev/full") ? false : "no /dev/full on this system";
t.test("/dev/full as the next segment: refused, then recovered when the segment is writable", { skip: noDevFull }, async (t) => {
  const dir = path.join(t.testdir({}), "decisions");
  mkdirSync(dir);
  const log = await DecisionLog.open(settings(dir, { segmentBytes: 4096, checkpointEvery: { records: 100_000, seconds: 3600 } }), { signingKey: k.privateKey, retryMs: 20 });
  let seg = 1;
  log.on("rotate", () => seg++);
  // Fill segment 1 almost to segmentBytes, then point segment 2's name at /dev/full.
  while (seg === 1) {
    const next = path.join(dir, `${String(seg + 1).padStart(8, "0")}.jsonl`);
    if (!existsSync(next)) symlinkSync("/dev/full", next);
    const a = log.append(decision(0));
    const ok = await a.durable.then(() => true, () => false);
    if (!ok) break;
  }
  t.equal(log.healthy(), false, "the write into /dev/full failed");
  t.throws(() => log.append(decision(1)), AuditUnavailableError);
  rmSync(path.join(dir, "00000002.jsonl"));
  await once(log, "available");
  await log.append(decision(2)).durable;
  await log.close();
  t.equal((await verifyLog(dir, k.publicKey)).problem, null);
});

t.test("closing while the disk is still full says how many records were not written", { skip: noDevFull }, async (t) => {
  const dir = path.join(t.testdir({}), "decisions");
  mkdirSync(dir);
  const log = await DecisionLog.open(settings(dir, { segmentBytes: 4096 }), { signingKey: k.privateKey, retryMs: 5 });
  while (log.healthy()) {
    const next = path.join(dir, "00000002.jsonl");
    if (!existsSync(next)) symlinkSync("/dev/full", next);
    await log.append(decision(0)).durable.catch(() => undefined);
  }
  await t.rejects(log.flush(), AuditUnavailableError);
  await t.rejects(log.close(), { code: "ZT_AUDIT_UNAVAILABLE", message: /closed with \d+ records not written/ });
});
