// Read, Write, Call and Browse of the OPC UA front, each item through the enforcement path.
//
// node-opcua serves those four services through one object, the server engine's
// AddressSpaceAccessor, whose methods receive the request's session context (the session,
// hence the principal). This accessor stands in front of node-opcua's own: an item that touches
// a point of an asset (the Value of a point variable, a point method) is turned into an
// Operation, decided and logged, and forwarded to the device only if allowed; every other item
// (server status, namespaces, types, attributes other than Value) goes to node-opcua's accessor
// as it would have. A denied item answers BadUserAccessDenied alone: the other items of the
// same request are served.
//
// Browse (decided here, documented in the README): a point a principal may not `browse` is
// left out of its asset folder's references (each point decision logged), and browsing the
// point node itself answers BadUserAccessDenied; the Objects folder lists only the asset folders
// in which the principal may browse at least one point (checked without rate counters and not
// logged: it is a visibility filter, not an access to the asset). Reading a Value is a `read`
// whatever was browsed, so a node id known in advance gives nothing more than browsing would.
// TranslateBrowsePathsToNodeIds is filtered the same way (filterPaths).
import { AttributeIds, BrowsePathResult, DataValue, ObjectIds, StatusCodes, TimestampsToReturn } from "node-opcua";
import type { BrowseDescriptionOptions, CallMethodRequest, CallMethodResultOptions, HistoryReadRequest, HistoryReadResult, ISessionContext, ReadRequestOptions, ReadValueId, StatusCode, WriteValue , BrowseResult, Variant } from "node-opcua";
import type { Logger } from "pino";
import type { ClientRef } from "../audit/record.js";
import type { OpcuaUpstream, PointIO } from "../devices/types.js";
import { decide } from "../pdp/evaluate.js";
import type { Action, Operation, Scalar } from "../pdp/operation.js";
import type { Asset, Point, PolicySet } from "../pdp/policy-set.js";
import type { Principal } from "../pdp/principal.js";
import type { Enforcer, Forwarded } from "../pep/enforce.js";
import type { FrontSpace, PointNode } from "./opcua-space.js";
import { badValue, dataValueOf, outcomeOf, scalarOf, writeStatusOf } from "./opcua-values.js";

/**
 * node-opcua-server's AddressSpaceAccessor (not re-exported by node-opcua): what the server
 * engine serves Browse, Read, Write, Call and HistoryRead through.
 */
export interface AddressSpaceAccessor {
  browse(context: ISessionContext, nodesToBrowse: BrowseDescriptionOptions[]): Promise<BrowseResult[]>;
  read(context: ISessionContext, readRequest: ReadRequestOptions): Promise<DataValue[]>;
  write(context: ISessionContext, nodesToWrite: WriteValue[]): Promise<StatusCode[]>;
  call(context: ISessionContext, methodsToCall: CallMethodRequest[]): Promise<CallMethodResultOptions[]>;
  historyRead(context: ISessionContext, historyReadRequest: HistoryReadRequest): Promise<HistoryReadResult[]>;
}

/** Who is on a session: its current principal (read per operation: a renewal replaces it) and client. */
export interface SessionIdentity {
  readonly principal: Principal;
  readonly client: ClientRef;
  /** Client source address as the policy's `from` sees it. */
  readonly source?: string;
}

export interface ServiceContext {
  readonly policy: () => PolicySet;
  readonly enforcer: Enforcer;
  readonly upstream: (asset: string) => OpcuaUpstream | undefined;
  readonly points: PointIO;
  readonly space: FrontSpace;
  /** The identity of a session, or undefined (not activated, ended). */
  readonly identity: (session: unknown) => SessionIdentity | undefined;
  readonly log: Logger;
}

const OBJECTS_FOLDER = `ns=0;i=${ObjectIds.ObjectsFolder}`;

/**
 * The value of a point from its device; never rejects (device trouble is a bad status). With
 * maxAgeMs > 0 (OPC UA maxAge) an OPC UA point may be answered from the gateway's subscription
 * to the server, no older than that (the outcome's cacheAgeMs says so).
 */
export async function fetchPoint(ctx: ServiceContext, asset: Asset, point: Point, maxAgeMs = 0): Promise<Forwarded<DataValue>> {
  let dv: DataValue;
  if (asset.protocol === "opcua") {
    const up = ctx.upstream(asset.id);
    if (!up || point.node === undefined) dv = badValue(StatusCodes.BadServerNotConnected);
    else {
      const r = await up.readWithin(point.node, maxAgeMs);
      if (r.cacheAgeMs !== undefined) return { status: "ok", result: r.value, cacheAgeMs: r.cacheAgeMs };
      dv = r.value;
    }
  } else dv = dataValueOf(point, await ctx.points.read(asset, point));
  return { ...outcomeOf(dv.statusCode), result: dv };
}

function denyBrowse(r: BrowseResult): BrowseResult {
  r.statusCode = StatusCodes.BadUserAccessDenied;
  r.references = [];
  return r;
}

function withTimestamps(dv: DataValue, t: TimestampsToReturn | undefined): DataValue {
  const out = new DataValue({ value: dv.value, statusCode: dv.statusCode, sourceTimestamp: dv.sourceTimestamp, serverTimestamp: dv.serverTimestamp ?? new Date() });
  if (t === TimestampsToReturn.Server || t === TimestampsToReturn.Neither) out.sourceTimestamp = null;
  if (t === TimestampsToReturn.Source || t === TimestampsToReturn.Neither) out.serverTimestamp = null;
  return out;
}

export class EnforcingAccessor implements AddressSpaceAccessor {
  constructor(
    private readonly inner: AddressSpaceAccessor,
    private readonly ctx: ServiceContext,
  ) {}

  /** The operation on one point, or why there is none: no identity (BadUserAccessDenied, logged as no-session). */
  private operation(who: SessionIdentity, pn: PointNode, action: Action, value?: Scalar): Operation {
    return { asset: pn.asset, action, target: { kind: "point", point: pn.point }, ...(value !== undefined && { value }), ...(who.source !== undefined && { source: who.source }) };
  }

  private resolve(pn: PointNode): { asset: Asset; point: Point } | undefined {
    const asset = this.ctx.policy().assets.get(pn.asset);
    const point = asset?.points.get(pn.point);
    return asset && point ? { asset, point } : undefined;
  }

  /** A session with no identity reaching a service: refused and logged (node-opcua lets no such session through; this is the fallback). */
  private async noIdentity(pn: PointNode, action: Action): Promise<void> {
    await this.ctx.enforcer.refuse("no-session", null, { asset: pn.asset, action, target: { kind: "point", point: pn.point } }, { protocol: "opcua", transport: "opcua" });
  }

  async read(context: ISessionContext, readRequest: ReadRequestOptions): Promise<DataValue[]> {
    const nodes = (readRequest.nodesToRead ?? []) as ReadValueId[];
    const out: DataValue[] = new Array<DataValue>(nodes.length);
    const passed: number[] = [];
    await Promise.all(
      nodes.map(async (rv, i) => {
        const pn = this.ctx.space.lookup(rv.nodeId);
        if (pn?.kind === "variable" && rv.attributeId === AttributeIds.Value) {
          // A point's value is read whole, in its own type: a part of it or another encoding is
          // not something the gateway serves (as Write refuses an indexRange).
          if (rv.indexRange && !rv.indexRange.isEmpty()) out[i] = badValue(StatusCodes.BadIndexRangeNoData);
          else if (rv.dataEncoding?.name) out[i] = badValue(StatusCodes.BadDataEncodingInvalid);
          else out[i] = withTimestamps(await this.readPoint(context, pn, readRequest.maxAge ?? 0), readRequest.timestampsToReturn);
        } else passed.push(i);
      }),
    );
    if (passed.length > 0) {
      passed.sort((a, b) => a - b);
      const results = await this.inner.read(context, { ...readRequest, nodesToRead: passed.map((i) => nodes[i] as ReadValueId) });
      passed.forEach((i, k) => (out[i] = results[k] as DataValue));
    }
    return out;
  }

  private async readPoint(context: ISessionContext, pn: PointNode, maxAgeMs: number): Promise<DataValue> {
    const who = this.ctx.identity(context.session);
    if (!who) {
      await this.noIdentity(pn, "read");
      return badValue(StatusCodes.BadUserAccessDenied);
    }
    const target = this.resolve(pn);
    const r = await this.ctx.enforcer.enforce(who.principal, [this.operation(who, pn, "read")], who.client, () =>
      target ? fetchPoint(this.ctx, target.asset, target.point, maxAgeMs) : Promise.resolve({ ...outcomeOf(StatusCodes.BadNodeIdUnknown), result: badValue(StatusCodes.BadNodeIdUnknown) }),
    );
    return r.allowed && r.forwarded?.result ? r.forwarded.result : badValue(StatusCodes.BadUserAccessDenied);
  }

  async write(context: ISessionContext, nodesToWrite: WriteValue[]): Promise<StatusCode[]> {
    const out: StatusCode[] = [];
    // One after another: a later write never overtakes an earlier one.
    for (const wv of nodesToWrite) {
      const pn = this.ctx.space.lookup(wv.nodeId);
      if (pn?.kind === "variable" && wv.attributeId === AttributeIds.Value) out.push(await this.writePoint(context, pn, wv));
      else out.push(...(await this.inner.write(context, [wv])));
    }
    return out;
  }

  private async writePoint(context: ISessionContext, pn: PointNode, wv: WriteValue): Promise<StatusCode> {
    const who = this.ctx.identity(context.session);
    if (!who) {
      await this.noIdentity(pn, "write");
      return StatusCodes.BadUserAccessDenied;
    }
    const target = this.resolve(pn);
    if (!target) {
      await this.ctx.enforcer.authorize(who.principal, this.operation(who, pn, "write"), who.client);
      return StatusCodes.BadNodeIdUnknown;
    }
    if (wv.indexRange && !wv.indexRange.isEmpty()) return StatusCodes.BadWriteNotSupported;
    const variant = wv.value?.value;
    const value = scalarOf(target.point, variant);
    if (value === undefined) return StatusCodes.BadTypeMismatch;
    const r = await this.ctx.enforcer.enforce(who.principal, [this.operation(who, pn, "write", value)], who.client, async (): Promise<Forwarded<StatusCode>> => {
      let status: StatusCode;
      if (target.asset.protocol === "opcua") {
        const up = this.ctx.upstream(target.asset.id);
        status = up && target.point.node !== undefined ? await up.write(target.point.node, variant as Variant) : StatusCodes.BadServerNotConnected;
      } else {
        status = writeStatusOf(await this.ctx.points.write(target.asset, target.point, value));
      }
      return { ...outcomeOf(status), result: status };
    });
    if (!r.allowed) return r.refusal?.decision.reason === "unsupported-function" ? StatusCodes.BadNotWritable : StatusCodes.BadUserAccessDenied;
    return r.forwarded?.result ?? StatusCodes.BadInternalError;
  }

  async call(context: ISessionContext, methodsToCall: CallMethodRequest[]): Promise<CallMethodResultOptions[]> {
    const out: CallMethodResultOptions[] = [];
    for (const m of methodsToCall) {
      const pn = this.ctx.space.lookup(m.methodId);
      if (pn?.kind === "method") out.push(await this.callPoint(context, pn, m));
      else out.push(...(await this.inner.call(context, [m])));
    }
    return out;
  }

  private async callPoint(context: ISessionContext, pn: PointNode, m: CallMethodRequest): Promise<CallMethodResultOptions> {
    const who = this.ctx.identity(context.session);
    if (!who) {
      await this.noIdentity(pn, "call");
      return { statusCode: StatusCodes.BadUserAccessDenied };
    }
    // The method is called on its asset's folder, as browsing shows it.
    if (m.objectId?.toString() !== this.ctx.space.nodeIdOf(pn.asset)) return { statusCode: StatusCodes.BadMethodInvalid };
    const target = this.resolve(pn);
    const r = await this.ctx.enforcer.enforce(who.principal, [this.operation(who, pn, "call")], who.client, async (): Promise<Forwarded<CallMethodResultOptions>> => {
      const up = target ? this.ctx.upstream(target.asset.id) : undefined;
      if (!up || target?.point.node === undefined || target.point.object === undefined) return { status: "unavailable", result: { statusCode: StatusCodes.BadServerNotConnected } };
      const res = await up.call(target.point.object, target.point.node, m.inputArguments ?? []);
      return { ...outcomeOf(res.statusCode), result: { statusCode: res.statusCode, outputArguments: res.outputArguments } };
    });
    return r.allowed && r.forwarded?.result ? r.forwarded.result : { statusCode: StatusCodes.BadUserAccessDenied };
  }

  async browse(context: ISessionContext, nodesToBrowse: BrowseDescriptionOptions[]): Promise<BrowseResult[]> {
    const results = await this.inner.browse(context, nodesToBrowse);
    return Promise.all(results.map((r, i) => this.filterBrowse(context, nodesToBrowse[i] as BrowseDescriptionOptions, r)));
  }

  private async filterBrowse(context: ISessionContext, desc: BrowseDescriptionOptions, r: BrowseResult): Promise<BrowseResult> {
    const nodeId = desc.nodeId?.toString();
    const pn = this.ctx.space.lookup(nodeId);
    const folder = this.ctx.space.folderOf(nodeId);
    if (!pn && folder === undefined && nodeId !== OBJECTS_FOLDER) return r;
    const who = this.ctx.identity(context.session);
    const refs = r.references ?? [];
    if (pn) {
      if (!who) {
        await this.noIdentity(pn, "browse");
        return denyBrowse(r);
      }
      const a = await this.ctx.enforcer.authorize(who.principal, this.operation(who, pn, "browse"), who.client);
      return a.allowed ? r : denyBrowse(r);
    }
    // The result is filtered in place: node-opcua registers continuation points on it afterwards.
    if (!who) {
      r.references = refs.filter((ref) => !this.ctx.space.lookup(ref.nodeId) && this.ctx.space.folderOf(ref.nodeId) === undefined);
      return r;
    }
    const keep = await Promise.all(refs.map((ref) => this.visible(who, ref.nodeId)));
    r.references = refs.filter((_, k) => keep[k]);
    return r;
  }

  /**
   * TranslateBrowsePathsToNodeIds, filtered as Browse is (opcua.ts answers the service with the
   * session): a target that is a point (or part of one) the principal may not `browse` is left
   * out (the decision logged), an asset folder only shown to a principal who may browse one of
   * its points; a path left with no target answers BadNoMatch, as a path to nothing would.
   */
  async filterPaths(session: unknown, results: BrowsePathResult[]): Promise<BrowsePathResult[]> {
    const who = this.ctx.identity(session);
    return Promise.all(
      results.map(async (r) => {
        const targets = r.targets ?? [];
        if (targets.length === 0) return r;
        const keep = await Promise.all(targets.map((target) => this.visible(who, target.targetId)));
        const left = targets.filter((_, k) => keep[k]);
        if (left.length === targets.length) return r;
        return new BrowsePathResult({ statusCode: left.length > 0 ? r.statusCode : StatusCodes.BadNoMatch, targets: left });
      }),
    );
  }

  /** Whether a node may be shown to `who` (undefined: a session without identity sees no point or asset). */
  private async visible(who: SessionIdentity | undefined, nodeId: { toString(): string }): Promise<boolean> {
    const pn = this.ctx.space.pointAt(nodeId);
    if (pn) {
      if (!who) {
        await this.noIdentity(pn, "browse");
        return false;
      }
      return (await this.ctx.enforcer.authorize(who.principal, this.operation(who, pn, "browse"), who.client)).allowed;
    }
    const asset = this.ctx.space.folderOf(nodeId);
    if (asset === undefined) return true;
    return who !== undefined && this.mayBrowseSome(who, asset);
  }

  /** Whether the principal may browse at least one point of the asset (a pure check, not logged). */
  private mayBrowseSome(who: SessionIdentity, assetId: string): boolean {
    const set = this.ctx.policy();
    const asset = set.assets.get(assetId);
    if (!asset) return false;
    const now = Date.now();
    for (const point of asset.points.keys()) {
      const op: Operation = { asset: assetId, action: "browse", target: { kind: "point", point }, ...(who.source !== undefined && { source: who.source }) };
      if (decide(set, op, who.principal, { now, dryRun: true }).effect === "allow") return true;
    }
    return false;
  }

  historyRead(context: ISessionContext, historyReadRequest: HistoryReadRequest): Promise<HistoryReadResult[]> {
    // The points have no history here; node-opcua answers for them from the (empty) nodes.
    return this.inner.historyRead(context, historyReadRequest);
  }
}

