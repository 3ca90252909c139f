// Reading the log back: filtered queries (`ztgate log query`, GET /v1/decisions), the last N
// records and following new ones across rotation (`ztgate log tail [-f]`, the live stream).
import { stat } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import type { LogRecord, RecordType } from "./record.js";
import { isoMicros } from "./record.js";
import { listSegments, readLines } from "./segments.js";

export interface QueryFilter {
  /** Inclusive lower and exclusive upper bound on `time`, as `YYYY-MM-DDTHH:MM:SS.ffffffZ`. */
  readonly since?: string;
  readonly until?: string;
  readonly type?: RecordType;
  readonly decision?: "allow" | "deny";
  readonly asset?: string;
  /** Matches `subject.sub`. */
  readonly subject?: string;
  readonly action?: string;
  readonly rule?: string;
  readonly reason?: string;
  readonly limit?: number;
}

/** One record as read: the line exactly as stored, and its parse (null if it is not JSON). */
export interface Found {
  readonly file: string;
  readonly line: string;
  readonly record: LogRecord | null;
}

function parse(line: string): LogRecord | null {
  try {
    const r: unknown = JSON.parse(line);
    return typeof r === "object" && r !== null ? (r as LogRecord) : null;
  } catch {
    return null;
  }
}

/**
 * `--since`/`--until` values: an ISO 8601 time (any offset; a date alone is midnight UTC) or a
 * duration back from `now`: `90s`, `15m`, `2h`, `7d`. Returns the log's own time format, so
 * bounds compare as strings; null when the text is neither.
 */
export function parseTimeBound(text: string, nowMs: number): string | null {
  const rel = /^(\d+)(s|m|h|d)$/.exec(text);
  if (rel) return timeOf(nowMs - Number(rel[1]) * { s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[rel[2] as "s"]);
  const date = /^(\d{4})-(\d\d)-(\d\d)/.exec(text);
  if (!date) return null;
  // A day the calendar does not have (2026-02-30) is an error, not the 2nd of March.
  const [y, m, d] = [Number(date[1]), Number(date[2]), Number(date[3])];
  if (m < 1 || m > 12 || d < 1 || d > new Date(Date.UTC(y, m, 0)).getUTCDate()) return null;
  if (/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/.test(text)) return Number.isFinite(Date.parse(text)) ? text : null;
  return timeOf(Date.parse(text));
}

/** The log's time format of an epoch ms; null past the range a Date holds (±8.64e15 ms). */
function timeOf(ms: number): string | null {
  return Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? isoMicros(ms) : null;
}

/** Whether a record passes every filter given (a filter on a field the record lacks fails). */
export function matches(r: LogRecord, f: QueryFilter): boolean {
  const o = r as unknown as Record<string, unknown>;
  if (f.since !== undefined && !(r.time >= f.since)) return false;
  if (f.until !== undefined && !(r.time < f.until)) return false;
  if (f.type !== undefined && r.type !== f.type) return false;
  if (f.decision !== undefined && o["decision"] !== f.decision) return false;
  if (f.asset !== undefined && o["asset"] !== f.asset) return false;
  if (f.action !== undefined && o["action"] !== f.action) return false;
  if (f.rule !== undefined && o["rule"] !== f.rule) return false;
  if (f.reason !== undefined && o["reason"] !== f.reason) return false;
  if (f.subject !== undefined && (o["subject"] as { sub?: unknown } | null | undefined)?.sub !== f.subject) return false;
  return true;
}

/** Every record of the log in order (whole lines only: a line being written is skipped). */
export async function* readLog(dir: string): AsyncGenerator<Found> {
  for (const seg of await listSegments(dir)) {
    for await (const l of readLines(seg.path)) if (l.complete) yield { file: seg.path, line: l.text, record: parse(l.text) };
  }
}

/** The records matching `filter`, oldest first, at most `filter.limit` of them. */
export async function* queryLog(dir: string, filter: QueryFilter): AsyncGenerator<Found> {
  let n = 0;
  if (filter.limit === 0) return;
  for await (const f of readLog(dir)) {
    if (!f.record || !matches(f.record, filter)) continue;
    yield f;
    if (++n === filter.limit) return;
  }
}

/** Where a follower is: a segment and the byte offset after the last whole line it read. */
export interface Position {
  readonly index: number;
  readonly offset: number;
}

/** The last `n` records and the position right after them (where following starts). */
export async function lastRecords(dir: string, n: number): Promise<{ records: Found[]; position: Position }> {
  const segs = await listSegments(dir);
  const last = segs.at(-1);
  if (!last) return { records: [], position: { index: 1, offset: 0 } };
  let position: Position = { index: last.index, offset: 0 };
  let records: Found[] = [];
  // Newest segment first; an earlier one is read only when the later ones hold fewer than n.
  for (let i = segs.length - 1; i >= 0 && records.length < n; i--) {
    const seg = segs[i] as (typeof segs)[number];
    const here: Found[] = [];
    for await (const l of readLines(seg.path)) {
      if (!l.complete) break;
      here.push({ file: seg.path, line: l.text, record: parse(l.text) });
      if (here.length > n) here.shift();
      if (seg === last) position = { index: seg.index, offset: l.end };
    }
    records = [...here, ...records].slice(-n);
  }
  return { records: n > 0 ? records : [], position };
}

/**
 * Follows the log from `from` until `signal` aborts: every whole record as it is written,
 * across rotation (a later segment exists only once the writer is done with the earlier one,
 * so the earlier one is read to its end first), and across a restart that cut a torn tail.
 */
export async function* followLog(dir: string, from: Position, signal: AbortSignal, pollMs = 200): AsyncGenerator<Found> {
  let pos = from;
  while (!signal.aborted) {
    const segs = await listSegments(dir);
    const cur = segs.find((s) => s.index === pos.index);
    const next = segs.find((s) => s.index > pos.index);
    let progressed = false;
    if (cur) {
      const size = await stat(cur.path).then((s) => s.size, () => 0);
      if (size < pos.offset) pos = { index: pos.index, offset: size };
      for await (const l of readLines(cur.path, pos.offset)) {
        if (!l.complete) break;
        yield { file: cur.path, line: l.text, record: parse(l.text) };
        pos = { index: pos.index, offset: l.end };
        progressed = true;
        if (signal.aborted) return;
      }
    }
    if (next) pos = { index: next.index, offset: 0 };
    else if (!progressed) await sleep(pollMs, undefined, { signal }).catch(() => undefined);
  }
}
