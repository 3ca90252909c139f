// Prometheus metrics (SPEC §7), served by the HTTP API at GET /metrics. One Registry of our
// own: nothing is put in prom-client's global default registry.
//
// Counters of events are moved by small methods the composition root wires to the parts'
// events (decisions, outcomes, policy reloads, device state changes); gauges and counters the
// parts already keep (open sessions, connections, decision log and syslog figures) are read
// from `sources` when scraped, so nothing on the hot path pays for them.
//
// The two per-request metrics (decisions, operation latencies) are tallies of our own
// (TallyCounter, TallyHistogram below): a request pays a string key, a map lookup and an add;
// prom-client's own inc/observe hash and validate the label object every call, which cost
// more than the policy decision. They give prom-client's registry the same metric objects
// prom-client's Counter and Histogram would (test/metrics.test.ts compares them).
import { Counter, Gauge, Registry } from "prom-client";
import type { LogStats } from "./audit/writer.js";
import type { SyslogStats } from "./audit/syslog.js";

/** What is read at scrape time; each is optional (a part that is not running has none). */
export interface MetricSources {
  /** Open sessions and leases. */
  readonly sessions?: () => Iterable<{ readonly protocol: string; readonly kind: string }>;
  /** Open client connections by protocol (`modbus`, `opcua`). */
  readonly connections?: () => Readonly<Record<string, number>>;
  /** Device connections and their state. */
  readonly devices?: () => Iterable<{ readonly protocol: string; readonly endpoint: string; readonly state: string }>;
  readonly log?: () => LogStats;
  readonly syslog?: () => SyslogStats;
  readonly policyRevision?: () => string;
}

const STATES = ["connecting", "connected", "down"] as const;
// From 50 µs (a decision and a loopback hop) to seconds (a device timing out).
const LATENCY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export class Metrics {
  readonly registry = new Registry();
  private sources: MetricSources = {};
  /** The log's durable seq when it was first scraped: records written since are this process's. */
  private logBase: number | null = null;

  private readonly decisions: TallyCounter;
  private readonly gatewaySeconds: TallyHistogram;
  private readonly deviceSeconds: TallyHistogram;
  private readonly reloads: Counter<"trigger">;
  private readonly rejections: Counter<"trigger">;
  private readonly stateChanges: Counter<"protocol" | "endpoint" | "state">;

  constructor() {
    const registers = [this.registry];
    const self = () => this.sources;
    this.decisions = new TallyCounter(
      "ztgate_decisions_total",
      "Decisions made, by asset, action, effect and reason (asset \"\" for the gateway's own endpoints)",
      ["asset", "action", "effect", "reason"],
    );
    this.gatewaySeconds = new TallyHistogram("ztgate_operation_gateway_seconds", "Time the gateway adds to a forwarded operation (decision, log hand-off, forwarding), by client protocol", ["protocol"], LATENCY_BUCKETS);
    this.deviceSeconds = new TallyHistogram("ztgate_operation_device_seconds", "Time the device took to answer a forwarded operation, by client protocol and outcome status", ["protocol", "status"], LATENCY_BUCKETS);
    for (const m of [this.decisions, this.gatewaySeconds, this.deviceSeconds]) this.registry.registerMetric(m as never);
    this.reloads = new Counter({ name: "ztgate_policy_reloads_total", help: "Policy reloads that changed the policy in force, by trigger", labelNames: ["trigger"], registers });
    this.rejections = new Counter({ name: "ztgate_policy_rejections_total", help: "Policy changes rejected (the previous policy stayed in force), by trigger", labelNames: ["trigger"], registers });
    this.stateChanges = new Counter({ name: "ztgate_device_state_changes_total", help: "Device connection state changes, by the state entered", labelNames: ["protocol", "endpoint", "state"], registers });

    new Gauge({
      name: "ztgate_policy_info",
      help: "The policy revision in force (value 1)",
      labelNames: ["revision"],
      registers,
      collect() {
        this.reset();
        const r = self().policyRevision?.();
        if (r !== undefined) this.set({ revision: r }, 1);
      },
    });
    new Gauge({
      name: "ztgate_sessions_open",
      help: "Open sessions and leases, by protocol and kind",
      labelNames: ["protocol", "kind"],
      registers,
      collect() {
        this.reset();
        const list = self().sessions?.();
        if (list) for (const s of list) this.inc({ protocol: s.protocol, kind: s.kind });
      },
    });
    new Gauge({
      name: "ztgate_connections_open",
      help: "Open client connections, by protocol",
      labelNames: ["protocol"],
      registers,
      collect() {
        this.reset();
        for (const [protocol, n] of Object.entries(self().connections?.() ?? {})) this.set({ protocol }, n);
      },
    });
    new Gauge({
      name: "ztgate_device_state",
      help: "Device connection state (1 for the current state of each device)",
      labelNames: ["protocol", "endpoint", "state"],
      registers,
      collect() {
        this.reset();
        for (const d of self().devices?.() ?? []) for (const s of STATES) this.set({ protocol: d.protocol, endpoint: d.endpoint, state: s }, d.state === s ? 1 : 0);
      },
    });

    const logStat = (pick: (s: LogStats) => number) => () => {
      const s = self().log?.();
      return s === undefined ? undefined : pick(s);
    };
    const written = logStat((s) => s.durableSeq);
    const fromStats = (name: string, help: string, read: () => number | undefined) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          const v = read();
          if (v !== undefined) this.inc(Math.max(0, v));
        },
      });
    fromStats("ztgate_log_records_written_total", "Decision log records on disk (fsynced) since the gateway started", () => {
      const seq = written();
      if (seq === undefined) return undefined;
      this.logBase ??= seq;
      return seq - this.logBase;
    });
    fromStats("ztgate_log_write_failures_total", "Failed writes or fsyncs of the decision log (each is retried)", logStat((s) => s.writeFailures));
    fromStats("ztgate_log_records_refused_total", "Records the decision log refused while it could not be written (those operations were denied)", logStat((s) => s.refused));
    new Gauge({
      name: "ztgate_log_writable",
      help: "1 while the decision log can be written, 0 while it cannot (operations are denied with audit-unavailable)",
      registers,
      collect() {
        this.reset();
        const s = self().log?.();
        if (s) this.set(s.healthy ? 1 : 0);
      },
    });

    const syslog = (pick: (s: SyslogStats) => number) => () => {
      const s = self().syslog?.();
      return s === undefined ? undefined : pick(s);
    };
    const gauge = (name: string, help: string, read: () => number | undefined) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.reset();
          const v = read();
          if (v !== undefined) this.set(v);
        },
      });
    gauge("ztgate_syslog_spool_frames", "Syslog messages waiting in the spool (the collector is behind or down)", syslog((s) => s.spooled));
    gauge("ztgate_syslog_spool_bytes", "Bytes of syslog messages waiting in the spool", syslog((s) => s.spoolBytes));
    gauge("ztgate_syslog_connected", "1 while connected to the syslog collector", syslog((s) => (s.connected ? 1 : 0)));
    fromStats("ztgate_syslog_dropped_total", "Syslog messages lost (spool full or unreadable); the local log keeps them", syslog((s) => s.dropped));
  }

  /** Adds or replaces scrape-time sources (parts are built one after another). */
  setSources(more: MetricSources): void {
    this.sources = { ...this.sources, ...more };
    if (more.log) this.logBase = more.log().durableSeq;
  }

  /** One decision: of the enforcement path (an asset) or of a gateway endpoint (asset null). */
  decision(d: { readonly effect: string; readonly reason: string }, op: { readonly asset: string | null; readonly action: string }): void {
    this.decisions.inc(op.asset ?? "", op.action, d.effect, d.reason);
  }

  /** One forwarded operation: time the gateway added and time the device took, in ms. */
  outcome(protocol: string, status: string, gatewayMs: number, deviceMs: number): void {
    this.gatewaySeconds.observe(Math.max(0, gatewayMs) / 1000, protocol);
    this.deviceSeconds.observe(Math.max(0, deviceMs) / 1000, protocol, status);
  }

  policyReloaded(trigger: string): void {
    this.reloads.inc({ trigger });
  }

  policyRejected(trigger: string): void {
    this.rejections.inc({ trigger });
  }

  deviceState(d: { readonly protocol: string; readonly endpoint: string; readonly state: string }): void {
    this.stateChanges.inc({ protocol: d.protocol, endpoint: d.endpoint, state: d.state });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** What prom-client's registry reads of a metric (what its own Counter and Histogram give). */
interface MetricObject {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "histogram";
  readonly values: ReadonlyArray<{ readonly labels: Record<string, string | number>; readonly value: number; readonly metricName?: string }>;
  readonly aggregator: "sum";
}

/**
 * A label set's key: its values joined by NUL, which none of them can hold (asset ids are
 * policy names, the rest come from fixed lists: actions, effects, reasons, protocols, outcome
 * statuses), so two label sets never share a key.
 */
function keyOf(values: readonly string[]): string {
  let k = values[0] ?? "";
  for (let i = 1; i < values.length; i++) k += "\u0000" + (values[i] as string);
  return k;
}

function labelsOf(names: readonly string[], values: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  names.forEach((n, i) => (labels[n] = values[i] as string));
  return labels;
}

/** A counter by label values, read by the registry as prom-client's Counter would give it. */
export class TallyCounter {
  readonly type = "counter" as const;
  readonly aggregator = "sum" as const;
  private readonly tallies = new Map<string, { readonly labels: Record<string, string>; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly string[],
  ) {}

  inc(...values: string[]): void {
    const key = keyOf(values);
    const t = this.tallies.get(key);
    if (t) t.value++;
    else this.tallies.set(key, { labels: labelsOf(this.labelNames, values), value: 1 });
  }

  get(): Promise<MetricObject> {
    const values = [...this.tallies.values()].map((t) => ({ labels: { ...t.labels }, value: t.value }));
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }
}

/** A histogram by label values, read by the registry as prom-client's Histogram would give it. */
export class TallyHistogram {
  readonly type = "histogram" as const;
  readonly aggregator = "sum" as const;
  private readonly tallies = new Map<string, { readonly labels: Record<string, string>; readonly buckets: Float64Array; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly string[],
    private readonly upperBounds: readonly number[],
  ) {}

  observe(value: number, ...values: string[]): void {
    if (!Number.isFinite(value)) throw new TypeError(`${this.name}: value ${value} is not a finite number`);
    const key = keyOf(values);
    let t = this.tallies.get(key);
    if (!t) this.tallies.set(key, (t = { labels: labelsOf(this.labelNames, values), buckets: new Float64Array(this.upperBounds.length), sum: 0, count: 0 }));
    const b = this.upperBounds;
    for (let i = 0; i < b.length; i++) {
      if (value <= (b[i] as number)) {
        (t.buckets[i] as number)++;
        break;
      }
    }
    t.sum += value;
    t.count++;
  }

  get(): Promise<MetricObject> {
    const values: Array<MetricObject["values"][number]> = [];
    for (const t of this.tallies.values()) {
      let cumulative = 0;
      this.upperBounds.forEach((le, i) => {
        cumulative += t.buckets[i] as number;
        values.push({ labels: { le, ...t.labels }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: "+Inf", ...t.labels }, value: t.count, metricName: `${this.name}_bucket` });
      values.push({ labels: { ...t.labels }, value: t.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...t.labels }, value: t.count, metricName: `${this.name}_count` });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }
}
