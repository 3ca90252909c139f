// Why a decision came out as it did: every rule of the asset, whether it matched, and if
// not, the first thing that failed. Slower than decide() and never on the request path.
import type { Operation } from "./operation.js";
import type { Principal } from "./principal.js";
import type { PolicySet, Rule } from "./policy-set.js";
import { candidates, decide, preCheck, rateKey, resolve, valuesHold, SOURCE_MISS, SUBJECT_MISS, TIME_MISS } from "./evaluate.js";
import type { DecideContext, Decision, Element } from "./evaluate.js";

export type RuleOutcome =
  | "matched"
  | "action-not-listed"
  | "subject-mismatch"
  | "target-not-covered"
  | "source-not-allowed"
  | "outside-time-window"
  | "value-out-of-range"
  | "rate-limited";

export interface Considered {
  readonly rule: string;
  readonly effect: "allow" | "deny";
  readonly file: string;
  readonly line: number;
  readonly outcome: RuleOutcome;
  readonly detail: string;
}

export interface Explanation extends Decision {
  readonly considered: readonly Considered[];
}

export function explain(set: PolicySet, op: Operation, principal: Principal, ctx: DecideContext): Explanation {
  const decision = decide(set, op, principal, { ...ctx, dryRun: true });
  const asset = set.assets.get(op.asset);
  if (!asset) return { ...decision, considered: [] };
  const r = resolve(asset, op);
  const elements: readonly Element[] = "elements" in r ? r.elements : [];
  const considered = asset.rules.map((rule): Considered => {
    const base = { rule: rule.id, effect: rule.effect, file: rule.file, line: rule.line };
    const [outcome, detail] = judge(rule);
    return { ...base, outcome, detail };
  });
  return { ...decision, considered };

  function judge(rule: Rule): [RuleOutcome, string] {
    if (!rule.actions.has(op.action)) return ["action-not-listed", `${rule.effect === "deny" ? "denies" : "allows"} ${[...rule.actions].join(", ")}, not ${op.action}`];
    const pre = preCheck(rule, principal, op, ctx.now);
    if (pre === SUBJECT_MISS) return ["subject-mismatch", `needs ${rule.subjects.describe()}; ${principal.sub} has roles [${principal.roles.join(", ")}]`];
    const covered = elements.filter((el) => candidates(asset as NonNullable<typeof asset>, op, el).includes(rule));
    if (covered.length === 0) return ["target-not-covered", "does not name this point or address"];
    const partial = covered.length < elements.length ? ` (covers ${covered.length} of ${elements.length} points/addresses)` : "";
    if (pre === SOURCE_MISS) return ["source-not-allowed", `source ${op.source ?? "(unknown)"} is not in ${rule.from?.describe() ?? ""}`];
    if (pre === TIME_MISS) return ["outside-time-window", `${new Date(ctx.now).toISOString()} is outside ${rule.when?.describe() ?? ""}`];
    if (rule.effect === "allow") {
      const bad = covered.find((el) => !valuesHold(rule, el, op.action === "write"));
      if (bad) {
        const lim = [rule.values?.min !== undefined && `rule min ${rule.values.min}`, rule.values?.max !== undefined && `rule max ${rule.values.max}`,
          bad.point?.min !== undefined && `point min ${bad.point.min}`, bad.point?.max !== undefined && `point max ${bad.point.max}`].filter(Boolean).join(", ");
        return ["value-out-of-range", `value ${bad.known ? JSON.stringify(bad.value) : "(not known in advance)"} is outside ${lim}`];
      }
      if (rule.rate && ctx.rates && !ctx.rates.peek(rateKey(asset as NonNullable<typeof asset>, rule, principal), rule.rate, ctx.now)) {
        return ["rate-limited", `rate ${rule.rate.limit} per ${rule.rate.windowMs / 1000} s is used up`];
      }
    }
    return ["matched", `${rule.effect === "deny" ? "denies" : "allows"} ${op.action}${partial}`];
  }
}
