// Contracts between devices/ and the fronts that are not Modbus-wire fronts (the OPC UA front,
// the HTTP point routes). Two implementations meet here:
//   - devices/opcua.ts  — OpcuaDevice: one node-opcua client session per upstream server.
//   - devices/points.ts — PointIO: read/write a named point of any asset (Modbus points are
//     read with FC1–4 and decoded by type and word order; OPC UA points through OpcuaDevice).
// Fronts depend on these interfaces, not on the classes.
import type { DataValue, StatusCode, Variant } from "node-opcua";
import type { Asset, Point } from "../pdp/policy-set.js";
import type { Scalar } from "../pdp/operation.js";
import type { OutcomeStatus } from "../audit/record.js";

/** A shared upstream monitored item; `close()` drops this listener (the last one drops the item). */
export interface MonitorHandle {
  close(): void;
}

/**
 * The upstream side of one OPC UA server. Never rejects: an unreachable server gives
 * `BadServerNotConnected` / `BadCommunicationError` status codes (never a stale good value),
 * a server that does not answer in time `BadTimeout`.
 */
export interface OpcuaUpstream {
  /** Reads the server; maxAgeMs > 0 (OPC UA maxAge, passed on) may start monitoring the node for `cached`. */
  read(nodeId: string, maxAgeMs?: number): Promise<DataValue>;
  /** A read within maxAgeMs: a value held from the subscription, known to be no older (with that age bound as `cacheAgeMs`), else `read`. */
  readWithin(nodeId: string, maxAgeMs: number): Promise<{ readonly value: DataValue; readonly cacheAgeMs?: number }>;
  write(nodeId: string, value: Variant): Promise<StatusCode>;
  call(objectId: string, methodId: string, inputArguments: readonly Variant[]): Promise<{ statusCode: StatusCode; outputArguments: Variant[] }>;
  /**
   * Monitors a node with one upstream monitored item shared by every listener of that node.
   * The listener gets the current value first (when known), every change after, a bad status
   * when the connection is lost, and values again after a reconnect.
   */
  monitor(nodeId: string, listener: (value: DataValue) => void, options?: { readonly samplingIntervalMs?: number }): MonitorHandle;
}

/** A point value in protocol-neutral form (HTTP `GET …/points/:point`). */
export interface PointReading {
  readonly value: Scalar | null;
  readonly quality: "good" | "bad";
  /** `Good`, or why not: an OPC UA status name (`BadServerNotConnected`) or a Modbus cause (`exception-02`, `timeout`, `unavailable`). */
  readonly status: string;
  /** ISO time of the value (source timestamp when the device gives one). */
  readonly timestamp: string;
  /** Set when the value came from the gateway's subscription to an OPC UA server (a read with maxAge): the bound on its age, ms. */
  readonly cacheAgeMs?: number;
}

export interface PointWriteResult {
  readonly status: OutcomeStatus;
  /** Device exception code (Modbus) or status name (OPC UA) when `status` is `device-exception`. */
  readonly exception?: number | string;
}

/**
 * Reads and writes named points of any asset, protocol hidden. Does not authorize: callers go
 * through pep/enforce first. Never rejects for device trouble (that is a bad reading or a
 * non-ok status); rejects only for a programming error (a point of another asset).
 */
export interface PointIO {
  /** maxAgeMs > 0: an OPC UA point may be answered from the gateway's subscription, no older than that (Modbus points are always read). */
  read(asset: Asset, point: Point, maxAgeMs?: number): Promise<PointReading>;
  write(asset: Asset, point: Point, value: Scalar): Promise<PointWriteResult>;
}
