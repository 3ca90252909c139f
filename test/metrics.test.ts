// The per-request tallies (src/metrics.ts) against prom-client's own Counter and Histogram as
// the oracle: the same observations, scraped from a registry each, give the same text; and
// Metrics as a whole exposes what it is told.
import t from "tap";
import { Counter, Histogram, Registry } from "prom-client";
import { Metrics, TallyCounter, TallyHistogram } from "../src/metrics.js";

const BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

t.test("TallyCounter and TallyHistogram scrape exactly as prom-client's Counter and Histogram", async (t) => {
  const ours = new Registry();
  const theirs = new Registry();
  const c = new TallyCounter("x_decisions_total", "decisions", ["asset", "action", "effect", "reason"]);
  const h = new TallyHistogram("x_device_seconds", "device time", ["protocol", "status"], BUCKETS);
  ours.registerMetric(c as never);
  ours.registerMetric(h as never);
  const pc = new Counter({ name: "x_decisions_total", help: "decisions", labelNames: ["asset", "action", "effect", "reason"], registers: [theirs] });
  const ph = new Histogram({ name: "x_device_seconds", help: "device time", labelNames: ["protocol", "status"], buckets: BUCKETS, registers: [theirs] });

  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const assets = ["boiler-plc", "packaging-line", "", "odd\"name\\with\nescapes"];
  const reasons = ["allowed", "no-matching-rule", "value-out-of-range"];
  for (let i = 0; i < 5000; i++) {
    const labels = [assets[i % assets.length] as string, i % 3 === 0 ? "write" : "read", i % 5 === 0 ? "deny" : "allow", reasons[i % reasons.length] as string] as const;
    c.inc(...labels);
    pc.inc({ asset: labels[0], action: labels[1], effect: labels[2], reason: labels[3] });
    // Values on and around every bucket bound, below the first and above the last.
    const v = i % 17 === 0 ? (BUCKETS[i % BUCKETS.length] as number) : i % 13 === 0 ? 10 : random() * random() * 0.2;
    const protocol = i % 2 === 0 ? "modbus" : "opcua";
    const status = i % 11 === 0 ? "timeout" : "ok";
    h.observe(v, protocol, status);
    ph.observe({ protocol, status }, v);
  }
  const text = await ours.metrics();
  t.equal(text, await theirs.metrics(), "the same exposition text");
  t.match(text, /x_device_seconds_bucket\{le="\+Inf",protocol="modbus",status="ok"\} \d+/);
  t.throws(() => h.observe(Number.NaN, "modbus", "ok"), /not a finite number/);
});

t.test("Metrics: decisions and operation latencies as told", async (t) => {
  const m = new Metrics();
  m.decision({ effect: "allow", reason: "allowed" }, { asset: "boiler-plc", action: "read" });
  m.decision({ effect: "allow", reason: "allowed" }, { asset: "boiler-plc", action: "read" });
  m.decision({ effect: "deny", reason: "token-expired" }, { asset: null, action: "read" });
  m.outcome("modbus", "ok", 0.03, 0.2);
  m.outcome("modbus", "ok", -1, 3000);
  const text = await m.text();
  t.match(text, /ztgate_decisions_total\{asset="boiler-plc",action="read",effect="allow",reason="allowed"\} 2\n/);
  t.match(text, /ztgate_decisions_total\{asset="",action="read",effect="deny",reason="token-expired"\} 1\n/);
  t.match(text, /ztgate_operation_gateway_seconds_bucket\{le="0\.00005",protocol="modbus"\} 2\n/, "a negative time counts as 0");
  t.match(text, /ztgate_operation_device_seconds_bucket\{le="0\.00025",protocol="modbus",status="ok"\} 1\n/);
  t.match(text, /ztgate_operation_device_seconds_bucket\{le="2\.5",protocol="modbus",status="ok"\} 1\n/);
  t.match(text, /ztgate_operation_device_seconds_bucket\{le="5",protocol="modbus",status="ok"\} 2\n/);
  t.match(text, /ztgate_operation_device_seconds_sum\{protocol="modbus",status="ok"\} 3\.0002\n/);
  t.match(text, /ztgate_operation_device_seconds_count\{protocol="modbus",status="ok"\} 2\n/);
});
