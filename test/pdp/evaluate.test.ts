// The pure decision core (SPEC §4.3, §4.4), table-driven: one array of cases per topic,
// each a policy + operation + principal + time → expected { effect, rule, reason }.
import t from "tap";
import { compilePolicies } from "../../src/policy/compile.js";
import { decide, rateKey } from "../../src/pdp/evaluate.js";
import type { Decision, WrittenValue } from "../../src/pdp/evaluate.js";
import type { Action, Operation, Scalar, Table, Target } from "../../src/pdp/operation.js";
import type { PolicySet } from "../../src/pdp/policy-set.js";
import type { Principal } from "../../src/pdp/principal.js";
import { REASONS } from "../../src/pdp/reasons.js";
import type { Reason } from "../../src/pdp/reasons.js";
import { TokenBucketRates } from "../../src/pdp/conditions/rate.js";
import { encodeValue } from "../../src/pdp/values.js";
import type { PointType, WordOrder } from "../../src/pdp/values.js";

// ---------------------------------------------------------------------------------------
// helpers

/** 2026-03-02 is a Monday. */
const NOW = "2026-03-02T10:00:00Z";

function at(iso: string): number {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) throw new Error(`bad test instant ${iso}`);
  return ms;
}

/** Every decision made in this file, to check policyRevision on each. */
const made: Array<{ set: PolicySet; d: Decision }> = [];

function compile(t: Tap, ...texts: string[]): PolicySet {
  const { set, diagnostics } = compilePolicies(texts.map((text, i) => ({ file: `policy-${i}.yaml`, text })));
  t.strictSame(diagnostics, [], "the policy compiles without diagnostics");
  if (!set) throw new Error(diagnostics.map((d) => `${d.file}:${d.line}:${d.col}: ${d.message}`).join("\n"));
  return set;
}

/** The assertions the helpers use, on the root test or a subtest. */
type Tap = Pick<typeof t, "strictSame">;

function who(p: Partial<Principal> = {}): Principal {
  return { sub: "user-1", iss: "https://idp.example", roles: [], claims: {}, via: "bearer", ...p };
}

const point = (name: string): Target => ({ kind: "point", point: name });
const range = (table: Table, address: number, count: number): Target => ({ kind: "range", table, address, count });
const node = (id: string): Target => ({ kind: "node", node: id });

interface OpExtra {
  readonly raw?: readonly number[] | null;
  readonly value?: Scalar;
  readonly source?: string;
  readonly asset?: string;
}

function op(action: Action, target: Target, extra: OpExtra = {}): Operation {
  const { asset, ...rest } = extra;
  return { asset: asset ?? "plc", action, target, ...rest };
}

/** Raw words of a value as a front would put them on the wire. */
function words(type: PointType, order: WordOrder, value: Scalar): number[] {
  const w = encodeValue(type, order, value);
  if (!w) throw new Error(`cannot encode ${String(value)} as ${type}`);
  return w;
}

interface Expect {
  readonly effect: "allow" | "deny";
  readonly rule: string | null;
  readonly reason: Reason;
  readonly mode?: "enforce" | "monitor";
}

interface Case {
  readonly name: string;
  readonly op: Operation;
  readonly who?: Principal;
  readonly at?: string;
  readonly expect: Expect;
}

function run(set: PolicySet, c: { op: Operation; who?: Principal; at?: string }, rates?: TokenBucketRates, dryRun?: boolean): Decision {
  const d = decide(set, c.op, c.who ?? who(), { now: at(c.at ?? NOW), ...(rates && { rates }), ...(dryRun !== undefined && { dryRun }) });
  made.push({ set, d });
  return d;
}

function pick(d: Decision, e: Expect): Expect {
  return { effect: d.effect, rule: d.rule, reason: d.reason, ...(e.mode !== undefined && { mode: d.mode }) };
}

function runCases(t: Tap, set: PolicySet, cases: readonly Case[]): void {
  for (const c of cases) {
    const d = run(set, c);
    t.strictSame(pick(d, c.expect), c.expect, c.name);
  }
}

// ---------------------------------------------------------------------------------------
// subjects

t.test("subjects: roles, subs, issuers, claims, '*'", async (t) => {
  const set = compile(t, `
asset: plc
protocol: modbus
endpoint: tcp://127.0.0.1:502
points:
  p_role:    { table: holding, address: 0 }
  p_sub:     { table: holding, address: 1 }
  p_iss:     { table: holding, address: 2 }
  p_claim:   { table: holding, address: 3 }
  p_list:    { table: holding, address: 4 }
  p_dotted:  { table: holding, address: 5 }
  p_all:     { table: holding, address: 6 }
  p_any:     { table: holding, address: 7 }
  p_num:     { table: holding, address: 8 }
rules:
  - id: by-role
    allow: [read]
    subjects: { roles: [historian, mes] }
    points: [p_role]
  - id: by-sub
    allow: [read]
    subjects: { subs: [alice, bob] }
    points: [p_sub]
  - id: by-issuer
    allow: [read]
    subjects: { issuers: ["https://idp.a"] }
    points: [p_iss]
  - id: by-claim
    allow: [read]
    subjects: { claims: { site: north } }
    points: [p_claim]
  - id: by-claim-list
    allow: [read]
    subjects: { claims: { site: [north, south] } }
    points: [p_list]
  - id: by-dotted-claim
    allow: [read]
    subjects: { claims: { realm_access.site: north } }
    points: [p_dotted]
  - id: by-everything
    allow: [read]
    subjects: { roles: [mes], subs: [mes-1], issuers: ["https://idp.a"], claims: { site: north, line: "1" } }
    points: [p_all]
  - id: anyone
    allow: [read]
    subjects: "*"
    points: [p_any]
  - id: by-number-claim
    allow: [read]
    subjects: { claims: { level: 3, admin: true } }
    points: [p_num]
`);
  const allow = (rule: string): Expect => ({ effect: "allow", rule, reason: "allowed" });
  const none: Expect = { effect: "deny", rule: null, reason: "no-matching-rule" };
  const read = (p: string) => op("read", point(p));
  const everything = { sub: "mes-1", iss: "https://idp.a", roles: ["mes"], claims: { site: "north", line: "1" } };
  const cases: Case[] = [
    { name: "roles: first listed role", op: read("p_role"), who: who({ roles: ["historian"] }), expect: allow("by-role") },
    { name: "roles: second listed role", op: read("p_role"), who: who({ roles: ["mes"] }), expect: allow("by-role") },
    { name: "roles: any of the principal's roles", op: read("p_role"), who: who({ roles: ["guest", "mes"] }), expect: allow("by-role") },
    { name: "roles: no listed role", op: read("p_role"), who: who({ roles: ["guest"] }), expect: none },
    { name: "roles: no roles at all", op: read("p_role"), who: who({ roles: [] }), expect: none },
    { name: "roles: role names are case-sensitive", op: read("p_role"), who: who({ roles: ["Historian"] }), expect: none },
    { name: "roles: a sub named like a role is not a role", op: read("p_role"), who: who({ sub: "historian" }), expect: none },
    { name: "subs: listed sub", op: read("p_sub"), who: who({ sub: "bob" }), expect: allow("by-sub") },
    { name: "subs: other sub", op: read("p_sub"), who: who({ sub: "carol" }), expect: none },
    { name: "subs: a role named like the sub is not the sub", op: read("p_sub"), who: who({ roles: ["alice"] }), expect: none },
    { name: "issuers: listed issuer", op: read("p_iss"), who: who({ iss: "https://idp.a" }), expect: allow("by-issuer") },
    { name: "issuers: other issuer", op: read("p_iss"), who: who({ iss: "https://idp.b" }), expect: none },
    { name: "claims: equal value", op: read("p_claim"), who: who({ claims: { site: "north" } }), expect: allow("by-claim") },
    { name: "claims: other value", op: read("p_claim"), who: who({ claims: { site: "south" } }), expect: none },
    { name: "claims: claim missing", op: read("p_claim"), who: who({ claims: {} }), expect: none },
    { name: "claims: list-valued claim holding the value", op: read("p_claim"), who: who({ claims: { site: ["south", "north"] } }), expect: allow("by-claim") },
    { name: "claims: list-valued claim without the value", op: read("p_claim"), who: who({ claims: { site: ["south", "east"] } }), expect: none },
    { name: "claims: empty list claim", op: read("p_claim"), who: who({ claims: { site: [] } }), expect: none },
    { name: "claims: policy list, second value", op: read("p_list"), who: who({ claims: { site: "south" } }), expect: allow("by-claim-list") },
    { name: "claims: policy list, value not in it", op: read("p_list"), who: who({ claims: { site: "east" } }), expect: none },
    { name: "claims: policy list and list-valued claim overlap", op: read("p_list"), who: who({ claims: { site: ["east", "south"] } }), expect: allow("by-claim-list") },
    { name: "claims: dotted path into a nested claim", op: read("p_dotted"), who: who({ claims: { realm_access: { site: "north" } } }), expect: allow("by-dotted-claim") },
    { name: "claims: dotted path, other value", op: read("p_dotted"), who: who({ claims: { realm_access: { site: "south" } } }), expect: none },
    { name: "claims: dotted path, nested list", op: read("p_dotted"), who: who({ claims: { realm_access: { site: ["x", "north"] } } }), expect: allow("by-dotted-claim") },
    { name: "claims: dotted path, parent is not an object", op: read("p_dotted"), who: who({ claims: { realm_access: "north" } }), expect: none },
    { name: "claims: dotted path, parent missing", op: read("p_dotted"), who: who({ claims: { site: "north" } }), expect: none },
    { name: "claims: a flat claim named with a dot", op: read("p_dotted"), who: who({ claims: { "realm_access.site": "north" } }), expect: allow("by-dotted-claim") },
    { name: "claims: number and boolean values", op: read("p_num"), who: who({ claims: { level: 3, admin: true } }), expect: allow("by-number-claim") },
    { name: "claims: a number claim does not equal its string", op: read("p_num"), who: who({ claims: { level: "3", admin: true } }), expect: none },
    { name: "claims: boolean false is not true", op: read("p_num"), who: who({ claims: { level: 3, admin: false } }), expect: none },
    { name: "all kinds together: all hold", op: read("p_all"), who: who(everything), expect: allow("by-everything") },
    { name: "all kinds together: role missing", op: read("p_all"), who: who({ ...everything, roles: ["historian"] }), expect: none },
    { name: "all kinds together: sub differs", op: read("p_all"), who: who({ ...everything, sub: "mes-2" }), expect: none },
    { name: "all kinds together: issuer differs", op: read("p_all"), who: who({ ...everything, iss: "https://idp.b" }), expect: none },
    { name: "all kinds together: one of two claims differs", op: read("p_all"), who: who({ ...everything, claims: { site: "north", line: "2" } }), expect: none },
    { name: "'*': a principal with nothing", op: read("p_any"), who: who({ sub: "anon", iss: "", roles: [], claims: {} }), expect: allow("anyone") },
  ];
  runCases(t, set, cases);
});

// ---------------------------------------------------------------------------------------
// when

t.test("when: days, hours, tz, Europe/Berlin across DST", async (t) => {
  const set = compile(t, `
asset: plc
protocol: modbus
endpoint: tcp://127.0.0.1:502
points:
  office: { table: holding, address: 0 }
  spring: { table: holding, address: 1 }
  autumn: { table: holding, address: 2 }
  night:  { table: holding, address: 3 }
rules:
  - id: office-hours
    allow: [read]
    subjects: "*"
    points: [office]
    when: { days: mon-fri, hours: "06:00-22:00", tz: Europe/Berlin }
  - id: spring-hour
    allow: [read]
    subjects: "*"
    points: [spring]
    when: { hours: "03:00-04:00", tz: Europe/Berlin }
  - id: autumn-hour
    allow: [read]
    subjects: "*"
    points: [autumn]
    when: { hours: "02:00-03:00", tz: Europe/Berlin }
  - id: friday-night-utc
    allow: [read]
    subjects: "*"
    points: [night]
    when: { days: fri, hours: "22:00-06:00" }
`);
  const inside = (rule: string): Expect => ({ effect: "allow", rule, reason: "allowed" });
  const outside = (rule: string): Expect => ({ effect: "deny", rule, reason: "outside-time-window" });
  const read = (p: string) => op("read", point(p));
  const cases: Case[] = [
    // winter time (CET, UTC+1); 2026-03-27 is a Friday
    { name: "CET: Fri 06:30 local is inside", op: read("office"), at: "2026-03-27T05:30:00Z", expect: inside("office-hours") },
    { name: "CET: Fri 05:30 local is outside", op: read("office"), at: "2026-03-27T04:30:00Z", expect: outside("office-hours") },
    { name: "CET: Fri 21:59 local is inside", op: read("office"), at: "2026-03-27T20:59:00Z", expect: inside("office-hours") },
    { name: "CET: Fri 22:00 local is outside (end exclusive)", op: read("office"), at: "2026-03-27T21:00:00Z", expect: outside("office-hours") },
    { name: "CET: Sat noon is outside (days)", op: read("office"), at: "2026-03-28T11:00:00Z", expect: outside("office-hours") },
    { name: "CET: Mon 00:30 local is Monday though UTC is still Sunday", op: read("office"), at: "2026-03-01T23:30:00Z", expect: outside("office-hours") },
    // spring forward on Sun 2026-03-29 at 01:00 UTC (02:00 CET → 03:00 CEST)
    { name: "spring: 01:59 CET, just before the change, is outside 03:00-04:00", op: read("spring"), at: "2026-03-29T00:59:00Z", expect: outside("spring-hour") },
    { name: "spring: 01:00 UTC is 03:00 CEST, inside", op: read("spring"), at: "2026-03-29T01:00:00Z", expect: inside("spring-hour") },
    { name: "spring: 01:59 UTC is 03:59 CEST, inside", op: read("spring"), at: "2026-03-29T01:59:00Z", expect: inside("spring-hour") },
    { name: "spring: 02:00 UTC is 04:00 CEST, outside", op: read("spring"), at: "2026-03-29T02:00:00Z", expect: outside("spring-hour") },
    { name: "spring: day before, 02:00 UTC is 03:00 CET, inside", op: read("spring"), at: "2026-03-28T02:00:00Z", expect: inside("spring-hour") },
    // summer time (CEST, UTC+2); 2026-03-30 is a Monday
    { name: "CEST: Mon 06:30 local (04:30 UTC) is inside", op: read("office"), at: "2026-03-30T04:30:00Z", expect: inside("office-hours") },
    { name: "CEST: Mon 05:59 local (03:59 UTC) is outside", op: read("office"), at: "2026-03-30T03:59:00Z", expect: outside("office-hours") },
    { name: "CEST: Mon 22:30 local (20:30 UTC) is outside", op: read("office"), at: "2026-03-30T20:30:00Z", expect: outside("office-hours") },
    { name: "CEST: Fri 2026-10-23 21:59 local (19:59 UTC) is inside", op: read("office"), at: "2026-10-23T19:59:00Z", expect: inside("office-hours") },
    // fall back on Sun 2026-10-25 at 01:00 UTC (03:00 CEST → 02:00 CET): 02:00-03:00 happens twice
    { name: "autumn: 01:59 CEST (23:59 UTC the day before) is outside 02:00-03:00", op: read("autumn"), at: "2026-10-24T23:59:00Z", expect: outside("autumn-hour") },
    { name: "autumn: first 02:30 (CEST, 00:30 UTC) is inside", op: read("autumn"), at: "2026-10-25T00:30:00Z", expect: inside("autumn-hour") },
    { name: "autumn: second 02:30 (CET, 01:30 UTC) is inside", op: read("autumn"), at: "2026-10-25T01:30:00Z", expect: inside("autumn-hour") },
    { name: "autumn: 03:00 CET (02:00 UTC) is outside", op: read("autumn"), at: "2026-10-25T02:00:00Z", expect: outside("autumn-hour") },
    // winter time again; 2026-10-26 is a Monday
    { name: "CET again: Mon 05:30 local (04:30 UTC) is outside", op: read("office"), at: "2026-10-26T04:30:00Z", expect: outside("office-hours") },
    { name: "CET again: Mon 06:30 local (05:30 UTC) is inside", op: read("office"), at: "2026-10-26T05:30:00Z", expect: inside("office-hours") },
    { name: "CET again: Mon 21:59 local (20:59 UTC) is inside", op: read("office"), at: "2026-10-26T20:59:00Z", expect: inside("office-hours") },
    { name: "CET again: Mon 22:30 local (21:30 UTC) is outside", op: read("office"), at: "2026-10-26T21:30:00Z", expect: outside("office-hours") },
    // default tz UTC, window wrapping midnight belongs to the day it starts on
    { name: "UTC wrap: Fri 23:00 is inside", op: read("night"), at: "2026-03-27T23:00:00Z", expect: inside("friday-night-utc") },
    { name: "UTC wrap: Sat 05:59 still belongs to Friday", op: read("night"), at: "2026-03-28T05:59:00Z", expect: inside("friday-night-utc") },
    { name: "UTC wrap: Sat 06:00 is outside", op: read("night"), at: "2026-03-28T06:00:00Z", expect: outside("friday-night-utc") },
    { name: "UTC wrap: Sat 23:00 is outside (Saturday not listed)", op: read("night"), at: "2026-03-28T23:00:00Z", expect: outside("friday-night-utc") },
    { name: "UTC wrap: Fri 02:00 belongs to Thursday", op: read("night"), at: "2026-03-27T02:00:00Z", expect: outside("friday-night-utc") },
  ];
  runCases(t, set, cases);
});

// ---------------------------------------------------------------------------------------
// from

t.test("from: IPv4, IPv6 CIDRs and IPv4-mapped IPv6 sources", async (t) => {
  const set = compile(t, `
asset: plc
protocol: modbus
endpoint: tcp://127.0.0.1:502
points:
  v4:     { table: holding, address: 0 }
  v6:     { table: holding, address: 1 }
  mapped: { table: holding, address: 2 }
rules:
  - id: from-v4
    allow: [read]
    subjects: "*"
    points: [v4]
    from: ["10.20.0.0/16", "192.168.1.7"]
  - id: from-v6
    allow: [read]
    subjects: "*"
    points: [v6]
    from: ["2001:db8:10::/48", "fe80::/10"]
  - id: from-mapped-entry
    allow: [read]
    subjects: "*"
    points: [mapped]
    from: ["::ffff:172.16.0.0/108"]
`);
  const ok = (rule: string): Expect => ({ effect: "allow", rule, reason: "allowed" });
  const bad = (rule: string): Expect => ({ effect: "deny", rule, reason: "source-not-allowed" });
  const read = (p: string, source?: string) => op("read", point(p), source === undefined ? {} : { source });
  const cases: Case[] = [
    { name: "IPv4 inside the /16", op: read("v4", "10.20.1.5"), expect: ok("from-v4") },
    { name: "IPv4 first address of the /16", op: read("v4", "10.20.0.0"), expect: ok("from-v4") },
    { name: "IPv4 last address of the /16", op: read("v4", "10.20.255.255"), expect: ok("from-v4") },
    { name: "IPv4 just outside the /16", op: read("v4", "10.21.0.0"), expect: bad("from-v4") },
    { name: "IPv4 single host entry", op: read("v4", "192.168.1.7"), expect: ok("from-v4") },
    { name: "IPv4 neighbour of the single host", op: read("v4", "192.168.1.8"), expect: bad("from-v4") },
    { name: "IPv4-mapped IPv6 source matches the IPv4 CIDR", op: read("v4", "::ffff:10.20.1.5"), expect: ok("from-v4") },
    { name: "IPv4-mapped IPv6 source in hex form", op: read("v4", "::ffff:a14:105"), expect: ok("from-v4") },
    { name: "IPv4-mapped IPv6 source outside the CIDR", op: read("v4", "::ffff:10.21.1.5"), expect: bad("from-v4") },
    { name: "an IPv6 source never matches an IPv4 CIDR", op: read("v4", "2001:db8:10::1"), expect: bad("from-v4") },
    { name: "no source at all", op: read("v4"), expect: bad("from-v4") },
    { name: "unparsable source fails closed", op: read("v4", "not-an-ip"), expect: bad("from-v4") },
    { name: "inet_aton-style source fails closed", op: read("v4", "010.20.1.5"), expect: bad("from-v4") },
    { name: "IPv6 inside the /48", op: read("v6", "2001:db8:10:ffff::1"), expect: ok("from-v6") },
    { name: "IPv6 outside the /48", op: read("v6", "2001:db8:11::1"), expect: bad("from-v6") },
    { name: "IPv6 link-local with zone id", op: read("v6", "fe80::1%eth0"), expect: ok("from-v6") },
    { name: "an IPv4 source never matches an IPv6 CIDR", op: read("v6", "10.20.1.5"), expect: bad("from-v6") },
    { name: "mapped entry matches a plain IPv4 source", op: read("mapped", "172.16.5.5"), expect: ok("from-mapped-entry") },
    { name: "mapped entry matches a mapped source", op: read("mapped", "::ffff:172.31.255.255"), expect: ok("from-mapped-entry") },
    { name: "mapped entry, IPv4 outside its /12", op: read("mapped", "172.32.0.1"), expect: bad("from-mapped-entry") },
  ];
  runCases(t, set, cases);
});

// ---------------------------------------------------------------------------------------
// values

t.test("values: rule min/max and the point's own min/max", async (t) => {
  const set = compile(t, `
asset: plc
protocol: modbus
endpoint: tcp://127.0.0.1:502
points:
  setpoint: { table: holding, address: 100, type: uint16, min: 0, max: 120 }
  offset:   { table: holding, address: 101, type: int16 }
rules:
  - id: mes-window
    allow: [write]
    subjects: { roles: [mes] }
    points: [setpoint]
    values: { min: 20, max: 80 }
  - id: admin-any
    allow: [write]
    subjects: { roles: [admin] }
    points: [setpoint]
  - id: offset-min
    allow: [write]
    subjects: "*"
    points: [offset]
    values: { min: -10 }
`);
  const mes = who({ roles: ["mes"] });
  const admin = who({ roles: ["admin"] });
  const ok = (rule: string): Expect => ({ effect: "allow", rule, reason: "allowed" });
  const out = (rule: string): Expect => ({ effect: "deny", rule, reason: "value-out-of-range" });
  const w = (value: number) => op("write", point("setpoint"), { value });
  const wr = (raw: number[]) => op("write", range("holding", 100, raw.length), { raw });
  const cases: Case[] = [
    { name: "rule min is inclusive", op: w(20), who: mes, expect: ok("mes-window") },
    { name: "rule max is inclusive", op: w(80), who: mes, expect: ok("mes-window") },
    { name: "below rule min", op: w(19), who: mes, expect: out("mes-window") },
    { name: "above rule max, within the point's max", op: w(81), who: mes, expect: out("mes-window") },
    { name: "fraction just above rule max", op: w(80.5), who: mes, expect: out("mes-window") },
    { name: "raw word within the rule (FC6)", op: wr([50]), who: mes, expect: ok("mes-window") },
    { name: "raw word above the rule (FC6)", op: wr([90]), who: mes, expect: out("mes-window") },
    { name: "no rule values: point max is inclusive", op: w(120), who: admin, expect: ok("admin-any") },
    { name: "no rule values: above the point max", op: w(121), who: admin, expect: out("admin-any") },
    { name: "no rule values: point min is inclusive", op: w(0), who: admin, expect: ok("admin-any") },
    { name: "no rule values: below the point min", op: w(-1), who: admin, expect: out("admin-any") },
    { name: "rule min only, negative int16 at the bound", op: op("write", point("offset"), { value: -10 }), expect: ok("offset-min") },
    { name: "rule min only, below", op: op("write", point("offset"), { value: -11 }), expect: out("offset-min") },
    { name: "rule min only, int16 raw 0xFFF6 is -10", op: op("write", range("holding", 101, 1), { raw: [0xfff6] }), expect: ok("offset-min") },
    { name: "rule min only, int16 raw 0xFFF5 is -11", op: op("write", range("holding", 101, 1), { raw: [0xfff5] }), expect: out("offset-min") },
    { name: "rule min only, no max", op: op("write", point("offset"), { value: 32767 }), expect: ok("offset-min") },
    { name: "a string value has no number to check", op: op("write", point("setpoint"), { value: "50" }), who: mes, expect: out("mes-window") },
    { name: "values do not apply to reads", op: op("read", point("setpoint")), who: mes, expect: { effect: "deny", rule: null, reason: "no-matching-rule" } },
  ];
  runCases(t, set, cases);
});

// ---------------------------------------------------------------------------------------
// rate

const RATE_POLICY = `
asset: plc
protocol: modbus
endpoint: tcp://127.0.0.1:502
points:
  a: { table: holding, address: 0 }
  b: { table: holding, address: 1 }
  c: { table: holding, address: 2, max: 100 }
  d: { table: holding, address: 3 }
rules:
  - id: two-per-min
    allow: [read]
    subjects: "*"
    points: [a, b]
    rate: 2/min
  - id: limited-write
    allow: [write]
    subjects: "*"
    points: [c]
    rate: 1/min
  - id: fast
    allow: [read]
    subjects: "*"
    points: [d]
    rate: 1/min
  - id: fallback
    allow: [read]
    subjects: { roles: [ops] }
    points: [d]
`;

interface Step {
  readonly name: string;
  readonly op: Operation;
  readonly who?: Principal;
  readonly at?: string;
  readonly dryRun?: boolean;
  readonly expect: Expect;
}

t.test("rate: token buckets per subject, rule and asset", async (t) => {
  const set = compile(t, RATE_POLICY);
  const ok = (rule: string): Expect => ({ effect: "allow", rule, reason: "allowed" });
  const limited = (rule: string): Expect => ({ effect: "deny", rule, reason: "rate-limited" });
  const T = "2026-03-02T10:00:00Z";
  const readA = op("read", point("a"));
  const other = who({ sub: "user-2" });
  const otherIss = who({ iss: "https://idp.other" });
  // One sequence on one TokenBucketRates: each step sees what the earlier ones consumed.
  const steps: Step[] = [
    { name: "dry run 1 allowed", op: readA, at: T, dryRun: true, expect: ok("two-per-min") },
    { name: "dry run 2 allowed", op: readA, at: T, dryRun: true, expect: ok("two-per-min") },
    { name: "dry run 3 allowed: dry runs consume nothing", op: readA, at: T, dryRun: true, expect: ok("two-per-min") },
    { name: "a range of two points allowed by the rule takes one token, not two", op: op("read", range("holding", 0, 2)), at: T, expect: ok("two-per-min") },
    { name: "so one token is left", op: readA, at: T, expect: ok("two-per-min") },
    { name: "limit reached: rate-limited names the rule", op: readA, at: T, expect: limited("two-per-min") },
    { name: "the same rule's other point shares the bucket", op: op("read", point("b")), at: T, expect: limited("two-per-min") },
    { name: "dry run sees the empty bucket", op: readA, at: T, dryRun: true, expect: limited("two-per-min") },
    { name: "another subject has its own bucket", op: readA, who: other, at: T, expect: ok("two-per-min") },
    { name: "the same sub from another issuer has its own bucket", op: readA, who: otherIss, at: T, expect: ok("two-per-min") },
    { name: "29 s later still empty", op: readA, at: "2026-03-02T10:00:29Z", expect: limited("two-per-min") },
    { name: "30 s later one token is back", op: readA, at: "2026-03-02T10:00:30Z", expect: ok("two-per-min") },
    { name: "and used again", op: readA, at: "2026-03-02T10:00:30Z", expect: limited("two-per-min") },
    // denied requests never use up the rate
    { name: "out-of-range write 1 does not consume", op: op("write", point("c"), { value: 101 }), at: T, expect: { effect: "deny", rule: "limited-write", reason: "value-out-of-range" } },
    { name: "out-of-range write 2 does not consume", op: op("write", point("c"), { value: 200 }), at: T, expect: { effect: "deny", rule: "limited-write", reason: "value-out-of-range" } },
    { name: "a good write gets the one token", op: op("write", point("c"), { value: 1 }), at: T, expect: ok("limited-write") },
    { name: "the next good write is limited", op: op("write", point("c"), { value: 1 }), at: T, expect: limited("limited-write") },
    // an exhausted first rule falls through to a later allow
    { name: "fast rule allows once", op: op("read", point("d")), who: who({ roles: ["ops"] }), at: T, expect: ok("fast") },
    { name: "fast rule exhausted, the later rule allows", op: op("read", point("d")), who: who({ roles: ["ops"] }), at: T, expect: ok("fallback") },
    { name: "the fallback (no rate) keeps allowing", op: op("read", point("d")), who: who({ roles: ["ops"] }), at: T, expect: ok("fallback") },
    { name: "a subject without the fallback's role: first request", op: op("read", point("d")), who: who({ sub: "y" }), at: T, expect: ok("fast") },
    { name: "a subject without the fallback's role is rate-limited by the first rule", op: op("read", point("d")), who: who({ sub: "y" }), at: T, expect: limited("fast") },
  ];
  const rates = new TokenBucketRates();
  for (const s of steps) {
    const d = run(set, s, rates, s.dryRun);
    t.strictSame(pick(d, s.expect), s.expect, s.name);
  }
});

t.test("rate: without a RateState the rule is checked against a fresh bucket", async (t) => {
  const set = compile(t, RATE_POLICY);
  for (let i = 0; i < 3; i++) {
    const d = run(set, { op: op("read", point("a")) });
    t.strictSame(pick(d, { effect: "allow", rule: "two-per-min", reason: "allowed" }), { effect: "allow", rule: "two-per-min", reason: "allowed" }, `request ${i + 1}`);
  }
});

t.test("rate: a rate-limited asset in one set does not touch another asset's bucket", async (t) => {
  const set = compile(t, RATE_POLICY, RATE_POLICY.replace("asset: plc", "asset: plc-2\nfront: { unit: 2 }"));
  const rates = new TokenBucketRates();
  const cases: Array<{ name: string; asset: string; expect: Expect }> = [
    { name: "plc 1", asset: "plc", expect: { effect: "allow", rule: "fast", reason: "allowed" } },
    { name: "plc 2", asset: "plc", expect: { effect: "deny", rule: "fast", reason: "rate-limited" } },
    { name: "plc-2 1", asset: "plc-2", expect: { effect: "allow", rule: "fast", reason: "allowed" } },
    { name: "plc-2 2", asset: "plc-2", expect: { effect: "deny", rule: "fast", reason: "rate-limited" } },
  ];
  for (const c of cases) {
    const d = run(set, { op: op("read", point("d"), { asset: c.asset }) }, rates);
    t.strictSame(pick(d, c.expect), c.expect, c.name);
  }
});

// ---------------------------------------------------------------------------------------
// every reason the core produces

const MODBUS = `
asset: plc
zone: cell-1
protocol: modbus
endpoint: tcp://127.0.0.1:502
points:
  temperature: { table: input, address: 0, type: float32 }
  setpoint:    { table: holding, address: 100, type: uint16, min: 0, max: 120 }
  burner_on:   { table: coil, address: 0 }
rules:
  - id: read-all
    allow: [read]
    subjects: "*"
    points: ["*"]
  - id: everything
    allow: ["*"]
    subjects: { roles: [root] }
    points: ["*"]
    targets: [{ table: input, address: "0-9" }, { table: discrete, address: "0-9" }]
  - id: mes-setpoint
    allow: [write]
    subjects: { roles: [mes] }
    points: [setpoint]
    values: { min: 20, max: 80 }
  - id: mes-burner-office
    allow: [write]
    subjects: { roles: [mes] }
    points: [burner_on]
    when: { days: mon-fri, hours: "08:00-17:00" }
    from: ["10.0.0.0/8"]
  - id: lab-burner
    allow: [write]
    subjects: { roles: [lab] }
    points: [burner_on]
    from: ["10.0.0.0/8"]
  - id: rated
    allow: [read]
    subjects: { roles: [rated] }
    targets: [{ table: holding, address: "0-9" }]
    rate: 1/hour
  - id: no-burner-for-guests
    deny: [write]
    subjects: { roles: [guest] }
    points: [burner_on]
`;
const OPCUA = `
asset: line
protocol: opcua
endpoint: opc.tcp://127.0.0.1:4840
points:
  speed: { node: "ns=1;s=Line1.Speed", type: double, min: 0, max: 120 }
  reset: { method: "ns=1;s=Line1.Reset", object: "ns=1;s=Line1" }
rules:
  - id: read-line
    allow: [read, browse]
    subjects: "*"
    nodes: ["ns=1;s=Line1.*"]
  - id: write-speed
    allow: [write]
    subjects: "*"
    points: [speed]
`;

t.test("every reason the core can produce", async (t) => {
  const set = compile(t, MODBUS, OPCUA);
  const rates = new TokenBucketRates();
  const rated = who({ roles: ["rated"] });
  // Use up the `rated` rule for this principal first.
  t.equal(run(set, { op: op("read", range("holding", 0, 1)), who: rated }, rates).reason, "allowed", "first rated read is allowed");
  const cases: Array<Case & { rates?: TokenBucketRates }> = [
    { name: "allowed", op: op("read", point("setpoint")), expect: { effect: "allow", rule: "read-all", reason: "allowed" } },
    { name: "no-matching-rule", op: op("write", point("setpoint"), { value: 50 }), expect: { effect: "deny", rule: null, reason: "no-matching-rule" } },
    { name: "denied-by-rule", op: op("write", point("burner_on"), { value: true, source: "10.1.1.1" }), who: who({ roles: ["lab", "guest"] }), expect: { effect: "deny", rule: "no-burner-for-guests", reason: "denied-by-rule" } },
    { name: "value-out-of-range", op: op("write", point("setpoint"), { value: 90 }), who: who({ roles: ["mes"] }), expect: { effect: "deny", rule: "mes-setpoint", reason: "value-out-of-range" } },
    { name: "outside-time-window", op: op("write", point("burner_on"), { value: true, source: "10.1.1.1" }), who: who({ roles: ["mes"] }), at: "2026-03-02T18:00:00Z", expect: { effect: "deny", rule: "mes-burner-office", reason: "outside-time-window" } },
    { name: "source-not-allowed", op: op("write", point("burner_on"), { value: true, source: "192.168.0.1" }), who: who({ roles: ["lab"] }), expect: { effect: "deny", rule: "lab-burner", reason: "source-not-allowed" } },
    { name: "rate-limited", op: op("read", range("holding", 0, 1)), who: rated, rates, expect: { effect: "deny", rule: "rated", reason: "rate-limited" } },
    { name: "partial-point", op: op("read", range("input", 1, 1)), expect: { effect: "deny", rule: null, reason: "partial-point" } },
    { name: "unknown-asset", op: op("read", point("setpoint"), { asset: "nope" }), expect: { effect: "deny", rule: null, reason: "unknown-asset" } },
    { name: "unknown-point", op: op("read", point("nope")), expect: { effect: "deny", rule: null, reason: "unknown-point" } },
    { name: "unknown-point: a node id on a modbus asset", op: op("read", node("ns=1;s=Line1.Speed")), expect: { effect: "deny", rule: null, reason: "unknown-point" } },
    { name: "unknown-point: a point name on an opcua asset", op: op("read", point("nope"), { asset: "line" }), expect: { effect: "deny", rule: null, reason: "unknown-point" } },
    { name: "unsupported-function: a range on an opcua asset", op: op("read", range("holding", 0, 1), { asset: "line" }), expect: { effect: "deny", rule: null, reason: "unsupported-function" } },
    // `allow: ["*"]` names write too, but input registers and discrete inputs are never written
    { name: "unsupported-function: write to an input-register point", op: op("write", point("temperature"), { value: 1 }), who: who({ roles: ["root"] }), expect: { effect: "deny", rule: null, reason: "unsupported-function" } },
    { name: "unsupported-function: write to a raw discrete input", op: op("write", range("discrete", 5, 1), { raw: [1] }), who: who({ roles: ["root"] }), expect: { effect: "deny", rule: null, reason: "unsupported-function" } },
    { name: "unsupported-function: write to a method", op: op("write", point("reset"), { value: 1, asset: "line" }), expect: { effect: "deny", rule: null, reason: "unsupported-function" } },
    { name: "root may still read raw input registers", op: op("read", range("input", 5, 2)), who: who({ roles: ["root"] }), expect: { effect: "allow", rule: "everything", reason: "allowed" } },
    { name: "opcua: a node under a nodes pattern is allowed", op: op("read", node("ns=1;s=Line1.Other"), { asset: "line" }), expect: { effect: "allow", rule: "read-line", reason: "allowed" } },
    { name: "opcua: a named point reached by its node id", op: op("read", node("ns=1;s=Line1.Speed"), { asset: "line" }), expect: { effect: "allow", rule: "read-line", reason: "allowed" } },
    { name: "opcua: a node outside every pattern", op: op("read", node("ns=1;s=Line2.Speed"), { asset: "line" }), expect: { effect: "deny", rule: null, reason: "no-matching-rule" } },
    { name: "opcua: write checked against the point's max", op: op("write", node("ns=1;s=Line1.Speed"), { value: 121, asset: "line" }), expect: { effect: "deny", rule: "write-speed", reason: "value-out-of-range" } },
  ];
  const seen = new Set<Reason>();
  for (const c of cases) {
    const d = run(set, c, c.rates);
    seen.add(d.reason);
    t.strictSame(pick(d, c.expect), c.expect, c.name);
    t.ok(d.reason in REASONS, `${c.name}: the reason is in the fixed list`);
  }
  const expected: Reason[] = [
    "allowed", "no-matching-rule", "denied-by-rule", "value-out-of-range", "outside-time-window", "source-not-allowed",
    "rate-limited", "partial-point", "unknown-asset", "unknown-point", "unsupported-function",
  ];
  t.strictSame([...seen].sort(), [...expected].sort(), "each reason the core produces was produced");
});

// ---------------------------------------------------------------------------------------
// closest miss

t.test("closest miss (§4.3)", async (t) => {
  const set = compile(t, `
asset: plc
protocol: modbus
endpoint: tcp://127.0.0.1:502
points:
  sp:    { table: holding, address: 100, max: 1000 }
  other: { table: holding, address: 101 }
  two:   { table: holding, address: 102 }
  cond:  { table: holding, address: 103 }
rules:
  - id: strict
    allow: [write]
    subjects: { roles: [ops] }
    points: [sp]
    from: ["10.0.0.0/8"]
    when: { days: mon-fri, hours: "08:00-17:00" }
    values: { max: 50 }
    rate: 1/hour
  - id: read-other-cond
    allow: [read]
    subjects: { roles: [ops] }
    points: [sp]
    from: ["10.0.0.0/8"]
  - id: other-role
    allow: [write]
    subjects: { roles: [nobody] }
    points: [sp]
    from: ["10.0.0.0/8"]
  - id: two-a
    allow: [write]
    subjects: "*"
    points: [two]
    values: { max: 10 }
  - id: two-b
    allow: [write]
    subjects: "*"
    points: [two]
    from: ["192.168.0.0/16"]
  - id: cond-time
    allow: [write]
    subjects: "*"
    points: [cond]
    when: { hours: "00:00-01:00" }
  - id: cond-value
    allow: [write]
    subjects: "*"
    points: [cond]
    values: { max: 5 }
`);
  const ops = who({ roles: ["ops"] });
  const inTime = "2026-03-02T10:00:00Z";
  const offTime = "2026-03-02T20:00:00Z";
  const good = "10.1.2.3";
  const bad = "192.168.9.9";
  const exhausted = new TokenBucketRates();
  const asset = set.assets.get("plc");
  const strict = asset?.rules.find((r) => r.id === "strict");
  if (!asset || !strict?.rate) throw new Error("policy not as expected");
  exhausted.take(rateKey(asset, strict, ops), strict.rate, at(inTime));
  const w = (p: string, value: number, source: string) => op("write", point(p), { value, source });
  const cases: Array<Case & { rates?: TokenBucketRates }> = [
    { name: "all conditions hold", op: w("sp", 10, good), who: ops, at: inTime, expect: { effect: "allow", rule: "strict", reason: "allowed" } },
    { name: "from, when, values and rate fail: from is named", op: w("sp", 99, bad), who: ops, at: offTime, rates: exhausted, expect: { effect: "deny", rule: "strict", reason: "source-not-allowed" } },
    { name: "when, values and rate fail: when is named", op: w("sp", 99, good), who: ops, at: offTime, rates: exhausted, expect: { effect: "deny", rule: "strict", reason: "outside-time-window" } },
    { name: "values and rate fail: values is named", op: w("sp", 99, good), who: ops, at: inTime, rates: exhausted, expect: { effect: "deny", rule: "strict", reason: "value-out-of-range" } },
    { name: "only rate fails", op: w("sp", 10, good), who: ops, at: inTime, rates: exhausted, expect: { effect: "deny", rule: "strict", reason: "rate-limited" } },
    { name: "from and values fail, when holds: from is named", op: w("sp", 99, bad), who: ops, at: inTime, expect: { effect: "deny", rule: "strict", reason: "source-not-allowed" } },
    { name: "subject does not match: no closest miss", op: w("sp", 10, bad), who: who({ roles: ["guest"] }), at: inTime, expect: { effect: "deny", rule: null, reason: "no-matching-rule" } },
    { name: "action not listed by the failing rules: no closest miss", op: op("browse", point("sp"), { source: bad }), who: ops, at: offTime, expect: { effect: "deny", rule: null, reason: "no-matching-rule" } },
    { name: "the read rule is the closest miss for a read", op: op("read", point("sp"), { source: bad }), who: ops, expect: { effect: "deny", rule: "read-other-cond", reason: "source-not-allowed" } },
    { name: "a later rule with another subject is no closest miss", op: w("sp", 10, bad), who: who({ roles: ["nobody"] }), expect: { effect: "deny", rule: "other-role", reason: "source-not-allowed" } },
    { name: "target not covered by the failing rule: no closest miss", op: w("other", 10, bad), who: ops, expect: { effect: "deny", rule: null, reason: "no-matching-rule" } },
    { name: "first allow fails values, the later one matches", op: w("two", 50, "192.168.1.1"), expect: { effect: "allow", rule: "two-b", reason: "allowed" } },
    { name: "first allow matches: it is reported", op: w("two", 5, "192.168.1.1"), expect: { effect: "allow", rule: "two-a", reason: "allowed" } },
    { name: "both fail: the first in file order is named", op: w("two", 50, "10.1.1.1"), expect: { effect: "deny", rule: "two-a", reason: "value-out-of-range" } },
    { name: "first fails when, later fails values: first named", op: w("cond", 9, good), at: inTime, expect: { effect: "deny", rule: "cond-time", reason: "outside-time-window" } },
    { name: "first fails when, later matches", op: w("cond", 5, good), at: inTime, expect: { effect: "allow", rule: "cond-value", reason: "allowed" } },
    { name: "first holds at its time", op: w("cond", 9, good), at: "2026-03-02T00:30:00Z", expect: { effect: "allow", rule: "cond-time", reason: "allowed" } },
  ];
  for (const c of cases) {
    const d = run(set, c, c.rates);
    t.strictSame(pick(d, c.expect), c.expect, c.name);
  }
});

// ---------------------------------------------------------------------------------------
// ranges

t.test("ranges straddling rules", async (t) => {
  const set = compile(t, `
asset: plc
protocol: modbus
endpoint: tcp://127.0.0.1:502
points:
  sp:   { table: holding, address: 10 }
  flow: { table: holding, address: 11, type: float32 }
rules:
  - id: block-a
    allow: [read]
    subjects: "*"
    targets: [{ table: holding, address: "100-109" }]
  - id: block-b
    allow: [read]
    subjects: "*"
    targets: [{ table: holding, address: "110-119" }]
  - id: raw-13
    allow: [read]
    subjects: "*"
    targets: [{ table: holding, address: "13-15" }]
  - id: named
    allow: [read]
    subjects: "*"
    points: [sp, flow]
  - id: coils
    allow: [read]
    subjects: "*"
    targets: [{ table: coil, address: 0 }, { table: coil, address: "1-3" }]
`);
  const read = (table: Table, address: number, count: number) => op("read", range(table, address, count));
  const none: Expect = { effect: "deny", rule: null, reason: "no-matching-rule" };
  const cases: Case[] = [
    { name: "wholly in one block", op: read("holding", 100, 10), expect: { effect: "allow", rule: "block-a", reason: "allowed" } },
    { name: "both adjacent blocks exactly", op: read("holding", 100, 20), expect: { effect: "allow", rule: "block-a", reason: "allowed" } },
    { name: "straddling the boundary", op: read("holding", 105, 10), expect: { effect: "allow", rule: "block-a", reason: "allowed" } },
    { name: "second block alone", op: read("holding", 110, 10), expect: { effect: "allow", rule: "block-b", reason: "allowed" } },
    { name: "one address past the allowed block", op: read("holding", 100, 21), expect: none },
    { name: "one address before the allowed block", op: read("holding", 99, 11), expect: none },
    { name: "the address just past, alone", op: read("holding", 120, 1), expect: none },
    { name: "named points and raw addresses together", op: read("holding", 10, 6), expect: { effect: "allow", rule: "raw-13", reason: "allowed" } },
    { name: "named points and raw addresses, one past", op: read("holding", 10, 7), expect: none },
    { name: "named points only", op: read("holding", 10, 3), expect: { effect: "allow", rule: "named", reason: "allowed" } },
    { name: "a raw address before the named points", op: read("holding", 9, 4), expect: none },
    { name: "same addresses in another table are not covered", op: read("input", 100, 1), expect: none },
    { name: "two target entries of one rule, adjacent", op: read("coil", 0, 4), expect: { effect: "allow", rule: "coils", reason: "allowed" } },
    { name: "two target entries of one rule, one past", op: read("coil", 0, 5), expect: none },
    { name: "an empty range allows nothing", op: read("holding", 100, 0), expect: none },
  ];
  runCases(t, set, cases);
});

// ---------------------------------------------------------------------------------------
// multi-register points

t.test("multi-register points: whole only, decoded by type and word order", async (t) => {
  const set = compile(t, `
asset: plc
protocol: modbus
endpoint: tcp://127.0.0.1:502
points:
  temp:    { table: input, address: 0, type: float32 }
  total:   { table: input, address: 2, type: uint32 }
  flow:    { table: holding, address: 100, type: float32, words: big, min: 0, max: 100 }
  flow_le: { table: holding, address: 102, type: float32, words: little, min: 0, max: 100 }
  count:   { table: holding, address: 104, type: uint32, words: little, max: 100000 }
  sp:      { table: holding, address: 106, type: uint16 }
rules:
  - id: read-all
    allow: [read]
    subjects: "*"
    points: ["*"]
  - id: mes-write
    allow: [write]
    subjects: { roles: [mes] }
    points: [flow, flow_le, count, sp]
  - id: mes-sp-window
    allow: [write]
    subjects: { roles: [mes] }
    points: [sp]
    values: { max: 10 }
`);
  const mes = who({ roles: ["mes"] });
  const ok = (rule: string): Expect => ({ effect: "allow", rule, reason: "allowed" });
  const partial: Expect = { effect: "deny", rule: null, reason: "partial-point" };
  const out = (rule: string): Expect => ({ effect: "deny", rule, reason: "value-out-of-range" });
  const write = (address: number, raw: number[]) => op("write", range("holding", address, raw.length), { raw });
  const fBig = (v: number) => words("float32", "big", v);
  const fLittle = (v: number) => words("float32", "little", v);
  const cases: Case[] = [
    { name: "float32 read whole", op: op("read", range("input", 0, 2)), expect: ok("read-all") },
    { name: "float32 and uint32 read whole", op: op("read", range("input", 0, 4)), expect: ok("read-all") },
    { name: "float32 read by name", op: op("read", point("temp")), expect: ok("read-all") },
    { name: "float32 first half", op: op("read", range("input", 0, 1)), expect: partial },
    { name: "float32 second half", op: op("read", range("input", 1, 1)), expect: partial },
    { name: "float32 second half and uint32 whole", op: op("read", range("input", 1, 3)), expect: partial },
    { name: "uint32 first half", op: op("read", range("input", 2, 1)), expect: partial },
    { name: "float32 whole and uint32 first half", op: op("read", range("input", 0, 3)), expect: partial },
    { name: "partial write across two points", op: write(101, [0, 0]), who: mes, expect: partial },
    { name: "float32 big 55.5 within 0-100", op: write(100, fBig(55.5)), who: mes, expect: ok("mes-write") },
    { name: "float32 big 150.25 above 100", op: write(100, fBig(150.25)), who: mes, expect: out("mes-write") },
    { name: "float32 big -0.5 below 0", op: write(100, fBig(-0.5)), who: mes, expect: out("mes-write") },
    { name: "float32 little 55.5 within 0-100", op: write(102, fLittle(55.5)), who: mes, expect: ok("mes-write") },
    { name: "float32 little 150.25 above 100", op: write(102, fLittle(150.25)), who: mes, expect: out("mes-write") },
    { name: "big-order words of 150.25 on the little point are a different value", op: write(102, fBig(150.25)), who: mes, expect: ok("mes-write") },
    { name: "uint32 little 70000 within max", op: write(104, words("uint32", "little", 70000)), who: mes, expect: ok("mes-write") },
    { name: "uint32 little 100001 above max", op: write(104, words("uint32", "little", 100001)), who: mes, expect: out("mes-write") },
    { name: "FC16 over two points, both in range", op: write(100, [...fBig(55.5), ...fLittle(55.5)]), who: mes, expect: ok("mes-write") },
    { name: "FC16 over two points, the second out of range", op: write(100, [...fBig(55.5), ...fLittle(150.25)]), who: mes, expect: out("mes-write") },
    { name: "FC16 over two points, the first out of range", op: write(100, [...fBig(150.25), ...fLittle(55.5)]), who: mes, expect: out("mes-write") },
    { name: "FC16 over four points, all in range", op: write(100, [...fBig(1), ...fLittle(2), ...words("uint32", "little", 3), 4]), who: mes, expect: ok("mes-write") },
    { name: "FC16 over four points, the last out of range", op: write(100, [...fBig(1), ...fLittle(2), ...words("uint32", "little", 100001), 4]), who: mes, expect: out("mes-write") },
    { name: "a float32 point written by value", op: op("write", point("flow"), { value: 55.5 }), who: mes, expect: ok("mes-write") },
    { name: "a float32 point written by value, out of range", op: op("write", point("flow"), { value: 150.25 }), who: mes, expect: out("mes-write") },
    { name: "a float32 point written by raw words (little)", op: op("write", point("flow_le"), { raw: fLittle(150.25) }), who: mes, expect: out("mes-write") },
  ];
  runCases(t, set, cases);
});

// ---------------------------------------------------------------------------------------
// deny overrides

const DENY_RULES = `
rules:
  - id: read-all
    allow: [read]
    subjects: "*"
    points: ["*"]
    targets: [{ table: holding, address: "0-99" }]
  - id: write-all
    allow: [write]
    subjects: "*"
    points: ["*"]
    targets: [{ table: holding, address: "0-99" }]
  - id: no-burner
    deny: [write]
    subjects: "*"
    points: [burner]
  - id: no-raw-50
    deny: [read, write]
    subjects: "*"
    targets: [{ table: holding, address: 50 }]
  - id: freeze-weekend
    deny: [write]
    subjects: "*"
    points: [sp]
    when: { days: sat-sun }
  - id: not-from-dmz
    deny: [read]
    subjects: "*"
    points: [sp]
    from: ["10.99.0.0/16"]
  - id: guests-no-write
    deny: [write]
    subjects: { roles: [guest] }
    points: ["*"]
  - id: second-word
    deny: [read]
    subjects: "*"
    targets: [{ table: holding, address: 201 }]
`;
const DENY_POINTS = `
points:
  burner: { table: coil, address: 0 }
  sp:     { table: holding, address: 10 }
  flow:   { table: holding, address: 200, type: float32 }
`;
const denyPolicy = (mode: "enforce" | "monitor"): string => `
asset: plc
protocol: modbus
endpoint: tcp://127.0.0.1:502
mode: ${mode}
${DENY_POINTS}
${DENY_RULES}
  - id: mes-window
    allow: [write]
    subjects: { roles: [mes] }
    points: [sp]
    values: { max: 10 }
`;

t.test("deny overrides allow", async (t) => {
  const set = compile(t, denyPolicy("enforce"));
  const ok = (rule: string): Expect => ({ effect: "allow", rule, reason: "allowed" });
  const denied = (rule: string): Expect => ({ effect: "deny", rule, reason: "denied-by-rule" });
  const monday = "2026-03-02T10:00:00Z";
  const saturday = "2026-03-07T10:00:00Z";
  const cases: Case[] = [
    { name: "a deny later in the file beats the earlier allow", op: op("write", point("burner"), { value: true }), expect: denied("no-burner") },
    { name: "the deny names write only: read stays allowed", op: op("read", point("burner")), expect: ok("read-all") },
    { name: "a deny on one address denies the whole range (read)", op: op("read", range("holding", 40, 20)), expect: denied("no-raw-50") },
    { name: "a deny on one address denies the whole range (write)", op: op("write", range("holding", 49, 3), { raw: [1, 2, 3] }), expect: denied("no-raw-50") },
    { name: "the range next to the denied address is allowed", op: op("read", range("holding", 40, 10)), expect: ok("read-all") },
    { name: "a deny on a named point denies a range over it", op: op("write", range("holding", 9, 3), { raw: [1, 2, 3] }), at: saturday, expect: denied("freeze-weekend") },
    { name: "a deny whose when holds denies", op: op("write", point("sp"), { value: 5 }), at: saturday, expect: denied("freeze-weekend") },
    { name: "a deny whose when does not hold does not deny", op: op("write", point("sp"), { value: 5 }), at: monday, expect: ok("write-all") },
    { name: "a deny whose from holds denies", op: op("read", point("sp"), { source: "10.99.1.1" }), expect: denied("not-from-dmz") },
    { name: "a deny whose from does not hold does not deny", op: op("read", point("sp"), { source: "10.1.1.1" }), expect: ok("read-all") },
    { name: "a deny whose subjects do not match does not deny", op: op("write", point("sp"), { value: 5 }), who: who({ roles: ["mes"] }), expect: ok("write-all") },
    { name: "a deny whose subjects match denies", op: op("write", point("sp"), { value: 5 }), who: who({ roles: ["mes", "guest"] }), expect: denied("guests-no-write") },
    { name: "a deny on one word of a float32 denies reading the point by range", op: op("read", range("holding", 200, 2)), expect: denied("second-word") },
    { name: "a deny on one word of a float32 denies reading the point by name", op: op("read", point("flow")), expect: denied("second-word") },
    { name: "first allow fails values, a later allow matches, a deny still wins", op: op("write", point("sp"), { value: 50 }), who: who({ roles: ["mes"] }), at: saturday, expect: denied("freeze-weekend") },
    { name: "first allow fails values, a later allow matches, no deny applies", op: op("write", point("sp"), { value: 50 }), who: who({ roles: ["mes"] }), at: monday, expect: ok("write-all") },
  ];
  runCases(t, set, cases);
});

// ---------------------------------------------------------------------------------------
// monitor mode

t.test("monitor mode: would-deny comes out as allow with the deny's reason", async (t) => {
  const set = compile(t, denyPolicy("monitor"));
  const cases: Case[] = [
    { name: "denied-by-rule", op: op("write", point("burner"), { value: true }), expect: { effect: "allow", rule: "no-burner", reason: "denied-by-rule", mode: "monitor" } },
    { name: "no-matching-rule", op: op("read", range("holding", 300, 1)), expect: { effect: "allow", rule: null, reason: "no-matching-rule", mode: "monitor" } },
    { name: "denied-by-rule on a raw coil write", op: op("write", range("coil", 0, 1), { raw: [1] }), expect: { effect: "allow", rule: "no-burner", reason: "denied-by-rule", mode: "monitor" } },
    { name: "denied-by-rule for a subject", op: op("write", point("flow"), { value: 1 }), who: who({ roles: ["guest"] }), expect: { effect: "allow", rule: "guests-no-write", reason: "denied-by-rule", mode: "monitor" } },
    // Structural refusals are not policy decisions: monitor mode does not let them through.
    { name: "partial-point stays denied", op: op("read", range("holding", 201, 1)), expect: { effect: "deny", rule: null, reason: "partial-point", mode: "monitor" } },
    { name: "unknown-point stays denied", op: op("read", point("nope")), expect: { effect: "deny", rule: null, reason: "unknown-point", mode: "monitor" } },
    { name: "an allow stays allowed", op: op("read", point("sp")), expect: { effect: "allow", rule: "read-all", reason: "allowed", mode: "monitor" } },
  ];
  runCases(t, set, cases);
  const enforce = compile(t, denyPolicy("enforce"));
  const modes: Case[] = [
    { name: "enforce: the same deny is a deny", op: op("write", point("burner"), { value: true }), expect: { effect: "deny", rule: "no-burner", reason: "denied-by-rule", mode: "enforce" } },
    { name: "enforce: an allow says mode enforce", op: op("read", point("sp")), expect: { effect: "allow", rule: "read-all", reason: "allowed", mode: "enforce" } },
  ];
  runCases(t, enforce, modes);
  const values = compile(t, `
asset: plc
protocol: modbus
endpoint: tcp://127.0.0.1:502
mode: monitor
points:
  sp: { table: holding, address: 10, max: 100 }
rules:
  - id: sp-window
    allow: [write]
    subjects: "*"
    points: [sp]
    values: { max: 50 }
`);
  runCases(t, values, [
    { name: "monitor: value-out-of-range names the rule", op: op("write", point("sp"), { value: 60 }), expect: { effect: "allow", rule: "sp-window", reason: "value-out-of-range", mode: "monitor" } },
    { name: "monitor: a value in range is allowed", op: op("write", point("sp"), { value: 50 }), expect: { effect: "allow", rule: "sp-window", reason: "allowed", mode: "monitor" } },
  ]);
});

// ---------------------------------------------------------------------------------------
// reported rule

t.test("the first matching allow in file order is reported", async (t) => {
  const set = compile(t, `
asset: plc
protocol: modbus
endpoint: tcp://127.0.0.1:502
points:
  a: { table: holding, address: 0 }
  b: { table: holding, address: 1 }
rules:
  - id: r-b-only
    allow: [read]
    subjects: { roles: [y] }
    points: [b]
  - id: r-a-only
    allow: [read]
    subjects: { roles: [x] }
    points: [a]
  - id: r-role-b
    allow: [read]
    subjects: { roles: [b] }
    points: ["*"]
  - id: r-role-a
    allow: [read]
    subjects: { roles: [a] }
    points: ["*"]
  - id: r-anyone
    allow: [read]
    subjects: "*"
    points: ["*"]
`);
  const read = op("read", point("a"));
  const both = op("read", range("holding", 0, 2));
  const ok = (rule: string): Expect => ({ effect: "allow", rule, reason: "allowed" });
  const cases: Case[] = [
    { name: "only the catch-all matches", op: read, expect: ok("r-anyone") },
    { name: "role a: its rule comes before the catch-all", op: read, who: who({ roles: ["a"] }), expect: ok("r-role-a") },
    { name: "roles a and b: b's rule is earlier in the file", op: read, who: who({ roles: ["a", "b"] }), expect: ok("r-role-b") },
    { name: "role order in the token does not matter", op: read, who: who({ roles: ["b", "a"] }), expect: ok("r-role-b") },
    { name: "range: the first element's rule is the earliest", op: both, who: who({ roles: ["x"] }), expect: ok("r-a-only") },
    { name: "a rule for another point does not count", op: read, who: who({ roles: ["y"] }), expect: ok("r-anyone") },
    { name: "range: the second element's rule is earlier than the first's", op: both, who: who({ roles: ["y"] }), expect: ok("r-b-only") },
    { name: "range: the earliest rule allowing any element is reported", op: both, who: who({ roles: ["x", "y"] }), expect: ok("r-b-only") },
  ];
  runCases(t, set, cases);
});

// ---------------------------------------------------------------------------------------
// writes with a value not known in advance

t.test("writes with unknown value (raw: null, FC22)", async (t) => {
  const set = compile(t, `
asset: plc
protocol: modbus
endpoint: tcp://127.0.0.1:502
points:
  free:    { table: holding, address: 0 }
  bounded: { table: holding, address: 1, max: 100 }
  limited: { table: holding, address: 2 }
  wide:    { table: holding, address: 4, type: uint32 }
rules:
  - id: free-write
    allow: [write]
    subjects: "*"
    points: [free, bounded, wide]
    targets: [{ table: holding, address: "10-19" }]
  - id: limited-write
    allow: [write]
    subjects: "*"
    points: [limited]
    targets: [{ table: holding, address: "20-29" }]
    values: { min: 0, max: 10 }
`);
  const fc22 = (address: number, count = 1) => op("write", range("holding", address, count), { raw: null });
  const ok = (rule: string): Expect => ({ effect: "allow", rule, reason: "allowed" });
  const out = (rule: string): Expect => ({ effect: "deny", rule, reason: "value-out-of-range" });
  const cases: Case[] = [
    { name: "rule without values on a point without min/max", op: fc22(0), expect: ok("free-write") },
    { name: "rule without values on a point with max", op: fc22(1), expect: out("free-write") },
    { name: "rule with values on a point without min/max", op: fc22(2), expect: out("limited-write") },
    { name: "rule without values on an unnamed address", op: fc22(10), expect: ok("free-write") },
    { name: "rule with values on an unnamed address", op: fc22(20), expect: out("limited-write") },
    { name: "point write without value, no limits", op: op("write", point("free")), expect: ok("free-write") },
    { name: "point write with raw null, point max", op: op("write", point("bounded"), { raw: null }), expect: out("free-write") },
    { name: "a known value on the limited point is checked normally", op: op("write", point("limited"), { value: 5 }), expect: ok("limited-write") },
    { name: "a multi-register point with unknown value, no limits", op: fc22(4, 2), expect: ok("free-write") },
  ];
  runCases(t, set, cases);
});

// ---------------------------------------------------------------------------------------
// raw-address writes

t.test("raw-address writes are limited by raw-value bounds", async (t) => {
  const set = compile(t, `
asset: plc
protocol: modbus
endpoint: tcp://127.0.0.1:502
rules:
  - id: raw-window
    allow: [write]
    subjects: "*"
    targets: [{ table: holding, address: "300-309" }]
    values: { min: 10, max: 1000 }
  - id: coil-on-only
    allow: [write]
    subjects: "*"
    targets: [{ table: coil, address: "0-9" }]
    values: { min: 1 }
`);
  const w = (raw: number[], address = 300) => op("write", range("holding", address, raw.length), { raw });
  const ok: Expect = { effect: "allow", rule: "raw-window", reason: "allowed" };
  const out: Expect = { effect: "deny", rule: "raw-window", reason: "value-out-of-range" };
  const cases: Case[] = [
    { name: "raw min inclusive", op: w([10]), expect: ok },
    { name: "raw max inclusive", op: w([1000]), expect: ok },
    { name: "below raw min", op: w([9]), expect: out },
    { name: "above raw max", op: w([1001]), expect: out },
    { name: "0xFFFF is 65535 (raw words are unsigned), not -1", op: w([0xffff]), expect: out },
    { name: "several addresses all in bounds", op: w([10, 500, 1000]), expect: ok },
    { name: "several addresses, one out", op: w([10, 2000, 1000]), expect: out },
    { name: "outside the raw block", op: w([50], 310), expect: { effect: "deny", rule: null, reason: "no-matching-rule" } },
    { name: "coil written 1 (FC5 0xFF00)", op: op("write", range("coil", 0, 1), { raw: [1] }), expect: { effect: "allow", rule: "coil-on-only", reason: "allowed" } },
    { name: "coil written 0", op: op("write", range("coil", 0, 1), { raw: [0] }), expect: { effect: "deny", rule: "coil-on-only", reason: "value-out-of-range" } },
  ];
  runCases(t, set, cases);
});

// ---------------------------------------------------------------------------------------
// values on the decision

t.test("decisions on writes carry the written values, raw and decoded", async (t) => {
  const set = compile(t, `
asset: plc
zone: cell-1
protocol: modbus
endpoint: tcp://127.0.0.1:502
points:
  sp:      { table: holding, address: 100, type: uint16 }
  flow:    { table: holding, address: 101, type: float32, words: little, max: 100 }
  burner:  { table: coil, address: 0 }
rules:
  - id: write-all
    allow: [write]
    subjects: "*"
    points: ["*"]
    targets: [{ table: holding, address: "200-209" }]
`, `
asset: line
protocol: opcua
endpoint: opc.tcp://127.0.0.1:4840
points:
  speed: { node: "ns=1;s=Speed", type: double }
rules:
  - id: write-nodes
    allow: [write]
    subjects: "*"
    nodes: ["ns=1;s=*"]
`);
  const flowWords = words("float32", "little", 55.5);
  const cases: Array<{ name: string; op: Operation; effect: "allow" | "deny"; values: WrittenValue[] | undefined }> = [
    {
      name: "FC16 over a uint16 and a little-endian float32",
      op: op("write", range("holding", 100, 3), { raw: [50, ...flowWords] }),
      effect: "allow",
      values: [
        { point: "sp", table: "holding", address: 100, raw: [50], value: 50 },
        { point: "flow", table: "holding", address: 101, raw: flowWords, value: 55.5 },
      ],
    },
    {
      name: "a denied write carries its values too",
      op: op("write", range("holding", 101, 2), { raw: words("float32", "little", 150.25) }),
      effect: "deny",
      values: [{ point: "flow", table: "holding", address: 101, raw: words("float32", "little", 150.25), value: 150.25 }],
    },
    {
      name: "raw addresses: the word is the value",
      op: op("write", range("holding", 200, 2), { raw: [7, 0xffff] }),
      effect: "allow",
      values: [
        { table: "holding", address: 200, raw: [7], value: 7 },
        { table: "holding", address: 201, raw: [0xffff], value: 0xffff },
      ],
    },
    { name: "a coil (FC5 on)", op: op("write", range("coil", 0, 1), { raw: [1] }), effect: "allow", values: [{ point: "burner", table: "coil", address: 0, raw: [1], value: true }] },
    { name: "a point written by value", op: op("write", point("sp"), { value: 42 }), effect: "allow", values: [{ point: "sp", table: "holding", address: 100, value: 42 }] },
    { name: "a point written by raw words", op: op("write", point("flow"), { raw: flowWords }), effect: "allow", values: [{ point: "flow", table: "holding", address: 101, raw: flowWords, value: 55.5 }] },
    { name: "FC22: where, but no value", op: op("write", range("holding", 100, 1), { raw: null }), effect: "allow", values: [{ point: "sp", table: "holding", address: 100 }] },
    { name: "an opcua named node", op: op("write", node("ns=1;s=Speed"), { value: 12.5, asset: "line" }), effect: "allow", values: [{ point: "speed", node: "ns=1;s=Speed", value: 12.5 }] },
    { name: "an opcua unnamed node", op: op("write", node("ns=1;s=Other"), { value: "x", asset: "line" }), effect: "allow", values: [{ node: "ns=1;s=Other", value: "x" }] },
    { name: "reads carry no values", op: op("read", point("sp")), effect: "deny", values: undefined },
  ];
  for (const c of cases) {
    const d = run(set, c);
    t.equal(d.effect, c.effect, `${c.name}: effect`);
    t.strictSame(d.values, c.values, `${c.name}: values`);
    t.equal("values" in d, c.values !== undefined, `${c.name}: values present only on writes`);
  }
  const z = run(set, { op: op("write", point("sp"), { value: 1 }) });
  t.equal(z.zone, "cell-1", "the asset's zone is on the decision");
  t.notOk("zone" in run(set, { op: op("write", node("ns=1;s=Speed"), { value: 1, asset: "line" }) }), "no zone when the asset has none");
});

// ---------------------------------------------------------------------------------------
// policyRevision

t.test("policyRevision in every decision equals set.revision", async (t) => {
  const a = compile(t, MODBUS);
  const b = compile(t, MODBUS.replace("zone: cell-1", "zone: cell-2"));
  t.not(a.revision, b.revision, "different policy text, different revision");
  t.match(a.revision, /^[0-9a-f]{16}$/, "a 16-hex-digit revision");
  for (const set of [a, b]) {
    run(set, { op: op("read", point("setpoint")) });
    run(set, { op: op("read", point("setpoint"), { asset: "nope" }) });
    run(set, { op: op("read", range("input", 1, 1)) });
  }
  t.ok(made.length > 100, `checking ${made.length} decisions`);
  const wrong = made.filter(({ set, d }) => d.policyRevision !== set.revision);
  t.strictSame(wrong.map(({ d }) => d), [], "every decision names its set's revision");
});

t.test("roles past the first 31 a process compiles keep the general subject check, with the same answers", async (t) => {
  // 40 role names this process has not seen: at most 31 get bits, so some rules here are
  // checked by role mask and the rest by their matcher; both must decide alike.
  const roles = Array.from({ length: 40 }, (_, i) => `bits-role-${i}`);
  const rules = roles.map((r, i) => [`  - id: rule-${i}`, "    allow: [read]", `    subjects: { roles: [${r}] }`, `    points: [p${i % 4}]`].join("\n"));
  const set = compile(t, ["asset: plc", "protocol: modbus", "endpoint: tcp://127.0.0.1:1502", "points:", ...[0, 1, 2, 3].map((p) => `  p${p}: { table: holding, address: ${p} }`), "rules:", ...rules, ""].join("\n"));
  const plc = set.assets.get("plc");
  const masked = plc?.rules.filter((r) => r.roleMask !== undefined).length ?? 0;
  t.ok(masked < 40 && masked <= 31, `some rules by mask (${masked}), the others by matcher`);
  for (let i = 0; i < 40; i++) {
    const principal = who({ roles: ["someone-else", roles[i] as string] });
    t.match(decide(set, op("read", point(`p${i % 4}`)), principal, { now: at(NOW) }), { effect: "allow", rule: `rule-${i}` }, `role ${i}: its rule allows its point`);
    t.match(decide(set, op("read", point(`p${(i + 1) % 4}`)), who({ roles: [roles[i] as string] }), { now: at(NOW) }), { effect: "deny", reason: "no-matching-rule" }, `role ${i}: not another point`);
    t.equal(decide(set, op("read", point(`p${i % 4}`)), who({ roles: ["nobody"] }), { now: at(NOW) }).effect, "deny", "a role no rule names is denied");
  }
});
