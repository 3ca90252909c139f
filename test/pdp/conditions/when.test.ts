import t from "tap";
import { compileWhen, type WhenSpec } from "../../../src/pdp/conditions/when.js";

const at = (iso: string): number => {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) throw new Error(`bad test instant ${iso}`);
  return ms;
};

function matcherOf(spec: WhenSpec) {
  const { matcher, errors } = compileWhen(spec);
  if (matcher === undefined) throw new Error(`unexpected errors: ${JSON.stringify(errors)}`);
  return matcher;
}

// [spec, UTC instant, expected, why]. 2026-01-16 is a Friday, 2026-01-17 a Saturday.
const cases: [WhenSpec, string, boolean, string][] = [
  // inside / outside and the boundaries: start inclusive, end exclusive
  [{ hours: "06:00-22:00" }, "2026-01-16T12:00:00Z", true, "middle of the window"],
  [{ hours: "06:00-22:00" }, "2026-01-16T06:00:00.000Z", true, "start is inclusive"],
  [{ hours: "06:00-22:00" }, "2026-01-16T05:59:59.999Z", false, "just before start"],
  [{ hours: "06:00-22:00" }, "2026-01-16T21:59:59.999Z", true, "just before end"],
  [{ hours: "06:00-22:00" }, "2026-01-16T22:00:00.000Z", false, "end is exclusive"],
  [{ hours: "20:00-24:00" }, "2026-01-16T23:59:59.999Z", true, "24:00 as end"],
  [{ hours: "20:00-24:00" }, "2026-01-17T00:00:00Z", false, "24:00 end excludes midnight"],
  [{ hours: "00:00-24:00" }, "2026-01-17T00:00:00Z", true, "00:00-24:00 is all day"],
  [{}, "2026-01-17T03:00:00Z", true, "empty spec: any time"],
  // days
  [{ days: "mon-fri" }, "2026-01-16T23:59:00Z", true, "friday"],
  [{ days: "mon-fri" }, "2026-01-17T00:00:00Z", false, "saturday"],
  [{ days: "fri-mon" }, "2026-01-18T12:00:00Z", true, "wrapping range includes sunday"],
  [{ days: "fri-mon" }, "2026-01-19T12:00:00Z", true, "wrapping range includes monday"],
  [{ days: "fri-mon" }, "2026-01-20T12:00:00Z", false, "wrapping range excludes tuesday"],
  [{ days: "mon,wed,fri" }, "2026-01-14T12:00:00Z", true, "list: wednesday"],
  [{ days: "mon,wed,fri" }, "2026-01-15T12:00:00Z", false, "list: thursday"],
  [{ days: "SAT" }, "2026-01-17T12:00:00Z", true, "single day, case-insensitive"],
  [{ days: ["Monday", "saturday"] }, "2026-01-17T12:00:00Z", true, "array of full names"],
  [{ days: ["Monday", "saturday"] }, "2026-01-16T12:00:00Z", false, "array of full names, friday"],
  [{ days: "monday-friday" }, "2026-01-16T12:00:00Z", true, "full-name range"],
  // wrapping midnight: the day is the day the window started
  [{ days: "mon-fri", hours: "22:00-06:00" }, "2026-01-17T02:00:00Z", true, "sat 02:00 belongs to fri night"],
  [{ days: "mon-fri", hours: "22:00-06:00" }, "2026-01-17T05:59:00Z", true, "sat 05:59, still fri night"],
  [{ days: "mon-fri", hours: "22:00-06:00" }, "2026-01-17T06:00:00Z", false, "sat 06:00, window ended"],
  [{ days: "mon-fri", hours: "22:00-06:00" }, "2026-01-17T22:00:00Z", false, "sat 22:00 starts no window"],
  [{ days: "mon-fri", hours: "22:00-06:00" }, "2026-01-19T02:00:00Z", false, "mon 02:00 belongs to sun night"],
  [{ days: "mon-fri", hours: "22:00-06:00" }, "2026-01-19T22:00:00Z", true, "mon 22:00 starts a window"],
  [{ days: "mon-fri", hours: "22:00-06:00" }, "2026-01-16T12:00:00Z", false, "fri noon is outside the hours"],
  // Europe/Berlin spring forward, sunday 2026-03-29 01:00Z: 02:00 CET -> 03:00 CEST
  [{ hours: "06:00-22:00", tz: "Europe/Berlin" }, "2026-03-28T04:30:00Z", false, "sat 05:30 CET"],
  [{ hours: "06:00-22:00", tz: "Europe/Berlin" }, "2026-03-29T04:30:00Z", true, "sun 06:30 CEST"],
  [{ hours: "06:00-22:00", tz: "Europe/Berlin" }, "2026-03-28T20:30:00Z", true, "sat 21:30 CET"],
  [{ hours: "06:00-22:00", tz: "Europe/Berlin" }, "2026-03-29T20:30:00Z", false, "sun 22:30 CEST"],
  [{ hours: "02:00-03:00", tz: "Europe/Berlin" }, "2026-03-29T00:59:59Z", false, "01:59 CET, just before the gap"],
  [{ hours: "02:00-03:00", tz: "Europe/Berlin" }, "2026-03-29T01:00:00Z", false, "03:00 CEST: 02:xx never happens"],
  [{ hours: "03:00-04:00", tz: "Europe/Berlin" }, "2026-03-29T01:00:00Z", true, "03:00 CEST right after the gap"],
  // Europe/Berlin fall back, sunday 2026-10-25 01:00Z: 03:00 CEST -> 02:00 CET
  [{ hours: "06:00-22:00", tz: "Europe/Berlin" }, "2026-10-24T04:30:00Z", true, "sat 06:30 CEST"],
  [{ hours: "06:00-22:00", tz: "Europe/Berlin" }, "2026-10-25T04:30:00Z", false, "sun 05:30 CET"],
  [{ hours: "06:00-22:00", tz: "Europe/Berlin" }, "2026-10-25T20:30:00Z", true, "sun 21:30 CET"],
  [{ hours: "02:00-03:00", tz: "Europe/Berlin" }, "2026-10-24T23:59:00Z", false, "01:59 CEST"],
  [{ hours: "02:00-03:00", tz: "Europe/Berlin" }, "2026-10-25T00:30:00Z", true, "first 02:30 (CEST)"],
  [{ hours: "02:00-03:00", tz: "Europe/Berlin" }, "2026-10-25T01:30:00Z", true, "second 02:30 (CET)"],
  [{ hours: "02:00-03:00", tz: "Europe/Berlin" }, "2026-10-25T02:00:00Z", false, "03:00 CET"],
  // America/New_York, negative offset with DST; the local day differs from the UTC day
  [{ days: "mon-fri", hours: "09:00-17:00", tz: "America/New_York" }, "2026-01-16T13:59:00Z", false, "08:59 EST"],
  [{ days: "mon-fri", hours: "09:00-17:00", tz: "America/New_York" }, "2026-01-16T14:00:00Z", true, "09:00 EST"],
  [{ days: "mon-fri", hours: "09:00-17:00", tz: "America/New_York" }, "2026-01-16T21:59:00Z", true, "16:59 EST"],
  [{ days: "mon-fri", hours: "09:00-17:00", tz: "America/New_York" }, "2026-07-15T13:00:00Z", true, "09:00 EDT"],
  [{ days: "mon-fri", hours: "09:00-17:00", tz: "America/New_York" }, "2026-07-15T12:59:00Z", false, "08:59 EDT"],
  [{ days: "mon-fri", hours: "18:00-20:00", tz: "America/New_York" }, "2026-01-17T00:30:00Z", true, "sat UTC is fri 19:30 EST"],
  [{ days: "sat", tz: "America/New_York" }, "2026-01-17T04:59:00Z", false, "sat 04:59Z is still fri in New York"],
  [{ days: "sat", tz: "America/New_York" }, "2026-01-17T05:00:00Z", true, "sat 05:00Z is sat 00:00 EST"],
  // Asia/Kathmandu, +05:45
  [{ hours: "06:00-22:00", tz: "Asia/Kathmandu" }, "2026-01-16T00:14:00Z", false, "05:59 NPT"],
  [{ hours: "06:00-22:00", tz: "Asia/Kathmandu" }, "2026-01-16T00:15:00Z", true, "06:00 NPT"],
  [{ days: "mon-fri", tz: "Asia/Kathmandu" }, "2026-01-16T18:14:00Z", true, "fri 23:59 NPT"],
  [{ days: "mon-fri", tz: "Asia/Kathmandu" }, "2026-01-16T18:15:00Z", false, "fri UTC is sat 00:00 NPT"],
];

t.test("holds", async (t) => {
  for (const [spec, iso, expected, why] of cases) {
    t.equal(matcherOf(spec).holds(at(iso)), expected, `${JSON.stringify(spec)} at ${iso}: ${why}`);
  }
});

t.test("a reused matcher gives the same answers as fresh ones", async (t) => {
  // Exercises the per-minute memo: answers must change when the minute does.
  const m = matcherOf({ days: "mon-fri", hours: "22:00-06:00", tz: "Europe/Berlin" });
  for (const [iso, expected] of [
    ["2026-01-16T20:59:59Z", false],
    ["2026-01-16T21:00:00Z", true],
    ["2026-01-16T21:00:30Z", true],
    ["2026-01-17T04:59:59Z", true],
    ["2026-01-17T05:00:00Z", false],
    ["2026-01-17T05:00:00Z", false],
  ] as const) {
    t.equal(m.holds(at(iso)), expected, iso);
  }
});

t.test("a decision in the same minute does not call Intl again", async (t) => {
  const proto = Intl.DateTimeFormat.prototype;
  const original = proto.formatToParts;
  let calls = 0;
  proto.formatToParts = function (this: Intl.DateTimeFormat, date?: Date | number) {
    calls++;
    return original.call(this, date);
  };
  t.teardown(() => {
    proto.formatToParts = original;
  });
  const m = matcherOf({ hours: "06:00-22:00", tz: "Pacific/Auckland" });
  const base = at("2031-05-06T07:08:00Z");
  m.holds(base);
  t.equal(calls, 1, "first decision computes the wall time");
  m.holds(base + 1);
  m.holds(base + 59_999);
  t.equal(calls, 1, "same minute: memoized");
  matcherOf({ days: "mon", tz: "Pacific/Auckland" }).holds(base + 30_000);
  t.equal(calls, 1, "another matcher of the same zone in the same minute: memoized too");
  m.holds(base + 60_000);
  t.equal(calls, 2, "next minute: computed again");
});

t.test("non-finite instants never hold", async (t) => {
  const m = matcherOf({});
  t.equal(m.holds(NaN), false);
  t.equal(m.holds(Infinity), false);
});

t.test("describe", async (t) => {
  const d = (spec: WhenSpec) => matcherOf(spec).describe();
  t.equal(d({ days: "mon-fri", hours: "06:00-22:00", tz: "Europe/Berlin" }), "mon-fri 06:00-22:00 Europe/Berlin");
  t.equal(d({ days: ["Monday", "WED"], hours: "22:00 - 24:00" }), "mon,wed 22:00-24:00 UTC");
  t.equal(d({ days: "Friday-Monday" }), "fri-mon all day UTC");
  t.equal(d({}), "every day all day UTC");
});

// [spec, expected errors as [field, message pattern]]
const bad: [WhenSpec, [string, RegExp][]][] = [
  [{ tz: "Mars/Olympus_Mons" }, [["tz", /^tz "Mars\/Olympus_Mons": unknown time zone/]]],
  [{ tz: "" }, [["tz", /^tz "": must be an IANA time zone name/]]],
  [{ days: "mon-fry" }, [["days", /^days "mon-fry": unknown day "fry" \(use mon\.\.sun/]]],
  [{ days: "mnday,tue,fry-mon" }, [["days", /^days "mnday,tue,fry-mon": unknown day "mnday"; unknown day "fry" \(/]]],
  [{ days: "mon,,fri" }, [["days", /^days "mon,,fri": unknown day ""/]]],
  [{ days: "mon-wed-fri" }, [["days", /^days "mon-wed-fri": "mon-wed-fri" is not a day or a range of days \(/]]],
  [{ days: [] }, [["days", /^days \[\]: must name at least one day/]]],
  [{ days: ["mon", "xx", "tue"] }, [["days", /^days \["mon","xx","tue"\]: unknown day "xx" \(use mon/]]],
  [{ days: ["mon", 3] } as unknown as WhenSpec, [["days", /^days \["mon",3\]: 3 is not a day or a range of days/]]],
  [{ hours: "25:00-06:00" }, [["hours", /^hours "25:00-06:00": hours must be HH:MM-HH:MM with HH 00-24 and MM 00-59$/]]],
  [{ hours: "06:60-07:00" }, [["hours", /^hours "06:60-07:00": hours must be HH:MM/]]],
  [{ hours: "22:00-24:30" }, [["hours", /^hours "22:00-24:30": hours must be HH:MM/]]],
  [{ hours: "6:00-22:00" }, [["hours", /^hours "6:00-22:00": hours must be HH:MM/]]],
  [{ hours: "06:00" }, [["hours", /^hours "06:00": hours must be HH:MM/]]],
  [{ hours: "24:00-06:00" }, [["hours", /^hours "24:00-06:00": a window cannot start at 24:00/]]],
  [{ hours: "06:00-06:00" }, [["hours", /^hours "06:00-06:00": empty window/]]],
  [
    { days: "mon-fry", hours: "25:00-06:00", tz: "Nowhere/Else" },
    [
      ["days", /"mon-fry"/],
      ["hours", /"25:00-06:00"/],
      ["tz", /"Nowhere\/Else"/],
    ],
  ],
];

t.test("errors name the bad value, all at once", async (t) => {
  for (const [spec, expected] of bad) {
    const { matcher, errors } = compileWhen(spec);
    t.equal(matcher, undefined, `${JSON.stringify(spec)}: no matcher`);
    t.equal(errors.length, expected.length, `${JSON.stringify(spec)}: ${JSON.stringify(errors)}`);
    expected.forEach(([field, pattern], i) => {
      t.equal(errors[i]?.field, field, `${JSON.stringify(spec)} error ${i} field`);
      t.match(errors[i]?.message, pattern, `${JSON.stringify(spec)} error ${i} message`);
    });
  }
});

t.test("values of the wrong type from YAML are errors, not crashes", async (t) => {
  const { errors } = compileWhen({ days: 5, hours: 600, tz: 1 } as unknown as WhenSpec);
  t.same(
    errors.map((e) => e.field),
    ["days", "hours", "tz"],
  );
});
