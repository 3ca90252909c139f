// `when:` time windows (SPEC §4.3). Pure: the instant is always passed in as epoch ms.

export interface WhenSpec {
  days?: string | string[];
  hours?: string;
  tz?: string;
}

export interface WhenMatcher {
  holds(nowMs: number): boolean;
  describe(): string;
}

export interface FieldError {
  field: "days" | "hours" | "tz";
  message: string;
}

// Index = JS weekday (getUTCDay): 0 = sunday.
const DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"] as const;
const FULL_DAY_NAMES = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"];
const EVERY_DAY = 0b111_1111;
const MINUTES_PER_DAY = 1440;
const MS_PER_MINUTE = 60_000;
// 1970-01-01 was a Thursday.
const EPOCH_WEEKDAY = 4;

function dayIndex(name: string): number {
  const n = name.trim().toLowerCase();
  const short = DAY_NAMES.indexOf(n as (typeof DAY_NAMES)[number]);
  return short >= 0 ? short : FULL_DAY_NAMES.indexOf(n);
}

/** Parses `mon-fri`, `fri-mon` (wraps), `mon,wed,fri`, `sat` or an array of those into a bit per weekday. */
function parseDays(days: unknown): { mask: number; text: string } | { error: string } {
  const named = `days ${JSON.stringify(days)}`;
  const items = typeof days === "string" ? days.split(",") : Array.isArray(days) ? (days as unknown[]) : undefined;
  if (items === undefined) return { error: `${named}: must be a day range like mon-fri, a comma list like mon,wed,fri, or a list of day names` };
  if (items.length === 0) return { error: `${named}: must name at least one day` };
  let mask = 0;
  const parts: string[] = [];
  const problems: string[] = [];
  for (const item of items) {
    const ends = typeof item === "string" ? item.split("-") : [];
    const idx = ends.map(dayIndex);
    const [from, to] = idx;
    if (from === undefined || ends.length > 2) {
      problems.push(`${JSON.stringify(item)} is not a day or a range of days`);
      continue;
    }
    const unknown = ends.filter((_, i) => idx[i]! < 0);
    if (unknown.length > 0) {
      problems.push(unknown.map((u) => `unknown day ${JSON.stringify(u.trim())}`).join(", "));
      continue;
    }
    const last = to ?? from;
    for (let d = from; ; d = (d + 1) % 7) {
      mask |= 1 << d;
      if (d === last) break;
    }
    parts.push(idx.map((i) => DAY_NAMES[i]).join("-"));
  }
  if (problems.length > 0) return { error: `${named}: ${problems.join("; ")} (use mon..sun or full names, a range like mon-fri or a list like mon,wed,fri)` };
  return { mask, text: parts.join(",") };
}

const HOURS_RE = /^(\d\d):(\d\d)\s*-\s*(\d\d):(\d\d)$/;

/** Minutes since local midnight; `end` may be 1440 (24:00) and may be ≤ start (wraps midnight). */
function parseHours(hours: unknown): { start: number; end: number } | { error: string } {
  const named = `hours ${JSON.stringify(hours)}`;
  const m = typeof hours === "string" ? HOURS_RE.exec(hours.trim()) : null;
  const [sh, sm, eh, em] = (m?.slice(1) ?? []).map(Number);
  const valid = (h: number | undefined, min: number | undefined): boolean =>
    h !== undefined && min !== undefined && min <= 59 && (h < 24 || (h === 24 && min === 0));
  if (!valid(sh, sm) || !valid(eh, em)) return { error: `${named}: hours must be HH:MM-HH:MM with HH 00-24 and MM 00-59` };
  const start = sh! * 60 + sm!;
  const end = eh! * 60 + em!;
  if (start === MINUTES_PER_DAY) return { error: `${named}: a window cannot start at 24:00 (use 00:00)` };
  if (start === end) return { error: `${named}: empty window (start equals end); omit hours for all day` };
  return { start, end };
}

interface Zone {
  fmt: Intl.DateTimeFormat;
  // Shared by every matcher of this zone: decisions arrive in bursts within the same minute.
  lastMinute: number;
  lastLocalMinute: number;
}

// Bounded in practice: only zone names that validated are stored, and IANA has a few hundred.
const zones = new Map<string, Zone>();

function zoneFor(tz: string): Zone {
  let zone = zones.get(tz);
  if (zone === undefined) {
    // Throws RangeError for an unknown zone; compileWhen reports it.
    const fmt = new Intl.DateTimeFormat("en-US", {
      timeZone: tz,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
    });
    zone = { fmt, lastMinute: NaN, lastLocalMinute: NaN };
    zones.set(tz, zone);
  }
  return zone;
}

/**
 * Local wall-clock minutes since 1970-01-01T00:00 local for the epoch minute. Intl applies the
 * zone's rules (DST included); turning the wall clock back into a count keeps weekday and
 * minute-of-day arithmetic free of calendars.
 */
function localMinute(zone: Zone, epochMinute: number): number {
  if (epochMinute === zone.lastMinute) return zone.lastLocalMinute;
  const f: Record<string, number> = {};
  for (const p of zone.fmt.formatToParts(epochMinute * MS_PER_MINUTE)) {
    if (p.type !== "literal") f[p.type] = Number(p.value);
  }
  const local = Date.UTC(f.year!, f.month! - 1, f.day!, f.hour!, f.minute!) / MS_PER_MINUTE;
  zone.lastMinute = epochMinute;
  zone.lastLocalMinute = local;
  return local;
}

export function compileWhen(spec: WhenSpec): { matcher?: WhenMatcher; errors: FieldError[] } {
  const errors: FieldError[] = [];

  let dayMask = EVERY_DAY;
  let daysText: string | undefined;
  if (spec.days !== undefined) {
    const d = parseDays(spec.days);
    if ("error" in d) errors.push({ field: "days", message: d.error });
    else {
      dayMask = d.mask;
      daysText = d.text;
    }
  }

  let start = 0;
  let end = MINUTES_PER_DAY;
  if (spec.hours !== undefined) {
    const h = parseHours(spec.hours);
    if ("error" in h) errors.push({ field: "hours", message: h.error });
    else ({ start, end } = h);
  }

  const tz = spec.tz ?? "UTC";
  let zone: Zone | undefined;
  if (typeof tz !== "string" || tz.trim() === "") {
    errors.push({ field: "tz", message: `tz ${JSON.stringify(tz)}: must be an IANA time zone name like Europe/Berlin` });
  } else {
    try {
      zone = zoneFor(tz);
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      errors.push({ field: "tz", message: `tz ${JSON.stringify(tz)}: unknown time zone (use an IANA name like Europe/Berlin)` });
    }
  }

  if (errors.length > 0 || zone === undefined) return { errors };

  const wraps = end <= start;
  const text = `${daysText ?? "every day"} ${spec.hours === undefined ? "all day" : formatHours(start, end)} ${tz}`;
  const z = zone;
  let memoMinute = NaN;
  let memo = false;

  const holds = (nowMs: number): boolean => {
    // NaN or ±Infinity would make Intl throw; no time, no window.
    if (!Number.isFinite(nowMs)) return false;
    const epochMinute = Math.floor(nowMs / MS_PER_MINUTE);
    if (epochMinute === memoMinute) return memo;
    const local = localMinute(z, epochMinute);
    const minuteOfDay = mod(local, MINUTES_PER_DAY);
    let day = mod(Math.floor(local / MINUTES_PER_DAY) + EPOCH_WEEKDAY, 7);
    let inHours: boolean;
    if (!wraps) inHours = minuteOfDay >= start && minuteOfDay < end;
    else if (minuteOfDay >= start) inHours = true;
    else {
      inHours = minuteOfDay < end;
      // After midnight the window belongs to the day it started on.
      day = (day + 6) % 7;
    }
    memoMinute = epochMinute;
    memo = inHours && (dayMask & (1 << day)) !== 0;
    return memo;
  };

  return { matcher: { holds, describe: () => text }, errors };
}

function mod(a: number, n: number): number {
  return ((a % n) + n) % n;
}

function formatHours(start: number, end: number): string {
  const hhmm = (m: number): string => `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
  return `${hhmm(start)}-${hhmm(end)}`;
}
