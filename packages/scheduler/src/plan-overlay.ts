/**
 * Mutable bookkeeping for one cycle, layered over the immutable snapshot index: which GPUs, CPUs and host memory the
 * jobs placed so far in this cycle took. Reading a node that nothing was placed on costs nothing extra; the first
 * placement on a node copies that node's free lists (O(GPUs of the node)).
 *
 * Invariant: every GPU handed out by `applyPlacement` was free in the snapshot and not yet handed out this cycle,
 * so free capacity only ever shrinks during a cycle. `runCycle` relies on that to remember shapes that stopped
 * fitting.
 */
import type { GpuDevice, Job, PlacedNode, Placement } from '@tutti/model';
import type { ResourceShape } from './resource-shape.ts';
import type { CapacityView, IndexedNode, SnapshotIndex } from './snapshot-index.ts';

interface NodeUsage {
  readonly freeByType: Map<string, readonly GpuDevice[]>;
  freeCount: number;
  cpus: number;
  memoryMiB: number;
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
  /** By node ordinal; undefined until something is placed on the node. */
  private readonly usage: (NodeUsage | undefined)[] = [];

  constructor(readonly index: SnapshotIndex) {}

  freeGpusByType(node: IndexedNode): ReadonlyMap<string, readonly GpuDevice[]> {
    return this.usage[node.ordinal]?.freeByType ?? node.initialFreeByType;
  }

  freeGpuCount(node: IndexedNode): number {
    return this.usage[node.ordinal]?.freeCount ?? node.initialFreeCount;
  }

  freeCpus(node: IndexedNode): number {
    return node.info.cpus - (this.usage[node.ordinal]?.cpus ?? 0);
  }

  freeMemoryMiB(node: IndexedNode): number {
    return node.info.memoryMiB - (this.usage[node.ordinal]?.memoryMiB ?? 0);
  }

  /** Records a placement and takes its resources. Throws when a GPU is not free: that is a bug in the caller. */
  applyPlacement(job: Job, shape: ResourceShape, nodes: readonly PlacedNode[]): void {
    const resolved: AppliedPlacement['nodes'][number][] = [];
    for (const placed of nodes) {
      const node = this.index.byName.get(placed.node);
      if (!node) throw new Error(`bug: job ${job.id} placed on unknown node ${placed.node}`);
      const usage = this.usageOf(node);
      const gpus: GpuDevice[] = [];
      for (const gpuIndex of placed.gpuIndices) {
        const gpu = node.gpuByIndex.get(gpuIndex);
        const free = gpu ? usage.freeByType.get(gpu.type) : undefined;
        if (!gpu || !free || !free.includes(gpu)) throw new Error(`bug: job ${job.id} placed on GPU ${gpuIndex} of ${node.name}, which is not free`);
        usage.freeByType.set(gpu.type, free.filter((g) => g !== gpu));
        usage.freeCount -= 1;
        gpus.push(gpu);
      }
      usage.cpus += shape.cpus ?? 0;
      usage.memoryMiB += shape.memoryMiB ?? 0;
      resolved.push({ node, gpus });
    }
    this.placements.push({ jobId: job.id, nodes: nodes.map((n) => ({ node: n.node, gpuIndices: [...n.gpuIndices] })) });
    this.applied.push({ job, cpus: shape.cpus ?? 0, memoryMiB: shape.memoryMiB ?? 0, nodes: resolved });
  }

  private usageOf(node: IndexedNode): NodeUsage {
    let usage = this.usage[node.ordinal];
    if (!usage) {
      usage = { freeByType: new Map(node.initialFreeByType), freeCount: node.initialFreeCount, cpus: 0, memoryMiB: 0 };
      this.usage[node.ordinal] = usage;
    }
    return usage;
  }
}
