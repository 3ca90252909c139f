// `rate:` limits per subject, per asset, per rule (SPEC §4.3). Pure: time comes from the arguments.

export interface RateSpec {
  limit: number;
  windowMs: number;
}

const UNITS: Readonly<Record<string, number>> = {
  s: 1_000,
  sec: 1_000,
  second: 1_000,
  min: 60_000,
  minute: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
};

const RATE_RE = /^(\d+)\s*\/\s*([a-z]+)$/i;

/** `30/min`, `5/s`, `100/h`, `1000/hour`, `10/minute`, `500/day`. */
export function parseRate(text: string): { rate?: RateSpec; error?: string } {
  const named = `rate ${JSON.stringify(text)}`;
  const m = typeof text === "string" ? RATE_RE.exec(text.trim()) : null;
  const windowMs = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || windowMs === undefined) {
    return { error: `${named}: must be LIMIT/UNIT like 30/min, with UNIT one of ${Object.keys(UNITS).join(", ")}` };
  }
  const limit = Number(m[1]);
  if (limit < 1 || !Number.isSafeInteger(limit)) return { error: `${named}: limit must be a whole number from 1 to ${Number.MAX_SAFE_INTEGER}` };
  return { rate: { limit, windowMs } };
}

export interface RateState {
  /** Whether one request could pass now; consumes nothing (a denied request must not use up the rate). */
  peek(key: string, rate: RateSpec, nowMs: number): boolean;
  /** Consumes one token; on an empty bucket it does nothing, so a bucket never goes into debt. */
  take(key: string, rate: RateSpec, nowMs: number): void;
}

// Float arithmetic on epoch-sized numbers is off by ~0.2 µs; never let that flip a decision.
const EPSILON_MS = 0.001;

/**
 * A token bucket of capacity `limit` refilled by `limit` tokens per `windowMs`, stored as one
 * number per key (the GCRA form): the instant at which the bucket will be full again. Tokens
 * now = (windowMs - (fullAt - now)) / interval with interval = windowMs / limit, so a bucket
 * whose fullAt has passed is full and is the same as a key never seen, which is what lets
 * eviction forget it safely. Callers build the key from subject, asset and rule.
 */
export class TokenBucketRates implements RateState {
  private readonly fullAt = new Map<string, number>();
  private readonly maxKeys: number;

  constructor(maxKeys = 100_000) {
    this.maxKeys = maxKeys;
  }

  peek(key: string, rate: RateSpec, nowMs: number): boolean {
    if (!(rate.limit >= 1 && rate.windowMs > 0)) return false;
    const fullAt = this.fullAt.get(key);
    if (fullAt === undefined) return true;
    const interval = rate.windowMs / rate.limit;
    return fullAt - nowMs <= rate.windowMs - interval + EPSILON_MS;
  }

  take(key: string, rate: RateSpec, nowMs: number): void {
    if (!this.peek(key, rate, nowMs)) return;
    const interval = rate.windowMs / rate.limit;
    const next = Math.max(this.fullAt.get(key) ?? nowMs, nowMs) + interval;
    // Re-inserting keeps the Map in least-recently-taken order for eviction.
    this.fullAt.delete(key);
    this.fullAt.set(key, next);
    if (this.fullAt.size > this.maxKeys) this.evict(nowMs);
  }

  /** Number of keys held; for tests and metrics. */
  get size(): number {
    return this.fullAt.size;
  }

  /**
   * Drops full buckets first (harmless), then the least recently taken until 10 % below the
   * bound, so that the O(n) sweep runs at most once per maxKeys/10 new keys.
   */
  private evict(nowMs: number): void {
    for (const [key, fullAt] of this.fullAt) if (fullAt <= nowMs) this.fullAt.delete(key);
    const target = Math.floor(this.maxKeys * 0.9);
    for (const key of this.fullAt.keys()) {
      if (this.fullAt.size <= target) break;
      this.fullAt.delete(key);
    }
  }
}
