// Asset → the connector of its device, built from the policy set's assets and re-synced on
// every policy reload: a connector is kept while some asset still names its endpoint (its
// connections and queue survive a reload), started when an endpoint first appears, stopped
// when the last asset naming it goes. Assets that share an endpoint (units behind one Modbus
// gateway) share its connector, so the connection bound holds per device, not per asset.
//
// The lookups are typed per protocol (`modbus(asset)`, `opcua(asset)`), so a front only ever
// reaches devices of its own protocol: `modbus()` on an OPC UA asset gives undefined, and the
// other way round. Connector factories: Modbus has a default (ModbusDevice); OPC UA has one
// (OpcuaDevice) when `opcua` options are given, since the client needs a PKI folder of its
// own (main.ts passes one under keys.dir). OpcuaDevice (and node-opcua with it, ~2 s and
// ~50 MB) is loaded by the first sync that has an OPC UA asset, so a gateway with Modbus
// assets only never loads it. Without `opcua` options, or for another protocol with no
// factory, assets are reported in `SyncResult.unsupported` and have no connector;
// `connectors` replaces a default (tests). A connector that is an EventEmitter emitting
// `state` (as ModbusDevice and OpcuaDevice do) has its changes re-emitted by the registry.
import { EventEmitter } from "node:events";
import type { Asset, PolicySet } from "../pdp/policy-set.js";
import { ModbusDevice } from "./modbus.js";
import type { ConnectionState, ModbusDeviceOptions } from "./modbus.js";
import type { OpcuaDeviceOptions } from "./opcua.js";
import type * as OpcuaModule from "./opcua.js";
import type { OpcuaUpstream } from "./types.js";

export type Protocol = Asset["protocol"];

/** What the registry needs of a device connector of any protocol. */
export interface DeviceConnector {
  readonly protocol: Protocol;
  /** Normalised, so equal endpoints compare equal. */
  readonly endpoint: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  state(): ConnectionState;
}

/** Makes the connector of one endpoint; throws (any Error) when the endpoint is not valid for the protocol. */
export type ConnectorFactory = (endpoint: string) => DeviceConnector;

export interface DeviceRegistryOptions {
  /** Options of every Modbus device (endpoint aside). */
  readonly modbus?: Omit<ModbusDeviceOptions, "endpoint">;
  /** Options of every OPC UA device (endpoint aside); without them OPC UA assets have no connector. */
  readonly opcua?: Omit<OpcuaDeviceOptions, "endpoint">;
  /** Connector factories by protocol, replacing the defaults (ModbusDevice; OpcuaDevice with `opcua`). */
  readonly connectors?: Partial<Record<Protocol, ConnectorFactory>>;
  /** Loads devices/opcua.ts when the first OPC UA asset appears (default: import it; main.ts routes node-opcua's own logging first). */
  readonly loadOpcua?: () => Promise<typeof OpcuaModule>;
}

export interface ModbusBinding {
  readonly asset: string;
  readonly device: ModbusDevice;
  /** The unit id at the device (the asset's `unit`). */
  readonly unit: number;
}

interface Binding {
  readonly asset: string;
  readonly connector: DeviceConnector;
  /** Built once per sync, so the per-request lookup allocates nothing. */
  readonly modbus: ModbusBinding | undefined;
  readonly opcua: (OpcuaUpstream & DeviceConnector) | undefined;
}

export interface SyncResult {
  readonly revision: string;
  /** Endpoints, as `protocol endpoint`. */
  readonly started: readonly string[];
  readonly stopped: readonly string[];
  readonly kept: readonly string[];
  /** Assets of a protocol with no connector factory (they have no device until one exists). */
  readonly unsupported: readonly string[];
  /** Assets whose endpoint could not be used: they have no device (a front answers 0A). */
  readonly errors: ReadonlyArray<{ readonly asset: string; readonly endpoint: string; readonly message: string }>;
}

export interface DeviceInfo {
  readonly protocol: Protocol;
  readonly endpoint: string;
  readonly state: ConnectionState;
  readonly assets: readonly string[];
}

/** The one policy store feature the registry follows (kept structural: devices know nothing of policy loading). */
export interface PolicySource {
  current(): PolicySet;
  on(event: "reloaded", listener: () => void): unknown;
  off(event: "reloaded", listener: () => void): unknown;
}

/**
 * Events: `state` when a device's connection state changes (connectors that are
 * EventEmitters emitting `state`, as ModbusDevice does); `synced` after every sync.
 */
export class DeviceRegistry extends EventEmitter<{ state: [device: DeviceInfo]; synced: [result: SyncResult] }> {
  /** Swapped whole on sync; read once per lookup. */
  private bindings: ReadonlyMap<string, Binding> = new Map();
  private readonly connectors = new Map<string, DeviceConnector>();
  private readonly factories: Partial<Record<Protocol, ConnectorFactory>>;
  /** The OPC UA factory, until devices/opcua.ts is loaded (then it is in `factories`). */
  private readonly lazyOpcua: (() => Promise<ConnectorFactory>) | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private stopped = false;

  constructor(options: DeviceRegistryOptions = {}) {
    super();
    const opcua = options.opcua;
    this.factories = { modbus: (endpoint) => new ModbusDevice({ ...options.modbus, endpoint }), ...options.connectors };
    const load = options.loadOpcua ?? (() => import("./opcua.js"));
    this.lazyOpcua =
      opcua && !this.factories.opcua
        ? async () => {
            const { OpcuaDevice } = await load();
            return (this.factories.opcua = (endpoint: string) => new OpcuaDevice({ ...opcua, endpoint }));
          }
        : undefined;
  }

  /** The factory of a protocol, loading OPC UA's the first time it is needed; undefined when there is none. */
  private async factoryOf(protocol: Protocol): Promise<ConnectorFactory | undefined> {
    const f = this.factories[protocol];
    return f ?? (protocol === "opcua" && this.lazyOpcua ? this.lazyOpcua() : undefined);
  }

  /** The Modbus device of a Modbus asset, or undefined (unknown asset, another protocol, unusable endpoint). */
  modbus(asset: string): ModbusBinding | undefined {
    return this.bindings.get(asset)?.modbus;
  }

  /** The upstream OPC UA server of an OPC UA asset, or undefined (unknown asset, another protocol, unusable endpoint). */
  opcua(asset: string): (OpcuaUpstream & DeviceConnector) | undefined {
    return this.bindings.get(asset)?.opcua;
  }

  /** The connector of any asset, whatever its protocol (for metrics and health, not for fronts). */
  connector(asset: string): DeviceConnector | undefined {
    return this.bindings.get(asset)?.connector;
  }

  /** Every device with its state and the assets on it (for metrics). */
  list(): DeviceInfo[] {
    const assets = new Map<DeviceConnector, string[]>();
    for (const b of this.bindings.values()) assets.set(b.connector, [...(assets.get(b.connector) ?? []), b.asset]);
    return [...this.connectors.values()].map((c) => info(c, (assets.get(c) ?? []).sort()));
  }

  /** Brings the connectors in line with `set`; syncs are serialised. */
  sync(set: PolicySet): Promise<SyncResult> {
    const next = this.chain.then(() => this.doSync(set));
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** Syncs now (`ready`) and on every reload of `source`, until `unfollow()`. */
  follow(source: PolicySource): { ready: Promise<SyncResult>; unfollow: () => void } {
    const onReload = () => void this.sync(source.current());
    source.on("reloaded", onReload);
    return { ready: this.sync(source.current()), unfollow: () => void source.off("reloaded", onReload) };
  }

  /** Stops every connector; lookups find nothing afterwards. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.chain;
    this.bindings = new Map();
    const all = [...this.connectors.values()];
    this.connectors.clear();
    await Promise.all(all.map((c) => c.stop()));
  }

  private async doSync(set: PolicySet): Promise<SyncResult> {
    const errors: { asset: string; endpoint: string; message: string }[] = [];
    const unsupported: string[] = [];
    const started: DeviceConnector[] = [];
    const bindings = new Map<string, Binding>();
    const wanted = new Map<string, DeviceConnector>();
    if (!this.stopped) {
      for (const asset of set.assets.values()) {
        let connector: DeviceConnector;
        try {
          const factory = await this.factoryOf(asset.protocol);
          if (!factory) {
            unsupported.push(asset.id);
            continue;
          }
          // Make one to learn the normalised endpoint; an existing one for it wins.
          const fresh = factory(asset.endpoint);
          const key = keyOf(fresh);
          const existing = wanted.get(key) ?? this.connectors.get(key);
          connector = existing ?? fresh;
          if (!existing) started.push(fresh);
          wanted.set(key, connector);
        } catch (err) {
          errors.push({ asset: asset.id, endpoint: asset.endpoint, message: err instanceof Error ? err.message : String(err) });
          continue;
        }
        const modbus = connector instanceof ModbusDevice ? Object.freeze({ asset: asset.id, device: connector, unit: asset.unit ?? 1 }) : undefined;
        const opcua = asset.protocol === "opcua" && isOpcuaUpstream(connector) ? connector : undefined;
        bindings.set(asset.id, { asset: asset.id, connector, modbus, opcua });
      }
    }
    for (const c of started) {
      if (c instanceof EventEmitter) c.on("state", () => this.emit("state", info(c, this.assetsOf(c))));
      await c.start();
    }
    const gone = [...this.connectors].filter(([key]) => !wanted.has(key));
    const kept = [...this.connectors.keys()].filter((key) => wanted.has(key));
    this.connectors.clear();
    for (const [key, c] of wanted) this.connectors.set(key, c);
    this.bindings = bindings;
    await Promise.all(gone.map(([, c]) => c.stop()));
    const result: SyncResult = { revision: set.revision, started: started.map(keyOf), stopped: gone.map(([key]) => key), kept, unsupported, errors };
    this.emit("synced", result);
    return result;
  }

  private assetsOf(c: DeviceConnector): string[] {
    return [...this.bindings.values()].filter((b) => b.connector === c).map((b) => b.asset).sort();
  }
}

/** OpcuaDevice, or any connector a `connectors.opcua` factory made that serves OpcuaUpstream. */
function isOpcuaUpstream(c: DeviceConnector): c is DeviceConnector & OpcuaUpstream {
  const u = c as Partial<OpcuaUpstream>;
  return c.protocol === "opcua" && typeof u.read === "function" && typeof u.readWithin === "function" && typeof u.write === "function" && typeof u.call === "function" && typeof u.monitor === "function";
}

function keyOf(c: DeviceConnector): string {
  return `${c.protocol} ${c.endpoint}`;
}

function info(c: DeviceConnector, assets: readonly string[]): DeviceInfo {
  return { protocol: c.protocol, endpoint: c.endpoint, state: c.state(), assets };
}
