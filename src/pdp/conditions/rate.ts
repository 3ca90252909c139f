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

// Refills are fractions of a token; rounding must not turn an exact 1 into 0.999…
const EPSILON_TOKENS = 1e-9;

interface Bucket {
  tokens: number;
  lastMs: number;
  /** When the bucket will be full again; only used to find buckets that eviction may forget. */
  fullAtMs: number;
}

/**
 * A token bucket per key: capacity `limit`, refilled continuously by `limit` tokens per
 * `windowMs`. Tokens are counted as small numbers (not as epoch instants, the GCRA form),
 * because repeated additions at epoch magnitude drift by ~0.1 µs each and a 15/s burst then
 * lets through 13. A full bucket is the same as a key never seen, which is what lets eviction
 * forget it. Callers build the key from subject, asset and rule.
 */
export class TokenBucketRates implements RateState {
  private readonly buckets = new Map<string, Bucket>();
  private readonly maxKeys: number;

  constructor(maxKeys = 100_000) {
    this.maxKeys = maxKeys;
  }

  peek(key: string, rate: RateSpec, nowMs: number): boolean {
    if (!(rate.limit >= 1 && rate.windowMs > 0)) return false;
    return this.tokens(key, rate, nowMs) >= 1 - EPSILON_TOKENS;
  }

  take(key: string, rate: RateSpec, nowMs: number): void {
    if (!this.peek(key, rate, nowMs)) return;
    const tokens = Math.max(0, this.tokens(key, rate, nowMs) - 1);
    const lastMs = Math.max(nowMs, this.buckets.get(key)?.lastMs ?? nowMs);
    const fullAtMs = lastMs + ((rate.limit - tokens) * rate.windowMs) / rate.limit;
    // Re-inserting keeps the Map in least-recently-taken order for eviction.
    this.buckets.delete(key);
    this.buckets.set(key, { tokens, lastMs, fullAtMs });
    if (this.buckets.size > this.maxKeys) this.evict(nowMs);
  }

  /** Number of keys held; for tests and metrics. */
  get size(): number {
    return this.buckets.size;
  }

  private tokens(key: string, rate: RateSpec, nowMs: number): number {
    const b = this.buckets.get(key);
    if (b === undefined) return rate.limit;
    // A clock that steps back refills nothing rather than taking tokens away.
    const elapsed = Math.max(0, nowMs - b.lastMs);
    return Math.min(rate.limit, b.tokens + (elapsed * rate.limit) / rate.windowMs);
  }

  /**
   * Drops full buckets first (harmless), then the least recently taken until 10 % below the
   * bound, so that the O(n) sweep runs at most once per maxKeys/10 new keys.
   */
  private evict(nowMs: number): void {
    for (const [key, b] of this.buckets) if (b.fullAtMs <= nowMs) this.buckets.delete(key);
    const target = Math.floor(this.maxKeys * 0.9);
    for (const key of this.buckets.keys()) {
      if (this.buckets.size <= target) break;
      this.buckets.delete(key);
    }
  }
}
