// Every record of the decision log, handed on once it is on disk, to any number of listeners:
// the syslog export and the live streams of the HTTP API (GET /v1/decisions/stream).
//
// The log has one export hook (DecisionLog.exportTo); the feed owns it and fans out. The hook
// is attached only while someone listens, so a gateway with no export and no open stream
// pays nothing per record.
import type { ExportedRecord } from "./batch.js";

export type RecordListener = (record: ExportedRecord, line: string) => void;

/** The one feature of DecisionLog the feed uses. */
export interface ExportHook {
  exportTo(sink: RecordListener | null): void;
}

export class RecordFeed {
  private readonly listeners = new Set<RecordListener>();
  /** Listener errors are reported here; one listener's failure never stops the others. */
  constructor(
    private readonly log: ExportHook,
    private readonly onError: (e: unknown) => void = () => undefined,
  ) {}

  /** Adds a listener; returns its removal. */
  subscribe(listener: RecordListener): () => void {
    this.listeners.add(listener);
    if (this.listeners.size === 1) this.log.exportTo((r, line) => this.publish(r, line));
    return () => {
      if (!this.listeners.delete(listener)) return;
      if (this.listeners.size === 0) this.log.exportTo(null);
    };
  }

  get size(): number {
    return this.listeners.size;
  }

  private publish(r: ExportedRecord, line: string): void {
    for (const l of this.listeners) {
      try {
        l(r, line);
      } catch (e) {
        this.onError(e);
      }
    }
  }
}
