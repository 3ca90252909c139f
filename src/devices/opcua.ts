// The upstream side of one OPC UA server (SPEC §5.2): one node-opcua client and one session,
// shared by every client of every front, with one subscription whose monitored items are
// shared by every listener of the same node.
//
//   fronts ─► read / write / call ─────────────► session ─► server
//          └► monitor(node, listener) ─► Watch ─► monitored item (one per node) ┘
//
// - Connection: node-opcua's own reconnection is off (`maxRetry: 0`; left to itself it
//   retries for ever and queues requests meanwhile). Each connection is a fresh client and
//   session; when it is lost (socket closed, keep-alive failed, session or subscription
//   closed by the server) the client is thrown away and a new one made, with the backoff of
//   ModbusDevice: a connection that was up for at least `backoff.initialMs` is made again at
//   once, a failed attempt waits min(maxMs, initialMs·2^attempt), half of it random.
// - Never rejects: not connected → BadServerNotConnected (while a connection is being made,
//   requests wait for it within their deadline); connection lost with the request in flight
//   → BadCommunicationError; no answer within `requestTimeoutMs` → BadTimeout. A bad status
//   never carries a value, so nothing stale is ever presented as good. A write or call is
//   never sent twice: the server may have done it before the connection dropped.
// - Monitoring: a listener gets the last value at once (when known), every change after, a
//   bad status when the connection is lost; after a reconnect the subscription and items are
//   made again and values flow again. The last listener of a node removes its item. An item
//   samples at the shortest interval any of its listeners asked for (a listener asking for a
//   shorter one than the item has makes the server's item faster; it never slows down again
//   while it lives).
// - Reads within maxAge: a read that allows an older value (OPC UA maxAge > 0) is answered from
//   the shared subscription when the value held is known to be no older than that: the item
//   exists, its last value is Good, and a publish response (data or keep-alive: the
//   subscription sends one at least every ~500 ms) received at time T covered it, so the value
//   is the server's as of T − sampling interval; the age bound given is
//   now − T + sampling interval + publishing interval. A read that asks for it starts a
//   monitored item for the node (a "read interest", dropped after `readCache.idleMs` without
//   reads, at most `readCache.maxItems` of them). A write or call through this device makes
//   every held value unusable until a publish received one sampling interval after it ended.
//   maxAge 0 always goes to the server.
// - PKI: the client's certificate and the server certificates it trusts live in `pkiDir`
//   (the gateway passes keys.dir/opcua-upstream-pki), never in the home directory. Unknown
//   server certificates are rejected (they land in `pkiDir/rejected/`; trusting one is moving
//   it to `trusted/certs/`), which matters only with Sign or SignAndEncrypt.
import { EventEmitter } from "node:events";
import { mkdir } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import {
  AttributeIds,
  DataValue,
  MessageSecurityMode,
  MonitoringMode,
  OPCUACertificateManager,
  OPCUAClient,
  SecurityPolicy,
  StatusCodes,
  TimestampsToReturn,
  resolveNodeId,
} from "node-opcua";
import type { ClientMonitoredItem, ClientSession, ClientSubscription, StatusCode, Variant } from "node-opcua";
import type { ConnectionState } from "./modbus.js";
import type { DeviceConnector } from "./registry.js";
import type { MonitorHandle, OpcuaUpstream } from "./types.js";

export const SECURITY_MODES = ["None", "Sign", "SignAndEncrypt"] as const;
export type SecurityModeName = (typeof SECURITY_MODES)[number];
/** OAEP/PSS policies only: Basic128Rsa15 and Basic256 need RSA PKCS#1 v1.5, which Node refuses (CVE-2023-46809). */
export const SECURITY_POLICIES = ["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"] as const;
export type SecurityPolicyName = (typeof SECURITY_POLICIES)[number];

export interface OpcuaDeviceOptions {
  /** `opc.tcp://host:port[/path]` (port 4840 when left out). */
  readonly endpoint: string;
  /** The client's PKI folder (own certificate, trusted server certificates); created if missing. */
  readonly pkiDir: string;
  /** Default None (the simulated server); Sign or SignAndEncrypt need a policy other than None. */
  readonly securityMode?: SecurityModeName;
  /** Default None; must be None exactly when the mode is None. */
  readonly securityPolicy?: SecurityPolicyName;
  /** A request not answered in this time is BadTimeout (default 2000 ms). */
  readonly requestTimeoutMs?: number;
  /** How long one connection attempt (channel and session) may take (default 5000 ms). */
  readonly connectTimeoutMs?: number;
  /** Reconnect delays (default 200 ms doubling up to 10000 ms). */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
  /** Session keep-alive period: a server that stops answering is noticed within about this (default 5000 ms). */
  readonly keepAliveMs?: number;
  /** Publishing interval of the shared subscription (default 100 ms). */
  readonly publishingIntervalMs?: number;
  /** Sampling interval of a monitored item when its first listener asks for none (default 250 ms). */
  readonly samplingIntervalMs?: number;
  /** Reads within maxAge from the subscription (see the header); idleMs 0 turns it off (default 60000 ms, 1000 items). */
  readonly readCache?: { readonly idleMs?: number; readonly maxItems?: number };
  /** [0, 1) for the jitter (default Math.random). */
  readonly random?: () => number;
}

/** A value held from the subscription, and the bound on its age. */
export interface CachedValue {
  readonly value: DataValue;
  readonly ageMs: number;
}

/** The subscription sends a publish response (a keep-alive when nothing changed) at least this often. */
const CONFIRM_MS = 500;

export interface OpcuaDeviceStats {
  readonly state: ConnectionState;
  /** Requests sent and not answered yet. */
  readonly inFlight: number;
  /** Nodes monitored (one upstream item each) and their listeners. */
  readonly watches: number;
  readonly listeners: number;
  /** Monitored items live upstream now. */
  readonly monitoredItems: number;
  /** Reads answered from the subscription, reads that went to the server, read interests held now. */
  readonly cacheHits: number;
  readonly cacheMisses: number;
  readonly readInterests: number;
  readonly connects: number;
  readonly connectFailures: number;
  readonly drops: number;
  readonly timeouts: number;
}

/** `opc.tcp://host:port[/path]` → normalised URL; throws a RangeError naming what is wrong. */
export function parseOpcuaEndpoint(endpoint: string): { url: string; host: string; port: number } {
  const m = /^opc\.tcp:\/\/(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+)(?::(\d{1,5}))?(\/[^\s]*)?$/i.exec(endpoint);
  if (!m) throw new RangeError(`OPC UA endpoint "${endpoint}" is not opc.tcp://host:port`);
  const port = m[2] === undefined ? 4840 : Number(m[2]);
  if (port < 1 || port > 0xffff) throw new RangeError(`OPC UA endpoint "${endpoint}": port ${port} is not 1..65535`);
  const hostPart = (m[1] as string).toLowerCase();
  const path = m[3] === undefined || m[3] === "/" ? "" : m[3];
  return { url: `opc.tcp://${hostPart}:${port}${path}`, host: hostPart.replace(/^\[(.*)\]$/, "$1"), port };
}

/** A DataValue with a bad status and no value (never a stale one). */
export function badValue(statusCode: StatusCode): DataValue {
  return new DataValue({ statusCode, serverTimestamp: new Date() });
}

type Listener = (value: DataValue) => void;

/** One monitored node: its listeners share one upstream item. */
class Watch {
  readonly listeners = new Set<Listener>();
  last: DataValue | undefined;
  item: ClientMonitoredItem | undefined;
  /** When the current item gave its first value (Infinity: not yet), and its sampling interval as the server revised it. */
  firstAt = Infinity;
  sampledMs = 0;
  constructor(
    readonly nodeId: string,
    public samplingIntervalMs: number,
  ) {}
}

/** One connection: a client, its session, the subscription once one is needed. */
interface Link {
  readonly client: OPCUAClient;
  readonly session: ClientSession;
  subscription: Promise<ClientSubscription> | undefined;
  /** When the last publish response of the subscription was received (its values applied). */
  knownAt: number;
  lost: boolean;
  readonly upAt: number;
  /** Fails a request in flight on this connection (with the status given). */
  readonly inFlight: Set<(status: StatusCode) => void>;
}

// Certificate managers by PKI folder, shared by the devices of one process: two managers on
// one folder would each create the client certificate the first time.
const managers = new Map<string, { manager: OPCUACertificateManager; refs: number; ready: Promise<void> }>();

function acquireManager(folder: string): { manager: OPCUACertificateManager; ready: Promise<void> } {
  let m = managers.get(folder);
  if (!m) {
    const manager = new OPCUACertificateManager({ rootFolder: folder, automaticallyAcceptUnknownCertificate: false });
    const ready = mkdir(folder, { recursive: true }).then(() => manager.initialize());
    ready.catch(() => undefined);
    m = { manager, refs: 0, ready };
    managers.set(folder, m);
  }
  m.refs++;
  return m;
}

async function releaseManager(folder: string): Promise<void> {
  const m = managers.get(folder);
  if (!m || --m.refs > 0) return;
  managers.delete(folder);
  await m.ready.catch(() => undefined);
  await m.manager.dispose().catch(() => undefined);
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Resolves with `p`, or with `onTimeout()` after `ms`. */
function within<T>(p: Promise<T>, ms: number, onTimeout: () => T): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      try {
        resolve(onTimeout());
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    }, ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

export class OpcuaDevice extends EventEmitter<{ state: [state: ConnectionState, error: string | undefined] }> implements DeviceConnector, OpcuaUpstream {
  readonly protocol = "opcua" as const;
  readonly endpoint: string;
  private readonly pkiDir: string;
  private readonly securityMode: MessageSecurityMode;
  private readonly securityPolicy: SecurityPolicy;
  private readonly requestTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly keepAliveMs: number;
  private readonly publishingIntervalMs: number;
  private readonly samplingIntervalMs: number;
  private readonly cacheIdleMs: number;
  private readonly cacheMaxItems: number;
  private readonly random: () => number;
  private manager: OPCUACertificateManager | undefined;
  private started = false;
  private stopped = false;
  private current: ConnectionState = "down";
  private lastError: string | undefined;
  private link: Link | undefined;
  /** The client being connected, so stop() can abort it. */
  private connectingClient: OPCUAClient | undefined;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Requests waiting for the connection being made. */
  private readonly waiting = new Set<(link: Link | undefined) => void>();
  private readonly watches = new Map<string, Watch>();
  /** Clients being closed (stop() waits for them). */
  private readonly closing = new Set<Promise<void>>();
  private readonly n = { connects: 0, connectFailures: 0, drops: 0, timeouts: 0, cacheHits: 0, cacheMisses: 0 };
  /** Read interests: node key → its listener's handle and when it lapses. */
  private readonly interests = new Map<string, { readonly handle: MonitorHandle; until: number }>();
  private sweepTimer: NodeJS.Timeout | undefined;
  /** Writes and calls in flight, and when the last one ended: held values are unusable until a publish one sampling interval after it. */
  private changing = 0;
  private changedAt = -Infinity;
  /** Node id strings as given → their normal form (the watches' keys). */
  private readonly keys = new Map<string, string>();

  constructor(options: OpcuaDeviceOptions) {
    super();
    this.endpoint = parseOpcuaEndpoint(options.endpoint).url;
    if (!options.pkiDir) throw new RangeError(`OpcuaDevice ${this.endpoint}: no PKI folder (pkiDir) for the client certificate`);
    this.pkiDir = options.pkiDir;
    const mode = options.securityMode ?? "None";
    const policy = options.securityPolicy ?? "None";
    if (!SECURITY_MODES.includes(mode)) throw new RangeError(`OpcuaDevice ${this.endpoint}: security mode ${mode} is not one of ${SECURITY_MODES.join(", ")}`);
    if (!SECURITY_POLICIES.includes(policy)) throw new RangeError(`OpcuaDevice ${this.endpoint}: security policy ${policy} is not one of ${SECURITY_POLICIES.join(", ")}`);
    if ((mode === "None") !== (policy === "None")) throw new RangeError(`OpcuaDevice ${this.endpoint}: security mode ${mode} does not go with security policy ${policy} (None goes only with None)`);
    this.securityMode = MessageSecurityMode[mode];
    this.securityPolicy = SecurityPolicy[policy];
    const int = (v: number | undefined, dflt: number, min: number, what: string) => {
      const x = v ?? dflt;
      if (!Number.isInteger(x) || x < min) throw new RangeError(`OpcuaDevice ${this.endpoint}: ${what} ${x} is not an integer >= ${min}`);
      return x;
    };
    this.requestTimeoutMs = int(options.requestTimeoutMs, 2000, 1, "requestTimeoutMs");
    this.connectTimeoutMs = int(options.connectTimeoutMs, 5000, 1, "connectTimeoutMs");
    this.initialMs = int(options.backoff?.initialMs, 200, 1, "backoff.initialMs");
    this.maxMs = Math.max(this.initialMs, int(options.backoff?.maxMs, 10_000, 1, "backoff.maxMs"));
    this.keepAliveMs = int(options.keepAliveMs, 5000, 100, "keepAliveMs");
    this.publishingIntervalMs = int(options.publishingIntervalMs, 100, 10, "publishingIntervalMs");
    this.samplingIntervalMs = int(options.samplingIntervalMs, 250, 0, "samplingIntervalMs");
    this.cacheIdleMs = int(options.readCache?.idleMs, 60_000, 0, "readCache.idleMs");
    this.cacheMaxItems = int(options.readCache?.maxItems, 1000, 0, "readCache.maxItems");
    this.random = options.random ?? Math.random;
  }

  /** Starts connecting; resolves at once (requests wait for the connection within their deadline). */
  async start(): Promise<void> {
    if (this.started || this.stopped) return;
    this.started = true;
    const m = acquireManager(this.pkiDir);
    this.manager = m.manager;
    this.attempt = 0;
    void this.connect(m.ready);
  }

  /** Closes the session and connection; everything in flight or waiting is BadServerNotConnected, listeners get it too. */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    for (const i of this.interests.values()) i.handle.close();
    this.interests.clear();
    this.release(undefined);
    const link = this.link;
    this.link = undefined;
    if (link) this.drop(link, StatusCodes.BadServerNotConnected);
    if (this.connectingClient) this.close(this.connectingClient);
    this.broadcast(StatusCodes.BadServerNotConnected);
    for (const w of this.watches.values()) w.item = undefined;
    while (this.closing.size > 0) await Promise.all([...this.closing]);
    this.manager = undefined;
    await releaseManager(this.pkiDir);
    this.setState("down");
  }

  state(): ConnectionState {
    return this.current;
  }

  stats(): OpcuaDeviceStats {
    let listeners = 0;
    let monitoredItems = 0;
    for (const w of this.watches.values()) {
      listeners += w.listeners.size;
      if (w.item) monitoredItems++;
    }
    return { state: this.current, inFlight: this.link?.inFlight.size ?? 0, watches: this.watches.size, listeners, monitoredItems, readInterests: this.interests.size, ...this.n };
  }

  /**
   * The value of `nodeId` held from the subscription, if it is known to be no older than
   * `maxAgeMs` (see the header); undefined otherwise (then `read` goes to the server).
   */
  cached(nodeId: string, maxAgeMs: number): CachedValue | undefined {
    if (!(maxAgeMs > 0) || this.cacheIdleMs === 0) return undefined;
    const key = this.keyOf(nodeId);
    if (key === undefined) return undefined;
    const w = this.watches.get(key);
    const link = this.link;
    const now = performance.now();
    const interest = this.interests.get(key);
    if (interest) interest.until = now + this.cacheIdleMs;
    if (!w || !link || !w.item || !w.last || this.changing > 0) return undefined;
    const knownAt = link.knownAt;
    if (knownAt < w.firstAt || knownAt < this.changedAt + w.sampledMs || !w.last.statusCode.isGood()) return undefined;
    const ageMs = now - knownAt + w.sampledMs + this.publishingIntervalMs;
    if (ageMs > maxAgeMs) return undefined;
    this.n.cacheHits++;
    return { value: w.last, ageMs: Math.round(ageMs) };
  }

  /** A read within maxAgeMs: the value held (with its age bound) when there is one young enough, else from the server. */
  async readWithin(nodeId: string, maxAgeMs: number): Promise<{ value: DataValue; cacheAgeMs?: number }> {
    const held = this.cached(nodeId, maxAgeMs);
    return held ? { value: held.value, cacheAgeMs: held.ageMs } : { value: await this.read(nodeId, maxAgeMs) };
  }

  /** Reads from the server; with maxAgeMs > 0 (passed on to the server) the node is monitored for later reads within that age. */
  read(nodeId: string, maxAgeMs = 0): Promise<DataValue> {
    if (maxAgeMs > 0 && this.cacheIdleMs > 0) {
      this.n.cacheMisses++;
      this.interest(nodeId, maxAgeMs);
    }
    return this.request(nodeId, (s, id) => s.read({ nodeId: id, attributeId: AttributeIds.Value }, maxAgeMs), badValue);
  }

  write(nodeId: string, value: Variant): Promise<StatusCode> {
    return this.changes(this.request(nodeId, (s, id) => s.write({ nodeId: id, attributeId: AttributeIds.Value, value: { value } }), (sc) => sc));
  }

  /** A write or call: no held value is used while it is in flight, nor until a publish one sampling interval after it. */
  private changes<T>(p: Promise<T>): Promise<T> {
    this.changing++;
    const after = () => {
      this.changing--;
      this.changedAt = Math.max(this.changedAt, performance.now());
    };
    p.then(after, after);
    return p;
  }

  private keyOf(nodeId: string): string | undefined {
    let key = this.keys.get(nodeId);
    if (key === undefined) {
      try {
        key = resolveNodeId(nodeId).toString();
      } catch {
        return undefined;
      }
      if (this.keys.size >= 10_000) this.keys.clear();
      this.keys.set(nodeId, key);
    }
    return key;
  }

  /** Monitors `nodeId` for reads within `maxAgeMs`, if a held value could ever be that young. */
  private interest(nodeId: string, maxAgeMs: number): void {
    const key = this.keyOf(nodeId);
    if (key === undefined || this.interests.has(key) || this.interests.size >= this.cacheMaxItems) return;
    if (maxAgeMs <= this.samplingIntervalMs + this.publishingIntervalMs) return;
    this.interests.set(key, { handle: this.monitor(key, noop), until: performance.now() + this.cacheIdleMs });
    if (!this.sweepTimer) {
      this.sweepTimer = setInterval(() => this.sweep(), Math.min(this.cacheIdleMs, 10_000));
      this.sweepTimer.unref();
    }
  }

  /** Drops the read interests no read has used for `readCache.idleMs`. */
  private sweep(): void {
    const now = performance.now();
    for (const [key, i] of this.interests) {
      if (i.until > now) continue;
      i.handle.close();
      this.interests.delete(key);
    }
    if (this.interests.size === 0) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }

  call(objectId: string, methodId: string, inputArguments: readonly Variant[]): Promise<{ statusCode: StatusCode; outputArguments: Variant[] }> {
    let object;
    try {
      object = resolveNodeId(objectId);
    } catch {
      return Promise.resolve({ statusCode: StatusCodes.BadNodeIdInvalid, outputArguments: [] });
    }
    return this.changes(
      this.request(
        methodId,
        async (s, id) => {
          const r = await s.call({ objectId: object, methodId: id, inputArguments: [...inputArguments] });
          return { statusCode: r.statusCode, outputArguments: r.outputArguments ?? [] };
        },
        (statusCode) => ({ statusCode, outputArguments: [] }),
      ),
    );
  }

  monitor(nodeId: string, listener: Listener, options?: { readonly samplingIntervalMs?: number }): MonitorHandle {
    let key: string;
    try {
      key = resolveNodeId(nodeId).toString();
    } catch {
      let open = true;
      setImmediate(() => {
        if (open) this.tell(listener, badValue(StatusCodes.BadNodeIdInvalid));
      });
      return { close: () => void (open = false) };
    }
    let w = this.watches.get(key);
    if (!w) {
      w = new Watch(key, options?.samplingIntervalMs ?? this.samplingIntervalMs);
      this.watches.set(key, w);
      if (this.link) void this.addItem(this.link, w);
      else w.last = badValue(StatusCodes.BadServerNotConnected);
    }
    const want = options?.samplingIntervalMs;
    if (want !== undefined && want < w.samplingIntervalMs) this.faster(w, want);
    const watch = w;
    watch.listeners.add(listener);
    if (watch.last) {
      const first = watch.last;
      setImmediate(() => {
        if (watch.listeners.has(listener)) this.tell(listener, first);
      });
    }
    let closed = false;
    return {
      close: () => {
        if (closed) return;
        closed = true;
        watch.listeners.delete(listener);
        if (watch.listeners.size > 0 || this.watches.get(key) !== watch) return;
        this.watches.delete(key);
        const item = watch.item;
        watch.item = undefined;
        if (item) item.terminate().catch(() => undefined);
      },
    };
  }

  /** Makes the item of `w` sample every `ms` (the server may revise it). */
  private faster(w: Watch, ms: number): void {
    w.samplingIntervalMs = ms;
    const item = w.item;
    if (!item) return; // made with the new interval when it is made
    item.modify({ samplingInterval: ms, queueSize: 1, discardOldest: true }, TimestampsToReturn.Both).then(
      (r) => {
        if (w.item !== item || !r.statusCode.isGood()) return;
        w.sampledMs = Math.max(ms, r.revisedSamplingInterval);
        // The value held was sampled at the old rate: a publish after this one confirms it at the new.
        w.firstAt = performance.now();
      },
      () => undefined,
    );
  }

  /**
   * Runs one service call on the session, within the deadline, mapping every failure to a
   * status: the caller's `bad` turns a status into its result type.
   */
  private async request<T>(nodeId: string, run: (s: ClientSession, id: ReturnType<typeof resolveNodeId>) => Promise<T>, bad: (sc: StatusCode) => T): Promise<T> {
    let id;
    try {
      id = resolveNodeId(nodeId);
    } catch {
      return bad(StatusCodes.BadNodeIdInvalid);
    }
    const deadline = performance.now() + this.requestTimeoutMs;
    const link = this.link ?? (await this.whenConnected(deadline));
    if (link === "timeout") return bad(this.timedOut());
    if (!link) return bad(StatusCodes.BadServerNotConnected);
    if (link.lost) return bad(StatusCodes.BadCommunicationError);
    return new Promise<T>((resolve) => {
      let done = false;
      const finish = (v: T) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        link.inFlight.delete(fail);
        resolve(v);
      };
      const fail = (sc: StatusCode) => finish(bad(sc));
      const timer = setTimeout(() => fail(this.timedOut()), Math.max(0, deadline - performance.now()));
      link.inFlight.add(fail);
      run(link.session, id).then(finish, (e: unknown) => fail(link.lost ? StatusCodes.BadCommunicationError : /timed? ?out/i.test(errorText(e)) ? this.timedOut() : StatusCodes.BadCommunicationError));
    });
  }

  private timedOut(): StatusCode {
    this.n.timeouts++;
    return StatusCodes.BadTimeout;
  }

  /** The connection, once the one being made is up; undefined if it fails or none is being made; "timeout" at the deadline. */
  private whenConnected(deadline: number): Promise<Link | undefined | "timeout"> {
    if (this.current !== "connecting") return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const waiter = (link: Link | undefined) => {
        clearTimeout(timer);
        this.waiting.delete(waiter);
        resolve(link);
      };
      const timer = setTimeout(() => {
        this.waiting.delete(waiter);
        resolve("timeout");
      }, Math.max(0, deadline - performance.now()));
      this.waiting.add(waiter);
    });
  }

  private release(link: Link | undefined): void {
    for (const w of [...this.waiting]) w(link);
  }

  private async connect(ready: Promise<void>): Promise<void> {
    this.retryTimer = undefined;
    if (!this.started) return;
    this.setState("connecting");
    let client: OPCUAClient | undefined;
    try {
      await ready;
      if (!this.started) return;
      client = OPCUAClient.create({
        applicationName: "ztgate",
        applicationUri: "urn:ztgate:opcua-upstream",
        clientName: "ztgate",
        endpointMustExist: false,
        // One attempt per connect(); the reconnect loop is ours (see the header).
        connectionStrategy: { maxRetry: 0, initialDelay: this.initialMs, maxDelay: this.maxMs },
        securityMode: this.securityMode,
        securityPolicy: this.securityPolicy,
        clientCertificateManager: this.manager as OPCUACertificateManager,
        keepSessionAlive: true,
        keepAliveInterval: this.keepAliveMs,
        requestedSessionTimeout: Math.max(60_000, this.keepAliveMs * 3),
        defaultTransactionTimeout: this.requestTimeoutMs,
      });
      this.connectingClient = client;
      const c = client;
      const session = await within(
        (async () => {
          await c.connect(this.endpoint);
          return c.createSession();
        })(),
        this.connectTimeoutMs,
        () => {
          throw new Error(`connect to ${this.endpoint} timed out after ${this.connectTimeoutMs} ms`);
        },
      );
      this.connectingClient = undefined;
      if (!this.started) {
        this.close(c);
        return;
      }
      const link: Link = { client: c, session, subscription: undefined, knownAt: -Infinity, lost: false, upAt: performance.now(), inFlight: new Set() };
      c.on("connection_lost", () => this.lost(link, "connection lost"));
      c.on("close", (err) => this.lost(link, err ? err.message : "connection closed"));
      session.on("keepalive_failure", () => this.lost(link, "keep-alive failed"));
      session.on("session_closed", (sc: StatusCode) => this.lost(link, `session closed by the server (${sc.name})`));
      this.link = link;
      this.n.connects++;
      this.attempt = 0;
      this.lastError = undefined;
      this.setState("connected");
      this.release(link);
      for (const w of this.watches.values()) void this.addItem(link, w);
    } catch (e) {
      this.connectingClient = undefined;
      if (client) this.close(client);
      this.n.connectFailures++;
      this.lastError = errorText(e);
      this.retry(false);
    }
  }

  /** Schedules the next attempt: at once after a connection that lasted, else after the backoff. */
  private retry(lasted: boolean): void {
    if (!this.started) return;
    if (lasted) {
      this.attempt = 0;
      void this.connect(Promise.resolve());
      return;
    }
    this.setState("down");
    this.release(undefined);
    const base = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    this.retryTimer = setTimeout(() => void this.connect(Promise.resolve()), base / 2 + (this.random() * base) / 2);
    this.retryTimer.unref();
  }

  private lost(link: Link, why: string): void {
    if (link.lost || this.link !== link) return;
    this.n.drops++;
    this.lastError = why;
    this.link = undefined;
    this.drop(link, StatusCodes.BadCommunicationError);
    this.broadcast(StatusCodes.BadCommunicationError);
    for (const w of this.watches.values()) w.item = undefined;
    this.retry(performance.now() - link.upAt >= this.initialMs);
  }

  /** Fails what `link` had in flight and closes its client in the background. */
  private drop(link: Link, status: StatusCode): void {
    link.lost = true;
    for (const fail of [...link.inFlight]) fail(status);
    link.inFlight.clear();
    this.close(link.client);
  }

  private close(client: OPCUAClient): void {
    const p = within(
      client.disconnect().catch(() => undefined),
      Math.max(1000, this.requestTimeoutMs),
      () => undefined,
    ).then(() => {
      this.closing.delete(p);
      client.removeAllListeners();
    });
    this.closing.add(p);
  }

  private broadcast(status: StatusCode): void {
    for (const w of this.watches.values()) this.deliver(w, badValue(status));
  }

  private deliver(w: Watch, value: DataValue): void {
    w.last = value;
    for (const l of [...w.listeners]) this.tell(l, value);
  }

  private tell(l: Listener, value: DataValue): void {
    try {
      l(value);
    } catch {
      // A listener's failure is its own; the others still get the value.
    }
  }

  private subscriptionOf(link: Link): Promise<ClientSubscription> {
    if (!link.subscription) {
      // A keep-alive at least every CONFIRM_MS (held values are known fresh as of the last
      // publish response); the lifetime, in time, as before: six session keep-alive periods.
      const keepAlive = Math.max(1, Math.floor(Math.min(this.keepAliveMs, CONFIRM_MS) / this.publishingIntervalMs));
      link.subscription = link.session.createSubscription2({
        requestedPublishingInterval: this.publishingIntervalMs,
        requestedMaxKeepAliveCount: keepAlive,
        requestedLifetimeCount: Math.max(keepAlive * 3, Math.ceil((this.keepAliveMs * 6) / this.publishingIntervalMs)),
        maxNotificationsPerPublish: 0,
        publishingEnabled: true,
        priority: 1,
      });
      link.subscription.then(
        (s) => {
          s.on("terminated", () => this.lost(link, "subscription terminated"));
          // Its notifications are applied to the items after this event (a promise turn
          // later): knownAt moves once they are, never before.
          s.on("raw_notification", () => {
            const t = performance.now();
            setImmediate(() => {
              if (t > link.knownAt) link.knownAt = t;
            });
          });
        },
        (e: unknown) => this.lost(link, `cannot create a subscription: ${errorText(e)}`),
      );
    }
    return link.subscription;
  }

  /** Makes the upstream item of `w` on `link`; a listener gets a bad status if the server refuses it. */
  private async addItem(link: Link, w: Watch): Promise<void> {
    let item: ClientMonitoredItem;
    const asked = w.samplingIntervalMs;
    try {
      const sub = await this.subscriptionOf(link);
      if (!this.started || this.link !== link || this.watches.get(w.nodeId) !== w) return;
      item = await sub.monitor(
        { nodeId: w.nodeId, attributeId: AttributeIds.Value },
        { samplingInterval: asked, discardOldest: true, queueSize: 1 },
        TimestampsToReturn.Both,
        MonitoringMode.Reporting,
      );
    } catch (e) {
      if (this.link === link && this.watches.get(w.nodeId) === w) this.deliver(w, badValue(/timed? ?out/i.test(errorText(e)) ? StatusCodes.BadTimeout : StatusCodes.BadCommunicationError));
      return;
    }
    if (this.link !== link || this.watches.get(w.nodeId) !== w) {
      item.terminate().catch(() => undefined);
      return;
    }
    if (item.statusCode.isNotGood()) {
      this.deliver(w, badValue(item.statusCode));
      return;
    }
    w.item = item;
    w.firstAt = Infinity;
    w.sampledMs = Math.max(asked, item.result?.revisedSamplingInterval ?? 0);
    // A listener that asked for faster sampling while the item was being made.
    if (w.samplingIntervalMs < asked) this.faster(w, w.samplingIntervalMs);
    item.on("changed", (dv: DataValue) => {
      if (w.item !== item) return;
      if (w.firstAt === Infinity) w.firstAt = performance.now();
      this.deliver(w, dv);
    });
    item.on("err", () => {
      if (w.item === item) this.deliver(w, badValue(item.statusCode.isNotGood() ? item.statusCode : StatusCodes.BadCommunicationError));
    });
  }

  private setState(s: ConnectionState): void {
    if (s === this.current) return;
    this.current = s;
    this.emit("state", s, s === "connected" ? undefined : this.lastError);
  }
}

function noop(): void {}
