// `from:` client source addresses (SPEC §4.3). Pure; fails closed on anything it cannot parse.
import ipaddr from "ipaddr.js";

export interface FromMatcher {
  holds(source: string | undefined): boolean;
  describe(): string;
}

/** An IPv4 address as an unsigned 32-bit number, or an IPv6 address as four of them. */
type Addr = { v: 4; a: number } | { v: 6; w: number[] };

interface Net4 {
  net: number;
  mask: number;
}
interface Net6 {
  net: number[];
  mask: number[];
}

/**
 * Strict textual forms only: IPv4 must be four decimal parts without leading zeros, because
 * inet_aton-style input (`010.1.2.3` is 8.1.2.3, `10.1` is 10.0.0.1) in a policy is almost
 * certainly a mistake, and sockets never report it.
 */
function parseAddr(text: string): Addr | undefined {
  if (!text.includes(":")) {
    if (!ipaddr.IPv4.isValidFourPartDecimal(text)) return undefined;
    const [a, b, c, d] = ipaddr.IPv4.parse(text).octets as [number, number, number, number];
    return { v: 4, a: ((a << 24) | (b << 16) | (c << 8) | d) >>> 0 };
  }
  // The dotted tail is converted here because ipaddr.js reads `::a.b.c.d` (RFC 4291
  // IPv4-compatible, ::a14:105) as IPv4-mapped, which would let it match IPv4 CIDRs.
  const colon = text.lastIndexOf(":");
  const tail = text.slice(colon + 1);
  let hex = text;
  if (tail.includes(".")) {
    const v4 = parseAddr(tail);
    if (v4?.v !== 4) return undefined;
    hex = `${text.slice(0, colon + 1)}${(v4.a >>> 16).toString(16)}:${(v4.a & 0xffff).toString(16)}`;
  }
  if (!ipaddr.IPv6.isValid(hex)) return undefined;
  const p = ipaddr.IPv6.parse(hex).parts;
  return { v: 6, w: [0, 1, 2, 3].map((i) => ((p[2 * i]! << 16) | p[2 * i + 1]!) >>> 0) };
}

function formatAddr(addr: Addr): string {
  const dotted = (a: number): string => [a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255].join(".");
  if (addr.v === 4) return dotted(addr.a);
  if (isMapped(addr.w)) return `::ffff:${dotted(addr.w[3]!)}`;
  return new ipaddr.IPv6(addr.w.flatMap((x) => [x >>> 16, x & 0xffff])).toString();
}

function isMapped(w: readonly number[]): boolean {
  return w[0] === 0 && w[1] === 0 && w[2] === 0xffff;
}

function mask32(bits: number): number {
  return bits <= 0 ? 0 : (0xffffffff << (32 - Math.min(bits, 32))) >>> 0;
}

function mask128(bits: number): number[] {
  return [0, 1, 2, 3].map((i) => mask32(bits - 32 * i));
}

function parseEntry(entry: unknown): { v4: Net4 } | { v6: Net6 } | { error: string } {
  const named = JSON.stringify(entry);
  if (typeof entry !== "string") return { error: `${named}: must be a string (an address or a CIDR)` };
  if (entry.includes("%")) return { error: `${named}: zone ids (%eth0) are not allowed in a from list` };
  const slash = entry.indexOf("/");
  const addr = parseAddr(slash < 0 ? entry : entry.slice(0, slash));
  if (addr === undefined) return { error: `${named}: not an IPv4 or IPv6 address or CIDR` };

  const max = addr.v === 4 ? 32 : 128;
  const prefixText = slash < 0 ? String(max) : entry.slice(slash + 1);
  const bits = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(bits <= max)) return { error: `${named}: prefix length must be 0-${max} for IPv${addr.v}` };

  if (addr.v === 4) {
    const mask = mask32(bits);
    const net = (addr.a & mask) >>> 0;
    if (net !== addr.a) return { error: `${named}: host bits set (did you mean ${formatAddr({ v: 4, a: net })}/${bits}?)` };
    return { v4: { net, mask } };
  }
  const mask = mask128(bits);
  const net = addr.w.map((x, i) => (x & mask[i]!) >>> 0);
  if (net.some((x, i) => x !== addr.w[i])) {
    return { error: `${named}: host bits set (did you mean ${formatAddr({ v: 6, w: net })}/${bits}?)` };
  }
  // Sources in ::ffff:0:0/96 are matched as IPv4 (see parseSource), so such entries are too.
  if (bits >= 96 && isMapped(net)) return { v4: { net: net[3]!, mask: mask32(bits - 96) } };
  return { v6: { net, mask } };
}

const SOURCE_CACHE_MAX = 1024;
// Shared across matchers: the same few client addresses are checked against many rules.
const sourceCache = new Map<string, Addr | null>();

/**
 * Zone ids (`fe80::1%eth0`) are stripped: the policy names addresses, not interfaces, and the
 * gateway's interfaces are not something a rule can see. IPv4-mapped IPv6 (`::ffff:10.20.1.5`,
 * what dual-stack sockets report) is turned into the IPv4 address so IPv4 CIDRs match it.
 */
function parseSource(source: string): Addr | null {
  const cached = sourceCache.get(source);
  if (cached !== undefined) return cached;
  const pct = source.indexOf("%");
  const bare = pct < 0 ? source : pct > 0 && pct < source.length - 1 ? source.slice(0, pct) : "";
  let addr: Addr | null = parseAddr(bare) ?? null;
  if (addr?.v === 6 && isMapped(addr.w)) addr = { v: 4, a: addr.w[3]! };
  if (sourceCache.size >= SOURCE_CACHE_MAX) sourceCache.clear();
  sourceCache.set(source, addr);
  return addr;
}

export function compileFrom(list: readonly string[]): { matcher?: FromMatcher; errors: { index: number; message: string }[] } {
  const errors: { index: number; message: string }[] = [];
  const nets4: Net4[] = [];
  const nets6: Net6[] = [];
  list.forEach((entry, index) => {
    const r = parseEntry(entry);
    if ("error" in r) errors.push({ index, message: r.error });
    else if ("v4" in r) nets4.push(r.v4);
    else nets6.push(r.v6);
  });
  if (errors.length > 0) return { errors };

  const text = list.join(", ");
  const holds = (source: string | undefined): boolean => {
    if (typeof source !== "string") return false;
    const addr = parseSource(source);
    if (addr === null) return false;
    if (addr.v === 4) return nets4.some((n) => ((addr.a & n.mask) >>> 0) === n.net);
    const w = addr.w;
    return nets6.some((n) => n.net.every((x, i) => ((w[i]! & n.mask[i]!) >>> 0) === x));
  };
  return { matcher: { holds, describe: () => text }, errors };
}
