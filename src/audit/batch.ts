// A group-commit batch: the records chained since the last write, as the UTF-8 bytes that
// will be written (encoded as each record is chained, so committing is one write of a
// ready buffer), and the one promise all of their `durable`s are.
import type { SyslogRecord } from "./syslog.js";

export interface Batch {
  /** The batch's lines, UTF-8, encoded as they are chained: no join and re-encode at commit. */
  buf: Buffer;
  len: number;
  count: number;
  lastSeq: number;
  lastHash: string;
  /** With an export sink attached: each record's summary and line, handed on once durable. */
  exports: Array<[ExportedRecord, string]> | null;
  readonly done: Promise<void>;
  resolve(): void;
  reject(e: Error): void;
}

/** What an export (syslog) needs of a written record besides its line. */
export type ExportedRecord = SyslogRecord;

export function newBatch(): Batch {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const done = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Group-mode callers never await `durable`; a rejection nobody listens to must not crash.
  done.catch(() => undefined);
  return { buf: EMPTY, len: 0, count: 0, lastSeq: 0, lastHash: "", exports: null, done, resolve, reject };
}

const EMPTY = Buffer.alloc(0);

/** Appends `text` to the batch's buffer, growing it by doubling. */
export function put(b: Batch, text: string): void {
  const need = b.len + Buffer.byteLength(text);
  if (need > b.buf.length) {
    const grown = Buffer.allocUnsafe(Math.max(need, b.buf.length * 2, 1 << 20));
    b.buf.copy(grown, 0, 0, b.len);
    b.buf = grown;
  }
  b.len += b.buf.write(text, b.len);
}
