// Who a rule is for: "*" or roles / subs / issuers (any of each list) and claims (all must
// hold; a claim that is a list matches when any of its items is allowed).
import type { Principal } from "./principal.js";
import type { SubjectMatcher } from "./policy-set.js";

export interface SubjectsSpec {
  roles?: string[];
  subs?: string[];
  issuers?: string[];
  claims?: Record<string, string | number | boolean | Array<string | number | boolean>>;
}

const ANYONE: SubjectMatcher = { holds: () => true, describe: () => "anyone" };

// Role names as bits, for the common rule that names roles only: its check is then one AND of
// the rule's mask with the principal's, on the rule object itself (no matcher, closure or Set
// to reach: with a thousand assets' rules those are cache misses). The first 31 role names
// compiled in this process get a bit; a rule naming any other role keeps the general check.
const ROLE_BITS = new Map<string, number>();

function roleBit(role: string): number | undefined {
  let bit = ROLE_BITS.get(role);
  if (bit === undefined && ROLE_BITS.size < 31) ROLE_BITS.set(role, (bit = 1 << ROLE_BITS.size));
  return bit;
}

/** The bits of a principal's roles (roles no rule mask names have none). */
export function roleMaskOf(roles: readonly string[]): number {
  let mask = 0;
  for (let i = 0; i < roles.length; i++) mask |= ROLE_BITS.get(roles[i] as string) ?? 0;
  return mask;
}

/** The mask of a roles-only rule, when every role it names has a bit; undefined otherwise (use `holds`). */
export function roleMaskFor(spec: "*" | SubjectsSpec): number | undefined {
  if (spec === "*" || !spec.roles || spec.subs || spec.issuers || (spec.claims && Object.keys(spec.claims).length > 0)) return undefined;
  let mask = 0;
  for (const r of spec.roles) {
    const bit = roleBit(r);
    if (bit === undefined) return undefined;
    mask |= bit;
  }
  return mask;
}

function claimAt(claims: Readonly<Record<string, unknown>>, path: string): unknown {
  if (path in claims) return claims[path];
  let cur: unknown = claims;
  for (const seg of path.split(".")) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

export function compileSubjects(spec: "*" | SubjectsSpec): SubjectMatcher {
  if (spec === "*") return ANYONE;
  const roles = spec.roles ? new Set(spec.roles) : undefined;
  const subs = spec.subs ? new Set(spec.subs) : undefined;
  const issuers = spec.issuers ? new Set(spec.issuers) : undefined;
  const claims = Object.entries(spec.claims ?? {}).map(([k, v]) => [k, new Set(Array.isArray(v) ? v : [v])] as const);
  const parts: string[] = [];
  if (roles) parts.push(`roles any of [${[...roles].join(", ")}]`);
  if (subs) parts.push(`sub any of [${[...subs].join(", ")}]`);
  if (issuers) parts.push(`iss any of [${[...issuers].join(", ")}]`);
  for (const [k, v] of claims) parts.push(`claim ${k} in [${[...v].join(", ")}]`);
  const text = parts.length > 0 ? parts.join(" and ") : "anyone";
  return {
    holds(p: Principal): boolean {
      if (roles && !anyIn(p.roles, roles)) return false;
      if (subs && !subs.has(p.sub)) return false;
      if (issuers && !issuers.has(p.iss)) return false;
      for (const [k, allowed] of claims) {
        const v = claimAt(p.claims, k);
        const ok = Array.isArray(v) ? v.some((x) => allowed.has(x as string)) : allowed.has(v as string);
        if (!ok) return false;
      }
      return true;
    },
    describe: () => text,
  };
}

/** Whether any of `values` is in `set` (a loop: no closure per check on the decision path). */
function anyIn(values: readonly string[], set: ReadonlySet<string>): boolean {
  for (let i = 0; i < values.length; i++) if (set.has(values[i] as string)) return true;
  return false;
}
