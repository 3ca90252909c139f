// Monitored items on points (SPEC §4.1: a subscription is a read).
//
// CreateMonitoredItems: before node-opcua handles the request, every item on a point's Value is
// decided as a `read` of that point (and logged); a denied item answers BadUserAccessDenied
// alone, the others are created. node-opcua has no per-item authorization hook that can refuse,
// so the subscription's preCreateMonitoredItem is wrapped on the instance: it answers the denied
// items itself and hands the others on (node-opcua is pinned; see package.json).
//
// Values: an item on a point is sampled by the front, never from the node (which holds no
// value): OPC UA assets through one shared upstream monitored item per point (OpcuaUpstream.
// monitor, released with its last item), Modbus assets by reading the point at the item's
// sampling interval. A lost upstream gives its bad status, never the last good value.
//
// Policy reload: every live item is decided again with its session's current principal (each
// decision logged); one no longer allowed gets a last notification with BadUserAccessDenied and
// stops (it delivers nothing more); a stopped item that a later reload allows again resumes.
//
// Who an item serves: the session its subscription belongs to now (node-opcua moves a
// subscription with TransferSubscriptions), and that session's principal now (ActivateSession
// may change the user, or renew the token with other roles). An item delivers values only to
// the principal it was last decided for: when the owner or its principal changes, it answers
// BadUserAccessDenied until it is decided again (reauthorize(session), called by the front on
// every such change), and is stopped if the new principal may not read the point.
import { AttributeIds, MonitoredItemCreateResult, StatusCodes } from "node-opcua";
import type { DataValue, MonitoredItemCreateRequest, NodeId } from "node-opcua";
import type { MonitorHandle } from "../devices/types.js";
import type { Operation } from "../pdp/operation.js";
import type { Principal } from "../pdp/principal.js";
import type { PointNode } from "./opcua-space.js";
import type { ServiceContext, SessionIdentity } from "./opcua-service.js";
import { fetchPoint } from "./opcua-service.js";
import { badValue } from "./opcua-values.js";

type Sampler = (context: unknown, oldValue: DataValue, callback: (err: Error | null, dv?: DataValue) => void) => void;

/** The parts of node-opcua's MonitoredItem the front uses. */
interface ServerItem {
  readonly monitoredItemId: number;
  readonly samplingInterval: number;
  samplingFunc: Sampler | null;
  __acquireInitialValue: (context: unknown, callback: (err: Error | null, dv?: DataValue) => void) => void;
  recordValue(dv: DataValue, skipChangeTest?: boolean): unknown;
}

interface PreResult {
  monitoredItem?: ServerItem;
  createResult: MonitoredItemCreateResult;
  monitoredItemCreateRequest: MonitoredItemCreateRequest;
}

/** The parts of node-opcua's server Subscription the front uses. */
interface ServerSubscription {
  /** The session the subscription belongs to now (node-opcua sets it; TransferSubscriptions changes it). */
  readonly $session?: unknown;
  preCreateMonitoredItem(addressSpace: unknown, timestamps: unknown, req: MonitoredItemCreateRequest): PreResult;
  on(event: "removeMonitoredItem", listener: (item: ServerItem) => void): unknown;
}

interface ServerSessionLike {
  getSubscription(id: number): ServerSubscription | null;
}

interface Feed {
  handle: MonitorHandle | undefined;
  latest: DataValue;
  refs: number;
}

interface Item {
  readonly item: ServerItem;
  readonly sub: ServerSubscription;
  /** The session that created it (its owner while node-opcua does not say otherwise). */
  readonly session: unknown;
  readonly pn: PointNode;
  /** The principal the item was last decided (and allowed) for: it serves no other. */
  decidedFor: Principal | undefined;
  stopped?: DataValue;
  feedKey?: string;
}

interface Pending {
  readonly pn: PointNode;
  readonly allowed: boolean;
  readonly principal?: Principal;
}


export class PointMonitors {
  private readonly items = new Map<ServerItem, Item>();
  private readonly feeds = new Map<string, Feed>();
  private readonly pending = new WeakMap<MonitoredItemCreateRequest, Pending>();
  private readonly wrapped = new WeakSet<ServerSubscription>();

  constructor(private readonly ctx: ServiceContext) {}

  /** Live items on points (for tests and metrics). */
  count(): number {
    return this.items.size;
  }

  /**
   * Decides every item of a CreateMonitoredItems request that is on a point's Value, before
   * node-opcua creates them; installs the per-item refusal on the subscription.
   */
  async precheck(session: unknown, subscriptionId: number, itemsToCreate: readonly MonitoredItemCreateRequest[]): Promise<void> {
    const sub = (session as ServerSessionLike | undefined)?.getSubscription?.(subscriptionId) ?? null;
    if (!sub) return; // node-opcua answers BadSubscriptionIdInvalid
    this.wrap(sub, session);
    const who = this.ctx.identity(session);
    await Promise.all(
      itemsToCreate.map(async (req) => {
        const pn = this.onPoint(req.itemToMonitor?.nodeId, req.itemToMonitor?.attributeId);
        if (!pn) return;
        if (!who) {
          await this.ctx.enforcer.refuse("no-session", null, { asset: pn.asset, action: "read", target: { kind: "point", point: pn.point } }, { protocol: "opcua", transport: "opcua" });
          this.pending.set(req, { pn, allowed: false });
          return;
        }
        const a = await this.ctx.enforcer.authorize(who.principal, readOf(who, pn), who.client);
        this.pending.set(req, { pn, allowed: a.allowed, principal: who.principal });
      }),
    );
  }

  /**
   * Decides every live item again (after a policy reload; with `session`, only the items that
   * session owns now, after its user or token changed or a subscription moved to it): stops
   * the ones no longer allowed, resumes stopped ones allowed again (their next sample is the
   * point's value). An item whose owner has no identity (a session ending) is stopped.
   */
  async reauthorize(session?: unknown): Promise<{ kept: number; stopped: number; resumed: number }> {
    let kept = 0;
    let stopped = 0;
    let resumed = 0;
    for (const it of [...this.items.values()]) {
      const owner = this.owner(it);
      if (session !== undefined && owner !== session) continue;
      const who = this.ctx.identity(owner);
      if (!who) {
        it.decidedFor = undefined;
        if (!it.stopped) this.stop(it);
        stopped++;
        continue;
      }
      const a = await this.ctx.enforcer.authorize(who.principal, readOf(who, it.pn), who.client);
      it.decidedFor = a.allowed ? who.principal : undefined;
      const at = { asset: it.pn.asset, point: it.pn.point, sub: who.principal.sub, item: it.item.monitoredItemId };
      if (a.allowed && it.stopped) {
        resumed++;
        it.stopped = undefined;
        this.ctx.log.info(at, "opcua monitored item resumed: allowed again after a policy reload");
      } else if (a.allowed) kept++;
      else if (it.stopped) stopped++;
      else {
        stopped++;
        this.stop(it);
        this.ctx.log.info({ ...at, reason: a.decision.reason }, session !== undefined ? "opcua monitored item stopped: not allowed for its session's new user or token" : "opcua monitored item stopped: no longer allowed after a policy reload");
      }
    }
    return { kept, stopped, resumed };
  }

  /**
   * Whether every point item of `subscription` was decided for a principal with the same
   * subject, issuer and roles as `p`: moving it to `p` then hands over nothing (values already
   * queued included) that `p` would not have been given.
   */
  servesLike(subscription: unknown, p: Principal): boolean {
    for (const it of this.items.values()) if (it.sub === subscription && it.decidedFor !== undefined && !sameRights(it.decidedFor, p)) return false;
    return true;
  }

  /** Releases every upstream monitored item (the front stops). */
  close(): void {
    for (const it of this.items.values()) this.release(it);
    this.items.clear();
  }

  private onPoint(nodeId: NodeId | undefined, attributeId: number | undefined): PointNode | undefined {
    const pn = this.ctx.space.lookup(nodeId);
    return pn?.kind === "variable" && attributeId === AttributeIds.Value ? pn : undefined;
  }

  private wrap(sub: ServerSubscription, session: unknown): void {
    if (this.wrapped.has(sub)) return;
    this.wrapped.add(sub);
    const pre = sub.preCreateMonitoredItem.bind(sub);
    sub.preCreateMonitoredItem = (addressSpace, timestamps, req) => {
      const p = this.pending.get(req);
      this.pending.delete(req);
      const pn = p?.pn ?? this.onPoint(req.itemToMonitor?.nodeId, req.itemToMonitor?.attributeId);
      // An item on a point that was not decided (it cannot happen through CreateMonitoredItems) is refused too.
      if (pn && p?.allowed !== true) return { createResult: new MonitoredItemCreateResult({ statusCode: StatusCodes.BadUserAccessDenied }), monitoredItemCreateRequest: req };
      const r = pre(addressSpace, timestamps, req);
      if (pn && r.monitoredItem) this.attach(r.monitoredItem, sub, session, pn, p?.principal);
      return r;
    };
    sub.on("removeMonitoredItem", (item) => {
      const it = this.items.get(item);
      if (!it) return;
      this.release(it);
      this.items.delete(item);
    });
  }

  /** The session an item's subscription belongs to now. */
  private owner(it: Item): unknown {
    return it.sub.$session ?? it.session;
  }

  private attach(item: ServerItem, sub: ServerSubscription, session: unknown, pn: PointNode, principal: Principal | undefined): void {
    const it: Item = { item, sub, session, pn, decidedFor: principal };
    this.items.set(item, it);
    const sample = (_ctx: unknown, callback: (err: Error | null, dv?: DataValue) => void) => {
      this.sample(it).then(
        (dv) => callback(null, dv),
        (e: unknown) => {
          this.ctx.log.error({ err: (e as Error).message }, "opcua monitored item sampling failed");
          callback(null, badValue(StatusCodes.BadInternalError));
        },
      );
    };
    item.samplingFunc = (c, _old, cb) => sample(c, cb);
    item.__acquireInitialValue = sample;
  }

  private async sample(it: Item): Promise<DataValue> {
    if (it.stopped) return it.stopped.clone();
    // Only to the principal it was decided for: another user or token on the session, or
    // another session after a transfer, gets nothing until the item is decided for them.
    const who = this.ctx.identity(this.owner(it));
    if (!who || who.principal !== it.decidedFor) return badValue(StatusCodes.BadUserAccessDenied);
    const dv = await this.value(it);
    // Decided again (or stopped) while the value was being fetched: it is not theirs to have.
    const stopped = (it as { stopped?: DataValue }).stopped; // (read again after the await)
    if (stopped) return stopped.clone();
    if (this.ctx.identity(this.owner(it))?.principal !== it.decidedFor) return badValue(StatusCodes.BadUserAccessDenied);
    return dv;
  }

  private async value(it: Item): Promise<DataValue> {
    const asset = this.ctx.policy().assets.get(it.pn.asset);
    const point = asset?.points.get(it.pn.point);
    if (!asset || !point) return badValue(StatusCodes.BadNodeIdUnknown);
    if (asset.protocol !== "opcua" || point.node === undefined) return (await fetchPoint(this.ctx, asset, point)).result as DataValue;
    const feed = this.feed(it, asset.id, point.node);
    return feed.latest.clone();
  }

  /** The shared upstream monitored item of an OPC UA point (started on first use, retried while the upstream is unknown). */
  private feed(it: Item, asset: string, node: string): Feed {
    const key = `${asset}\n${node}`;
    let f = this.feeds.get(key);
    if (!f) {
      f = { handle: undefined, latest: badValue(StatusCodes.BadWaitingForInitialData), refs: 0 };
      this.feeds.set(key, f);
    }
    if (it.feedKey !== key) {
      if (it.feedKey !== undefined) this.release(it);
      it.feedKey = key;
      f.refs++;
    }
    if (!f.handle) {
      const up = this.ctx.upstream(asset);
      if (!up) f.latest = badValue(StatusCodes.BadServerNotConnected);
      else {
        const feed = f;
        feed.handle = up.monitor(node, (dv) => (feed.latest = dv), { samplingIntervalMs: it.item.samplingInterval });
      }
    }
    return f;
  }

  private stop(it: Item): void {
    it.stopped = badValue(StatusCodes.BadUserAccessDenied);
    this.release(it);
    it.item.recordValue(it.stopped.clone(), true);
  }

  private release(it: Item): void {
    const key = it.feedKey;
    if (key === undefined) return;
    it.feedKey = undefined;
    const f = this.feeds.get(key);
    if (!f) return;
    if (--f.refs > 0) return;
    f.handle?.close();
    this.feeds.delete(key);
  }
}

function readOf(who: SessionIdentity, pn: PointNode): Operation {
  return { asset: pn.asset, action: "read", target: { kind: "point", point: pn.point }, ...(who.source !== undefined && { source: who.source }) };
}

function sameRights(a: Principal, b: Principal): boolean {
  return a.sub === b.sub && a.iss === b.iss && a.roles.length === b.roles.length && a.roles.every((r) => b.roles.includes(r));
}
