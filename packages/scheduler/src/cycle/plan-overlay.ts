/**
 * Mutable bookkeeping for one cycle, layered over the immutable snapshot index: which GPUs, CPUs and host memory the
 * jobs placed so far in this cycle took, which free GPUs are held for reservations, and what fractional jobs use of
 * shared GPUs. Reading a node that nothing was placed on costs nothing extra; the first change to a node copies that
 * node's free lists (O(GPUs of the node)).
 *
 * Invariant: every GPU handed out by `applyPlacement` was free in the snapshot (or held, for a job that ends before
 * the reservation starts) and not yet handed out this cycle, so free capacity only ever shrinks during a cycle.
 * `runCycle` relies on that to remember shapes that stopped fitting.
 */
import { shareFitsGpu, type GpuDevice, type Job, type PlacedNode, type Placement } from '@tutti/model';
import { countStarting, startingCountsOf, type IndexedCounts } from '../perf/capacity-index.ts';
import type { NodeIndexCache } from '../perf/node-index-cache.ts';
import type { ResourceShape } from './resource-shape.ts';
import { FRACTION_PARTS, toParts, type CapacityView, type IndexedNode, type SharedUse, type SnapshotIndex } from './snapshot-index.ts';

interface NodeUsage {
  readonly freeByType: Map<string, readonly GpuDevice[]>;
  cpus: number;
  memoryMiB: number;
  /** Free GPUs held for a reservation: not free to ordinary jobs, free to jobs that end before it starts. */
  readonly held: GpuDevice[];
  readonly shared: Map<number, SharedUse>;
}

/** A placement of this cycle with its nodes and GPUs resolved, for steps that look at who took what. */
export interface AppliedPlacement {
  readonly job: Job;
  /** Per node-rank: CPUs and host memory the job asked for (0 when it did not ask). */
  readonly cpus: number;
  readonly memoryMiB: number;
  readonly nodes: readonly { readonly node: IndexedNode; readonly gpus: readonly GpuDevice[] }[];
}

export class PlanOverlay implements CapacityView {
  /** The plan so far, in the order jobs were placed. */
  readonly placements: Placement[] = [];
  /** The same placements, resolved; `applied[i]` is `placements[i]`. */
  readonly applied: AppliedPlacement[] = [];
  /** By node ordinal; undefined until something changes on the node. Filled up front so the array stays packed (fast). */
  private readonly usage: (NodeUsage | undefined)[];
  /** Ordinals of nodes with held GPUs. */
  readonly nodesWithHolds = new Set<number>();
  /** Grows with every change (a placement, a hold): equal values mean the same free capacity. */
  version = 0;
  /** Free counts in buckets for the best-fit search, kept in step with every change; undefined when switched off. */
  private readonly counts: IndexedCounts | undefined;
  /**
   * Free GPUs per node ordinal, side by side: domain searches read every node's count per placement, and a count
   * kept in each node's object costs a cache miss per node.
   */
  private readonly freeCounts: Int32Array;

  /**
   * @param indexed keep a `FreeCountIndex` (the bucket search); off, every search scans the nodes.
   * @param cache the cache `index` was made with, when it was the last one made with it: the starting counts are then
   *   brought up to date from the last cycle's rather than counted afresh (`startingCountsOf`)
   */
  constructor(
    readonly index: SnapshotIndex,
    indexed = true,
    cache?: NodeIndexCache,
  ) {
    this.usage = new Array<NodeUsage | undefined>(index.nodes.length).fill(undefined);
    const { freeCounts, countIndex } = cache ? startingCountsOf(index, cache, indexed) : countStarting(index, indexed);
    this.freeCounts = freeCounts;
    this.counts = countIndex ? { counts: countIndex, differs: new Set() } : undefined;
  }

  indexedCounts(): IndexedCounts | undefined {
    return this.counts;
  }

  freeGpusByType(node: IndexedNode): ReadonlyMap<string, readonly GpuDevice[]> {
    return this.usage[node.ordinal]?.freeByType ?? node.initialFreeByType;
  }

  freeGpuCount(node: IndexedNode): number {
    return this.freeCounts[node.ordinal] as number;
  }

  freeCpus(node: IndexedNode): number {
    return node.info.cpus - (this.usage[node.ordinal]?.cpus ?? 0);
  }

  freeMemoryMiB(node: IndexedNode): number {
    return node.info.memoryMiB - (this.usage[node.ordinal]?.memoryMiB ?? 0);
  }

  /** GPUs held for reservations on a node. */
  heldGpus(node: IndexedNode): readonly GpuDevice[] {
    return this.usage[node.ordinal]?.held ?? [];
  }

  /** Use of the node's shared (fractional) GPUs. */
  sharedUse(node: IndexedNode): ReadonlyMap<number, SharedUse> {
    return this.usage[node.ordinal]?.shared ?? node.initialShared;
  }

  /** Takes free GPUs out of the free lists for a reservation. GPUs that are not free are left alone (they are busy anyway). */
  /** Holds the listed GPUs for a reservation; returns how many of them were free (and are now held). */
  hold(nodes: readonly PlacedNode[]): number {
    let taken = 0;
    for (const placed of nodes) {
      const node = this.index.byName.get(placed.node);
      if (!node) continue;
      for (const gpuIndex of placed.gpuIndices) {
        const gpu = node.gpuByIndex.get(gpuIndex);
        if (!gpu) continue;
        const usage = this.usageOf(node);
        const free = usage.freeByType.get(gpu.type);
        if (!free || !free.includes(gpu)) continue;
        this.setFree(node, usage, gpu.type, free.filter((g) => g !== gpu));
        (this.freeCounts[node.ordinal] as number)--;
        usage.held.push(gpu);
        this.nodesWithHolds.add(node.ordinal);
        taken += 1;
      }
    }
    this.version++;
    return taken;
  }

  /** Records a placement and takes its resources. Throws when a GPU is not available: that is a bug in the caller. */
  applyPlacement(job: Job, shape: ResourceShape, nodes: readonly PlacedNode[]): void {
    const resolved: AppliedPlacement['nodes'][number][] = [];
    for (const placed of nodes) {
      const node = this.index.byName.get(placed.node);
      if (!node) throw new Error(`bug: job ${job.id} placed on unknown node ${placed.node}`);
      const usage = this.usageOf(node);
      const gpus: GpuDevice[] = [];
      for (const gpuIndex of placed.gpuIndices) {
        const gpu = node.gpuByIndex.get(gpuIndex);
        if (!gpu) throw new Error(`bug: job ${job.id} placed on GPU ${gpuIndex} of ${node.name}, which does not exist`);
        gpus.push(gpu);
        if (shape.fractionParts !== undefined && usage.shared.has(gpuIndex)) {
          const use = usage.shared.get(gpuIndex) as SharedUse;
          usage.shared.set(gpuIndex, { parts: use.parts + shape.fractionParts, memoryMiB: use.memoryMiB + (placed.gpuMemoryMiB ?? 0) });
          continue;
        }
        const free = usage.freeByType.get(gpu.type);
        const heldAt = usage.held.indexOf(gpu);
        if (free?.includes(gpu)) {
          this.setFree(node, usage, gpu.type, free.filter((g) => g !== gpu));
          (this.freeCounts[node.ordinal] as number)--;
        } else if (heldAt >= 0) {
          usage.held.splice(heldAt, 1);
        } else {
          throw new Error(`bug: job ${job.id} placed on GPU ${gpuIndex} of ${node.name}, which is not free`);
        }
        if (shape.fractionParts !== undefined) usage.shared.set(gpuIndex, { parts: shape.fractionParts, memoryMiB: placed.gpuMemoryMiB ?? 0 });
      }
      usage.cpus += shape.cpus ?? 0;
      usage.memoryMiB += shape.memoryMiB ?? 0;
      resolved.push({ node, gpus });
    }
    this.version++;
    this.placements.push({ jobId: job.id, nodes: nodes.map((n) => ({ ...n, gpuIndices: [...n.gpuIndices] })) });
    this.applied.push({ job, cpus: shape.cpus ?? 0, memoryMiB: shape.memoryMiB ?? 0, nodes: resolved });
  }

  private setFree(node: IndexedNode, usage: NodeUsage, type: string, free: readonly GpuDevice[]): void {
    usage.freeByType.set(type, free);
    this.counts?.counts.update(node, type, free.length);
  }

  private usageOf(node: IndexedNode): NodeUsage {
    let usage = this.usage[node.ordinal];
    if (!usage) {
      usage = { freeByType: new Map(node.initialFreeByType), cpus: 0, memoryMiB: 0, held: [], shared: new Map(node.initialShared) };
      this.usage[node.ordinal] = usage;
    }
    return usage;
  }
}

/**
 * Whether a shared GPU has room for `parts` more and `memoryMiB` more: model's one sharing rule, on the overlay's
 * integer parts (a GPU held whole is in `shared` as all its parts and Infinity memory, so nothing joins it).
 */
export function hasShareRoom(use: SharedUse, gpu: GpuDevice, parts: number, memoryMiB: number): boolean {
  return shareFitsGpu(use.parts / FRACTION_PARTS, use.memoryMiB, parts / FRACTION_PARTS, memoryMiB, gpu.memoryMiB);
}

export { toParts };

/**
 * A view of `base` with some GPUs that are busy (or held) there counted as free: the GPUs of preemption victims, of
 * running jobs expected to end by some time, or held GPUs for a job that ends before the reservation starts.
 * `extra` is by node ordinal; its GPUs must not be free in `base` already.
 */
export class ExtraFreeView implements CapacityView {
  private readonly merged = new Map<number, Map<string, readonly GpuDevice[]>>();
  private indexed: IndexedCounts | undefined | null = null;

  constructor(
    private readonly base: CapacityView,
    private readonly extra: ReadonlyMap<number, readonly GpuDevice[]>,
  ) {}

  freeGpusByType(node: IndexedNode): ReadonlyMap<string, readonly GpuDevice[]> {
    const more = this.extra.get(node.ordinal);
    if (!more || more.length === 0) return this.base.freeGpusByType(node);
    let merged = this.merged.get(node.ordinal);
    if (!merged) {
      merged = new Map(this.base.freeGpusByType(node));
      // Per type: the base's free list (ordered by index) copied once, and each extra GPU not in it inserted in index
      // order, after any of the same index (what a stable sort by index gives; no sort: thousands of these a cycle).
      const copied = new Set<string>();
      for (const gpu of more) {
        let list = merged.get(gpu.type) as GpuDevice[] | undefined;
        if (!copied.has(gpu.type)) {
          copied.add(gpu.type);
          merged.set(gpu.type, (list = list ? [...list] : []));
        }
        if (!list || list.includes(gpu)) continue;
        list.push(gpu);
        for (let k = list.length - 1; k > 0 && (list[k - 1] as GpuDevice).index > gpu.index; k--) {
          list[k] = list[k - 1] as GpuDevice;
          list[k - 1] = gpu;
        }
      }
      this.merged.set(node.ordinal, merged);
    }
    return merged;
  }

  freeGpuCount(node: IndexedNode): number {
    const more = this.extra.get(node.ordinal);
    if (!more || more.length === 0) return this.base.freeGpuCount(node);
    let n = 0;
    for (const list of this.freeGpusByType(node).values()) n += list.length;
    return n;
  }

  freeCpus(node: IndexedNode): number {
    return this.base.freeCpus(node);
  }

  freeMemoryMiB(node: IndexedNode): number {
    return this.base.freeMemoryMiB(node);
  }

  sharedUse(node: IndexedNode): ReadonlyMap<number, SharedUse> {
    return this.base.sharedUse(node);
  }

  /** The base's buckets, with the nodes that have extra free GPUs here marked as differing. */
  indexedCounts(): IndexedCounts | undefined {
    if (this.indexed === null) {
      const base = this.base.indexedCounts?.();
      if (!base) this.indexed = undefined;
      else {
        const differs = new Set(base.differs);
        for (const [ordinal, gpus] of this.extra) if (gpus.length > 0) differs.add(ordinal);
        this.indexed = { counts: base.counts, differs };
      }
    }
    return this.indexed;
  }
}
