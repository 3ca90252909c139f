// The scan timer both simulators run on: every `scanMs` the process moves by that much time
// and `scan` is emitted (tests wait on it). 0 = no timer (tests call `step()` themselves).
// Unref'd, so a simulator never keeps a process alive on its own.

export interface Scanned {
  step(seconds: number): void;
  emit(event: "scan"): boolean;
}

/** Starts the scan of `sim`; returns the timer (undefined for `scanMs` 0), to clear on stop. */
export function startScan(sim: Scanned, scanMs: number): NodeJS.Timeout | undefined {
  if (scanMs <= 0) return undefined;
  const timer = setInterval(() => {
    sim.step(scanMs / 1000);
    sim.emit("scan");
  }, scanMs);
  timer.unref();
  return timer;
}
