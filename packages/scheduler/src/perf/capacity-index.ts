/**
 * Free-GPU counts of the ready nodes, by GPU type, kept in buckets so that a best-fit search visits only nodes that
 * can hold a node-rank, in the order best fit wants them (fewest free first, then node name), instead of scanning
 * every node for every job.
 *
 * For each type and each count c there is a bit set of the ready nodes (by ordinal) with exactly c free GPUs of
 * that type. The `PlanOverlay` keeps it exact: every change of a node's free list (a placement, a hold) moves the
 * node to its new bucket, O(1). A search for `k` GPUs walks the buckets k, k+1, ... and each bucket's bits in
 * ordinal (= name) order, so its first `numNodes` hits that pass the host check are exactly what the plain scan
 * with `BestFitPicker` would choose. Views that count some GPUs free beyond the overlay (victims, released holds,
 * jobs expected to end) name those nodes in `differs`; the search skips them in the buckets and scores them from
 * the view itself, merged into the same order.
 *
 * Used only where the free count is the score: no `require: nvlink`, and every GPU of the type on ready nodes has the
 * memory the job asks for (else matching GPUs are a subset of the free ones and the plain scan runs).
 */
import type { GpuDevice } from '@tutti/model';
import type { IndexedNode, SnapshotIndex } from '../cycle/snapshot-index.ts';
import type { NodeIndexCache } from './node-index-cache.ts';

export class FreeCountIndex {
  /** Types present on ready nodes, in `SnapshotIndex.readyGpuTypes` order (never changed once made: copies share it). */
  private readonly typeAt: Map<string, number>;
  /** Smallest GPU memory of each type on ready nodes (MiB); shared like `typeAt`. */
  private readonly minMemory: number[];
  /** Largest count a bucket can have: the most GPUs on one ready node. */
  readonly maxCount: number;
  private readonly wordsPerSet: number;
  /** Bit sets, one per (type, count): `bits[(type * (maxCount + 1) + count) * wordsPerSet + word]`. */
  private readonly bits: Uint32Array;
  /** Current count per (type, ordinal): `counts[type * nodes + ordinal]`; -1 for nodes that are not ready. */
  private readonly counts: Int32Array;
  private readonly nodeCount: number;

  /**
   * @param source each node's free GPUs by type, or counts to copy: those of an index with the same node list (the
   *   copy is `index`'s, and changes apart from them)
   */
  constructor(
    readonly index: SnapshotIndex,
    source: ((node: IndexedNode) => ReadonlyMap<string, readonly GpuDevice[]>) | FreeCountIndex,
  ) {
    if (source instanceof FreeCountIndex) {
      this.typeAt = source.typeAt;
      this.minMemory = source.minMemory;
      this.maxCount = source.maxCount;
      this.nodeCount = source.nodeCount;
      this.wordsPerSet = source.wordsPerSet;
      this.bits = source.bits.slice();
      this.counts = source.counts.slice();
      return;
    }
    const freeByType = source;
    const types = index.readyGpuTypes;
    this.typeAt = new Map();
    this.minMemory = [];
    types.forEach((type, i) => {
      this.typeAt.set(type, i);
      this.minMemory.push(index.readyGpuMinMemoryMiB[i] ?? Infinity);
    });
    this.maxCount = index.maxGpusPerReadyNode;
    this.nodeCount = index.nodes.length;
    this.wordsPerSet = (this.nodeCount + 31) >>> 5;
    this.bits = new Uint32Array(Math.max(1, types.length * (this.maxCount + 1) * this.wordsPerSet));
    this.counts = new Int32Array(Math.max(1, types.length * this.nodeCount)).fill(-1);
    for (const node of index.readyNodes) {
      const free = freeByType(node);
      for (let t = 0; t < types.length; t++) {
        const count = free.get(types[t] as string)?.length ?? 0;
        this.counts[t * this.nodeCount + node.ordinal] = count;
        this.setBit(t, count, node.ordinal, true);
      }
    }
  }

  /** A ready node's free lists are now `free` (every type of the index: a type it has none of counts 0). */
  updateNode(node: IndexedNode, free: ReadonlyMap<string, readonly GpuDevice[]>): void {
    for (const type of this.typeAt.keys()) this.update(node, type, free.get(type)?.length ?? 0);
  }

  /** Whether the bucket search is exact for a job of `type` asking at least `minMemoryMiB` per GPU. */
  covers(type: string, minMemoryMiB: number | undefined): boolean {
    const t = this.typeAt.get(type);
    if (t === undefined) return false;
    return minMemoryMiB === undefined || minMemoryMiB <= (this.minMemory[t] ?? -Infinity);
  }

  /** A ready node's free list of `type` now has `count` GPUs. */
  update(node: IndexedNode, type: string, count: number): void {
    const t = this.typeAt.get(type);
    if (t === undefined || !node.ready) return;
    const at = t * this.nodeCount + node.ordinal;
    const before = this.counts[at] as number;
    if (before === count) return;
    if (before >= 0) this.setBit(t, before, node.ordinal, false);
    this.counts[at] = count;
    this.setBit(t, count, node.ordinal, true);
  }

  /**
   * Calls `visit(ordinal)` for each ready node with exactly `count` free GPUs of `type`, in ordinal order, until it
   * returns true. Returns whether it was stopped.
   */
  forEachWithCount(type: string, count: number, visit: (ordinal: number) => boolean): boolean {
    const t = this.typeAt.get(type);
    if (t === undefined || count < 0 || count > this.maxCount) return false;
    const base = (t * (this.maxCount + 1) + count) * this.wordsPerSet;
    for (let w = 0; w < this.wordsPerSet; w++) {
      let word = this.bits[base + w] as number;
      while (word !== 0) {
        const low = word & -word;
        const ordinal = (w << 5) + (31 - Math.clz32(low));
        if (visit(ordinal)) return true;
        word ^= low;
      }
    }
    return false;
  }

  private setBit(t: number, count: number, ordinal: number, on: boolean): void {
    if (count > this.maxCount) return;
    const at = (t * (this.maxCount + 1) + count) * this.wordsPerSet + (ordinal >>> 5);
    const mask = 1 << (ordinal & 31);
    this.bits[at] = on ? (this.bits[at] as number) | mask : (this.bits[at] as number) & ~mask;
  }
}

/** What a view offers for the bucket search: the counts, exact except on the nodes in `differs`. */
export interface IndexedCounts {
  readonly counts: FreeCountIndex;
  /** Ordinals of nodes whose free GPUs in the view are not what `counts` says. */
  readonly differs: ReadonlySet<number>;
}

/** Free capacity of every node as a snapshot has it: what a cycle's `PlanOverlay` starts from and then changes. */
export interface StartingCounts {
  /** Free GPUs of each node (all types), by ordinal. */
  readonly freeCounts: Int32Array;
  /** The same in buckets for the best-fit search, when asked for. */
  readonly countIndex: FreeCountIndex | undefined;
}

/** The starting counts of `index`, counted from every node. */
export function countStarting(index: SnapshotIndex, withCountIndex: boolean): StartingCounts {
  const freeCounts = new Int32Array(index.nodes.length);
  for (let i = 0; i < index.nodes.length; i++) freeCounts[i] = (index.nodes[i] as IndexedNode).initialFreeCount;
  return { freeCounts, countIndex: withCountIndex ? new FreeCountIndex(index, (node) => node.initialFreeByType) : undefined };
}

/**
 * The starting counts of `index` (the last one `computeSnapshotIndex` made with `cache`), as copies the caller may
 * change. The cache keeps the last cycle's: when that cycle indexed the same node list, only the nodes indexed again
 * since (`cache.changedNodes`, their allocations changed) are counted again. Counting every node afresh each cycle read
 * each node's free lists (a cache miss per node): an eighth of a cycle when the whole Philly trace is simulated.
 */
export function startingCountsOf(index: SnapshotIndex, cache: NodeIndexCache, withCountIndex: boolean): StartingCounts {
  let kept = cache.startingCounts;
  const current = kept !== undefined && kept.pass === cache.nodePass - 1 && cache.sameNodeList && cache.lastIndex === index && (kept.countIndex !== undefined || !withCountIndex);
  if (kept && current) {
    for (const entry of cache.changedNodes) {
      const node = entry.indexed as IndexedNode;
      kept.freeCounts[node.ordinal] = node.initialFreeCount;
      kept.countIndex?.updateNode(node, node.initialFreeByType);
    }
  } else kept = { pass: -1, ...countStarting(index, withCountIndex) };
  kept.pass = cache.nodePass;
  cache.startingCounts = kept;
  return { freeCounts: kept.freeCounts.slice(), countIndex: withCountIndex && kept.countIndex ? new FreeCountIndex(index, kept.countIndex) : undefined };
}
