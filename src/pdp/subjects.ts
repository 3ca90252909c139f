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
