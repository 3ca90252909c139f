/** One read, write, call or browse as every protocol front describes it to the core. */
export const ACTIONS = ["read", "write", "call", "browse", "diagnostic"] as const;
export type Action = (typeof ACTIONS)[number];

export const TABLES = ["coil", "discrete", "input", "holding"] as const;
export type Table = (typeof TABLES)[number];

/** Coils and holding registers can be written; discrete inputs and input registers only read. */
export const WRITABLE_TABLES: ReadonlySet<Table> = new Set<Table>(["coil", "holding"]);

export type Target =
  /** A named point of the asset (HTTP API, OPC UA front, policy tests). */
  | { readonly kind: "point"; readonly point: string }
  /** A raw Modbus range: `count` addresses from `address` (0-based protocol address). */
  | { readonly kind: "range"; readonly table: Table; readonly address: number; readonly count: number }
  /** A raw OPC UA node id. */
  | { readonly kind: "node"; readonly node: string };

export type Scalar = number | boolean | string;

/** An FC22 mask write's masks (keys in code-point order): the register becomes (current AND and) OR (or AND NOT and). */
export interface Masks {
  readonly and: number;
  readonly or: number;
}

export interface Operation {
  readonly asset: string;
  readonly action: Action;
  readonly target: Target;
  /**
   * Written values. For a range: the raw wire values, one per address (16-bit words for
   * registers, 0/1 for coils); `null` when the value is not known in advance (FC22 mask
   * write). For a point or node: the one value to write.
   */
  readonly raw?: readonly number[] | null;
  readonly value?: Scalar;
  /** FC22 mask write (raw null): its masks. Logged with the write. */
  readonly mask?: Masks;
  /** Client source address (IPv4 or IPv6, as the socket reports it). */
  readonly source?: string;
}
