// The front's address space (SPEC §5.2): under Objects, one folder per asset (browse name =
// asset id, node id `ns=1;s=ASSET`), holding one variable per value point and one method per
// method point (browse name = point name, node id `ns=1;s=ASSET.POINT`; asset ids have no dot,
// so the first dot splits them). Kept in step with the policy: `sync(set)` after every reload
// adds, removes and re-creates (type or writability changed) only what differs.
//
// The nodes hold no values, ever: every Read, Write, Call and monitored item on them is served
// by the front through the enforcement path (opcua-service.ts). Any path the front does not
// intercept finds an empty variable, never a device value.
import { makeAccessLevelFlag } from "node-opcua";
import type { AddressSpace, BaseNode, Namespace, UAObject } from "node-opcua";
import type { Asset, PolicySet } from "../pdp/policy-set.js";
import { dataTypeOf } from "./opcua-values.js";

/** What a node of the front stands for. */
export interface PointNode {
  readonly asset: string;
  readonly point: string;
  readonly kind: "variable" | "method";
}

export interface SyncChanges {
  readonly added: number;
  readonly removed: number;
}

function signature(asset: Asset, name: string): string {
  const p = asset.points.get(name);
  return p ? `${p.type}|${p.writable}` : "";
}

export class FrontSpace {
  /** Node id text (`ns=1;s=boiler-plc.temperature`) → what it stands for; swapped whole on sync. */
  private byNode: ReadonlyMap<string, PointNode> = new Map();
  private readonly folders = new Map<string, UAObject>();
  /** asset → point → signature of the node built for it. */
  private readonly built = new Map<string, Map<string, string>>();
  private readonly ns: Namespace;

  constructor(
    private readonly addressSpace: AddressSpace,
    private readonly minSamplingIntervalMs: number,
  ) {
    this.ns = addressSpace.getOwnNamespace();
  }

  /** The point a node id (any textual form the server resolved) stands for. */
  lookup(nodeId: { toString(): string } | null | undefined): PointNode | undefined {
    return nodeId ? this.byNode.get(nodeId.toString()) : undefined;
  }

  /**
   * The point a node is, or is part of (a method's argument properties): what deciding access
   * to that node means. Undefined for every node that is not a point's.
   */
  pointAt(nodeId: { toString(): string } | null | undefined): PointNode | undefined {
    let node: BaseNode | null = nodeId ? this.addressSpace.findNode(nodeId.toString()) : null;
    for (let depth = 0; node && depth < 4; depth++) {
      const pn = this.lookup(node.nodeId);
      if (pn) return pn;
      const up = node.parentNodeId;
      node = up ? this.addressSpace.findNode(up) : null;
    }
    return this.lookup(nodeId);
  }

  /** The asset whose folder this node is, if it is one. */
  folderOf(nodeId: { toString(): string } | null | undefined): string | undefined {
    const text = nodeId?.toString() ?? "";
    const prefix = `ns=${this.ns.index};s=`;
    if (!text.startsWith(prefix)) return undefined;
    const id = text.slice(prefix.length);
    return this.folders.has(id) ? id : undefined;
  }

  nodeIdOf(asset: string, point?: string): string {
    return `ns=${this.ns.index};s=${point === undefined ? asset : `${asset}.${point}`}`;
  }

  sync(set: PolicySet): SyncChanges {
    let added = 0;
    let removed = 0;
    for (const id of [...this.built.keys()]) {
      if (set.assets.has(id)) continue;
      removed += this.removeAsset(id);
    }
    for (const asset of set.assets.values()) {
      let folder = this.folders.get(asset.id);
      if (!folder) {
        folder = this.ns.addFolder(this.addressSpace.rootFolder.objects, {
          nodeId: this.nodeIdOf(asset.id),
          browseName: asset.id,
          ...(asset.description !== undefined && { description: asset.description }),
        });
        this.folders.set(asset.id, folder);
        this.built.set(asset.id, new Map());
      }
      const points = this.built.get(asset.id) as Map<string, string>;
      for (const [name, sig] of [...points]) {
        if (signature(asset, name) === sig) continue;
        this.deleteNode(this.nodeIdOf(asset.id, name));
        points.delete(name);
        removed++;
      }
      for (const point of asset.points.values()) {
        if (points.has(point.name)) continue;
        const nodeId = this.nodeIdOf(asset.id, point.name);
        if (point.type === "method") {
          this.ns.addMethod(folder, { nodeId, browseName: point.name, inputArguments: [], outputArguments: [] });
        } else {
          const access = makeAccessLevelFlag(point.writable ? "CurrentRead | CurrentWrite" : "CurrentRead");
          this.ns.addVariable({
            componentOf: folder,
            nodeId,
            browseName: point.name,
            dataType: dataTypeOf(point),
            accessLevel: access,
            userAccessLevel: access,
            // Above 0, so a monitored item is always sampled through the front, never fed by
            // the node's own (empty) value_changed events.
            minimumSamplingInterval: this.minSamplingIntervalMs,
          });
        }
        points.set(point.name, signature(asset, point.name));
        added++;
      }
    }
    const byNode = new Map<string, PointNode>();
    for (const [asset, points] of this.built) {
      const a = set.assets.get(asset);
      for (const name of points.keys()) byNode.set(this.nodeIdOf(asset, name), { asset, point: name, kind: a?.points.get(name)?.type === "method" ? "method" : "variable" });
    }
    this.byNode = byNode;
    return { added, removed };
  }

  private removeAsset(id: string): number {
    const points = this.built.get(id) ?? new Map<string, string>();
    for (const name of points.keys()) this.deleteNode(this.nodeIdOf(id, name));
    this.deleteNode(this.nodeIdOf(id));
    this.folders.delete(id);
    this.built.delete(id);
    return points.size;
  }

  private deleteNode(nodeId: string): void {
    const node: BaseNode | null = this.addressSpace.findNode(nodeId);
    if (node) this.addressSpace.deleteNode(node);
  }
}

