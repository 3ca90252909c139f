// The simulated OPC UA server behind `packaging-line` (SPEC §2.1): a node-opcua server whose
// own namespace (index 1, what policies/packaging-line.yaml names) holds the packaging line
// of packaging-line.ts, moved on a scan timer.
//
//   ns=1;s=Line1               Object (under Objects)
//   ns=1;s=Line1.Speed         Double  r/w   units per minute, 0..maxSpeed (else BadOutOfRange)
//   ns=1;s=Line1.Count         UInt32  r     units packed
//   ns=1;s=Line1.State         String  r     running | starved | blocked | stopped
//   ns=1;s=Line1.ResetCount    Method        no arguments: Count := 0
//
// It stands for the legacy device the gateway protects, so it is as open as such devices are:
// SecurityPolicy None and the OAEP/PSS ones (Basic256Sha256, Aes128_Sha256_RsaOaep,
// Aes256_Sha256_RsaPss), anonymous sessions, every client certificate accepted
// (automaticallyAcceptUnknownCertificate: the sim only, never the gateway). Its PKI lives in
// the folder it is given (the gateway passes keys.dir/sim-opcua-pki), never in the home
// directory: `server/` for its own certificate and the client certificates, `users/` for X.509
// user certificates.
//
// It is also the test double of the OPC UA tests, so it counts what reached it: every item of
// every Write and Call request (`stats().writes`, `calls`), whatever became of it, and the
// monitored items live on each node (`monitoredItems(nodeId)`). A test proves that a denied
// write never reached the device with `writes` unchanged. Faults for the upstream client's
// tests: `setCallDelay` (ResetCount answers late; a call still waiting when the server stops
// is never answered, as with a device that dies mid-request), and stop/start on the same port.
import { EventEmitter } from "node:events";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import {
  CallRequest,
  DataType,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAServer,
  ReadRequest,
  SecurityPolicy,
  StatusCodes,
  Variant,
  WriteRequest,
  nodesets,
} from "node-opcua";
import type { MonitoredItemBase, Namespace, Subscription, UAVariable } from "node-opcua";
import { PackagingLine } from "./packaging-line.js";
import type { PackagingLineOptions } from "./packaging-line.js";
import { startScan } from "./scan.js";

/** The node ids of the line, as policies name them. */
export const LINE_NODES = {
  line: "ns=1;s=Line1",
  speed: "ns=1;s=Line1.Speed",
  count: "ns=1;s=Line1.Count",
  state: "ns=1;s=Line1.State",
  resetCount: "ns=1;s=Line1.ResetCount",
} as const;

export const SIM_APPLICATION_URI = "urn:ztgate:sim:packaging-line";

export interface SimulatedOpcuaServerOptions {
  /** The sim's PKI folder (created if missing): `server/` and `users/` under it. */
  readonly pkiDir: string;
  /** Scan period in ms: the line moves by this much time every period. 0 = no timer (call `step()`). Default 100. */
  readonly scanMs?: number;
  readonly line?: PackagingLineOptions;
}

export interface OpcuaListenOptions {
  /** Default 127.0.0.1 (SPEC §9: nothing on other addresses unless configured). */
  readonly host?: string;
  /** 0 (default) = a random free port; start() returns the bound one. */
  readonly port?: number;
}

export interface OpcuaSimStats {
  /** Items of Write requests received (any node, any outcome). */
  readonly writes: number;
  /** Items of Call requests received (any method, any outcome). */
  readonly calls: number;
  /** Items of Read requests received. */
  readonly reads: number;
  /** Sessions open now. */
  readonly sessions: number;
  /** Monitored items live now, on any node. */
  readonly monitoredItems: number;
}

/** Events: `scan` after every timer scan. */
export class SimulatedOpcuaServer extends EventEmitter<{ scan: [] }> {
  readonly line: PackagingLine;
  private readonly scanMs: number;
  private readonly pkiDir: string;
  private server: OPCUAServer | undefined;
  private managers: OPCUACertificateManager[] = [];
  private scanTimer: NodeJS.Timeout | undefined;
  private count: UAVariable | undefined;
  private state: UAVariable | undefined;
  private boundHost = "127.0.0.1";
  private boundPort = 0;
  private readonly n = { writes: 0, calls: 0, reads: 0 };
  /** Live monitored items by node id (`ns=1;s=…`). */
  private readonly items = new Map<string, Set<MonitoredItemBase>>();
  private callDelayMs = 0;
  /** Timers of the calls waiting out the delay: stop() drops them (those calls are never answered). */
  private readonly delayed = new Set<NodeJS.Timeout>();

  constructor(options: SimulatedOpcuaServerOptions) {
    super();
    this.scanMs = options.scanMs ?? 100;
    if (!Number.isInteger(this.scanMs) || this.scanMs < 0) throw new RangeError(`SimulatedOpcuaServer: scanMs ${this.scanMs} is not an integer >= 0`);
    this.pkiDir = options.pkiDir;
    this.line = new PackagingLine(options.line);
  }

  /** Listens; resolves with the bound port. The first start creates the sim's certificate (a few seconds). */
  async start(options: OpcuaListenOptions = {}): Promise<number> {
    if (this.server) throw new Error(`SimulatedOpcuaServer: already listening on ${this.endpointUrl()}`);
    const host = options.host ?? "127.0.0.1";
    const serverPki = join(this.pkiDir, "server");
    const usersPki = join(this.pkiDir, "users");
    await mkdir(serverPki, { recursive: true });
    await mkdir(usersPki, { recursive: true });
    const serverCertificateManager = new OPCUACertificateManager({ rootFolder: serverPki, automaticallyAcceptUnknownCertificate: true, disableFileWatchers: true });
    const userCertificateManager = new OPCUACertificateManager({ rootFolder: usersPki, automaticallyAcceptUnknownCertificate: true, disableFileWatchers: true });
    this.managers = [serverCertificateManager, userCertificateManager];
    const server = new OPCUAServer({
      host,
      hostname: host,
      port: options.port ?? 0,
      nodesets: [nodesets.standard],
      serverCertificateManager,
      userCertificateManager,
      securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256, SecurityPolicy.Aes128_Sha256_RsaOaep, SecurityPolicy.Aes256_Sha256_RsaPss],
      securityModes: [MessageSecurityMode.None, MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
      allowAnonymous: true,
      isAuditing: false,
      serverInfo: { applicationUri: SIM_APPLICATION_URI, productUri: "urn:ztgate:sim", applicationName: { text: "ztgate simulated packaging line" } },
      buildInfo: { productName: "ztgate simulated packaging line", manufacturerName: "ztgate", softwareVersion: "1.0" },
      onCreateMonitoredItem: async (_s: Subscription, item: MonitoredItemBase) => {
        this.countItem(item, true);
        return StatusCodes.Good;
      },
      onDeleteMonitoredItem: async (_s: Subscription, item: MonitoredItemBase) => {
        this.countItem(item, false);
        return StatusCodes.Good;
      },
    });
    this.server = server;
    try {
      await server.initialize();
      this.build(server);
      server.on("request", (request) => {
        if (request instanceof WriteRequest) this.n.writes += request.nodesToWrite?.length ?? 0;
        else if (request instanceof CallRequest) this.n.calls += request.methodsToCall?.length ?? 0;
        else if (request instanceof ReadRequest) this.n.reads += request.nodesToRead?.length ?? 0;
      });
      await server.start();
    } catch (e) {
      this.server = undefined;
      await this.shutdown(server);
      throw e;
    }
    this.boundHost = host;
    this.boundPort = server.endpoints[0]?.port ?? 0;
    this.scanTimer = startScan(this, this.scanMs);
    return this.boundPort;
  }

  /** Closes the listener, every session and connection (the line keeps its values for a restart). */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    clearInterval(this.scanTimer);
    this.scanTimer = undefined;
    this.count = undefined;
    this.state = undefined;
    this.items.clear();
    if (server) await this.shutdown(server);
  }

  /** Where it listens, while it does. */
  address(): { host: string; port: number } | undefined {
    return this.server ? { host: this.boundHost, port: this.boundPort } : undefined;
  }

  /** `opc.tcp://host:port` while listening. */
  endpointUrl(): string | undefined {
    const a = this.address();
    return a ? `opc.tcp://${a.host.includes(":") ? `[${a.host}]` : a.host}:${a.port}` : undefined;
  }

  /** The sim's own certificate file (PEM), for a client that must trust it. */
  certificateFile(): string {
    return join(this.pkiDir, "server", "own", "certs", "certificate.pem");
  }

  /** ResetCount answers `ms` after it is called (0: at once). */
  setCallDelay(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`SimulatedOpcuaServer: delay ${ms} is not a number of ms >= 0`);
    this.callDelayMs = ms;
  }

  /** One scan of the line, `seconds` long (the timer calls it; tests with `scanMs: 0` do). */
  step(seconds: number): void {
    this.line.step(seconds);
    this.publish();
  }

  stats(): OpcuaSimStats {
    let monitoredItems = 0;
    for (const s of this.items.values()) monitoredItems += s.size;
    return { ...this.n, sessions: this.server?.engine?.currentSessionCount ?? 0, monitoredItems };
  }

  /** Monitored items live now on `nodeId` (as written in policies: `ns=1;s=Line1.Speed`). */
  monitoredItems(nodeId: string): number {
    return this.items.get(nodeId)?.size ?? 0;
  }

  /** The sampling intervals of the monitored items live now on `nodeId`, ms. */
  samplingIntervals(nodeId: string): number[] {
    return [...(this.items.get(nodeId) ?? [])].map((i) => (i as MonitoredItemBase & { readonly samplingInterval: number }).samplingInterval);
  }

  private countItem(item: MonitoredItemBase, live: boolean): void {
    const id = item.node?.nodeId.toString();
    if (id === undefined) return;
    let s = this.items.get(id);
    if (live) {
      if (!s) this.items.set(id, (s = new Set()));
      s.add(item);
    } else if (s) {
      s.delete(item);
      if (s.size === 0) this.items.delete(id);
    }
  }

  private build(server: OPCUAServer): void {
    const addressSpace = server.engine.addressSpace;
    if (!addressSpace) throw new Error("SimulatedOpcuaServer: the server has no address space after initialize()");
    const ns: Namespace = addressSpace.getOwnNamespace();
    // Policies name ns=1: the own namespace must be the first after the standard one.
    if (ns.index !== 1) throw new Error(`SimulatedOpcuaServer: own namespace has index ${ns.index}, not 1`);
    const line = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: "Line1", nodeId: "s=Line1", description: "Packaging line 1" });
    const model = this.line;
    ns.addVariable({
      componentOf: line,
      browseName: "Speed",
      nodeId: "s=Line1.Speed",
      description: `Line speed, units per minute (0..${model.maxSpeed}; 0 stops the line)`,
      dataType: "Double",
      accessLevel: "CurrentRead | CurrentWrite",
      userAccessLevel: "CurrentRead | CurrentWrite",
      // Read through `get`: sampled, so a monitored item sees a write within this long.
      minimumSamplingInterval: 50,
      value: {
        get: () => new Variant({ dataType: DataType.Double, value: model.speed() }),
        set: (v: Variant) => {
          const speed = v.value;
          if (v.dataType !== DataType.Double || typeof speed !== "number") return StatusCodes.BadTypeMismatch;
          return model.setSpeed(speed) ? StatusCodes.Good : StatusCodes.BadOutOfRange;
        },
      },
    });
    this.count = ns.addVariable({
      componentOf: line,
      browseName: "Count",
      nodeId: "s=Line1.Count",
      description: "Units packed since the last ResetCount",
      dataType: "UInt32",
      accessLevel: "CurrentRead",
      userAccessLevel: "CurrentRead",
      minimumSamplingInterval: 0,
    });
    this.state = ns.addVariable({
      componentOf: line,
      browseName: "State",
      nodeId: "s=Line1.State",
      description: "running | starved | blocked | stopped",
      dataType: "String",
      accessLevel: "CurrentRead",
      userAccessLevel: "CurrentRead",
      minimumSamplingInterval: 0,
    });
    const reset = ns.addMethod(line, { browseName: "ResetCount", nodeId: "s=Line1.ResetCount", description: "Sets Count to 0", inputArguments: [], outputArguments: [] });
    reset.bindMethod(async (_inputArguments: Variant[], _context: unknown) => {
      if (this.callDelayMs > 0) await this.sleep(this.callDelayMs);
      model.resetCount();
      this.publish();
      return { statusCode: StatusCodes.Good, outputArguments: [] };
    });
    this.publish();
  }

  /** Count and State change only here (source timestamps are when they changed). */
  private publish(): void {
    const count = this.line.count();
    if (this.count && this.count.readValue().value.value !== count) this.count.setValueFromSource({ dataType: DataType.UInt32, value: count });
    const state = this.line.state();
    if (this.state && this.state.readValue().value.value !== state) this.state.setValueFromSource({ dataType: DataType.String, value: state });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.delayed.delete(timer);
        resolve();
      }, ms);
      this.delayed.add(timer);
    });
  }

  private async shutdown(server: OPCUAServer): Promise<void> {
    for (const timer of this.delayed) clearTimeout(timer);
    this.delayed.clear();
    try {
      await server.shutdown(0);
    } finally {
      const managers = this.managers;
      this.managers = [];
      await Promise.all(managers.map((m) => m.dispose().catch(() => undefined)));
    }
  }
}
