/**
 * Indexes of a snapshot built once per cycle, so that fitting a job to a node costs a few map look-ups instead of a
 * scan over every GPU and allocation. The index never changes after it is built; what a cycle places goes into the
 * `PlanOverlay` on top of it.
 */
import type { ClusterSnapshot, GpuDevice, NodeInfo } from '@tutti/model';
import type { IndexedCounts } from './capacity-index.ts';

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
 */
export function computeSnapshotIndex(snapshot: ClusterSnapshot): SnapshotIndex {
  const heldByNode = new Map<string, Map<number, string>>();
  const sharedByNode = new Map<string, Map<number, SharedUse>>();
  // A node's allocations usually lie together: the previous one's map answers without a look-up.
  let lastNode: string | undefined;
  let lastHeld: Map<number, string> | undefined;
  for (const allocation of snapshot.allocations) {
    let held = lastNode === allocation.node ? lastHeld : heldByNode.get(allocation.node);
    if (!held) heldByNode.set(allocation.node, (held = new Map()));
    lastNode = allocation.node;
    lastHeld = held;
    if (!held.has(allocation.gpuIndex)) held.set(allocation.gpuIndex, allocation.jobId);
    if (allocation.fraction !== undefined) {
      let shared = sharedByNode.get(allocation.node);
      if (!shared) sharedByNode.set(allocation.node, (shared = new Map()));
      const use = shared.get(allocation.gpuIndex) ?? { parts: 0, memoryMiB: 0 };
      shared.set(allocation.gpuIndex, { parts: use.parts + toParts(allocation.fraction), memoryMiB: use.memoryMiB + (allocation.memoryMiB ?? 0) });
    }
  }
  // A GPU with a whole-GPU allocation is not shareable, whatever fractional allocations also name it.
  for (const allocation of snapshot.allocations) {
    if (allocation.fraction === undefined) sharedByNode.get(allocation.node)?.set(allocation.gpuIndex, { parts: FRACTION_PARTS, memoryMiB: Infinity });
  }

  const firstByName = new Map<string, NodeInfo>();
  for (const info of snapshot.nodes) if (!firstByName.has(info.name)) firstByName.set(info.name, info);
  const nodes = [...firstByName.values()]
    .sort((a, b) => compareNames(a.name, b.name))
    .map((info, ordinal) => indexNode(info, ordinal, heldByNode.get(info.name) ?? new Map(), sharedByNode.get(info.name) ?? new Map()));
  const byName = new Map(nodes.map((node) => [node.name, node]));
  const readyNodes = nodes.filter((n) => n.ready);
  const readyGpuTypes = [...new Set(readyNodes.flatMap((n) => n.info.gpus.map((g) => g.type)))].sort(compareNames);

  return {
    snapshot,
    nodes,
    readyNodes,
    byName,
    readyGpuTypes,
    maxGpusPerReadyNode: readyNodes.reduce((max, n) => Math.max(max, n.gpuByIndex.size), 0),
    freeGpusByType: (node) => node.initialFreeByType,
    freeGpuCount: (node) => node.initialFreeCount,
    freeCpus: (node) => node.info.cpus,
    freeMemoryMiB: (node) => node.info.memoryMiB,
    sharedUse: (node) => node.initialShared,
  };
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
