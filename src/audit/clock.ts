// The log's default clock.

/** Epoch ms from a monotonic clock, re-anchored to the wall clock once a second. */
export function systemClock(): () => number {
  let offset = Date.now() - performance.now();
  let anchoredAt = performance.now();
  let last = 0;
  return () => {
    const p = performance.now();
    if (p - anchoredAt > 1000) {
      offset = Date.now() - p;
      anchoredAt = p;
    }
    last = Math.max(last, offset + p);
    return last;
  };
}
