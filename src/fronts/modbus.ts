// The Modbus front (SPEC §3, §5.1): one listener per entry of `modbus.listeners`, in one of two
// modes, both ending in the same per-connection path (modbus-connection.ts):
//
//   lease  plain TCP. The client's source address must hold a lease (POST /v1/sessions); its
//          connections are served with the lease's principal, read per request (a renewed
//          token applies at once). No lease: the connection is refused at once and logged.
//   mtls   Modbus/TCP Security: TLS ≥ 1.2 with a client certificate from the gateway's CA.
//          Each connection opens its own session on the certificate's principal
//          (modbus-identity.ts), ended when the connection closes or the certificate expires.
//
// Continuous verification: every connection follows its session's end (token expired, lease or
// session revoked, lease replaced) and is closed at once; each such close is logged.
//
// Why `rejectUnauthorized: false` on the TLS server: with `true`, Node reports a refused client
// certificate only as "socket hang up", with neither the reason nor the peer's address, so the
// refusal could not be logged as SPEC §9 asks. Here the handshake is left to finish with
// `requestCert: true`; the connection is then checked (`authorized`, the role extension) before a
// single byte of it is read, and refused and logged if it fails. Nothing from an
// unauthenticated peer is ever parsed.
import { once } from "node:events";
import net from "node:net";
import tls from "node:tls";
import type { Logger } from "pino";
import type { ClientRef, SessionBody } from "../audit/record.js";
import type { Session, SessionRegistry } from "../auth/sessions.js";
import { normalizeAddress } from "../auth/sessions.js";
import type { ModbusListenerSettings } from "../config/schema.js";
import type { Asset, PolicySet } from "../pdp/policy-set.js";
import type { Reason } from "../pdp/reasons.js";
import type { Enforcer } from "../pep/enforce.js";
import type { ConnectionContext, FrontCounters, ModbusDevices } from "./modbus-connection.js";
import { ModbusConnection, connectionOperation } from "./modbus-connection.js";
import { identityFromCertificate } from "./modbus-identity.js";

export type { FrontCounters, ModbusDevices, ModbusUpstream } from "./modbus-connection.js";

/** PEM texts of the TLS server identity and the CA client certificates must chain to. */
export interface FrontTls {
  readonly key: string;
  readonly cert: string;
  readonly ca: string;
}

export interface ModbusFrontDeps {
  readonly listener: ModbusListenerSettings;
  /** The policy in force; read once per request. */
  readonly policy: () => PolicySet;
  readonly enforcer: Enforcer;
  readonly sessions: SessionRegistry;
  readonly devices: ModbusDevices;
  readonly log: Logger;
  /** Required in mtls mode. */
  readonly tls?: FrontTls;
  /** Where the front's own records go: a connection closed because its session ended. */
  readonly audit?: (body: SessionBody) => void;
  readonly now?: () => number;
  /**
   * On stop, how long requests already taken may take to be answered before their connections
   * are cut (default 2000 ms; the device timeout plus a margin is right).
   */
  readonly drainMs?: number;
}

export interface FrontAddress {
  readonly host: string;
  readonly port: number;
}

/** Longest a TLS handshake may take before the connection is dropped. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

export class ModbusFront {
  readonly name: string;
  readonly mode: "lease" | "mtls";
  private server: net.Server | undefined;
  private bound: FrontAddress | undefined;
  private readonly connections = new Set<ModbusConnection>();
  /** Every accepted socket (handshaking ones too), for stop(). */
  private readonly sockets = new Set<net.Socket>();
  private readonly counters: FrontCounters = { accepted: 0, refused: 0, overLimit: 0, requests: 0, answered: 0, denied: 0, malformedFrames: 0, idleClosed: 0, sessionClosed: 0 };
  private readonly ctx: ConnectionContext;
  private readonly log: Logger;
  private routes: { set: PolicySet | undefined; byUnit: Map<number, Asset> } = { set: undefined, byUnit: new Map() };
  private readonly drainMs: number;

  constructor(private readonly deps: ModbusFrontDeps) {
    this.name = deps.listener.name;
    this.drainMs = deps.drainMs ?? 2000;
    this.mode = deps.listener.mode;
    if (this.mode === "mtls" && !deps.tls) throw new TypeError(`modbus listener ${this.name}: mtls mode needs the TLS key, certificate and CA`);
    this.log = deps.log.child({ front: `modbus/${this.name}` });
    this.ctx = {
      listener: this.name,
      denyException: deps.listener.denyException,
      approval: deps.listener.approval,
      policy: deps.policy,
      route: (set, unit) => this.route(set, unit),
      enforcer: deps.enforcer,
      devices: deps.devices,
      log: this.log,
      now: deps.now ?? Date.now,
      counters: this.counters,
      audit: deps.audit,
      onClose: (c) => this.closed(c),
    };
  }

  /** Listens; resolves with the bound address (port 0 in the settings picks a free one). */
  async start(): Promise<FrontAddress> {
    if (this.server) throw new Error(`modbus listener ${this.name} is already started`);
    const l = this.deps.listener;
    const server =
      this.mode === "mtls"
        ? tls.createServer({
            ...(this.deps.tls as FrontTls),
            requestCert: true,
            rejectUnauthorized: false, // checked per connection before any byte is read: see the header
            minVersion: "TLSv1.2",
            allowHalfOpen: true,
            handshakeTimeout: Math.min(HANDSHAKE_TIMEOUT_MS, l.idleTimeoutMs),
          })
        : net.createServer({ noDelay: true, allowHalfOpen: true });
    server.maxConnections = l.maxConnections;
    server.on("connection", (raw: net.Socket) => {
      this.sockets.add(raw);
      raw.once("close", () => this.sockets.delete(raw));
      if (this.mode === "lease") this.acceptLease(raw);
    });
    server.on("drop", (d?: { remoteAddress?: string; remotePort?: number }) => {
      this.counters.overLimit++;
      this.log.warn({ client: `${d?.remoteAddress}:${d?.remotePort}`, maxConnections: l.maxConnections }, "modbus connection refused: too many connections");
    });
    if (server instanceof tls.Server) {
      server.on("secureConnection", (s: tls.TLSSocket) => this.acceptTls(s));
      server.on("tlsClientError", (e: Error, s: tls.TLSSocket) => {
        const client = this.clientRef(s, "tls");
        this.log.info({ client: `${client.address}:${client.port}`, err: e.message }, "modbus TLS handshake failed");
        s.destroy();
      });
    }
    server.listen(l.port, l.host);
    await Promise.race([once(server, "listening"), once(server, "error").then(([e]) => Promise.reject(e as Error))]);
    server.on("error", (e) => this.log.error({ err: e.message }, "modbus listener error"));
    this.server = server;
    const a = server.address() as net.AddressInfo;
    this.bound = { host: a.address, port: a.port };
    this.log.info({ address: `${a.address}:${a.port}`, mode: this.mode }, "modbus listener started");
    return this.bound;
  }

  /** Stops listening and closes every connection. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // Requests already taken are answered (the device timeout bounds each), then connections
    // close; whatever is still open after the grace period is cut.
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.drainMs)));
    await Promise.race([Promise.all([...this.connections].map((c) => c.drain())), grace]);
    clearTimeout(timer);
    for (const s of this.sockets) s.destroy();
    for (const c of this.connections) c.close();
    await closed;
    this.log.info("modbus listener stopped");
  }

  address(): FrontAddress | undefined {
    return this.server ? this.bound : undefined;
  }

  /** Counters since start, and the connections open now. */
  stats(): Readonly<FrontCounters> & { readonly open: number } {
    return { ...this.counters, open: this.connections.size };
  }

  /** The asset answering `unit` on this listener: its front unit, and no other listener named. */
  private route(set: PolicySet, unit: number): Asset | undefined {
    if (this.routes.set !== set) {
      const byUnit = new Map<number, Asset>();
      for (const a of set.assets.values()) {
        if (a.protocol !== "modbus" || a.frontUnit === undefined) continue;
        if (a.frontListener !== undefined && a.frontListener !== this.name) continue;
        // The compiler refuses two assets on one (listener, unit); one naming this listener wins over one on every listener.
        if (!byUnit.has(a.frontUnit) || a.frontListener !== undefined) byUnit.set(a.frontUnit, a);
      }
      this.routes = { set, byUnit };
    }
    return this.routes.byUnit.get(unit);
  }

  private clientRef(s: net.Socket, transport: "tcp" | "tls"): ClientRef {
    return { address: s.remoteAddress ?? "unknown", port: s.remotePort ?? 0, protocol: "modbus", transport };
  }

  private acceptLease(raw: net.Socket): void {
    const client = this.clientRef(raw, "tcp");
    const source = normalizeAddress(client.address ?? "");
    const lease = source !== undefined ? this.deps.sessions.lookupLease(source) : undefined;
    if (!lease) {
      this.refuse(raw, client, "no-session", `no lease for source ${client.address}; open one with POST /v1/sessions`);
      return;
    }
    this.serve(raw, lease, client, source, false);
  }

  private acceptTls(s: tls.TLSSocket): void {
    const client = this.clientRef(s, "tls");
    const id = identityFromCertificate(s.getPeerCertificate(), s.authorizationError);
    if (!id.ok) {
      this.refuse(s, client, id.reason, id.detail);
      return;
    }
    // A revoked certificate (by its thumbprint, or its subject) is refused at every connection.
    const revoked = this.deps.sessions.revokedCredential(id.principal, id.issuedAt);
    if (revoked !== undefined) {
      this.refuse(s, client, "token-revoked", `the client certificate is revoked: ${revoked}`);
      return;
    }
    let session: Session;
    try {
      session = this.deps.sessions.open(id.principal, { kind: "session", protocol: "modbus", ...(client.address !== "unknown" && { source: client.address as string }) });
    } catch (e) {
      this.refuse(s, client, "token-invalid", (e as Error).message);
      return;
    }
    this.serve(s, session, client, normalizeAddress(client.address ?? ""), true);
  }

  private serve(socket: net.Socket, session: Session, client: ClientRef, source: string | undefined, ownsSession: boolean): void {
    if (!this.server) {
      socket.destroy();
      return;
    }
    this.counters.accepted++;
    const conn = new ModbusConnection(this.ctx, socket, session, client, source, this.deps.listener.idleTimeoutMs);
    this.connections.add(conn);
    if (ownsSession) socket.once("close", () => this.deps.sessions.close(session.id));
    this.log.debug({ client: `${client.address}:${client.port}`, session: session.id, sub: session.principal.sub }, "modbus client connected");
  }

  /** Refused at the door: logged as a deny, closed at once, nothing read. */
  private refuse(socket: net.Socket, client: ClientRef, reason: Reason, detail: string): void {
    this.counters.refused++;
    socket.destroy();
    this.log.info({ client: `${client.address}:${client.port}`, reason, detail }, "modbus connection refused");
    this.deps.enforcer.refuse(reason, null, connectionOperation(this.name), client).catch((e: unknown) => this.log.error({ err: (e as Error).message }, "could not record a refusal"));
  }

  private closed(c: ModbusConnection): void {
    this.connections.delete(c);
  }
}
