// The policy in force. A reload builds a whole new PolicySet and swaps one reference; a
// change that does not validate is rejected whole and the previous set stays. There is never
// a moment with no policy or a half-loaded one: readers call current() once per request.
import { EventEmitter } from "node:events";
import { watch } from "node:fs";
import type { FSWatcher } from "node:fs";
import type { PolicySet } from "../pdp/policy-set.js";
import { ZtError } from "../errors.js";
import { formatDiagnostic, sortDiagnostics } from "../util/yaml-source.js";
import type { Diagnostic } from "../util/yaml-source.js";
import { displayPath, loadPolicyDir } from "./load.js";

export type ReloadTrigger = "start" | "watch" | "sighup" | "api" | "manual";

export interface ReloadResult {
  readonly ok: boolean;
  /** The revision in force after the attempt. */
  readonly revision: string;
  readonly previousRevision: string;
  readonly changed: boolean;
  readonly trigger: ReloadTrigger;
  readonly errors: readonly string[];
}

export interface Rejection {
  readonly at: string;
  readonly trigger: ReloadTrigger;
  readonly errors: readonly string[];
}

export interface PolicyInfo {
  readonly revision: string;
  readonly dir: string;
  readonly loadedAt: string;
  readonly files: PolicySet["files"];
  readonly lastRejected: Rejection | null;
}

export interface StoreOptions {
  readonly watch?: boolean;
  readonly debounceMs?: number;
  /** Clock for `loadedAt`/`at` stamps (tests pass their own). */
  readonly now?: () => Date;
}

export class PolicyStore extends EventEmitter<{ reloaded: [ReloadResult]; rejected: [ReloadResult] }> {
  private set: PolicySet;
  private loadedAt: Date;
  private lastRejected: Rejection | null = null;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly now: () => Date;

  private constructor(readonly dir: string, set: PolicySet, private readonly opts: StoreOptions) {
    super();
    this.set = set;
    this.now = opts.now ?? (() => new Date());
    this.loadedAt = this.now();
  }

  /** Loads the directory; throws ZtError (ZT_POLICY_INVALID) with every error if it does not validate. */
  static async open(dir: string, opts: StoreOptions = {}): Promise<PolicyStore> {
    const r = await loadPolicyDir(dir);
    if (!r.set) throw invalid(dir, r.diagnostics);
    const store = new PolicyStore(dir, r.set, opts);
    if (opts.watch) store.startWatching();
    return store;
  }

  current(): PolicySet {
    return this.set;
  }

  info(): PolicyInfo {
    return { revision: this.set.revision, dir: this.dir, loadedAt: this.loadedAt.toISOString(), files: this.set.files, lastRejected: this.lastRejected };
  }

  /** Re-reads the directory; reloads are serialized so two never interleave. */
  reload(trigger: ReloadTrigger): Promise<ReloadResult> {
    const next = this.chain.then(() => this.doReload(trigger));
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async doReload(trigger: ReloadTrigger): Promise<ReloadResult> {
    const previousRevision = this.set.revision;
    // Whatever goes wrong in loading is a rejection, logged and shown like any other.
    const r = await loadPolicyDir(this.dir).catch((e: unknown) => ({ set: undefined, diagnostics: [{ file: this.dir, line: 0, col: 0, message: `could not be loaded: ${(e as Error).message}` }] }));
    if (!r.set) {
      const errors = sortDiagnostics(r.diagnostics).map(formatDiagnostic);
      this.lastRejected = { at: this.now().toISOString(), trigger, errors };
      const result = { ok: false, revision: previousRevision, previousRevision, changed: false, trigger, errors };
      this.emit("rejected", result);
      return result;
    }
    const changed = r.set.revision !== previousRevision;
    if (changed) {
      this.set = r.set;
      this.loadedAt = this.now();
    }
    const result = { ok: true, revision: this.set.revision, previousRevision, changed, trigger, errors: [] };
    if (changed) this.emit("reloaded", result);
    return result;
  }

  private startWatching(): void {
    // Editors save by rename; watching the directory sees both in-place writes and swaps.
    this.watcher = watch(this.dir, { persistent: false }, (_event, name) => {
      if (name !== null && !/\.ya?ml$/.test(String(name))) return;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.reload("watch"), this.opts.debounceMs ?? 200);
    });
    this.watcher.on("error", () => this.watcher?.close());
  }

  close(): void {
    clearTimeout(this.timer);
    this.watcher?.close();
    this.watcher = undefined;
  }
}

function invalid(dir: string, diagnostics: Diagnostic[]): ZtError {
  const n = diagnostics.length;
  return new ZtError("ZT_POLICY_INVALID", `${displayPath(dir)}: ${n} policy error${n === 1 ? "" : "s"}`, sortDiagnostics(diagnostics));
}

export { invalid as policyInvalidError };
