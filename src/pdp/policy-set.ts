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
  readonly allPoints: boolean;
  readonly points: ReadonlySet<string>;
  /** Raw address intervals [first, last] per table. */
  readonly ranges: Readonly<Partial<Record<Table, ReadonlyArray<readonly [number, number]>>>>;
  readonly nodes: ReadonlyArray<RegExp>;
  readonly from?: FromMatcher;
  readonly when?: WhenMatcher;
  readonly values?: { readonly min?: number; readonly max?: number };
  readonly rate?: RateSpec;
  readonly file: string;
  readonly line: number;
}

/** Rules of one asset for one action, indexed by what they target. */
export interface ActionIndex {
  /** Every rule naming this action, file order (for explain and closest-miss). */
  readonly all: readonly Rule[];
  /** Rules that cover a named point (by name, `*`, raw range or node pattern), file order. */
  readonly byPoint: ReadonlyMap<string, readonly Rule[]>;
  /** Rules with raw ranges on each table, file order. */
  readonly byTable: Readonly<Partial<Record<Table, readonly Rule[]>>>;
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
