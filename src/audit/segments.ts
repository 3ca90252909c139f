// The decision log on disk: segment files `NNNNNNNN.jsonl` in one directory, numbered from
// 00000001 in the order they were written, one record per line, each line ending in "\n".
// Shared by the writer, verify, query and tail.
import { isUtf8 } from "node:buffer";
import { createReadStream } from "node:fs";
import { open, readdir, stat } from "node:fs/promises";
import path from "node:path";
import { ZtError } from "../errors.js";

export const HEAD_FILE = "head.jws";
const SEGMENT = /^(\d{8,})\.jsonl$/;

export interface SegmentFile {
  readonly index: number;
  readonly name: string;
  readonly path: string;
}

export function segmentName(index: number): string {
  return `${String(index).padStart(8, "0")}.jsonl`;
}

function unreadable(what: string, err: unknown): ZtError {
  return new ZtError("ZT_LOG_UNREADABLE", `${what}: ${(err as Error).message}`);
}

/** The segments of `dir` in write order; a missing directory is an empty log. */
export async function listSegments(dir: string): Promise<SegmentFile[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw unreadable(`decision log directory ${dir}`, err);
  }
  const out: SegmentFile[] = [];
  for (const name of names) {
    const m = SEGMENT.exec(name);
    if (m) out.push({ index: Number(m[1]), name, path: path.join(dir, name) });
  }
  return out.sort((a, b) => a.index - b.index);
}

/** Files a recovery moved aside (`*.torn`), so verify can say they exist. */
export async function listTorn(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.filter((n) => n.endsWith(".torn")).sort();
}

export interface Line {
  readonly text: string;
  /** 1-based line number in its file. */
  readonly lineNo: number;
  /** Byte offset just after this line's "\n" (or after its last byte when incomplete). */
  readonly end: number;
  /** False for a last line with no "\n": being written right now, or torn by a crash. */
  readonly complete: boolean;
  /** False when the line's bytes are not valid UTF-8 (`text` then has U+FFFD where they were): the writer never writes such a line. */
  readonly utf8: boolean;
}

/** The longest line taken as a record (records are a few KB; a policy record listing many errors more): past it, a file is no decision log segment. */
export const MAX_LINE_BYTES = 16 << 20;

/**
 * The lines of a file from byte `start`, streamed. Splitting raw bytes at 0x0a is safe for
 * UTF-8 (the byte never occurs inside a multi-byte character).
 */
export async function* readLines(file: string, start = 0): AsyncGenerator<Line> {
  // A device, fifo or directory named like a segment would be read forever or block.
  const st = await stat(file).catch((err: unknown) => {
    throw unreadable(file, err);
  });
  if (!st.isFile()) throw unreadable(file, new Error("not a regular file"));
  const stream = createReadStream(file, { start, highWaterMark: 1 << 20 });
  let carry: Buffer | null = null;
  let pos = start;
  let lineNo = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      let buf: Buffer = carry ? Buffer.concat([carry, chunk]) : chunk;
      const base = pos - (carry ? carry.length : 0);
      pos += chunk.length;
      let from = 0;
      for (let nl = buf.indexOf(10, from); nl !== -1; nl = buf.indexOf(10, from)) {
        if (nl - from > MAX_LINE_BYTES) throw new Error(`line ${lineNo + 1} is longer than ${MAX_LINE_BYTES} bytes: not a decision record`);
        yield { text: buf.toString("utf8", from, nl), lineNo: ++lineNo, end: base + nl + 1, complete: true, utf8: isUtf8(buf.subarray(from, nl)) };
        from = nl + 1;
      }
      buf = buf.subarray(from);
      carry = buf.length > 0 ? buf : null;
      if (carry && carry.length > MAX_LINE_BYTES) throw new Error(`line ${lineNo + 1} is longer than ${MAX_LINE_BYTES} bytes: not a decision record`);
    }
  } catch (err) {
    throw unreadable(file, err);
  }
  if (carry) yield { text: carry.toString("utf8"), lineNo: ++lineNo, end: pos, complete: false, utf8: isUtf8(carry) };
}

/** fsync a directory, so that a file created, renamed or truncated in it survives a crash. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
