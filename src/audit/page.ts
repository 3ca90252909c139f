// Pages of the log for the HTTP API (GET /v1/decisions): the filters of `ztgate log query`,
// oldest first or newest first, a page at a time with an opaque cursor, and the allow/deny
// summaries of the review page (GET /v1/decisions/summary).
//
// A cursor is where the previous page stopped: oldest-first pages resume at a segment and
// byte offset (no re-reading of what was already paged), newest-first pages below a seq.
// Segments are read newest first for those, so recent pages read only the recent segments.
import type { LogRecord } from "./record.js";
import type { QueryFilter } from "./query.js";
import { matches } from "./query.js";
import { listSegments, readLines } from "./segments.js";

export type Order = "asc" | "desc";

/** The filters of `ztgate log query`, and `gateway: false` to leave out the gateway's own endpoints (records with `asset: null`). */
export interface LogFilter extends Omit<QueryFilter, "limit"> {
  readonly gateway?: boolean;
}

/** Whether a record passes a LogFilter. */
export function accepts(r: LogRecord, f: LogFilter): boolean {
  if (f.gateway === false && (r as unknown as { asset?: unknown }).asset === null) return false;
  return matches(r, f);
}

type Cursor = { readonly o: "asc"; readonly i: number; readonly b: number } | { readonly o: "desc"; readonly s: number };

export interface PageRequest {
  readonly filter: LogFilter;
  readonly order: Order;
  readonly limit: number;
  /** From the previous page's `next`. */
  readonly cursor?: string;
}

export interface Page {
  readonly records: LogRecord[];
  /** The next page's cursor; null when there is none (yet: an oldest-first reader may ask again later with `since`). */
  readonly next: string | null;
}

export class BadCursorError extends Error {
  constructor(detail: string) {
    super(detail);
    this.name = "BadCursorError";
  }
}

function encode(c: Cursor): string {
  return Buffer.from(JSON.stringify(c)).toString("base64url");
}

function decode(text: string, order: Order): Cursor {
  let c: unknown;
  try {
    c = JSON.parse(Buffer.from(text, "base64url").toString("utf8"));
  } catch {
    throw new BadCursorError("cursor is not one this gateway gave out");
  }
  const o = c as Record<string, unknown>;
  const whole = (v: unknown) => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
  if (o?.["o"] === "asc" && whole(o["i"]) && whole(o["b"])) {
    if (order !== "asc") throw new BadCursorError("cursor belongs to an oldest-first (order=asc) query");
    return { o: "asc", i: o["i"] as number, b: o["b"] as number };
  }
  if (o?.["o"] === "desc" && whole(o["s"])) {
    if (order !== "desc") throw new BadCursorError("cursor belongs to a newest-first (order=desc) query");
    return { o: "desc", s: o["s"] as number };
  }
  throw new BadCursorError("cursor is not one this gateway gave out");
}

function parse(text: string): LogRecord | null {
  try {
    const r: unknown = JSON.parse(text);
    return typeof r === "object" && r !== null ? (r as LogRecord) : null;
  } catch {
    return null;
  }
}

/** One page of records matching the filter; throws BadCursorError for a cursor it did not give out. */
export async function pageLog(dir: string, req: PageRequest): Promise<Page> {
  const cursor = req.cursor !== undefined ? decode(req.cursor, req.order) : undefined;
  return req.order === "asc" ? ascending(dir, req, cursor as Extract<Cursor, { o: "asc" }> | undefined) : descending(dir, req, cursor as Extract<Cursor, { o: "desc" }> | undefined);
}

async function ascending(dir: string, req: PageRequest, from: { i: number; b: number } | undefined): Promise<Page> {
  const records: LogRecord[] = [];
  for (const seg of await listSegments(dir)) {
    if (from && seg.index < from.i) continue;
    const start = from && seg.index === from.i ? from.b : 0;
    for await (const l of readLines(seg.path, start)) {
      if (!l.complete) break;
      const r = parse(l.text);
      if (!r || !accepts(r, req.filter)) continue;
      records.push(r);
      if (records.length === req.limit) return { records, next: encode({ o: "asc", i: seg.index, b: l.end }) };
    }
  }
  return { records, next: null };
}

async function descending(dir: string, req: PageRequest, below: { s: number } | undefined): Promise<Page> {
  const segs = await listSegments(dir);
  let found: LogRecord[] = [];
  // One more than a page: whether it exists says whether there is a next page.
  const want = req.limit + 1;
  for (let i = segs.length - 1; i >= 0 && found.length < want; i--) {
    const here: LogRecord[] = [];
    for await (const l of readLines((segs[i] as (typeof segs)[number]).path)) {
      if (!l.complete) break;
      const r = parse(l.text);
      if (!r || (below && !(r.seq < below.s)) || !accepts(r, req.filter)) continue;
      here.push(r);
      if (here.length > want) here.shift();
    }
    found = [...here, ...found].slice(-want);
  }
  found.reverse();
  const more = found.length > req.limit;
  const records = more ? found.slice(0, req.limit) : found;
  const last = records.at(-1);
  return { records, next: more && last ? encode({ o: "desc", s: last.seq }) : null };
}

export interface Tally {
  readonly allow: number;
  readonly deny: number;
}

export interface Summary {
  readonly total: Tally;
  /** Asset `null`: the gateway's own endpoints. Most denies first. */
  readonly byAsset: ReadonlyArray<Tally & { readonly asset: string | null }>;
  /** Subject `null`: no valid token (refused before anyone was known). */
  readonly bySubject: ReadonlyArray<Tally & { readonly subject: string | null }>;
}

/** Allows and denies of the decision records matching the filter, per asset and per subject. */
export async function summarize(dir: string, filter: Omit<LogFilter, "type">, top = 50): Promise<Summary> {
  const f: LogFilter = { ...filter, type: "decision" };
  const assets = new Map<string | null, { allow: number; deny: number }>();
  const subjects = new Map<string | null, { allow: number; deny: number }>();
  const total = { allow: 0, deny: 0 };
  const bump = <K>(m: Map<K, { allow: number; deny: number }>, k: K, allow: boolean) => {
    let t = m.get(k);
    if (!t) m.set(k, (t = { allow: 0, deny: 0 }));
    if (allow) t.allow++;
    else t.deny++;
  };
  for (const seg of await listSegments(dir)) {
    for await (const l of readLines(seg.path)) {
      if (!l.complete) break;
      const r = parse(l.text);
      if (!r || !accepts(r, f)) continue;
      const o = r as unknown as { decision?: string; asset?: string | null; subject?: { sub?: string } | null };
      const allow = o.decision === "allow";
      if (allow) total.allow++;
      else total.deny++;
      bump(assets, o.asset ?? null, allow);
      bump(subjects, o.subject?.sub ?? null, allow);
    }
  }
  const ranked = <K>(m: Map<K, Tally>) => [...m].sort(([, a], [, b]) => b.deny - a.deny || b.allow + b.deny - (a.allow + a.deny)).slice(0, top);
  return {
    total,
    byAsset: ranked(assets).map(([asset, t]) => ({ asset, ...t })),
    bySubject: ranked(subjects).map(([subject, t]) => ({ subject, ...t })),
  };
}
