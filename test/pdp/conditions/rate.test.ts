import t from "tap";
import { parseRate, TokenBucketRates, type RateSpec } from "../../../src/pdp/conditions/rate.js";

const T0 = Date.parse("2026-01-16T12:00:00Z");
const perMin = (limit: number): RateSpec => ({ limit, windowMs: 60_000 });

/** Takes while allowed; returns how many passed. */
function drain(rates: TokenBucketRates, key: string, rate: RateSpec, nowMs: number, max = 1000): number {
  let n = 0;
  while (n < max && rates.peek(key, rate, nowMs)) {
    rates.take(key, rate, nowMs);
    n++;
  }
  return n;
}

t.test("parseRate", async (t) => {
  const good: [string, RateSpec][] = [
    ["30/min", { limit: 30, windowMs: 60_000 }],
    ["10/minute", { limit: 10, windowMs: 60_000 }],
    ["5/s", { limit: 5, windowMs: 1_000 }],
    ["5/sec", { limit: 5, windowMs: 1_000 }],
    ["5/second", { limit: 5, windowMs: 1_000 }],
    ["100/h", { limit: 100, windowMs: 3_600_000 }],
    ["1000/hour", { limit: 1000, windowMs: 3_600_000 }],
    ["500/day", { limit: 500, windowMs: 86_400_000 }],
    ["1/d", { limit: 1, windowMs: 86_400_000 }],
    [" 30 / MIN ", { limit: 30, windowMs: 60_000 }],
  ];
  for (const [text, rate] of good) t.same(parseRate(text), { rate }, text);

  const bad: [string, RegExp][] = [
    ["0/min", /^rate "0\/min": limit must be a whole number from 1/],
    ["1.5/min", /^rate "1\.5\/min": must be LIMIT\/UNIT like 30\/min/],
    ["-1/min", /^rate "-1\/min": must be LIMIT\/UNIT/],
    ["99999999999999999999/s", /^rate "99999999999999999999\/s": limit must be a whole number/],
    ["30/fortnight", /^rate "30\/fortnight": must be LIMIT\/UNIT like 30\/min, with UNIT one of s, sec/],
    ["30/m", /^rate "30\/m": must be LIMIT\/UNIT/],
    ["30", /^rate "30": must be LIMIT\/UNIT/],
    ["/min", /^rate "\/min": must be LIMIT\/UNIT/],
    ["", /^rate "": must be LIMIT\/UNIT/],
  ];
  for (const [text, pattern] of bad) {
    const r = parseRate(text);
    t.equal(r.rate, undefined, `${text}: no rate`);
    t.match(r.error, pattern, text);
  }
  t.match(parseRate(30 as unknown as string).error, /^rate 30: must be LIMIT\/UNIT/, "a YAML number is an error");
});

t.test("30/min: 30 at once, then one per 2 s, full again after a minute", async (t) => {
  const r = new TokenBucketRates();
  const rate = perMin(30);
  t.equal(drain(r, "k", rate, T0), 30, "a full bucket allows exactly 30 at one instant");
  t.equal(r.peek("k", rate, T0), false, "the 31st is refused");
  t.equal(r.peek("k", rate, T0 + 1_999), false, "still refused after 1.999 s");
  t.equal(drain(r, "k", rate, T0 + 2_000), 1, "one more after 2 s");
  t.equal(drain(r, "k", rate, T0 + 3_000), 0, "not two");
  t.equal(drain(r, "k", rate, T0 + 2_000 + 60_000), 30, "full refill a minute after the last take");
  t.equal(drain(r, "k", rate, T0 + 10 * 60_000), 30, "never more than capacity, however long the pause");
});

t.test("a burst is exact for every limit", async (t) => {
  // Guards against float drift: with epoch-instant arithmetic 15/s let only 13 through.
  const wrong: string[] = [];
  for (const windowMs of [1_000, 60_000, 3_600_000]) {
    for (let limit = 1; limit <= 300; limit++) {
      const rate = { limit, windowMs };
      const r = new TokenBucketRates();
      const first = drain(r, "k", rate, T0);
      const after = drain(r, "k", rate, T0 + windowMs);
      if (first !== limit || after !== limit) wrong.push(`${limit}/${windowMs}ms: ${first} then ${after}`);
    }
  }
  t.same(wrong, []);
});

t.test("peek does not consume", async (t) => {
  const r = new TokenBucketRates();
  const rate = perMin(2);
  for (let i = 0; i < 10; i++) t.equal(r.peek("k", rate, T0), true);
  r.take("k", rate, T0);
  for (let i = 0; i < 10; i++) t.equal(r.peek("k", rate, T0), true);
  r.take("k", rate, T0);
  t.equal(r.peek("k", rate, T0), false);
});

t.test("take on an empty bucket does not go into debt", async (t) => {
  const r = new TokenBucketRates();
  const rate = perMin(30);
  drain(r, "k", rate, T0);
  for (let i = 0; i < 100; i++) r.take("k", rate, T0);
  t.equal(r.peek("k", rate, T0 + 2_000), true, "refills as if the extra takes never happened");
});

t.test("keys are independent", async (t) => {
  const r = new TokenBucketRates();
  const rate = perMin(3);
  t.equal(drain(r, "alice|boiler-plc|mes-setpoint", rate, T0), 3);
  t.equal(r.peek("alice|boiler-plc|mes-setpoint", rate, T0), false);
  t.equal(r.peek("bob|boiler-plc|mes-setpoint", rate, T0), true, "other subject");
  t.equal(r.peek("alice|packaging-line|mes-setpoint", rate, T0), true, "other asset");
  t.equal(r.peek("alice|boiler-plc|other-rule", rate, T0), true, "other rule");
});

t.test("non-integer intervals do not drift", async (t) => {
  // 7/min: one token per 8571.43 ms; float error must not let the boundary slip either way.
  const r = new TokenBucketRates();
  const rate = perMin(7);
  t.equal(drain(r, "k", rate, T0), 7);
  t.equal(r.peek("k", rate, T0 + 8_571), false);
  t.equal(drain(r, "k", rate, T0 + 8_572), 1);
  let now = T0 + 8_572;
  for (let i = 0; i < 1000; i++) {
    now += 60_000 / 7;
    if (drain(r, "k", rate, Math.ceil(now)) !== 1) {
      t.fail(`step ${i}: expected exactly one token`);
      return;
    }
  }
  t.pass("exactly one token per interval over 1000 intervals");
});

t.test("bad rate specs fail closed", async (t) => {
  const r = new TokenBucketRates();
  t.equal(r.peek("k", { limit: 0, windowMs: 60_000 }, T0), false);
  t.equal(r.peek("k", { limit: 5, windowMs: 0 }, T0), false);
  t.equal(r.peek("k", { limit: NaN, windowMs: 1 }, T0), false);
});

t.test("the number of keys is bounded and eviction keeps active buckets", async (t) => {
  const r = new TokenBucketRates(100);
  const rate = perMin(1);
  r.take("busy", rate, T0);
  for (let i = 0; i < 50; i++) r.take(`idle-${i}`, rate, T0 - 120_000);
  for (let i = 0; i < 500; i++) {
    r.take(`new-${i}`, rate, T0);
    if (r.size > 100) {
      t.fail(`size ${r.size} over the bound`);
      return;
    }
  }
  t.ok(r.size <= 100, `size ${r.size}`);

  const r2 = new TokenBucketRates(10);
  for (let i = 0; i < 10; i++) r2.take(`full-later-${i}`, rate, T0 - 120_000);
  r2.take("busy", rate, T0);
  t.equal(r2.size, 1, "full buckets are dropped first, the busy one stays");
  t.equal(r2.peek("busy", rate, T0), false, "and is still empty");
});
