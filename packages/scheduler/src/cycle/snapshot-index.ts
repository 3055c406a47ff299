/**
 * Indexes of a snapshot built once per cycle, so that fitting a job to a node costs a few map look-ups instead of a
 * scan over every GPU and allocation. The index never changes after it is built; what a cycle places goes into the
 * `PlanOverlay` on top of it.
 */
import type { ClusterSnapshot, GpuDevice, NodeInfo } from '@tutti/model';
import type { IndexedCounts } from '../perf/capacity-index.ts';
import { NO_ALLOCATIONS, NodeIndexCache, type NodeAllocations, type NodeEntry, type NodeListMemo } from '../perf/node-index-cache.ts';

/** Free capacity of nodes at one moment: at the start of the cycle (`SnapshotIndex`) or now (`PlanOverlay`). */
export interface CapacityView {
  /** Free GPUs of a node by type; each list is ordered by GPU index. Absent types have none free. */
  freeGpusByType(node: IndexedNode): ReadonlyMap<string, readonly GpuDevice[]>;
  /** Free GPUs of a node, all types together. */
  freeGpuCount(node: IndexedNode): number;
  /**
   * CPUs not taken by jobs placed this cycle. Running jobs' CPU use is not in the snapshot, so it is not subtracted:
   * see README, "Host resources".
   */
  freeCpus(node: IndexedNode): number;
  /** Host memory (MiB) not taken by jobs placed this cycle; same caveat as `freeCpus`. */
  freeMemoryMiB(node: IndexedNode): number;
  /** Use of the node's shared GPUs (those with fractional allocations), by GPU index. */
  sharedUse(node: IndexedNode): ReadonlyMap<number, SharedUse>;
  /** Free-GPU counts kept in buckets for the best-fit search (`capacity-index.ts`), where the view has them. */
  indexedCounts?(): IndexedCounts | undefined;
}

export interface IndexedNode {
  readonly name: string;
  /** Position in `SnapshotIndex.nodes`: a dense id for per-node arrays. */
  readonly ordinal: number;
  readonly info: NodeInfo;
  /** Only ready nodes take new work. */
  readonly ready: boolean;
  readonly gpuByIndex: ReadonlyMap<number, GpuDevice>;
  /** NVLink peers of each GPU index, made symmetric (a link listed on either end counts). */
  readonly nvlink: ReadonlyMap<number, ReadonlySet<number>>;
  /** The job holding each allocated GPU in the snapshot. */
  readonly heldBy: ReadonlyMap<number, string>;
  /** GPUs with no allocation in the snapshot, by type, ordered by index. */
  readonly initialFreeByType: ReadonlyMap<string, readonly GpuDevice[]>;
  readonly initialFreeCount: number;
  /** GPUs shared by fractional allocations in the snapshot: parts used (of `FRACTION_PARTS`) and GPU memory used. */
  readonly initialShared: ReadonlyMap<number, SharedUse>;
  /** The node's `rack` label, or undefined. */
  readonly rack: string | undefined;
  /** The node's `zone` label, or undefined. */
  readonly zone: string | undefined;
}

/** Fractions are counted in integer parts of a GPU, so that 0.1 + 0.2 + 0.7 is exactly one GPU. */
export const FRACTION_PARTS = 10_000;

export function toParts(fraction: number): number {
  return Math.round(fraction * FRACTION_PARTS);
}

/** What the fractional jobs on one shared GPU use. */
export interface SharedUse {
  readonly parts: number;
  readonly memoryMiB: number;
}

export interface SnapshotIndex extends CapacityView {
  readonly snapshot: ClusterSnapshot;
  /** Every node, ordered by name (UTF-16 code units, so the order does not depend on a locale). */
  readonly nodes: readonly IndexedNode[];
  /** The ready nodes, ordered by name. */
  readonly readyNodes: readonly IndexedNode[];
  readonly byName: ReadonlyMap<string, IndexedNode>;
  /** Distinct GPU types present on ready nodes, ordered by name. */
  readonly readyGpuTypes: readonly string[];
  /** The smallest memory (MiB) of a GPU of each of `readyGpuTypes` on ready nodes, side by side with it. */
  readonly readyGpuMinMemoryMiB: readonly number[];
  /** The most GPUs any ready node has (0 without GPUs). */
  readonly maxGpusPerReadyNode: number;
}

export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Builds the index in O(nodes + GPUs + NVLink links + allocations). A node name that appears twice keeps its first
 * entry, an allocation of an unknown node or GPU index is ignored (it cannot block anything that exists), and a GPU
 * allocated twice is simply not free.
 *
 * With a `cache` kept from earlier cycles (node-index-cache.ts), a node whose `NodeInfo` object, position and
 * allocations are what the cache saw is not indexed again: the same `IndexedNode` is returned. The index is the same
 * with or without it.
 */
export function computeSnapshotIndex(snapshot: ClusterSnapshot, cache: NodeIndexCache = new NodeIndexCache()): SnapshotIndex {
  const pass = ++cache.nodePass;
  const list = nodeListOf(snapshot.nodes, cache);
  cache.sameNodeList = list === cache.nodeList;
  cache.nodeList = list;
  if (!cache.sameNodeList) {
    for (let ordinal = 0; ordinal < list.entries.length; ordinal++) {
      const node = list.entries[ordinal] as NodeEntry;
      node.listedIn = list;
      node.ordinal = ordinal;
    }
  }

  // Each allocation is compared with what its node's entry saw; a node's allocations usually lie together, so the
  // previous allocation's entry answers without a look-up. Whether they lie together in node order is noted for
  // the running jobs (see running.ts).
  let entry: NodeEntry | undefined;
  let met = 0;
  let lastOrdinal = -1;
  let inNodeOrder = true;
  for (const allocation of snapshot.allocations) {
    if (entry === undefined || entry.name !== allocation.node) {
      entry = cache.nodeEntry(allocation.node);
      if (entry.listedIn === list) {
        if (entry.ordinal <= lastOrdinal) inNodeOrder = false;
        lastOrdinal = entry.ordinal;
      }
    }
    if (entry.pass !== pass) {
      entry.pass = pass;
      entry.matched = 0;
      entry.differing = undefined;
      met++;
    }
    if (entry.differing) {
      entry.differing.push(allocation);
      continue;
    }
    if (entry.matched < entry.seen.length && entry.seen.equals(entry.matched, allocation)) {
      entry.matched++;
      continue;
    }
    entry.differing = entry.seen.prefix(entry.matched);
    entry.differing.push(allocation);
  }
  cache.inNodeOrder = inNodeOrder;

  const last = cache.lastLists?.nodes;
  /** Made as soon as a node differs from the last pass's list (undefined: the same list so far). */
  let nodes: IndexedNode[] | undefined = last === undefined || last.length !== list.sorted.length ? [] : undefined;
  const changed: NodeEntry[] = [];
  for (let ordinal = 0; ordinal < list.sorted.length; ordinal++) {
    const info = list.sorted[ordinal] as NodeInfo;
    const node = list.entries[ordinal] as NodeEntry;
    const allocations = node.pass !== pass ? NO_ALLOCATIONS : (node.differing ?? (node.matched === node.seen.length ? node.seen : node.seen.prefix(node.matched)));
    let indexed = node.indexed;
    if (indexed === undefined || node.info !== info || node.indexedOrdinal !== ordinal || allocations !== node.seen) {
      indexed = indexNodeWith(info, ordinal, allocations);
      node.indexedOrdinal = ordinal;
      node.previousSeen = node.indexed === undefined ? NO_ALLOCATIONS : node.seen;
      node.seen = allocations;
      node.info = info;
      node.indexed = indexed;
      node.changedPass = pass;
      changed.push(node);
    }
    if (nodes) nodes.push(indexed);
    else if (last?.[ordinal] !== indexed) (nodes = (last ?? []).slice(0, ordinal)).push(indexed);
  }
  cache.changedNodes = changed;
  cache.sweepNodes(met + list.sorted.length);

  // The lists are new whenever a node is; they are never changed after they are handed out.
  let lists = cache.lastLists;
  if (nodes || !lists) {
    nodes ??= [];
    lists = { nodes, readyNodes: nodes.filter((n) => n.ready), byName: new NodesByName(list.ordinalByName, nodes) };
    cache.lastLists = lists;
  }
  const index: SnapshotIndex = {
    snapshot,
    nodes: lists.nodes,
    readyNodes: lists.readyNodes,
    byName: lists.byName,
    readyGpuTypes: list.readyGpuTypes,
    readyGpuMinMemoryMiB: list.readyGpuMinMemoryMiB,
    maxGpusPerReadyNode: list.maxGpusPerReadyNode,
    freeGpusByType: (node) => node.initialFreeByType,
    freeGpuCount: (node) => node.initialFreeCount,
    freeCpus: (node) => node.info.cpus,
    freeMemoryMiB: (node) => node.info.memoryMiB,
    sharedUse: (node) => node.initialShared,
  };
  cache.lastIndex = index;
  return index;
}

/** The snapshot's nodes, first entry per name, ordered by name: the cache's list when the snapshot lists the same objects. */
function nodeListOf(given: readonly NodeInfo[], cache: NodeIndexCache): NodeListMemo {
  const memo = cache.nodeList;
  if (memo && memo.given.length === given.length && memo.given.every((info, i) => info === given[i])) return memo;
  const firstByName = new Map<string, NodeInfo>();
  for (const info of given) if (!firstByName.has(info.name)) firstByName.set(info.name, info);
  const sorted = [...firstByName.values()].sort((a, b) => compareNames(a.name, b.name));
  const ready = sorted.filter((info) => info.state === 'ready');
  const readyGpuTypes = [...new Set(ready.flatMap((info) => info.gpus.map((g) => g.type)))].sort(compareNames);
  // Made here, kept with the list: the same node objects have the same GPUs (the capacity index asks every cycle).
  const readyGpuMinMemoryMiB = readyGpuTypes.map(() => Infinity);
  for (const info of ready) {
    const seen = new Set<number>();
    for (const gpu of info.gpus) {
      // As `IndexedNode.gpuByIndex`: the first GPU listed with an index.
      if (seen.has(gpu.index)) continue;
      seen.add(gpu.index);
      const t = readyGpuTypes.indexOf(gpu.type);
      if (gpu.memoryMiB < (readyGpuMinMemoryMiB[t] as number)) readyGpuMinMemoryMiB[t] = gpu.memoryMiB;
    }
  }
  const list: NodeListMemo = {
    given: [...given],
    sorted,
    ordinalByName: new Map(sorted.map((info, ordinal) => [info.name, ordinal])),
    entries: sorted.map((info) => cache.nodeEntry(info.name)),
    readyGpuTypes,
    readyGpuMinMemoryMiB,
    // GPUs of a node are counted by distinct index, as `IndexedNode.gpuByIndex` holds them.
    maxGpusPerReadyNode: ready.reduce((max, info) => Math.max(max, new Set(info.gpus.map((g) => g.index)).size), 0),
  };
  return list;
}

/**
 * The nodes of one index by name, without a map of its own: names are looked up in the node list's ordinals (kept
 * while the list is the same), and the ordinal in this index's nodes. Iteration (in name order, as a map built from
 * the nodes would iterate) builds such a map when first asked; the scheduler only looks names up.
 */
class NodesByName implements ReadonlyMap<string, IndexedNode> {
  private map: Map<string, IndexedNode> | undefined;

  constructor(
    private readonly ordinalByName: ReadonlyMap<string, number>,
    private readonly nodes: readonly IndexedNode[],
  ) {}

  get size(): number {
    return this.nodes.length;
  }

  get(name: string): IndexedNode | undefined {
    const ordinal = this.ordinalByName.get(name);
    return ordinal === undefined ? undefined : this.nodes[ordinal];
  }

  has(name: string): boolean {
    return this.ordinalByName.has(name);
  }

  forEach(visit: (node: IndexedNode, name: string, map: ReadonlyMap<string, IndexedNode>) => void, thisArg?: unknown): void {
    for (const node of this.nodes) visit.call(thisArg, node, node.name, this);
  }

  entries(): MapIterator<[string, IndexedNode]> {
    return this.asMap().entries();
  }

  keys(): MapIterator<string> {
    return this.asMap().keys();
  }

  values(): MapIterator<IndexedNode> {
    return this.asMap().values();
  }

  [Symbol.iterator](): MapIterator<[string, IndexedNode]> {
    return this.asMap()[Symbol.iterator]();
  }

  private asMap(): Map<string, IndexedNode> {
    return (this.map ??= new Map(this.nodes.map((node) => [node.name, node])));
  }
}

/** A node indexed with its allocations, in snapshot order. */
function indexNodeWith(info: NodeInfo, ordinal: number, allocations: NodeAllocations): IndexedNode {
  const { jobIds, gpuIndexes } = allocations;
  const heldBy = new Map<number, string>();
  let shared: Map<number, SharedUse> | undefined;
  for (let i = 0; i < allocations.length; i++) {
    const gpuIndex = gpuIndexes[i] as number;
    const fraction = allocations.fractionAt(i);
    if (!heldBy.has(gpuIndex)) heldBy.set(gpuIndex, jobIds[i] as string);
    if (fraction !== undefined) {
      shared ??= new Map();
      const use = shared.get(gpuIndex) ?? { parts: 0, memoryMiB: 0 };
      shared.set(gpuIndex, { parts: use.parts + toParts(fraction), memoryMiB: use.memoryMiB + (allocations.memoryMiBAt(i) ?? 0) });
    }
  }
  // A GPU with a whole-GPU allocation is not shareable, whatever fractional allocations also name it.
  if (shared) for (let i = 0; i < allocations.length; i++) if (allocations.fractionAt(i) === undefined) shared.set(gpuIndexes[i] as number, { parts: FRACTION_PARTS, memoryMiB: Infinity });
  return indexNode(info, ordinal, heldBy, shared ?? new Map());
}

/** NVLink peers of each GPU index, made symmetric. */
function linkGpus(gpuByIndex: ReadonlyMap<number, GpuDevice>): Map<number, Set<number>> {
  const nvlink = new Map<number, Set<number>>();
  const link = (a: number, b: number): void => {
    let peers = nvlink.get(a);
    if (!peers) nvlink.set(a, (peers = new Set()));
    peers.add(b);
  };
  for (const gpu of gpuByIndex.values()) {
    for (const peer of gpu.nvlinkPeers) {
      if (peer === gpu.index || !gpuByIndex.has(peer)) continue;
      link(gpu.index, peer);
      link(peer, gpu.index);
    }
  }
  return nvlink;
}

function indexNode(info: NodeInfo, ordinal: number, heldBy: ReadonlyMap<number, string>, shared: ReadonlyMap<number, SharedUse>): IndexedNode {
  const gpuByIndex = new Map<number, GpuDevice>();
  for (const gpu of info.gpus) if (!gpuByIndex.has(gpu.index)) gpuByIndex.set(gpu.index, gpu);

  // Built on first use: only nodes that get a placement need it, and it is the largest part of indexing a node.
  let nvlink: Map<number, Set<number>> | undefined;

  const free = [...gpuByIndex.values()].filter((g) => !heldBy.has(g.index)).sort((a, b) => a.index - b.index);
  const initialFreeByType = new Map<string, GpuDevice[]>();
  for (const gpu of free) {
    const list = initialFreeByType.get(gpu.type);
    if (list) list.push(gpu);
    else initialFreeByType.set(gpu.type, [gpu]);
  }

  return {
    name: info.name,
    ordinal,
    info,
    ready: info.state === 'ready',
    gpuByIndex,
    get nvlink() {
      return (nvlink ??= linkGpus(gpuByIndex));
    },
    heldBy,
    initialFreeByType,
    initialFreeCount: free.length,
    initialShared: shared,
    rack: info.labels?.['rack'],
    zone: info.labels?.['zone'],
  };
}
