// The compiled, immutable policy the core decides on. Built by src/policy/compile.ts,
// swapped whole by the policy store, never changed in place.
import type { Action, Table } from "./operation.js";
import type { Principal } from "./principal.js";
import type { FromMatcher } from "./conditions/from.js";
import type { WhenMatcher } from "./conditions/when.js";
import type { RateSpec } from "./conditions/rate.js";
import type { PointType, WordOrder } from "./values.js";

export interface Point {
  readonly name: string;
  readonly type: PointType;
  /** Modbus points: table, first address, number of addresses (registers or bits). */
  readonly table?: Table;
  readonly address?: number;
  readonly size: number;
  readonly words: WordOrder;
  /** OPC UA points: the upstream node id (variables) or method id and its object. */
  readonly node?: string;
  readonly object?: string;
  readonly min?: number;
  readonly max?: number;
  readonly writable: boolean;
  readonly line: number;
}

export interface SubjectMatcher {
  holds(p: Principal): boolean;
  describe(): string;
}

export interface Rule {
  readonly id: string;
  /** Position in its file; the first matching allow in file order is the one reported. */
  readonly index: number;
  readonly effect: "allow" | "deny";
  readonly actions: ReadonlySet<Action>;
  readonly subjects: SubjectMatcher;
  /** When the rule names roles only: their bits (pdp/subjects.ts roleMaskFor); `subjects.holds` is then the same as a non-zero AND with the principal's roleMaskOf. */
  readonly roleMask?: number;
  readonly allPoints: boolean;
  readonly points: ReadonlySet<string>;
  /** Raw address intervals [first, last] per table. */
  readonly ranges: Readonly<Partial<Record<Table, ReadonlyArray<readonly [number, number]>>>>;
  readonly nodes: ReadonlyArray<RegExp>;
  readonly from?: FromMatcher;
  readonly when?: WhenMatcher;
  readonly values?: { readonly min?: number; readonly max?: number };
  readonly rate?: RateSpec;
  /** A write (or call) this rule allows is held until a principal with one of `roles`, not the requester, approves it. */
  readonly approval?: Approval;
  readonly file: string;
  readonly line: number;
}

/** A rule's `approval`: who may approve, and how long a held operation waits before it is refused. */
export interface Approval {
  readonly roles: readonly string[];
  readonly timeoutMs: number;
}

/**
 * Raw-target rules of one table cut into disjoint address segments: segment i covers
 * starts[i]..ends[i] and is targeted by exactly rules[i] (file order). Found by binary search,
 * so a decision never scans rules that do not cover its address.
 */
export interface AddressIndex {
  readonly starts: readonly number[];
  readonly ends: readonly number[];
  readonly rules: ReadonlyArray<readonly Rule[]>;
}

/** The rules covering one address, in file order (empty when none). */
export function rulesAt(index: AddressIndex | undefined, address: number): readonly Rule[] {
  if (!index) return NO_RULES;
  const { starts, ends } = index;
  let lo = 0;
  let hi = starts.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if ((starts[mid] as number) <= address) lo = mid + 1;
    else hi = mid - 1;
  }
  return hi >= 0 && address <= (ends[hi] as number) ? (index.rules[hi] as readonly Rule[]) : NO_RULES;
}

const NO_RULES: readonly Rule[] = Object.freeze([]);

/** Rules of one asset for one action, indexed by what they target. */
export interface ActionIndex {
  /** Every rule naming this action, file order (for explain and closest-miss). */
  readonly all: readonly Rule[];
  /** Rules that cover a named point (by name, `*`, raw range or node pattern), file order. */
  readonly byPoint: ReadonlyMap<string, readonly Rule[]>;
  /** Rules with raw ranges on each table, as disjoint address segments (see AddressIndex). */
  readonly byTable: Readonly<Partial<Record<Table, AddressIndex>>>;
  /** Rules with node patterns, file order. */
  readonly byNode: readonly Rule[];
}

export interface Asset {
  readonly id: string;
  readonly description?: string;
  readonly zone?: string;
  readonly protocol: "modbus" | "opcua";
  readonly endpoint: string;
  readonly unit?: number;
  readonly frontUnit?: number;
  /** The Modbus front listener the asset answers on; undefined = every Modbus listener. */
  readonly frontListener?: string;
  readonly mode: "enforce" | "monitor";
  readonly file: string;
  readonly points: ReadonlyMap<string, Point>;
  /** For each table, address → the point occupying it (multi-register points at every word). */
  readonly pointAt: Readonly<Partial<Record<Table, ReadonlyMap<number, Point>>>>;
  readonly pointByNode: ReadonlyMap<string, Point>;
  readonly rules: readonly Rule[];
  readonly actions: ReadonlyMap<Action, ActionIndex>;
}

export interface PolicySet {
  /** Content hash of every loaded file (sha256, hex, first 16 chars). */
  readonly revision: string;
  readonly assets: ReadonlyMap<string, Asset>;
  readonly files: ReadonlyArray<{ readonly file: string; readonly asset: string; readonly sha256: string }>;
}
