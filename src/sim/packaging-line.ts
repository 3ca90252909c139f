// The process behind the simulated packaging line OPC UA server (SPEC §2.1). Pure: time
// comes in as `step(seconds)`, so the same steps give the same values.
//
//   node             type    access  what
//   Line1.Speed      Double  r/w     units per minute (starts at 60); 0 stops the line
//   Line1.Count      UInt32  r       units packed: grows with speed while running
//   Line1.State      String  r       running | starved | blocked | stopped
//   Line1.ResetCount method          sets Count to 0
//
// The line runs a fixed cycle, as a real one would with a slow infeed and a jammed outfeed:
// running 30 s, starved 4 s (no product: nothing packed), running 20 s, blocked 3 s
// (outfeed full: nothing packed), then again. Speed 0 is `stopped` whatever the cycle says.

export type LineState = "running" | "starved" | "blocked" | "stopped";

export interface PackagingLineOptions {
  /** Speed at start, units per minute (default 60). */
  readonly initialSpeed?: number;
  /** Highest speed the line takes (default 200); a write above it is out of range. */
  readonly maxSpeed?: number;
}

const CYCLE: ReadonlyArray<readonly [LineState, number]> = [
  ["running", 30],
  ["starved", 4],
  ["running", 20],
  ["blocked", 3],
];
const CYCLE_SECONDS = CYCLE.reduce((s, [, d]) => s + d, 0);
const UINT32 = 0x1_0000_0000;

export class PackagingLine {
  readonly maxSpeed: number;
  private speedValue: number;
  private packed = 0;
  /** Seconds into the cycle. */
  private clock = 0;

  constructor(options: PackagingLineOptions = {}) {
    this.maxSpeed = options.maxSpeed ?? 200;
    this.speedValue = options.initialSpeed ?? 60;
    if (!this.accepts(this.speedValue)) throw new RangeError(`PackagingLine: initial speed ${this.speedValue} is not 0..${this.maxSpeed}`);
  }

  speed(): number {
    return this.speedValue;
  }

  /** Units packed, as the UInt32 counter shows it (wraps at 2^32). */
  count(): number {
    return Math.floor(this.packed) % UINT32;
  }

  state(): LineState {
    if (this.speedValue === 0) return "stopped";
    let t = this.clock;
    for (const [state, seconds] of CYCLE) {
      if (t < seconds) return state;
      t -= seconds;
    }
    return "running";
  }

  accepts(speed: number): boolean {
    return Number.isFinite(speed) && speed >= 0 && speed <= this.maxSpeed;
  }

  /** A client's write; false (and nothing changes) when out of range. */
  setSpeed(speed: number): boolean {
    if (!this.accepts(speed)) return false;
    this.speedValue = speed;
    return true;
  }

  resetCount(): void {
    this.packed = 0;
  }

  /** `seconds` of production: the count grows while running, the cycle moves on. */
  step(seconds: number): void {
    if (!(seconds > 0)) return;
    if (this.state() === "running") this.packed = (this.packed + (this.speedValue * seconds) / 60) % UINT32;
    this.clock = (this.clock + seconds) % CYCLE_SECONDS;
  }
}
