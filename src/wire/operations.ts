// From a parsed Modbus request to the operations the policy decides on (SPEC §4.1, §4.2).
// Pure. The front calls toOperations once per request, with the asset its (listener, unit
// id) routes to, then asks the pdp about every operation: the request is forwarded only if
// all of them are allowed.
//
//   FC  1 read coils               → read  coil     address..+quantity
//   FC  2 read discrete inputs     → read  discrete address..+quantity
//   FC  3 read holding registers   → read  holding  address..+quantity
//   FC  4 read input registers     → read  input    address..+quantity
//   FC  5 write single coil        → write coil     address, raw [0] or [1]
//   FC  6 write single register    → write holding  address, raw [value]
//   FC 15 write multiple coils     → write coil     address..+quantity, raw bits
//   FC 16 write multiple registers → write holding  address..+quantity, raw words
//   FC 22 mask write register      → write holding  address, raw null (value unknown in advance)
//   FC 23 read/write registers     → read holding (read range) AND write holding (write
//                                    range, raw words): both must be allowed
//   FC 43/14 device identification → { kind: "device-id" }, see below
//   FC  8 and any other code       → diagnostic on DIAGNOSTIC_TARGET
//   unit id 0 (broadcast)          → { kind: "refuse" }, whatever the function code
import type { Operation, Target } from "../pdp/operation.js";
import type { Reason } from "../pdp/reasons.js";
import type { ModbusRequest } from "./pdu.js";

/** Modbus broadcast (SPEC §4.1: always refused): a device answers nothing, so no outcome could be recorded. */
export const BROADCAST_UNIT_ID = 0;

/**
 * The target of a `diagnostic` operation (FC8 and function codes the gateway does not
 * interpret). Such a request touches no address the gateway can name, so the policy sees
 * a fixed placeholder: holding register 0. A rule allows diagnostics on an asset with
 * `allow: [diagnostic]` and `targets: [{ table: holding, address: 0 }]` (or a rule naming
 * the point at holding 0, if there is one). If a multi-register point (float32, …) starts at
 * holding 0, the pdp refuses the placeholder as `partial-point`. Default policies name no
 * diagnostic, so these requests are denied (SPEC §4.1).
 */
export const DIAGNOSTIC_TARGET: Target = Object.freeze({ kind: "range", table: "holding", address: 0, count: 1 });

export type OperationsResult =
  /** Decide each (one, or two for FC23); forward only if every one is allowed. */
  | { readonly kind: "operations"; readonly operations: readonly Operation[] }
  /**
   * FC43/14 Read Device Identification: a read of no particular address. SPEC §4.1 allows it
   * to whoever may read at least one point of the asset, which needs the asset's points, so
   * the front resolves it: it asks the pdp for a `read` of each point of the asset (target
   * kind `point`) and allows the request when any one is allowed.
   */
  | { readonly kind: "device-id"; readonly asset: string; readonly source?: string }
  /** Always refused, before any policy is asked: a deny with `reason`, answered as any deny. */
  | { readonly kind: "refuse"; readonly cause: "broadcast"; readonly reason: Reason };

function range(table: "coil" | "discrete" | "input" | "holding", address: number, count: number): Target {
  return { kind: "range", table, address, count };
}

/** One operation, with `raw` and `source` only when there are (fixed shapes, no key set to undefined). */
function operation(asset: string, action: Operation["action"], target: Target, raw: readonly number[] | null | undefined, source: string | undefined): Operation {
  if (source === undefined) return raw === undefined ? { asset, action, target } : { asset, action, target, raw };
  return raw === undefined ? { asset, action, target, source } : { asset, action, target, raw, source };
}

/** The operations a request asks the policy for (SPEC §4.1). */
export function toOperations(asset: string, unitId: number, req: ModbusRequest, source?: string): OperationsResult {
  if (unitId === BROADCAST_UNIT_ID) return { kind: "refuse", cause: "broadcast", reason: "unsupported-function" };
  let action: Operation["action"] = "write";
  let target: Target;
  let raw: readonly number[] | null | undefined;
  switch (req.kind) {
    case "read-coils":
      action = "read";
      target = range("coil", req.address, req.quantity);
      break;
    case "read-discrete-inputs":
      action = "read";
      target = range("discrete", req.address, req.quantity);
      break;
    case "read-holding-registers":
      action = "read";
      target = range("holding", req.address, req.quantity);
      break;
    case "read-input-registers":
      action = "read";
      target = range("input", req.address, req.quantity);
      break;
    case "write-single-coil":
      target = range("coil", req.address, 1);
      raw = [req.value];
      break;
    case "write-single-register":
      target = range("holding", req.address, 1);
      raw = [req.value];
      break;
    case "write-multiple-coils":
      target = range("coil", req.address, req.quantity);
      raw = req.values;
      break;
    case "write-multiple-registers":
      target = range("holding", req.address, req.quantity);
      raw = req.values;
      break;
    case "mask-write-register": {
      const op = operation(asset, "write", range("holding", req.address, 1), null, source);
      return { kind: "operations", operations: [{ ...op, mask: { and: req.andMask, or: req.orMask } }] };
    }
    case "read-write-multiple-registers": {
      const read = operation(asset, "read", range("holding", req.read.address, req.read.quantity), undefined, source);
      const write = operation(asset, "write", range("holding", req.write.address, req.write.quantity), req.write.values, source);
      return { kind: "operations", operations: [read, write] };
    }
    case "read-device-identification":
      return source === undefined ? { kind: "device-id", asset } : { kind: "device-id", asset, source };
    case "diagnostics":
    case "unsupported":
      action = "diagnostic";
      target = DIAGNOSTIC_TARGET;
      break;
  }
  return { kind: "operations", operations: [operation(asset, action, target, raw, source)] };
}
