// Where the chain resumes when the log is opened, and what to do with a torn tail.
//
// A crash (SIGKILL, power loss) can leave the last segment ending in part of a line: a write
// that was cut short, or a tail of zero bytes the filesystem had allocated but not filled.
// No acknowledged record can be in that part (a record is acknowledged only after the fsync
// that covers its whole line). The partial bytes are kept as evidence in
// `NNNNNNNN.jsonl.<time>.torn`, fsynced, and only then cut from the segment, so the chain
// resumes from the last whole record and nothing is ever silently deleted.
//
// The last segment is read forward, not back from its end: a power cut during a batch that was
// written but not yet synced can leave a hole (zeros, or a line cut short) in the middle of the
// batch with later lines of it intact on disk. Everything from the first line that is not a
// whole record is the torn tail, moved aside, even when whole lines follow it. A whole line
// that does not continue the chain (a record removed or changed while the gateway was down) is
// no crash damage: it stays where it is, for `log verify` to report.
import { open, readFile, rename, stat } from "node:fs/promises";
import path from "node:path";
import type { KeyObject } from "node:crypto";
import { ZtError } from "../errors.js";
import { openHead, readHeadFile } from "./checkpoint.js";
import type { SegmentFile } from "./segments.js";
import { HEAD_FILE, syncDir } from "./segments.js";

/** The fields of the last whole record that the writer needs to go on. */
export interface TailRecord {
  readonly seq: number;
  readonly hash: string;
  readonly type: string;
  readonly jws: string | null;
}

export interface Recovered {
  /** The last whole record of the log, or null for an empty log. */
  readonly last: TailRecord | null;
  /** Size of the last segment after recovery (it is where writing goes on). */
  readonly size: number;
  /** Epoch ms of the last segment's first record, or null when it is empty. */
  readonly startedAt: number | null;
  /** The torn tail moved aside, if there was one. */
  readonly torn: { readonly file: string; readonly bytes: number } | null;
}

/** The record on one line, if the line is a whole record (parses and has a seq and a hash). */
function wholeRecord(text: string): TailRecord | null {
  let r: unknown;
  try {
    r = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof r !== "object" || r === null) return null;
  const o = r as Record<string, unknown>;
  if (!Number.isSafeInteger(o["seq"]) || typeof o["hash"] !== "string" || !/^[0-9a-f]{64}$/.test(o["hash"])) return null;
  return { seq: o["seq"] as number, hash: o["hash"], type: String(o["type"]), jws: typeof o["jws"] === "string" ? o["jws"] : null };
}

interface Scan {
  last: TailRecord | null;
  /** Bytes up to and including the last whole record's "\n". */
  goodEnd: number;
}

/** The last whole record of a segment's bytes before the first line that is not one. */
function scanForward(buf: Buffer): Scan {
  let last: TailRecord | null = null;
  let goodEnd = 0;
  for (let start = 0; start < buf.length; ) {
    const end = buf.indexOf(10, start);
    if (end === -1) break; // a last line with no newline: never acknowledged
    const rec = wholeRecord(buf.toString("utf8", start, end));
    if (!rec) break;
    last = rec;
    goodEnd = end + 1;
    start = end + 1;
  }
  return { last, goodEnd };
}

function startedAt(buf: Buffer, goodEnd: number): number | null {
  if (goodEnd === 0) return null;
  const nl = buf.indexOf(10);
  try {
    const t = Date.parse((JSON.parse(buf.toString("utf8", 0, nl)) as { time?: string }).time ?? "");
    return Number.isFinite(t) ? t : null;
  } catch {
    return null;
  }
}

/** Copies bytes [from, end) of `seg` to a .torn file (fsynced), then cuts them from `seg`. */
async function moveAside(seg: SegmentFile, buf: Buffer, from: number, stamp: string): Promise<string> {
  const tmp = `${seg.path}.${stamp}.torn.tmp`;
  const file = `${seg.path}.${stamp}.torn`;
  const out = await open(tmp, "wx", 0o640);
  try {
    await out.write(buf, from, buf.length - from, 0);
    await out.sync();
  } finally {
    await out.close();
  }
  await rename(tmp, file);
  await syncDir(path.dirname(seg.path));
  const fh = await open(seg.path, "r+");
  try {
    await fh.truncate(from);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return file;
}

/**
 * Finds the last whole record of the log, moving a torn tail of the last non-empty segment
 * aside. `stamp` names the .torn file (a time, so repeated crashes never collide).
 */
export async function recoverTail(segments: readonly SegmentFile[], stamp: string): Promise<Recovered> {
  let torn: Recovered["torn"] = null;
  let size = 0;
  let started: number | null = null;
  for (let i = segments.length - 1; i >= 0; i--) {
    const seg = segments[i] as SegmentFile;
    let buf: Buffer;
    try {
      // A device or a fifo named like a segment would be read forever (/dev/zero) or block.
      if (!(await stat(seg.path)).isFile()) throw new Error("not a regular file");
      buf = await readFile(seg.path);
    } catch (err) {
      throw new ZtError("ZT_LOG_UNREADABLE", `${seg.path}: ${(err as Error).message}`);
    }
    const scan = scanForward(buf);
    const isLast = i === segments.length - 1;
    // Only the tail of the log can be torn: the first non-empty segment from the end.
    if (torn === null && buf.length > scan.goodEnd && (isLast || size === 0)) {
      const file = await moveAside(seg, buf, scan.goodEnd, stamp);
      torn = { file, bytes: buf.length - scan.goodEnd };
    }
    if (isLast) {
      size = scan.goodEnd;
      started = startedAt(buf, scan.goodEnd);
    }
    if (scan.last) return { last: scan.last, size, startedAt: started, torn };
  }
  return { last: null, size, startedAt: started, torn };
}

/**
 * Refuses to go on from a log that is shorter than its signed head, or whose head does not
 * verify: writing on top (and signing a new head) would erase the evidence that records were
 * removed. An admin moves the directory (or head.jws) aside after looking at it.
 */
export async function checkSignedHead(dir: string, publicKey: KeyObject, last: TailRecord | null): Promise<void> {
  const jws = await readHeadFile(dir);
  if (jws === null) return;
  const head = await openHead(jws, publicKey);
  const where = path.join(dir, HEAD_FILE);
  if ("error" in head) throw new ZtError("ZT_LOG_TAMPERED", `${where}: ${head.error}; if the signing key was replaced on purpose, move the log directory aside`);
  if (!last || last.seq < head.seq || (last.seq === head.seq && last.hash !== head.hash)) {
    throw new ZtError("ZT_LOG_TAMPERED", `${where} signs seq ${head.seq} but the log ${last ? `ends at seq ${last.seq}` : "is empty"}${last?.seq === head.seq ? " with another hash" : ""}: records were removed or replaced; run ztgate log verify and move the directory aside`);
  }
}
