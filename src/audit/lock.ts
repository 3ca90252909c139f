// One writer per decision log directory. Two gateways writing the same directory (a second
// `ztgate start` by mistake, or a restart that overlaps the old process's shutdown) would each
// resume the chain at the same place and overwrite each other's records, acknowledged ones
// included. DecisionLog.open() therefore takes `writer.lock` in the directory before it
// recovers anything: created exclusively, holding the writer's pid, removed on close.
//
// A lock left by a writer that is gone (SIGKILL, power loss) is stale: its pid no longer runs
// (or is this very process: a log reopened after a crash within one process, as tests do,
// and a container's pid 1 after a restart), and it is taken over. A pid reused by an unrelated
// process looks alive: the error says which file to remove once no gateway runs.
import { open, readFile, unlink } from "node:fs/promises";
import path from "node:path";
import { ZtError } from "../errors.js";

export const LOCK_FILE = "writer.lock";

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"; // alive, owned by someone else
  }
}

/** Takes the directory's writer lock; resolves to its release. Throws ZT_LOG_LOCKED while another live process holds it. */
export async function lockLogDir(dir: string): Promise<() => Promise<void>> {
  const file = path.join(dir, LOCK_FILE);
  for (let attempt = 0; ; attempt++) {
    try {
      const fh = await open(file, "wx", 0o640);
      try {
        await fh.writeFile(`${process.pid}\n`);
        await fh.sync();
      } finally {
        await fh.close();
      }
      return () => unlink(file).catch(() => undefined);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw new ZtError("ZT_LOG_UNREADABLE", `${file}: ${(e as Error).message}`);
      const text = await readFile(file, "utf8").catch(() => "");
      const pid = Number(text.trim());
      if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && running(pid)) {
        throw new ZtError("ZT_LOG_LOCKED", `${dir} is the decision log of another running process (pid ${pid}, ${file}): two writers would overwrite each other's records. Stop that process, or remove ${file} if no gateway runs.`);
      }
      if (attempt > 0) throw new ZtError("ZT_LOG_LOCKED", `${file}: could not take over a stale lock (another writer is starting at the same time?)`);
      await unlink(file).catch(() => undefined); // stale: its writer is gone
    }
  }
}
