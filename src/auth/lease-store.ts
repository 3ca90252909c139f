// Leases outlive a restart (SPEC §3): the open leases are kept in keys.dir/leases.json, next to
// the revocation list, rewritten (atomically, 0600) whenever one opens, is renewed or ends, and
// read at start. A lease rests on a verified token until its `exp`; what is restored is that
// same principal (claims and ids, never the token), and only while it is still good: not
// expired, not revoked, its issuer still configured (main.ts checks). A file that cannot be
// read or parsed is reported and left out: losing leases only makes clients lease again.
import { readFile } from "node:fs/promises";
import type { Principal } from "../pdp/principal.js";
import { writeKeyFile } from "./keys.js";
import type { Session } from "./sessions.js";

export interface StoredLease {
  readonly id: string;
  readonly source: string;
  readonly protocol: string;
  readonly openedAt: number;
  readonly principal: Principal;
}

export interface LoadedLeases {
  readonly leases: StoredLease[];
  /** Why the file or some of its entries were left out. */
  readonly problems: string[];
}

const VIA: ReadonlySet<string> = new Set(["bearer", "lease", "mtls", "opcua-user", "opcua-x509"]);

function isStrings(x: unknown): x is string[] {
  return Array.isArray(x) && x.every((r) => typeof r === "string");
}

/** A stored entry, checked field by field; undefined when any is missing or of the wrong kind. */
function leaseOf(x: unknown): StoredLease | undefined {
  const l = x as Partial<Record<keyof StoredLease, unknown>> | null;
  if (typeof l !== "object" || l === null) return undefined;
  const p = l.principal as Partial<Record<keyof Principal, unknown>> | null | undefined;
  if (typeof l.id !== "string" || typeof l.source !== "string" || typeof l.protocol !== "string" || typeof l.openedAt !== "number") return undefined;
  if (typeof p !== "object" || p === null || typeof p.sub !== "string" || typeof p.iss !== "string" || !isStrings(p.roles)) return undefined;
  if (typeof p.claims !== "object" || p.claims === null || Array.isArray(p.claims) || typeof p.via !== "string" || !VIA.has(p.via)) return undefined;
  for (const k of ["sessionId", "tokenId"] as const) if (p[k] !== undefined && typeof p[k] !== "string") return undefined;
  if (p.expiresAt !== undefined && (typeof p.expiresAt !== "number" || !Number.isFinite(p.expiresAt))) return undefined;
  return { id: l.id, source: l.source, protocol: l.protocol, openedAt: l.openedAt, principal: p as unknown as Principal };
}

export class LeaseStore {
  private saving: Promise<void> = Promise.resolve();
  private queued = false;

  constructor(
    readonly file: string,
    /** A write that failed (the leases in memory are unchanged; the next change writes again). */
    private readonly onError: (e: Error) => void,
  ) {}

  /** The leases kept in the file; none when it does not exist. */
  async load(): Promise<LoadedLeases> {
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
    } catch (e) {
      return { leases: [], problems: [`${this.file} is not JSON: ${(e as Error).message}`] };
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
  save(current: () => readonly Session[]): void {
    if (this.queued) return;
    this.queued = true;
    this.saving = this.saving.then(async () => {
      this.queued = false;
      const leases: StoredLease[] = current().map((s) => ({ id: s.id, source: s.source as string, protocol: s.protocol, openedAt: s.openedAt, principal: s.principal }));
      try {
        await writeKeyFile(this.file, JSON.stringify({ v: 1, leases }) + "\n", 0o600);
      } catch (e) {
        this.onError(new Error(`${this.file} cannot be written: ${(e as Error).message}`));
      }
    });
  }

  /** Resolves once every write queued so far has run. */
  saved(): Promise<void> {
    return this.saving;
  }
}
