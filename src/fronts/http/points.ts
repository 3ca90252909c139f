// Asset routes (SPEC §5.3): reads and writes through the one enforcement path (pep/enforce),
// exactly as the Modbus and OPC UA fronts do: build the Operation → decide, log (write-ahead)
// → forward to the device → log the outcome. Named points go through PointIO (any protocol);
// raw ranges are Modbus only and go to the asset's device with the shared codec.
//
//   GET  /v1/assets                          → the assets and points the caller may read, write or call
//   GET  /v1/assets/:asset/points/:point     → { value, quality, status, timestamp, decisionId }
//   PUT  /v1/assets/:asset/points/:point     { value } → { value, status, decisionId }
//   POST /v1/assets/:asset/read              { target: "holding:100", count } → { target, values, decisionId }
//   POST /v1/assets/:asset/write             { target: "holding:100", values: [..] } → { target, status, decisionId }
//
// A write that a rule holds for approval (`approval`) is answered 202 at once with
// `{ approval: { id, status: "pending", expiresAt }, decisionId }` and a Location of
// /v1/approvals/:id; it goes to the device only once approved (POST /v1/approvals/:id).
//
// Answers: denied → 403 (reason and decisionId); unknown asset or point → 404 (also a logged
// deny); a value that is not one of the point's type → 400 (never decided); device down →
// 503, no answer in time → 504, a device exception → 502 (`exception`).
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import type { PointReading } from "../../devices/types.js";
import type { Authorization, Forwarded } from "../../pep/enforce.js";
import { decide } from "../../pdp/evaluate.js";
import type { Action, Operation, Scalar, Target } from "../../pdp/operation.js";
import { WRITABLE_TABLES } from "../../pdp/operation.js";
import type { Asset, Point } from "../../pdp/policy-set.js";
import type { Principal } from "../../pdp/principal.js";
import { REASONS } from "../../pdp/reasons.js";
import { FLOAT32_MAX, OPCUA_INT_RANGES, decodeRaw, encodeValue, isRegisterType } from "../../pdp/values.js";
import type { OpcuaType } from "../../pdp/values.js";
import { parseTarget } from "../../policy/request.js";
import type { HttpAppDeps } from "./app.js";
import { NO_QUERY, bearer, clientOf, gate } from "./gate.js";
import { HttpProblem, badRequest, errorType, forbidden, reasonType, unauthorized } from "./problem.js";
import { maxRead, maxWrite, readRange, writeRange } from "./modbus-raw.js";

const NAME = { type: "string", minLength: 1, maxLength: 128 } as const;
const assetParams = { type: "object", required: ["asset"], additionalProperties: false, properties: { asset: NAME } } as const;
const pointParams = { type: "object", required: ["asset", "point"], additionalProperties: false, properties: { asset: NAME, point: NAME } } as const;
const scalar = { type: ["number", "boolean", "string"] } as const;
// A string value's length is bounded by the body limit; a union type takes no maxLength.
const writeBody = { type: "object", required: ["value"], additionalProperties: false, properties: { value: scalar } } as const;
const RANGE = "^(coil|discrete|input|holding):\\d{1,5}(-\\d{1,5})?$";
const rawReadBody = {
  type: "object",
  required: ["target"],
  additionalProperties: false,
  properties: { target: { type: "string", pattern: RANGE, maxLength: 32 }, count: { type: "integer", minimum: 1, maximum: 2000 } },
} as const;
const rawWriteBody = {
  type: "object",
  required: ["target", "values"],
  additionalProperties: false,
  properties: {
    target: { type: "string", pattern: RANGE, maxLength: 32 },
    values: { type: "array", minItems: 1, maxItems: 1968, items: { type: "integer", minimum: 0, maximum: 65535 } },
  },
} as const;

const readingResponse = {
  type: "object",
  required: ["value", "quality", "timestamp"],
  properties: {
    value: { type: ["number", "boolean", "string", "null"] },
    quality: { type: "string" },
    status: { type: "string" },
    timestamp: { type: "string" },
    cacheAgeMs: { type: "number" },
    decisionId: { type: ["string", "null"] },
  },
} as const;
const readQuery = {
  type: "object",
  additionalProperties: false,
  properties: { maxAge: { type: "integer", minimum: 0, maximum: 86_400_000, description: "OPC UA points: the oldest value (ms) the caller accepts; the gateway may answer from its subscription to the server (0, the default: always the server)" } },
} as const;
const writeResponse = {
  type: "object",
  properties: { value: { type: ["number", "boolean", "string"] }, status: { type: "string" }, decisionId: { type: ["string", "null"] } },
} as const;
const rawReadResponse = {
  type: "object",
  properties: { target: { type: "string" }, values: { type: "array", items: { type: "integer" } }, decisionId: { type: ["string", "null"] } },
} as const;
const rawWriteResponse = { type: "object", properties: { target: { type: "string" }, status: { type: "string" }, decisionId: { type: ["string", "null"] } } } as const;
const limits = { type: "object", properties: { min: { type: "number" }, max: { type: "number" } } } as const;
const assetsResponse = {
  type: "object",
  required: ["policyRevision", "assets"],
  properties: {
    policyRevision: { type: "string" },
    assets: {
      type: "array",
      items: {
        type: "object",
        properties: {
          id: { type: "string" },
          description: { type: "string" },
          zone: { type: "string" },
          protocol: { type: "string" },
          mode: { type: "string" },
          points: {
            type: "array",
            items: {
              type: "object",
              properties: { name: { type: "string" }, type: { type: "string" }, access: { type: "array", items: { type: "string" } }, writeLimits: limits },
            },
          },
        },
      },
    },
  },
} as const;

/** The value as the point's type takes it, or why it does not fit (→ 400; the policy never sees it). */
export function pointValue(point: Point, value: Scalar): { ok: true; value: Scalar } | { ok: false; why: string } {
  const t = point.type;
  const named = `point ${point.name} is ${t}`;
  if (t === "method") return { ok: false, why: `point ${point.name} is a method: it is called, not written` };
  if (t === "bool" || t === "boolean") {
    if (typeof value === "boolean") return { ok: true, value };
    if (value === 0 || value === 1) return { ok: true, value: value === 1 };
    return { ok: false, why: `${named}: the value must be true or false (or 1 or 0)` };
  }
  if (t === "string") return typeof value === "string" ? { ok: true, value } : { ok: false, why: `${named}: the value must be a string` };
  if (t === "datetime") return typeof value === "string" && Number.isFinite(Date.parse(value)) ? { ok: true, value } : { ok: false, why: `${named}: the value must be an ISO 8601 time` };
  if (typeof value !== "number" || !Number.isFinite(value)) return { ok: false, why: `${named}: the value must be a number, not ${JSON.stringify(value)}` };
  if (isRegisterType(t) && !encodeValue(t, point.words, value)) return { ok: false, why: `${named}: ${value} does not fit the type` };
  const range = OPCUA_INT_RANGES[t as OpcuaType];
  if (range && !Number.isInteger(value)) return { ok: false, why: `${named}: the value must be a whole number` };
  if (range && (value < range[0] || value > range[1])) return { ok: false, why: `${named}: ${value} is outside ${range[0]}..${range[1]}` };
  if (t === "float" && Math.abs(value) > FLOAT32_MAX) return { ok: false, why: `${named}: ${value} is beyond a float's range` };
  return { ok: true, value };
}

/** What an answered read says about the device, for the outcome record. */
function readingOutcome(r: PointReading): Forwarded<PointReading> {
  if (r.quality === "good") return r.cacheAgeMs !== undefined ? { status: "ok", result: r, cacheAgeMs: r.cacheAgeMs } : { status: "ok", result: r };
  const s = r.status;
  if (s === "timeout" || s === "BadTimeout") return { status: "timeout", exception: s, result: r };
  const ex = /^exception-(\d+)$/.exec(s);
  if (ex) return { status: "device-exception", exception: Number(ex[1]), result: r };
  if (s === "unavailable" || /NotConnected|CommunicationError|ConnectionClosed|SecureChannelClosed|NoCommunication/.test(s)) return { status: "unavailable", exception: s, result: r };
  return { status: "device-exception", exception: s, result: r };
}

/** A forwarded operation that did not come back ok, as a problem. */
function deviceProblem(asset: string, f: Forwarded<unknown>): HttpProblem {
  const why = f.exception !== undefined ? ` (${f.exception})` : "";
  switch (f.status) {
    case "unavailable":
      return new HttpProblem(503, reasonType("upstream-unavailable"), "The device cannot be reached", `the device behind ${asset} cannot be reached${why}`, { reason: "upstream-unavailable" });
    case "timeout":
      return new HttpProblem(504, errorType("device-timeout"), "The device did not answer in time", `the device behind ${asset} gave no usable answer in time${why}`);
    default:
      return new HttpProblem(502, errorType("device-exception"), "The device refused the operation", `the device behind ${asset} answered with an exception${why}`);
  }
}

export async function pointRoutes(app: FastifyInstance, opts: { deps: HttpAppDeps; log: Logger }): Promise<void> {
  const { deps, log } = opts;
  const https = deps.https !== undefined;
  const listing = gate(deps, log, "assets");
  const now = deps.now ?? Date.now;

  const parts = () => {
    const { policy, enforcer } = deps;
    if (!policy || !enforcer) throw new HttpProblem(503, errorType("no-enforcement"), "Asset routes are not available", "the gateway was started without a policy and enforcement path for the HTTP API");
    return { policy, enforcer };
  };

  /** The caller's principal; a refused token is a deny of this very operation, logged, and a 401. */
  const principalFor = async (req: FastifyRequest, op: Operation): Promise<Principal> => {
    const r = await bearer(deps, req);
    if (r.ok) return r.principal;
    await parts().enforcer.refuse(r.reason, null, op, clientOf(req, https));
    log.info({ reason: r.reason, client: req.socket.remoteAddress, asset: op.asset }, "http request refused");
    throw unauthorized(r.reason, r.detail);
  };

  /** Decides, logs, forwards, logs the outcome; a refusal or a device failure is thrown as a problem. */
  function enforce<T>(req: FastifyRequest, p: Principal, op: Operation, forward: () => Promise<Forwarded<T>>): Promise<{ id: string | null; result: T }>;
  /** With a reply (writes): a write held for approval is answered 202 here, and the result is undefined. */
  function enforce<T>(req: FastifyRequest, p: Principal, op: Operation, forward: () => Promise<Forwarded<T>>, reply: FastifyReply): Promise<{ id: string | null; result: T } | undefined>;
  async function enforce<T>(req: FastifyRequest, p: Principal, op: Operation, forward: () => Promise<Forwarded<T>>, reply?: FastifyReply): Promise<{ id: string | null; result: T } | undefined> {
    const e = await parts().enforcer.enforce(p, [op], clientOf(req, https), forward, reply ? "ack" : "wait");
    if (e.held && reply) {
      const decisionId = e.authorizations[0]?.id ?? null;
      void reply.code(202).header("location", `/v1/approvals/${e.held.id}`).send({ approval: { id: e.held.id, status: "pending", expiresAt: new Date(e.held.expiresAt).toISOString() }, decisionId });
      return undefined;
    }
    if (!e.allowed || !e.forwarded) throw refusal(op, e.refusal ?? (e.authorizations[0] as Authorization));
    const id = e.authorizations[0]?.id ?? null;
    if (e.forwarded.status !== "ok" || e.forwarded.result === undefined) throw deviceProblem(op.asset, e.forwarded);
    return { id, result: e.forwarded.result };
  }

  const refusal = (op: Operation, a: Authorization): HttpProblem => {
    const d = a.decision;
    const what = `${op.action} of ${describe(op.target)} on ${op.asset}`;
    const detail = `${what}: ${d.reason}${d.rule ? ` (rule ${d.rule})` : ""}: ${REASONS[d.reason]}`;
    if (d.reason === "unknown-asset" || d.reason === "unknown-point") {
      return new HttpProblem(404, reasonType(d.reason), "Not found", detail, { reason: d.reason, decisionId: a.id });
    }
    if (d.reason === "audit-unavailable") return new HttpProblem(503, reasonType(d.reason), "The decision log cannot be written", detail, { reason: d.reason, decisionId: a.id });
    return forbidden(d.reason, detail, a.id);
  };

  /** The asset and point as the policy in force names them (undefined: the decision says unknown). */
  const lookup = (assetId: string, pointName?: string): { asset?: Asset; point?: Point } => {
    const asset = parts().policy.current().assets.get(assetId);
    const point = pointName !== undefined ? asset?.points.get(pointName) : undefined;
    return { ...(asset && { asset }), ...(point && { point }) };
  };

  const points = () => {
    if (!deps.points) throw new HttpProblem(503, errorType("no-point-io"), "Point reads and writes are not available", "the gateway was started without point I/O");
    return deps.points;
  };

  app.get("/v1/assets", { schema: { querystring: NO_QUERY, response: { 200: assetsResponse } } }, async (req) => {
    const p = await listing.authenticate(req, "browse");
    const set = parts().policy.current();
    const source = req.socket.remoteAddress;
    const t = now();
    const may = (asset: Asset, action: Action, point: Point) => {
      const op: Operation = { asset: asset.id, action, target: { kind: "point", point: point.name }, ...(source !== undefined && { source }) };
      // dryRun: a listing consumes no rate budget. A write with no value yet is allowed, or
      // misses only on the value limits (value-out-of-range): then it is allowed within them.
      return decide(set, op, p, { now: t, dryRun: true });
    };
    const assets = [];
    for (const asset of set.assets.values()) {
      const out = [];
      for (const point of asset.points.values()) {
        const access: string[] = [];
        let writeLimits: { min?: number; max?: number } | undefined;
        if (point.type === "method") {
          if (may(asset, "call", point).effect === "allow") access.push("call");
        } else {
          if (may(asset, "read", point).effect === "allow") access.push("read");
          if (point.writable) {
            const w = may(asset, "write", point);
            const rule = w.rule !== null ? asset.rules.find((r) => r.id === w.rule) : undefined;
            if (w.effect === "allow" || (w.reason === "value-out-of-range" && rule)) {
              access.push("write");
              const lo = [point.min, rule?.values?.min].filter((v): v is number => v !== undefined);
              const hi = [point.max, rule?.values?.max].filter((v): v is number => v !== undefined);
              if (lo.length > 0 || hi.length > 0) writeLimits = { ...(lo.length > 0 && { min: Math.max(...lo) }), ...(hi.length > 0 && { max: Math.min(...hi) }) };
            }
          }
        }
        if (access.length > 0) out.push({ name: point.name, type: point.type, access, ...(writeLimits && { writeLimits }) });
      }
      if (out.length === 0) continue;
      assets.push({ id: asset.id, ...(asset.description !== undefined && { description: asset.description }), ...(asset.zone !== undefined && { zone: asset.zone }), protocol: asset.protocol, mode: asset.mode, points: out });
    }
    return { policyRevision: set.revision, assets };
  });

  app.get<{ Params: { asset: string; point: string }; Querystring: { maxAge?: number } }>("/v1/assets/:asset/points/:point", { schema: { params: pointParams, querystring: readQuery, response: { 200: readingResponse } } }, async (req) => {
    const { asset: id, point: name } = req.params;
    const op: Operation = { asset: id, action: "read", target: { kind: "point", point: name }, ...sourceOf(req) };
    const p = await principalFor(req, op);
    const { asset, point } = lookup(id, name);
    const io = points();
    const r = await enforce(req, p, op, async () => (asset && point ? readingOutcome(await io.read(asset, point, req.query.maxAge ?? 0)) : { status: "unavailable", exception: "policy-changed" }));
    return { ...r.result, decisionId: r.id };
  });

  app.put<{ Params: { asset: string; point: string }; Body: { value: Scalar } }>(
    "/v1/assets/:asset/points/:point",
    {
      schema: { params: pointParams, body: writeBody, response: { 200: writeResponse } },
      // Before the schema: ajv's type coercion (on for query strings) would turn null into 0.
      preValidation: async (req) => {
        const v = (req.body as { value?: unknown } | null)?.value;
        if (v !== undefined && typeof v !== "number" && typeof v !== "boolean" && typeof v !== "string") throw badRequest(`body/value must be a number, true/false or a string, not ${JSON.stringify(v)}`);
      },
    },
    async (req, reply) => {
      const { asset: id, point: name } = req.params;
      // Who asks comes first: a caller without a valid token learns nothing of the point (its
      // type, its limits) from the answer. The asset and point are then looked up on the policy
      // the decision below is made on (no await between them).
      const p = await principalFor(req, { asset: id, action: "write", target: { kind: "point", point: name }, ...sourceOf(req) });
      const { asset, point } = lookup(id, name);
      let value = req.body.value;
      if (point) {
        const v = pointValue(point, value);
        if (!v.ok) throw badRequest(v.why);
        value = v.value;
      }
      // The log records a write decoded and raw (SPEC §6): the words a Modbus point's value goes out as.
      const raw = asset?.protocol === "modbus" && point ? wireWords(point, value) : undefined;
      // Limits are checked on what the device gets (SPEC §4.3: values decoded by the point's type):
      // a float32 register or an OPC UA Float holds 99.999998 as 100.
      if (point && raw && isRegisterType(point.type)) value = decodeRaw(point.type, point.words, raw);
      else if (point?.type === "float" && typeof value === "number") value = Math.fround(value);
      const op: Operation = { asset: id, action: "write", target: { kind: "point", point: name }, value, ...(raw && { raw }), ...sourceOf(req) };
      const io = points();
      const r = await enforce(req, p, op, async () => {
        if (!asset || !point) return { status: "unavailable", exception: "policy-changed" };
        const w = await io.write(asset, point, value);
        return { ...w, result: w.status };
      }, reply);
      if (!r) return reply;
      return { value, status: r.result, decisionId: r.id };
    },
  );

  /** A raw target as text → its range; a target that does not parse is a 400 naming what is wrong. */
  const rangeOf = (text: string): Extract<Target, { kind: "range" }> => {
    let t: Target;
    try {
      t = parseTarget(text);
    } catch (e) {
      throw badRequest((e as Error).message);
    }
    if (t.kind !== "range") throw badRequest(`target "${text}": raw targets are Modbus addresses (TABLE:ADDR[-ADDR])`);
    return t;
  };

  /**
   * The caller of a raw read or write, before anything of the asset is looked at: a refused
   * token is logged with the target as far as it parses.
   */
  const rawCaller = (req: FastifyRequest<{ Params: { asset: string }; Body: { target: string } }>, action: "read" | "write"): Promise<Principal> => {
    let target: Target;
    try {
      target = rangeOf(req.body.target);
    } catch {
      target = { kind: "point", point: "(invalid target)" };
    }
    return principalFor(req, { asset: req.params.asset, action, target, ...sourceOf(req) });
  };

  const rawTarget = (id: string, text: string, count: number | undefined): Extract<Target, { kind: "range" }> => {
    const { asset } = lookup(id);
    if (asset && asset.protocol !== "modbus") throw badRequest(`asset ${id} is an OPC UA asset: raw targets are Modbus addresses; read and write its points instead`);
    const t = rangeOf(text);
    if (count !== undefined && t.count !== 1) throw badRequest(`target ${text} is a range already; give count only with a single address`);
    const range = count !== undefined ? { ...t, count } : t;
    if (range.address + range.count > 0x10000) throw badRequest(`target ${text} with count ${range.count} goes past address 65535`);
    return range;
  };

  app.post<{ Params: { asset: string }; Body: { target: string; count?: number } }>(
    "/v1/assets/:asset/read",
    { schema: { params: assetParams, body: rawReadBody, response: { 200: rawReadResponse } } },
    async (req) => {
      const id = req.params.asset;
      const p = await rawCaller(req, "read");
      const target = rawTarget(id, req.body.target, req.body.count);
      if (target.count > maxRead(target.table)) throw badRequest(`a read of ${target.table} covers at most ${maxRead(target.table)} addresses (got ${target.count})`);
      const op: Operation = { asset: id, action: "read", target, ...sourceOf(req) };
      const r = await enforce(req, p, op, () => readRange(deps.devices?.modbus(id), target.table, target.address, target.count));
      return { target: describe(target), values: r.result, decisionId: r.id };
    },
  );

  app.post<{ Params: { asset: string }; Body: { target: string; values: number[] } }>(
    "/v1/assets/:asset/write",
    { schema: { params: assetParams, body: rawWriteBody, response: { 200: rawWriteResponse } } },
    async (req, reply) => {
      const id = req.params.asset;
      const p = await rawCaller(req, "write");
      const { values } = req.body;
      // `holding:100` with several values writes from 100 on; a range must match the values.
      const single = !req.body.target.includes("-");
      const target = rawTarget(id, req.body.target, single ? values.length : undefined);
      if (!WRITABLE_TABLES.has(target.table)) throw badRequest(`${target.table} is read-only: only coil and holding addresses are written`);
      if (target.count !== values.length) throw badRequest(`target ${req.body.target} covers ${target.count} addresses; give that many values (got ${values.length})`);
      if (values.length > maxWrite(target.table)) throw badRequest(`a write of ${target.table} carries at most ${maxWrite(target.table)} values`);
      if (target.table === "coil" && values.some((v) => v !== 0 && v !== 1)) throw badRequest("coil values are 0 or 1");
      const op: Operation = { asset: id, action: "write", target, raw: values, ...sourceOf(req) };
      const r = await enforce(req, p, op, async () => {
        const w = await writeRange(deps.devices?.modbus(id), target.table as "coil" | "holding", target.address, values);
        return { ...w, result: w.status };
      }, reply);
      if (!r) return reply;
      return { target: describe(target), status: r.result, decisionId: r.id };
    },
  );
}

/** The wire words of a Modbus point's value (a coil is one bit, 0 or 1); undefined when it has none. */
function wireWords(point: Point, value: Scalar): number[] | undefined {
  if (point.table === "coil" || point.table === "discrete") return [value === true || value === 1 ? 1 : 0];
  return isRegisterType(point.type) ? encodeValue(point.type, point.words, value) : undefined;
}

function sourceOf(req: FastifyRequest): { source?: string } {
  const a = req.socket.remoteAddress;
  return a !== undefined ? { source: a } : {};
}

function describe(t: Target): string {
  if (t.kind === "point") return `point ${t.point}`;
  if (t.kind === "node") return `node:${t.node}`;
  return `${t.table}:${t.address}${t.count > 1 ? `-${t.address + t.count - 1}` : ""}`;
}
