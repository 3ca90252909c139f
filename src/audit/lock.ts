// One writer per decision log directory. Two gateways writing the same directory (a second
// `ztgate start` by mistake, or a restart that overlaps the old process's shutdown) would each
// resume the chain at the same place and overwrite each other's records, acknowledged ones
// included. DecisionLog.open() therefore takes `writer.lock` in the directory before it
// recovers anything; close() gives it back.
//
//   writer.lock     "<pid> <host>\n" of the writer; it appears whole (written to a temporary
//                   file, then hard-linked into place, which fails if the lock exists)
//
// A lock is stale when its writer is gone: same host and its pid no longer runs (or is this
// very process: a log reopened after a crash within one process, as tests do; or pid 1 of a
// container restarted in place). A stale lock is moved aside under a unique name (rename: only
// one contender gets it) and looked at again, so a lock another contender has just taken is
// never removed. A lock of another host (another container: its pids are not ours to check)
// is never taken over: the error names the file to remove once no gateway writes the log.
import { randomUUID } from "node:crypto";
import { link, readFile, rename, unlink, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import path from "node:path";
import { ZtError } from "../errors.js";

export const LOCK_FILE = "writer.lock";

interface Holder {
  readonly pid: number;
  readonly host: string;
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"; // alive, owned by someone else
  }
}

function parse(text: string): Holder | undefined {
  const m = /^(\d+) (\S+)\n$/.exec(text);
  return m ? { pid: Number(m[1]), host: m[2] as string } : undefined;
}

async function holderOf(file: string): Promise<Holder | undefined | null> {
  try {
    return parse(await readFile(file, "utf8"));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null; // gone meanwhile
    throw e;
  }
}

/** Whether a holder's writer is certainly gone. */
function stale(h: Holder, me: Holder): boolean {
  return h.host === me.host && (h.pid === me.pid || !running(h.pid));
}

/** Takes the directory's writer lock; resolves to its release. Throws ZT_LOG_LOCKED while another writer holds it. */
export async function lockLogDir(dir: string): Promise<() => Promise<void>> {
  const file = path.join(dir, LOCK_FILE);
  const me: Holder = { pid: process.pid, host: hostname() };
  const text = `${me.pid} ${me.host}\n`;
  const tmp = path.join(dir, `${LOCK_FILE}.${randomUUID()}.tmp`);
  try {
    await writeFile(tmp, text, { mode: 0o640 });
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await link(tmp, file);
        return async () => {
          // Only our own lock: never one a later writer took over.
          if ((await holderOf(file).catch(() => undefined))?.pid === me.pid) await unlink(file).catch(() => undefined);
        };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      }
      const h = await holderOf(file);
      if (h === null) continue; // released meanwhile: try again
      if (h === undefined || !stale(h, me)) throw locked(dir, file, h);
      // Stale: move it aside (one contender wins), and check it was the stale one we saw.
      const aside = path.join(dir, `${LOCK_FILE}.${randomUUID()}.stale`);
      try {
        await rename(file, aside);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") continue;
        throw e;
      }
      const moved = await holderOf(aside);
      if (moved && moved.pid === h.pid && moved.host === h.host) await unlink(aside);
      else {
        // Another contender's fresh lock was moved: put it back, and let it win.
        await link(aside, file).catch(() => undefined);
        await unlink(aside).catch(() => undefined);
      }
    }
    throw locked(dir, file, undefined);
  } catch (e) {
    if (e instanceof ZtError) throw e;
    throw new ZtError("ZT_LOG_UNREADABLE", `${file}: ${(e as Error).message}`);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

function locked(dir: string, file: string, h: Holder | undefined): ZtError {
  const who = h ? `pid ${h.pid} on ${h.host}` : "a writer starting at the same time, or a lock file that is not ours";
  return new ZtError("ZT_LOG_LOCKED", `${dir} is the decision log of another running gateway (${who}; ${file}): two writers would overwrite each other's records. Stop it, or remove ${file} if no gateway writes this log.`);
}
