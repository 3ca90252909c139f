// A small state file (revocations, leases) replaced durably: written to a temporary file beside
// it, fsynced, renamed over it, and the directory fsynced, so that after a crash the file holds
// either the old or the new text, never a torn one, and the new one once this resolves.
import { randomUUID } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";

/** Replaces `file` with `text` (created with `mode`); rejects, leaving `file` as it was, when it cannot. */
export async function replaceFileDurably(file: string, text: string, mode = 0o600): Promise<void> {
  // A name no crash can have left behind (a container's pid is always 1).
  const tmp = `${file}.${randomUUID()}.tmp`;
  try {
    const fh = await open(tmp, "wx", mode);
    try {
      await fh.writeFile(text);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  // The rename itself is durable once the directory is synced (best effort where a directory cannot be opened for it).
  const dir = await open(dirname(file), "r").catch(() => undefined);
  if (dir) await dir.sync().catch(() => undefined).finally(() => dir.close());
}
