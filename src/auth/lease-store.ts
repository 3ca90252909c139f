// Leases outlive a restart (SPEC §3): the open leases are kept in a file beside the decision
// log's directory and named after it (`<log.dir>.leases.json`: per gateway, as the log is),
// replaced durably whenever one opens, is renewed or ends, and read at start. Each entry keeps the lease's token: at start it is
// verified again exactly as a new one would be (issuer, key, audience, expiry, revocation, roles
// claim), and only a lease whose token passes is opened again (main.ts). The file is 0600; a
// file that cannot be read or parsed is reported and left out: losing leases only makes
// clients lease again.
import { readFile, readdir, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { replaceFileDurably } from "../util/durable-file.js";

export interface StoredLease {
  readonly id: string;
  readonly source: string;
  readonly protocol: string;
  readonly openedAt: number;
  /** The bearer token the lease rests on (verified again at start). */
  readonly token: string;
  /** Opened by an admin for another address than the caller's: restored only while the token still has an admin role. */
  readonly forOther?: true;
}

export interface LoadedLeases {
  readonly leases: StoredLease[];
  /** Why the file or some of its entries were left out. */
  readonly problems: string[];
}

/** A stored entry, checked field by field; undefined when any is missing or of the wrong kind. */
function leaseOf(x: unknown): StoredLease | undefined {
  const l = x as Partial<Record<keyof StoredLease, unknown>> | null;
  if (typeof l !== "object" || l === null) return undefined;
  if (typeof l.id !== "string" || typeof l.source !== "string" || l.protocol !== "modbus" || typeof l.openedAt !== "number" || typeof l.token !== "string") return undefined;
  if (l.forOther !== undefined && l.forOther !== true) return undefined;
  return { id: l.id, source: l.source, protocol: l.protocol, openedAt: l.openedAt, token: l.token, ...(l.forOther && { forOther: true }) };
}

/** How long a failed write waits before it is tried again. */
const RETRY_MS = 1000;

export class LeaseStore {
  private saving: Promise<void> = Promise.resolve();
  private queued = false;
  private closed = false;
  private error: Error | undefined;
  private retry: NodeJS.Timeout | undefined;
  private current: (() => readonly StoredLease[]) | undefined;

  constructor(
    readonly file: string,
    /** A write that failed (the leases in memory are unchanged; it is tried again every second). */
    private readonly onError: (e: Error) => void,
  ) {}

  /** The leases kept in the file; none when it does not exist. Removes temporary files a crash left (they hold tokens). */
  async load(): Promise<LoadedLeases> {
    const prefix = `${basename(this.file)}.`;
    const names = await readdir(dirname(this.file)).catch(() => [] as string[]);
    for (const n of names) if (n.startsWith(prefix) && n.endsWith(".tmp")) await rm(join(dirname(this.file), n), { force: true });
    let text: string;
    try {
      text = await readFile(this.file, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return { leases: [], problems: [] };
      return { leases: [], problems: [`${this.file} cannot be read: ${(e as Error).message}`] };
    }
    let data: { v?: unknown; leases?: unknown };
    try {
      data = JSON.parse(text) as typeof data;
    } catch {
      // Not the parser's message: it quotes the text, which holds tokens.
      return { leases: [], problems: [`${this.file} is not JSON`] };
    }
    if (typeof data !== "object" || data === null || data.v !== 1 || !Array.isArray(data.leases)) return { leases: [], problems: [`${this.file}: expected an object with "v": 1 and "leases": [...]`] };
    const leases: StoredLease[] = [];
    const problems: string[] = [];
    data.leases.forEach((x, i) => {
      const l = leaseOf(x);
      if (l) leases.push(l);
      else problems.push(`${this.file}: leases[${i}] is not a lease (a field missing or of the wrong kind)`);
    });
    return { leases, problems };
  }

  /** Queues a write of the leases `current()` gives when it runs (changes close together share one write). */
  save(current: () => readonly StoredLease[]): void {
    this.current = current;
    if (this.queued || this.closed) return;
    this.queued = true;
    clearTimeout(this.retry);
    this.saving = this.saving.then(async () => {
      this.queued = false;
      if (this.closed) return;
      if (!(await this.write(current))) {
        clearTimeout(this.retry);
        this.retry = setTimeout(() => this.save(current), RETRY_MS);
        this.retry.unref();
      }
    });
  }

  private async write(current: () => readonly StoredLease[]): Promise<boolean> {
    try {
      await replaceFileDurably(this.file, JSON.stringify({ v: 1, leases: current() }) + "\n", 0o600);
      this.error = undefined;
      return true;
    } catch (e) {
      this.error = new Error(`${this.file} cannot be written: ${(e as Error).message}`);
      this.onError(this.error);
      return false;
    }
  }

  /** Resolves once every write queued so far has run; rejects when the last one failed. */
  async saved(): Promise<void> {
    await this.saving;
    if (this.error) throw this.error;
  }

  /**
   * The gateway stops: waits for the write under way, makes one last attempt if the last one
   * failed, and writes no more. Rejects when the file still does not say what is open.
   */
  async close(): Promise<void> {
    clearTimeout(this.retry);
    await this.saving;
    if (this.error && this.current && !this.closed) await this.write(this.current);
    this.closed = true;
    clearTimeout(this.retry);
    if (this.error) throw this.error;
  }
}
