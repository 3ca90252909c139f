// The load generator of bench/opcua/run.ts, on a worker thread of its own so that it does not
// compete with the component under test (the gateway and the simulated server, on the main
// thread) for an event loop. node-opcua clients as a historian would use them: an application
// certificate from the dev CA, the server's certificate trusted, one request at a time.
//
// The main thread sends requests ({ seq, op, … }) and gets one answer per request ({ seq, … }):
//   open     a session (None or SignAndEncrypt Basic256Sha256; anonymous or UserName/JWT)
//   reads    n sequential reads of one node on an open session → latency of each, µs
//   monitor  K sessions × M monitored items for a while → notifications delivered
//   close    a session
import { performance } from "node:perf_hooks";
import { parentPort } from "node:worker_threads";
import { pino } from "pino";
import {
  AttributeIds,
  DataChangeNotification,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAClient,
  SecurityPolicy,
  TimestampsToReturn,
  UserTokenType,
} from "node-opcua";
import type { ClientSession, ClientSubscription, NotificationMessage, UserIdentityInfo } from "node-opcua";
import { routeOpcuaLogs } from "../../src/util/opcua-logging.js";

// Before node-opcua prints anything of its own: its errors go to stderr as log lines (more with
// BENCH_LOG), so stdout keeps only the bench's table.
routeOpcuaLogs(pino({ level: process.env["BENCH_LOG"] ?? "error" }, pino.destination(2)));

export interface ClientPkiFiles {
  readonly dir: string;
  readonly applicationUri: string;
  readonly certificateFile: string;
  readonly privateKeyFile: string;
}

export interface SessionSpec {
  readonly endpoint: string;
  readonly secure: boolean;
  /** UserName token (the gateway: sub and JWT); anonymous without. */
  readonly user?: { readonly name: string; readonly password: string };
  readonly pki: ClientPkiFiles;
}

export type ClientRequest =
  | { readonly seq: number; readonly op: "open"; readonly id: string; readonly spec: SessionSpec }
  | { readonly seq: number; readonly op: "reads"; readonly id: string; readonly nodeId: string; readonly n: number; readonly maxAge?: number }
  | { readonly seq: number; readonly op: "close"; readonly id: string }
  | {
      readonly seq: number;
      readonly op: "monitor";
      readonly spec: SessionSpec;
      readonly clients: number;
      readonly items: number;
      /** Items alternate over these nodes. */
      readonly nodes: readonly string[];
      readonly samplingMs: number;
      readonly warmupMs: number;
      readonly ms: number;
    };

export type ClientAnswer =
  | { readonly seq: number; readonly ok: true; readonly micros?: number[]; readonly errors?: number; readonly monitor?: MonitorResult }
  | { readonly seq: number; readonly ok: false; readonly error: string };

export interface MonitorResult {
  /** Notifications delivered in the measured window (every client, every item). */
  readonly notifications: number;
  /** Of which with a status other than Good. */
  readonly bad: number;
  readonly seconds: number;
  /** Items created Good (K × M when all were). */
  readonly created: number;
}

interface Open {
  readonly client: OPCUAClient;
  readonly session: ClientSession;
  readonly manager: OPCUACertificateManager;
}

const sessions = new Map<string, Open>();

async function open(spec: SessionSpec): Promise<Open> {
  const manager = new OPCUACertificateManager({ rootFolder: spec.pki.dir, automaticallyAcceptUnknownCertificate: false });
  const client = OPCUAClient.create({
    applicationName: "ztgate bench client",
    applicationUri: spec.pki.applicationUri,
    securityMode: spec.secure ? MessageSecurityMode.SignAndEncrypt : MessageSecurityMode.None,
    securityPolicy: spec.secure ? SecurityPolicy.Basic256Sha256 : SecurityPolicy.None,
    endpointMustExist: false,
    clientCertificateManager: manager,
    certificateFile: spec.pki.certificateFile,
    privateKeyFile: spec.pki.privateKeyFile,
    connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
    requestedSessionTimeout: 600_000,
    defaultTransactionTimeout: 30_000,
  });
  await client.connect(spec.endpoint);
  const identity: UserIdentityInfo = spec.user ? { type: UserTokenType.UserName, userName: spec.user.name, password: spec.user.password } : { type: UserTokenType.Anonymous };
  const session = await client.createSession(identity);
  return { client, session, manager };
}

async function close(o: Open): Promise<void> {
  await o.session.close().catch(() => undefined);
  await o.client.disconnect().catch(() => undefined);
  await o.manager.dispose().catch(() => undefined);
}

async function reads(o: Open, nodeId: string, n: number, maxAge = 0): Promise<{ micros: number[]; errors: number }> {
  const micros: number[] = [];
  let errors = 0;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const dv = await o.session.read({ nodeId, attributeId: AttributeIds.Value }, maxAge);
    micros.push((performance.now() - t0) * 1000);
    if (!dv.statusCode.isGood()) errors++;
  }
  return { micros, errors };
}

async function monitor(r: Extract<ClientRequest, { op: "monitor" }>): Promise<MonitorResult> {
  const opened: Open[] = [];
  let notifications = 0;
  let bad = 0;
  let created = 0;
  try {
    for (let k = 0; k < r.clients; k++) opened.push(await open(r.spec));
    const subs: ClientSubscription[] = [];
    for (const o of opened) {
      const sub = await o.session.createSubscription2({
        requestedPublishingInterval: r.samplingMs,
        requestedMaxKeepAliveCount: 10,
        requestedLifetimeCount: 1000,
        maxNotificationsPerPublish: 0,
        publishingEnabled: true,
        priority: 1,
      });
      sub.on("raw_notification", (m: NotificationMessage) => {
        for (const d of m.notificationData ?? []) {
          if (!(d instanceof DataChangeNotification)) continue;
          for (const item of d.monitoredItems ?? []) {
            notifications++;
            if (!item.value.statusCode.isGood()) bad++;
          }
        }
      });
      const group = await sub.monitorItems(
        Array.from({ length: r.items }, (_, i) => ({ nodeId: r.nodes[i % r.nodes.length] as string, attributeId: AttributeIds.Value })),
        { samplingInterval: r.samplingMs, queueSize: 1, discardOldest: true },
        TimestampsToReturn.Both,
      );
      created += group.monitoredItems.filter((m) => m.statusCode.isGood()).length;
      subs.push(sub);
    }
    await new Promise((res) => setTimeout(res, r.warmupMs));
    notifications = 0;
    bad = 0;
    const t0 = performance.now();
    await new Promise((res) => setTimeout(res, r.ms));
    const seconds = (performance.now() - t0) / 1000;
    const result = { notifications, bad, seconds, created };
    for (const s of subs) await s.terminate().catch(() => undefined);
    return result;
  } finally {
    for (const o of opened) await close(o);
  }
}

async function handle(r: ClientRequest): Promise<ClientAnswer> {
  switch (r.op) {
    case "open":
      sessions.set(r.id, await open(r.spec));
      return { seq: r.seq, ok: true };
    case "reads": {
      const o = sessions.get(r.id);
      if (!o) throw new Error(`no session ${r.id}`);
      return { seq: r.seq, ok: true, ...(await reads(o, r.nodeId, r.n, r.maxAge)) };
    }
    case "close": {
      const o = sessions.get(r.id);
      sessions.delete(r.id);
      if (o) await close(o);
      return { seq: r.seq, ok: true };
    }
    case "monitor":
      return { seq: r.seq, ok: true, monitor: await monitor(r) };
  }
}

parentPort?.on("message", (r: ClientRequest) => {
  handle(r).then(
    (a) => parentPort?.postMessage(a),
    (e: unknown) => parentPort?.postMessage({ seq: r.seq, ok: false, error: e instanceof Error ? e.message : String(e) } satisfies ClientAnswer),
  );
});
