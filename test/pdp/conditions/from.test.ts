import t from "tap";
import { compileFrom } from "../../../src/pdp/conditions/from.js";

function matcherOf(list: string[]) {
  const { matcher, errors } = compileFrom(list);
  if (matcher === undefined) throw new Error(`unexpected errors: ${JSON.stringify(errors)}`);
  return matcher;
}

// [from list, source, expected, why]
const cases: [string[], string | undefined, boolean, string][] = [
  [["10.20.0.0/16"], "10.20.1.5", true, "v4 inside"],
  [["10.20.0.0/16"], "10.20.255.255", true, "v4 last address"],
  [["10.20.0.0/16"], "10.21.0.0", false, "v4 just past the range"],
  [["10.20.0.0/16"], "10.19.255.255", false, "v4 just before the range"],
  [["10.20.0.0/16", "192.168.1.7"], "192.168.1.7", true, "single address entry"],
  [["192.168.1.7"], "192.168.1.8", false, "single address is /32"],
  [["192.168.1.7/32"], "192.168.1.7", true, "explicit /32"],
  [["0.0.0.0/0"], "203.0.113.9", true, "/0 matches every v4"],
  [["0.0.0.0/0"], "255.255.255.255", true, "/0 matches the top address"],
  [["0.0.0.0/0"], "2001:db8::1", false, "/0 v4 does not match v6"],
  [["128.0.0.0/1"], "200.1.1.1", true, "/1 top half (sign bit)"],
  [["128.0.0.0/1"], "127.255.255.255", false, "/1 bottom half"],
  [["2001:db8::/32"], "2001:db8:1234::5", true, "v6 inside"],
  [["2001:db8::/32"], "2001:db9::", false, "v6 outside"],
  [["2001:db8::/32"], "2001:DB8::1", true, "v6 upper case"],
  [["2001:db8:0:0:8000::/65"], "2001:db8::8000:0:0:1", true, "v6 prefix not on a word boundary, inside"],
  [["2001:db8:0:0:8000::/65"], "2001:db8::7fff:0:0:1", false, "v6 prefix not on a word boundary, outside"],
  [["::1"], "::1", true, "v6 loopback"],
  [["::1"], "::2", false, "v6 single address is /128"],
  [["::/0"], "fe80::1", true, "/0 matches every v6"],
  [["::/0"], "10.0.0.1", false, "v6 /0 does not match v4"],
  [["127.0.0.0/8"], "::1", false, "v6 loopback is not v4 loopback"],
  // IPv4-mapped sources, as dual-stack Node sockets report them
  [["10.20.0.0/16"], "::ffff:10.20.1.5", true, "mapped v4 matches a v4 CIDR"],
  [["10.20.0.0/16"], "::FFFF:10.20.1.5", true, "mapped v4, upper case"],
  [["10.20.0.0/16"], "::ffff:a14:105", true, "mapped v4 in hex form"],
  [["10.20.0.0/16"], "::ffff:10.21.1.5", false, "mapped v4 outside"],
  [["::ffff:10.20.0.0/112"], "10.20.3.4", true, "a mapped v6 entry matches plain v4"],
  [["::/0"], "::ffff:10.20.1.5", false, "mapped sources are v4, so a v6 /0 does not match them"],
  [["10.20.0.0/16"], "::10.20.1.5", false, "v4-compatible (not mapped) is plain v6"],
  [["::a14:0/112"], "::10.20.1.5", true, "v4-compatible is ::a14:105"],
  // zone ids are stripped
  [["fe80::/10"], "fe80::1%eth0", true, "zone id stripped"],
  [["fe80::1"], "fe80::1%25", true, "numeric zone id stripped"],
  [["fe80::/10"], "fe80::1%", false, "empty zone id is garbage"],
  [["fe80::/10"], "%eth0", false, "zone id alone is garbage"],
  // fail closed
  [["0.0.0.0/0", "::/0"], undefined, false, "no source"],
  [["0.0.0.0/0", "::/0"], "", false, "empty source"],
  [["0.0.0.0/0", "::/0"], "not-an-ip", false, "garbage"],
  [["0.0.0.0/0", "::/0"], "10.1", false, "inet_aton shorthand"],
  [["0.0.0.0/0", "::/0"], "010.1.2.3", false, "leading zero (octal in inet_aton)"],
  [["0.0.0.0/0", "::/0"], "10.1.2.256", false, "octet out of range"],
  [["0.0.0.0/0", "::/0"], " 10.1.2.3", false, "whitespace"],
  [["0.0.0.0/0", "::/0"], "10.1.2.3/32", false, "a CIDR is not a source"],
  [["0.0.0.0/0", "::/0"], "1:2:3:4:5:6:7:8:9", false, "too many v6 groups"],
  [[], "10.1.2.3", false, "empty list allows nothing"],
];

t.test("holds", async (t) => {
  for (const [list, source, expected, why] of cases) {
    t.equal(matcherOf(list).holds(source), expected, `${JSON.stringify(list)} from ${String(source)}: ${why}`);
  }
});

t.test("the source cache stays correct past its bound", async (t) => {
  const m = matcherOf(["10.0.0.0/8"]);
  for (let i = 0; i < 3000; i++) {
    const a = `${i % 2 === 0 ? 10 : 11}.0.${(i >> 8) & 255}.${i & 255}`;
    if (m.holds(a) !== (i % 2 === 0)) {
      t.fail(`wrong answer for ${a}`);
      return;
    }
  }
  t.equal(m.holds("10.0.0.0"), true);
  t.equal(m.holds("11.0.0.0"), false);
});

t.test("describe lists the entries", async (t) => {
  t.equal(matcherOf(["10.20.0.0/16", "2001:db8::/32"]).describe(), "10.20.0.0/16, 2001:db8::/32");
});

// [from list, expected errors as [index, exact message]]
const bad: [unknown[], [number, string][]][] = [
  [["10.20.0.0/33"], [[0, `"10.20.0.0/33": prefix length must be 0-32 for IPv4`]]],
  [["2001:db8::/129"], [[0, `"2001:db8::/129": prefix length must be 0-128 for IPv6`]]],
  [["10.0.0.0/"], [[0, `"10.0.0.0/": prefix length must be 0-32 for IPv4`]]],
  [["10.0.0.0/-1"], [[0, `"10.0.0.0/-1": prefix length must be 0-32 for IPv4`]]],
  [["10.0.0.0/8/8"], [[0, `"10.0.0.0/8/8": prefix length must be 0-32 for IPv4`]]],
  [["10.1.2.3/8"], [[0, `"10.1.2.3/8": host bits set (did you mean 10.0.0.0/8?)`]]],
  [["2001:db8::1/32"], [[0, `"2001:db8::1/32": host bits set (did you mean 2001:db8::/32?)`]]],
  [["::ffff:10.1.2.3/104"], [[0, `"::ffff:10.1.2.3/104": host bits set (did you mean ::ffff:10.0.0.0/104?)`]]],
  [["::10.1.2.3/112"], [[0, `"::10.1.2.3/112": host bits set (did you mean ::a01:0/112?)`]]],
  [["10.0.0.0.0/8"], [[0, `"10.0.0.0.0/8": not an IPv4 or IPv6 address or CIDR`]]],
  [["010.0.0.0/8"], [[0, `"010.0.0.0/8": not an IPv4 or IPv6 address or CIDR`]]],
  [["::ffff:010.1.2.3"], [[0, `"::ffff:010.1.2.3": not an IPv4 or IPv6 address or CIDR`]]],
  [["localhost"], [[0, `"localhost": not an IPv4 or IPv6 address or CIDR`]]],
  [[""], [[0, `"": not an IPv4 or IPv6 address or CIDR`]]],
  [["fe80::/10%eth0"], [[0, `"fe80::/10%eth0": zone ids (%eth0) are not allowed in a from list`]]],
  [["fe80::%eth0/10"], [[0, `"fe80::%eth0/10": zone ids (%eth0) are not allowed in a from list`]]],
  [[42], [[0, `42: must be a string (an address or a CIDR)`]]],
  [
    ["10.0.0.0/8", "10.1.2.3/8", "::1", "nope", "10.20.0.0/33"],
    [
      [1, `"10.1.2.3/8": host bits set (did you mean 10.0.0.0/8?)`],
      [3, `"nope": not an IPv4 or IPv6 address or CIDR`],
      [4, `"10.20.0.0/33": prefix length must be 0-32 for IPv4`],
    ],
  ],
];

t.test("bad entries are reported with their index, all at once", async (t) => {
  for (const [list, expected] of bad) {
    const { matcher, errors } = compileFrom(list as string[]);
    t.equal(matcher, undefined, `${JSON.stringify(list)}: no matcher`);
    t.same(
      errors.map((e) => [e.index, e.message]),
      expected,
      JSON.stringify(list),
    );
  }
});
