// The OPC UA front (SPEC §3, §5.2): a node-opcua server through which clients read, write,
// call and monitor the points of every asset, each item under policy.
//
//   security    Basic256Sha256 / Aes128_Sha256_RsaOaep (configurable), Sign and SignAndEncrypt;
//               None only with allowNone. The application certificate is the front's own, issued
//               by the dev CA with the ApplicationUri as SAN URI (opcua-certs.ts).
//   trust       an OPCUACertificateManager rooted at `opcua.front.pki` (certs/pki): client
//               application certificates and X.509 user certificates issued by a CA in trusted/
//               (the dev CA, with its CRL) are accepted; any other is refused and lands in
//               rejected/, from which an admin trusts it by moving it to trusted/certs.
//   identity    anonymous refused; UserName token with the JWT as password (user name = sub);
//               X.509 user token with the role extension (opcua-identity.ts). Every refusal is a
//               logged deny. An activated session opens a session in the SessionRegistry; when
//               that ends (token expired or revoked) the OPC UA session is closed, its
//               subscriptions deleted, and that is logged. Re-activating a session with a fresh
//               token of the same subject renews it.
//   services    Read/Write/Call/Browse per item through the enforcement path (opcua-service.ts);
//               CreateMonitoredItems per item, monitored items re-decided on every policy reload
//               (opcua-monitor.ts). The address space follows the policy (opcua-space.ts).
import { isIP } from "node:net";
import { join, resolve } from "node:path";
import { AnonymousIdentityToken, MessageSecurityMode, ObjectIds, resolveNodeId, OPCUACertificateManager, OPCUAServer, SecurityPolicy, StatusCodes, TransferResult, TranslateBrowsePathsToNodeIdsResponse, UAUserManagerBase, UserNameIdentityToken, X509IdentityToken, nodesets } from "node-opcua";
import type { NodeId, ServerSession, StatusCode, TranslateBrowsePathsToNodeIdsRequest } from "node-opcua";
import type { Logger } from "pino";
import type { ClientRef, SessionBody } from "../audit/record.js";
import { subjectOf } from "../audit/record.js";
import type { Session, SessionEnded, SessionRegistry } from "../auth/sessions.js";
import { normalizeAddress } from "../auth/sessions.js";
import { certificateThumbprint } from "../auth/x509.js";
import type { TokenVerifier } from "../auth/tokens.js";
import type { OpcuaFrontSettings } from "../config/schema.js";
import type { OpcuaUpstream, PointIO } from "../devices/types.js";
import { ZtError } from "../errors.js";
import type { PolicySet } from "../pdp/policy-set.js";
import type { Principal } from "../pdp/principal.js";
import type { Reason } from "../pdp/reasons.js";
import type { Enforcer } from "../pep/enforce.js";
import { ensureFrontCertificate } from "./opcua-certs.js";
import type { ChannelLike } from "./opcua-identity.js";
import { SESSION_OPERATION, clientOf, principalFromUserCertificate } from "./opcua-identity.js";
import { PointMonitors } from "./opcua-monitor.js";
import { EnforcingAccessor } from "./opcua-service.js";
import type { AddressSpaceAccessor, ServiceContext, SessionIdentity } from "./opcua-service.js";
import { FrontSpace } from "./opcua-space.js";

/** The policy store features the front follows. */
export interface FrontPolicySource {
  current(): PolicySet;
  on(event: "reloaded", listener: () => void): unknown;
  off(event: "reloaded", listener: () => void): unknown;
}

export interface OpcuaFrontDeps {
  readonly settings: OpcuaFrontSettings;
  /** keys.dir: the dev CA (to issue the front's certificate) and the base of a relative `pki`. */
  readonly keysDir: string;
  readonly policy: FrontPolicySource;
  readonly enforcer: Enforcer;
  readonly verifier: TokenVerifier;
  readonly sessions: SessionRegistry;
  /** The upstream of an OPC UA asset (DeviceRegistry.opcua), undefined when it has none. */
  readonly upstream: (asset: string) => OpcuaUpstream | undefined;
  /** Reads and writes points of Modbus assets (devices/points.ts). */
  readonly points: PointIO;
  readonly log: Logger;
  /** Where the front's own records go: an OPC UA session closed because its session ended. */
  readonly audit?: (body: SessionBody) => void;
}

export interface OpcuaFrontAddress {
  readonly host: string;
  readonly port: number;
  readonly endpointUrl: string;
}

interface SessionState {
  /** The client and its address, from the channel the session was last activated on. */
  client: ClientRef;
  source: string | undefined;
  /** The principal of the identity token being activated (set by the token checks, taken by session_activated). */
  pending?: Principal;
  registered?: Session;
  unsubscribe?: () => void;
}

const POLICIES: Record<OpcuaFrontSettings["securityPolicies"][number], SecurityPolicy> = {
  Basic256Sha256: SecurityPolicy.Basic256Sha256,
  Aes128_Sha256_RsaOaep: SecurityPolicy.Aes128_Sha256_RsaOaep,
  Aes256_Sha256_RsaPss: SecurityPolicy.Aes256_Sha256_RsaPss,
};

const AUTHENTICATED_USER = resolveNodeId(ObjectIds.WellKnownRole_AuthenticatedUser);
/** Listen addresses that are no host a client can reach. */
/** A host as it stands in a URL: an IPv6 address in brackets (node-opcua puts the host in as given). */
function urlHost(host: string): string {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  return isIP(bare) === 6 ? `[${bare}]` : bare;
}

const WILDCARDS: ReadonlySet<string> = new Set(["0.0.0.0", "::", "[::]"]);

type ValidateCallback = (err: Error | null, statusCode?: StatusCode) => void;
type ValidateToken = (channel: unknown, session: unknown, token: unknown, signature: unknown, endpoint: unknown, callback: ValidateCallback) => void;

/** UserName tokens: the password is a JWT; the user name must be its `sub`. */
class JwtUserManager extends UAUserManagerBase {
  constructor(private readonly check: (session: ServerSession, username: string, password: string) => Promise<boolean>) {
    super();
  }

  override isValidUser(session: ServerSession, username: string, password: string): Promise<boolean> {
    return this.check(session, username, password);
  }

  /** OPC UA roles (node-opcua's own access checks on standard nodes): every session here is authenticated; ztgate's roles are decided by the policy, not by these. */
  override getUserRoles(): NodeId[] {
    return [AUTHENTICATED_USER];
  }

  override getIdentitiesForRole(): ReturnType<UAUserManagerBase["getIdentitiesForRole"]> {
    return [];
  }
}

export class OpcuaFront {
  private server: OPCUAServer | undefined;
  private managers: OPCUACertificateManager[] = [];
  private bound: OpcuaFrontAddress | undefined;
  private space: FrontSpace | undefined;
  private monitors: PointMonitors | undefined;
  private readonly states = new WeakMap<object, SessionState>();
  private readonly log: Logger;
  private readonly pkiDir: string;
  private readonly onReload = () => void this.reloaded();

  constructor(private readonly deps: OpcuaFrontDeps) {
    this.log = deps.log.child({ front: "opcua" });
    this.pkiDir = resolve(deps.keysDir, deps.settings.pki);
  }

  /** Listens; resolves with the bound address (port 0 picks a free one). */
  async start(): Promise<OpcuaFrontAddress> {
    if (this.server) throw new Error("the OPC UA front is already started");
    const s = this.deps.settings;
    // The host of the endpoint URLs: what clients reach the gateway by. A wildcard listen
    // address is no such thing; node-opcua then advertises the machine's full host name.
    const advertised = s.advertisedHost ?? (WILDCARDS.has(s.host) ? undefined : s.host);
    const cert = await ensureFrontCertificate(this.pkiDir, this.deps.keysDir, s.applicationUri, new Date(), advertised);
    if (cert.status === "created") this.log.info({ certificate: cert.certificateFile }, "OPC UA front application certificate issued by the dev CA");
    const serverCertificateManager = new OPCUACertificateManager({ rootFolder: this.pkiDir, automaticallyAcceptUnknownCertificate: false });
    const userCertificateManager = new OPCUACertificateManager({ rootFolder: this.pkiDir, automaticallyAcceptUnknownCertificate: false });
    this.managers = [serverCertificateManager, userCertificateManager];
    const policies = [...new Set(s.securityPolicies)].map((p) => POLICIES[p]);
    const modes = [...new Set(s.securityModes)].map((m) => (m === "Sign" ? MessageSecurityMode.Sign : MessageSecurityMode.SignAndEncrypt));
    const server = new OPCUAServer({
      host: s.host,
      ...(advertised !== undefined && { hostname: urlHost(advertised) }),
      port: s.port,
      nodesets: [nodesets.standard],
      certificateFile: cert.certificateFile,
      privateKeyFile: cert.privateKeyFile,
      serverCertificateManager,
      userCertificateManager,
      securityPolicies: s.allowNone ? [SecurityPolicy.None, ...policies] : policies,
      securityModes: s.allowNone ? [MessageSecurityMode.None, ...modes] : modes,
      allowAnonymous: false,
      // Discovery stays on: clients ask GetEndpoints on a None channel that node-opcua restricts
      // to discovery (a session on it is refused with BadSecurityModeRejected).
      isAuditing: false,
      maxConnectionsPerEndpoint: s.maxConnections,
      serverCapabilities: { maxSessions: s.maxSessions },
      userManager: new JwtUserManager((session, username, password) => this.checkUserName(session, username, password)),
      serverInfo: { applicationUri: s.applicationUri, productUri: "urn:ztgate", applicationName: { text: "ztgate OPC UA front" } },
      buildInfo: { productName: "ztgate", manufacturerName: "ztgate", softwareVersion: "1.0" },
    });
    this.server = server;
    try {
      await server.initialize();
      const engine = server.engine as unknown as { addressSpace: NonNullable<OPCUAServer["engine"]["addressSpace"]>; addressSpaceAccessor: AddressSpaceAccessor | null };
      const space = new FrontSpace(engine.addressSpace, s.minSamplingIntervalMs);
      space.sync(this.deps.policy.current());
      this.space = space;
      const ctx: ServiceContext = {
        policy: () => this.deps.policy.current(),
        enforcer: this.deps.enforcer,
        upstream: this.deps.upstream,
        points: this.deps.points,
        space,
        identity: (session) => this.identity(session),
        log: this.log,
      };
      if (!engine.addressSpaceAccessor) throw new Error("node-opcua server engine has no address space accessor");
      const accessor = new EnforcingAccessor(engine.addressSpaceAccessor, ctx);
      engine.addressSpaceAccessor = accessor;
      this.monitors = new PointMonitors(ctx);
      this.hook(server, this.monitors, accessor);
      await server.start();
    } catch (e) {
      this.server = undefined;
      await this.shutdown(server);
      if ((e as { code?: string }).code === "EADDRINUSE") throw e;
      throw new ZtError("ZT_OPCUA_FRONT", `OPC UA front on ${s.host}:${s.port} could not start: ${(e as Error).message}`);
    }
    this.deps.policy.on("reloaded", this.onReload);
    const port = server.endpoints[0]?.port ?? s.port;
    const url = server.endpoints[0]?.endpointDescriptions()[0]?.endpointUrl;
    this.bound = { host: s.host, port, endpointUrl: url ?? `opc.tcp://${urlHost(advertised ?? s.host)}:${port}` };
    this.log.info({ endpoint: this.bound.endpointUrl, policies: s.securityPolicies, modes: s.securityModes, allowNone: s.allowNone, pki: this.pkiDir }, "OPC UA front listening");
    return this.bound;
  }

  /** Closes every session and the listener. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    this.bound = undefined;
    this.deps.policy.off("reloaded", this.onReload);
    this.monitors?.close();
    await this.shutdown(server);
    this.log.info("OPC UA front stopped");
  }

  address(): OpcuaFrontAddress | undefined {
    return this.bound;
  }

  /** The PKI folder (trusted/, rejected/, own/). */
  pki(): string {
    return this.pkiDir;
  }

  /** Secure channels (client connections) and sessions open now, and monitored items on points (tests, metrics). */
  stats(): { channels: number; sessions: number; monitoredItems: number } {
    return { channels: this.server?.currentChannelCount ?? 0, sessions: this.server?.currentSessionCount ?? 0, monitoredItems: this.monitors?.count() ?? 0 };
  }

  private async shutdown(server: OPCUAServer): Promise<void> {
    try {
      await server.shutdown(0);
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, "OPC UA front shutdown");
    }
    for (const m of this.managers) await m.dispose().catch(() => undefined);
    this.managers = [];
  }

  private async reloaded(): Promise<void> {
    const space = this.space;
    if (!space || !this.server) return;
    try {
      const changes = space.sync(this.deps.policy.current());
      const items = await this.monitors?.reauthorize();
      this.log.info({ ...changes, monitoredItems: items }, "OPC UA address space follows the policy reload");
    } catch (e) {
      this.log.error({ err: (e as Error).message }, "OPC UA front could not follow the policy reload");
    }
  }

  private state(session: ServerSession): SessionState {
    let st = this.states.get(session);
    if (!st) {
      const client = clientOf(session.channel as ChannelLike | undefined);
      st = { client, source: normalizeAddress(client.address ?? "") };
      this.states.set(session, st);
    }
    return st;
  }

  private identity(session: unknown): SessionIdentity | undefined {
    const st = session && typeof session === "object" ? this.states.get(session) : undefined;
    const reg = st?.registered;
    if (!st || !reg || reg.ended) return undefined;
    return { principal: reg.principal, client: st.client, ...(st.source !== undefined && { source: st.source }) };
  }

  /** A refused identity: a deny in the decision log and a line in the operational log. */
  private refuse(client: ClientRef, reason: Reason, detail: string, principal: Principal | null = null): void {
    this.log.info({ client: `${client.address}:${client.port}`, reason, detail }, "OPC UA session refused");
    this.deps.enforcer.refuse(reason, principal, SESSION_OPERATION, client).catch((e: unknown) => this.log.error({ err: (e as Error).message }, "could not record a refusal"));
  }

  /**
   * A session stays with its user: ActivateSession with another one (OPC UA allows it) would
   * hand the new user what was decided for the old (values already queued on its
   * subscriptions). Refused (logged) when `next` is another subject or issuer than the
   * session's; the same user with a renewed token is fine (its items are decided again).
   */
  private userChange(session: ServerSession, next: Principal): boolean {
    const st = this.state(session);
    const reg = st.registered;
    if (!reg || reg.ended || (next.sub === reg.principal.sub && next.iss === reg.principal.iss)) return false;
    this.refuse(st.client, "token-invalid", `the session of ${reg.principal.sub} cannot change its user to ${next.sub}: open a new session`, next);
    return true;
  }

  private async checkUserName(session: ServerSession, username: string, password: string): Promise<boolean> {
    const st = this.state(session);
    // RFC 8705 binding: a token whose cnf names a certificate is only good on a channel secured with it.
    const cert = (session.channel as { clientCertificate?: Buffer | null } | undefined)?.clientCertificate;
    const r = await this.deps.verifier.verify(password, { via: "opcua-user", ...(cert && cert.length > 0 && { certThumbprint: certificateThumbprint(cert) }) });
    if (!r.ok) {
      this.refuse(st.client, r.reason, `UserName token: ${r.detail}`);
      return false;
    }
    if (username !== r.principal.sub) {
      this.refuse(st.client, "token-invalid", `UserName token: the user name "${username}" is not the token's sub "${r.principal.sub}"`);
      return false;
    }
    if (this.userChange(session, r.principal)) return false;
    st.pending = r.principal;
    return true;
  }

  private hook(server: OPCUAServer, monitors: PointMonitors, accessor: EnforcingAccessor): void {
    const s = server as unknown as {
      isValidUserIdentityToken: ValidateToken;
      _on_CreateMonitoredItemsRequest: (message: { request: { subscriptionId: number; itemsToCreate?: unknown[] | null }; session?: unknown }, channel: unknown) => void;
      _on_TranslateBrowsePathsToNodeIdsRequest: (message: { request: TranslateBrowsePathsToNodeIdsRequest }, channel: unknown) => void;
      _apply_on_SessionObject: (
        response: typeof TranslateBrowsePathsToNodeIdsResponse,
        message: unknown,
        channel: unknown,
        action: (session: ServerSession, sendResponse: (r: TranslateBrowsePathsToNodeIdsResponse) => void, sendError: (s: StatusCode) => void) => void | Promise<void>,
      ) => void;
    };
    const validate = s.isValidUserIdentityToken.bind(server);
    s.isValidUserIdentityToken = (channel, session, token, signature, endpoint, callback) => {
      validate(channel, session, token, signature, endpoint, (err, status) => {
        const st = this.state(session as ServerSession);
        if (err || !status || status.isNotGood()) {
          const why = status?.name ?? err?.message ?? "refused";
          if (token instanceof AnonymousIdentityToken || !token) this.refuse(st.client, "no-session", "anonymous sessions are refused: use a UserName token (the JWT as password) or an X.509 user certificate");
          else if (token instanceof X509IdentityToken) this.refuse(st.client, "token-invalid", `X.509 user certificate refused (${why}): it must be issued by a CA in ${join(this.pkiDir, "trusted")}`);
          else this.refuse(st.client, "token-invalid", `${token instanceof UserNameIdentityToken ? "UserName" : "identity"} token refused (${why})`);
          callback(err, status);
          return;
        }
        if (token instanceof X509IdentityToken) {
          const id = principalFromUserCertificate(token.certificateData);
          if (!id.ok) {
            this.refuse(st.client, id.reason, id.detail);
            callback(null, StatusCodes.BadIdentityTokenRejected);
            return;
          }
          const revoked = this.deps.sessions.revokedCredential(id.principal, id.issuedAt);
          if (revoked !== undefined) {
            this.refuse(st.client, "token-revoked", `the X.509 user certificate is revoked: ${revoked}`);
            callback(null, StatusCodes.BadIdentityTokenRejected);
            return;
          }
          st.pending = id.principal;
        }
        if (st.pending && this.userChange(session as ServerSession, st.pending)) {
          st.pending = undefined;
          callback(null, StatusCodes.BadIdentityChangeNotSupported);
          return;
        }
        callback(err, status);
      });
    };
    const createItems = s._on_CreateMonitoredItemsRequest.bind(server);
    s._on_CreateMonitoredItemsRequest = (message, channel) => {
      const items = (message.request.itemsToCreate ?? []) as Parameters<PointMonitors["precheck"]>[2];
      monitors.precheck(message.session, message.request.subscriptionId, items).then(
        () => createItems(message, channel),
        (e: unknown) => {
          this.log.error({ err: (e as Error).message }, "OPC UA CreateMonitoredItems: authorization failed");
          createItems(message, channel);
        },
      );
    };
    // TranslateBrowsePathsToNodeIds: node-opcua's engine resolves paths without the session,
    // so the front answers the service itself (as node-opcua does, same checks and errors) and
    // filters the targets as Browse is filtered.
    s._on_TranslateBrowsePathsToNodeIdsRequest = (message, channel) => {
      const request = message.request;
      s._apply_on_SessionObject.call(server, TranslateBrowsePathsToNodeIdsResponse, message, channel, async (session, sendResponse, sendError) => {
        const paths = request.browsePaths ?? [];
        if (paths.length === 0) return sendError(StatusCodes.BadNothingToDo);
        const limit = server.engine.serverCapabilities.operationLimits.maxNodesPerTranslateBrowsePathsToNodeIds;
        if (limit > 0 && paths.length > limit) return sendError(StatusCodes.BadTooManyOperations);
        try {
          const results = await accessor.filterPaths(session, await server.engine.translateBrowsePaths(paths));
          sendResponse(new TranslateBrowsePathsToNodeIdsResponse({ diagnosticInfos: null, results }));
        } catch (e) {
          this.log.error({ err: (e as Error).message }, "OPC UA TranslateBrowsePathsToNodeIds failed");
          sendError(StatusCodes.BadInternalError);
        }
      });
    };
    // TransferSubscriptions: the moved subscription's items serve the destination session from
    // now on, and only once they are decided for its principal (each decision logged).
    // Only to a session of the same subject, issuer and roles as the one its items were decided
    // for (node-opcua checks the user name only): what is queued on it was decided for them.
    const engine = server.engine as unknown as {
      transferSubscription: (session: ServerSession, id: number, sendInitialValues: boolean) => Promise<{ statusCode: StatusCode }>;
      findSubscription: (id: number) => unknown;
    };
    const transfer = engine.transferSubscription.bind(engine);
    engine.transferSubscription = async (session, id, sendInitialValues) => {
      const subscription = id > 0 ? engine.findSubscription(id) : undefined;
      const who = this.identity(session);
      if (subscription && (!who || !monitors.servesLike(subscription, who.principal))) {
        this.refuse(this.state(session).client, "no-matching-rule", `TransferSubscriptions of subscription ${id} refused: its items were decided for another principal (subject, issuer or roles differ)`, who?.principal ?? null);
        return new TransferResult({ statusCode: StatusCodes.BadUserAccessDenied });
      }
      const r = await transfer(session, id, sendInitialValues);
      if (r.statusCode.isGood()) await this.reauthorizeItems(session, "subscription transferred to the session");
      return r;
    };
    server.on("session_activated", (session: ServerSession) => this.activated(session));
    server.on("session_closed", (session: ServerSession) => this.closed(session));
  }

  /** Decides a session's monitored items again for its principal now (logged); stops the ones it may not read. */
  private async reauthorizeItems(session: ServerSession, why: string): Promise<void> {
    try {
      const items = await this.monitors?.reauthorize(session);
      if (items && items.kept + items.stopped + items.resumed > 0) this.log.info({ ...items, why }, "OPC UA monitored items decided again");
    } catch (e) {
      this.log.error({ err: (e as Error).message, why }, "OPC UA monitored items could not be decided again (they deliver nothing meanwhile)");
    }
  }

  private activated(session: ServerSession): void {
    const st = this.state(session);
    const principal = st.pending;
    st.pending = undefined;
    if (!principal) {
      // Every identity token path sets it; a session without one is closed, never served.
      this.closeServerSession(session);
      return;
    }
    const reg = st.registered;
    // A session activated again (a new channel, a renewed token, another user) has its client
    // address taken again from the channel it is on now.
    if (reg) {
      const client = clientOf(session.channel as ChannelLike | undefined);
      st.client = client;
      st.source = normalizeAddress(client.address ?? "");
    }
    if (reg && !reg.ended && reg.principal.sub === principal.sub && reg.principal.iss === principal.iss) {
      this.deps.sessions.renew(reg.id, principal);
      // Its items serve the renewed principal only once decided for it (its roles may differ).
      void this.reauthorizeItems(session, "session activated again (token renewed)");
      return;
    }
    if (reg) {
      st.unsubscribe?.();
      this.deps.sessions.close(reg.id);
    }
    const opened = this.deps.sessions.open(principal, { kind: "session", protocol: "opcua", ...(st.source !== undefined && { source: st.source }) });
    st.registered = opened;
    st.unsubscribe = opened.onEnd((e) => this.sessionEnded(session, st, e));
    if (reg) void this.reauthorizeItems(session, "session activated again by another user");
    this.log.debug({ client: `${st.client.address}:${st.client.port}`, session: opened.id, sub: principal.sub, via: principal.via }, "OPC UA session activated");
  }

  private closed(session: ServerSession): void {
    const st = this.states.get(session);
    if (!st?.registered) return;
    st.unsubscribe?.();
    st.unsubscribe = undefined;
    if (!st.registered.ended) this.deps.sessions.close(st.registered.id);
  }

  /** Continuous verification (SPEC §3): the token expired or was revoked: the OPC UA session goes, logged. */
  private sessionEnded(session: ServerSession, st: SessionState, e: SessionEnded): void {
    st.unsubscribe = undefined;
    if (e.why === "closed") return; // the client closed it
    const event: SessionBody["event"] = e.why === "expired" ? "expired" : e.why === "replaced" ? "replaced" : "revoked";
    this.deps.audit?.({
      type: "session",
      event,
      session: e.session.id,
      subject: subjectOf((st.registered as Session).principal),
      client: st.client,
      detail: `OPC UA session closed: ${e.detail}`,
    });
    this.log.info({ client: `${st.client.address}:${st.client.port}`, session: e.session.id, why: e.why, detail: e.detail }, "OPC UA session closed: its session ended");
    this.closeServerSession(session);
  }

  private closeServerSession(session: ServerSession): void {
    const server = this.server;
    if (!server) return;
    try {
      server.engine.closeSession(session.authenticationToken, true, "Terminated");
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, "OPC UA session could not be closed");
    }
  }
}
