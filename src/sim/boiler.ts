// The process behind the simulated boiler PLC (SPEC §2.1): a first-order thermal model and
// the PLC's own control logic, reading and writing the PLC's memory like a scan cycle. Pure:
// time comes in as `step(seconds)`, so the same steps give the same values.
//
//   point         table     address  encoding                       written by
//   temperature   input     0..1     float32, high word first (°C)  the model
//   pressure      input     2        uint16 centibar                the model (follows temperature)
//   setpoint      holding   100      uint16 °C (starts at 70)       clients
//   mode          holding   101      0 off, 1 auto, 2 manual        clients
//   burner_on     coil      0        the burner                     the PLC's logic (in auto)
//   alarm_reset   coil      1        a pulse: the PLC clears it     clients
//   flame         discrete  0        = burner_on                    the model
//   alarm         discrete  1        over-temperature, latched      the PLC's logic
//
// Control: in auto the burner switches on below setpoint − hysteresis and off above
// setpoint + hysteresis; off keeps it off; manual leaves the coil as a client wrote it.
// Above `alarmLimit` an alarm latches and keeps the burner off in every mode until a client
// writes alarm_reset = 1 while the temperature is back under the limit.

export interface PlcMemory {
  /** One byte per coil, 0 or 1. */
  readonly coils: Uint8Array;
  /** One byte per discrete input, 0 or 1. */
  readonly discrete: Uint8Array;
  readonly input: Uint16Array;
  readonly holding: Uint16Array;
}

export const BOILER_POINTS = {
  temperature: { table: "input", address: 0 },
  pressure: { table: "input", address: 2 },
  setpoint: { table: "holding", address: 100 },
  mode: { table: "holding", address: 101 },
  burnerOn: { table: "coil", address: 0 },
  alarmReset: { table: "coil", address: 1 },
  flame: { table: "discrete", address: 0 },
  alarm: { table: "discrete", address: 1 },
} as const;

export const BoilerMode = { Off: 0, Auto: 1, Manual: 2 } as const;

export interface BoilerOptions {
  /** Temperature at start, °C (default 65). */
  readonly initialTemperature?: number;
  /** Setpoint at start, °C (default 70). */
  readonly initialSetpoint?: number;
  /** Surroundings, °C: where the water settles with the burner off (default 20). */
  readonly ambient?: number;
  /** Where the water would settle with the burner on for ever, °C (default 100). */
  readonly burnerEquilibrium?: number;
  /** Heat loss rate, 1/s (default 0.02: with the defaults +0.6 °C/s on, −1 °C/s off at 70 °C). */
  readonly lossRate?: number;
  /** Half-width of the control band around the setpoint, °C (default 2). */
  readonly hysteresis?: number;
  /** Over-temperature alarm, °C (default 95). */
  readonly alarmLimit?: number;
}

const DEFAULTS: Required<BoilerOptions> = {
  initialTemperature: 65,
  initialSetpoint: 70,
  ambient: 20,
  burnerEquilibrium: 100,
  lossRate: 0.02,
  hysteresis: 2,
  alarmLimit: 95,
};

const scratch = new DataView(new ArrayBuffer(4));

export class Boiler {
  private readonly o: Required<BoilerOptions>;
  private temp: number;

  constructor(private readonly mem: PlcMemory, options: BoilerOptions = {}) {
    this.o = { ...DEFAULTS, ...options };
    this.temp = this.o.initialTemperature;
    mem.holding[BOILER_POINTS.setpoint.address] = this.o.initialSetpoint;
    mem.holding[BOILER_POINTS.mode.address] = BoilerMode.Auto;
    mem.coils[BOILER_POINTS.burnerOn.address] = this.temp < this.o.initialSetpoint ? 1 : 0;
    this.publish();
  }

  /** The temperature as the model holds it (the input registers hold it rounded to float32). */
  temperature(): number {
    return this.temp;
  }

  /** One scan: control logic on the current inputs, then `seconds` of physics. */
  step(seconds: number): void {
    const { coils, discrete, holding } = this.mem;
    const o = this.o;
    const burner = BOILER_POINTS.burnerOn.address;
    const alarm = BOILER_POINTS.alarm.address;
    if (this.temp >= o.alarmLimit) discrete[alarm] = 1;
    if (coils[BOILER_POINTS.alarmReset.address] === 1) {
      if (this.temp < o.alarmLimit) discrete[alarm] = 0;
      coils[BOILER_POINTS.alarmReset.address] = 0;
    }
    const setpoint = holding[BOILER_POINTS.setpoint.address] as number;
    const mode = holding[BOILER_POINTS.mode.address] as number;
    if (discrete[alarm] === 1 || mode === BoilerMode.Off) coils[burner] = 0;
    else if (mode !== BoilerMode.Manual) {
      if (this.temp < setpoint - o.hysteresis) coils[burner] = 1;
      else if (this.temp > setpoint + o.hysteresis) coils[burner] = 0;
    }
    if (seconds > 0) {
      // Exact solution of dT/dt = k·(target − T) over the step: stable for any step length.
      const target = coils[burner] === 1 ? o.burnerEquilibrium : o.ambient;
      this.temp = target + (this.temp - target) * Math.exp(-o.lossRate * seconds);
    }
    this.publish();
  }

  private publish(): void {
    const { coils, discrete, input } = this.mem;
    scratch.setFloat32(0, this.temp);
    input[BOILER_POINTS.temperature.address] = scratch.getUint16(0);
    input[BOILER_POINTS.temperature.address + 1] = scratch.getUint16(2);
    // Roughly a closed hot-water circuit: 1 bar cold, +2.5 centibar per °C.
    input[BOILER_POINTS.pressure.address] = Math.max(0, Math.min(0xffff, Math.round(100 + 2.5 * (this.temp - this.o.ambient))));
    discrete[BOILER_POINTS.flame.address] = coils[BOILER_POINTS.burnerOn.address] as number;
  }
}

/** A float32 from two registers, high word first (what a client of the PLC does). */
export function float32FromWords(high: number, low: number): number {
  scratch.setUint16(0, high);
  scratch.setUint16(2, low);
  return scratch.getFloat32(0);
}
