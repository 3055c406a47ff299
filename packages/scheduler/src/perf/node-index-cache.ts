/**
 * What cycles keep of the cluster from one to the next (`CycleCache.nodeIndex`): each node's indexed form with the
 * allocations it was built from, and each running job's GPUs with the allocations they were resolved from.
 *
 * Between two cycles of a busy cluster a few jobs start or end, so a few nodes change; indexing every node and
 * resolving every running job's GPUs again each cycle was most of a cycle's cost on a large cluster (thousands of
 * maps made and dropped per cycle, and as many scattered objects read). With this cache a cycle still reads every
 * node and every allocation, but only to compare them with what it saw last time; a node is indexed again only where
 * something differs, and a running job's GPUs are resolved again only where a node it is on (or was on) changed.
 *
 * A cache changes no result: what is reused is exactly what would be computed again.
 *   - A node's `IndexedNode` is reused when its `NodeInfo` is the same object (the snapshot contract: a changed node
 *     is a new object), its position among the nodes is the same, and its allocations equal, field by field and in
 *     order, the copies kept here of those it was built from (so a new allocation object with the same contents
 *     reuses it, and one edited in place does not).
 *   - A running job's GPU maps depend only on its allocations that resolve to a GPU, in snapshot order: on each, the
 *     node's position, the GPU object and the fraction. When the snapshot lists allocations node by node in node
 *     order (as the simulator does), a job's allocations are its allocations on each node, node after node; a job
 *     with none on a node that changed therefore has the same ones as last cycle, and only jobs on changed nodes are
 *     looked at again. Otherwise every allocation is compared with the job's, as for nodes.
 *   - A running job's job object is the last one listed with its id in `CycleInput.running`. That list is compared
 *     with last cycle's object by object (the `CycleCache` contract: a job given to a cycle is not edited afterwards,
 *     so the same object is the same job); when an id is listed twice, or was, every job is looked up again.
 *   - A kept `RunningJob` reads its expected end against the cache's clock (`now` of the cycle), from its job's
 *     `startedAt` and expected run time; it is kept only while no learned estimate is in use (those change as jobs
 *     finish) and the profile's default run time is the same.
 * The algorithms are in snapshot-index.ts and running.ts; this file holds their state.
 */
import type { GpuAllocation, GpuDevice, Job, NodeInfo } from '@tutti/model';
import type { CycleClock, KeptRunningJob, RunningJob } from '../cycle/running.ts';
import type { FreeCountIndex } from './capacity-index.ts';
import type { IndexedNode, SnapshotIndex } from '../cycle/snapshot-index.ts';

/**
 * Copies of one node's allocations (the node is the entry's), in snapshot order, field by field in arrays: comparing
 * a snapshot's allocations with them then reads each allocation object and a few arrays, not a copy object each.
 * Fractions and GPU memory get their arrays only once an allocation of the node has one: whole-GPU nodes (most) are
 * then compared reading two arrays, not four (every node is compared every cycle).
 */
export class NodeAllocations {
  readonly jobIds: string[] = [];
  readonly gpuIndexes: number[] = [];
  /** By position; undefined while no allocation has a fraction (or GPU memory). */
  private fractions: (number | undefined)[] | undefined;
  private memoryMiB: (number | undefined)[] | undefined;
  length = 0;

  /** Whether allocation `at` has these contents. */
  equals(at: number, allocation: GpuAllocation): boolean {
    return (
      this.jobIds[at] === allocation.jobId &&
      this.gpuIndexes[at] === allocation.gpuIndex &&
      (this.fractions === undefined ? allocation.fraction === undefined : this.fractions[at] === allocation.fraction) &&
      (this.memoryMiB === undefined ? allocation.memoryMiB === undefined : this.memoryMiB[at] === allocation.memoryMiB)
    );
  }

  fractionAt(at: number): number | undefined {
    return this.fractions?.[at];
  }

  memoryMiBAt(at: number): number | undefined {
    return this.memoryMiB?.[at];
  }

  push(allocation: GpuAllocation): void {
    this.add(allocation.jobId, allocation.gpuIndex, allocation.fraction, allocation.memoryMiB);
  }

  /** A copy of the first `count`. */
  prefix(count: number): NodeAllocations {
    const copy = new NodeAllocations();
    for (let i = 0; i < count; i++) copy.add(this.jobIds[i] as string, this.gpuIndexes[i] as number, this.fractions?.[i], this.memoryMiB?.[i]);
    return copy;
  }

  private add(jobId: string, gpuIndex: number, fraction: number | undefined, memoryMiB: number | undefined): void {
    this.jobIds.push(jobId);
    this.gpuIndexes.push(gpuIndex);
    if (fraction !== undefined && this.fractions === undefined) this.fractions = new Array<number | undefined>(this.length).fill(undefined);
    this.fractions?.push(fraction);
    if (memoryMiB !== undefined && this.memoryMiB === undefined) this.memoryMiB = new Array<number | undefined>(this.length).fill(undefined);
    this.memoryMiB?.push(memoryMiB);
    this.length++;
  }
}

/** No allocations (never added to). */
export const NO_ALLOCATIONS = new NodeAllocations();

/**
 * Per node name. `seen`, `info` and `indexed` describe the last time the node was indexed; `pass`, `matched` and
 * `differing` are scratch for the pass over the current snapshot's allocations.
 */
export interface NodeEntry {
  readonly name: string;
  seen: NodeAllocations;
  info: NodeInfo | undefined;
  indexed: IndexedNode | undefined;
  /** The position `indexed` was made for. */
  indexedOrdinal: number;
  /** The node list it was last found in, and its position there. */
  listedIn: NodeListMemo | undefined;
  ordinal: number;
  /** The last pass that met an allocation of this node. */
  pass: number;
  /** This pass: how many of its allocations so far equal `seen`'s first ones. */
  matched: number;
  /** This pass: its allocations so far, once one differed from `seen` (undefined while they all match). */
  differing: NodeAllocations | undefined;
  /** The last pass that indexed the node again, and what `seen` was before it. */
  changedPass: number;
  previousSeen: NodeAllocations;
}

/** One allocation of a running job, resolved to its GPU: what the job's GPU maps are built from. */
export interface ResolvedGpu {
  readonly ordinal: number;
  readonly gpu: GpuDevice;
  readonly fraction: number | undefined;
}

/** Per running job id: what `computeRunningJobs` (running.ts) keeps of it. */
export interface RunningEntry {
  readonly id: string;
  /** Its allocations that resolved to a GPU, in snapshot order, and the maps made from them. */
  seen: readonly ResolvedGpu[];
  byNode: ReadonlyMap<number, readonly GpuDevice[]>;
  byType: ReadonlyMap<string, number>;
  /** The sum of `byType`, and whether each of its counts is a whole number (so that sums of them are exact). */
  gpuCount: number;
  wholeGpus: boolean;
  /** Whether the last pass found an allocation of it that resolved to a GPU (it is then in `runningOrder`). */
  present: boolean;
  /** Scratch of a pass over every allocation: the pass, how many matched `seen`, and the allocations once one did not. */
  pass: number;
  matched: number;
  differing: ResolvedGpu[] | undefined;
  /** Scratch of a pass over changed nodes only: the pass that found it on one, and its GPUs on them. */
  dirtyPass: number;
  onChanged: ResolvedGpu[] | undefined;
  /** Whether `CycleInput.running` lists its id, and the job object it lists (the last one listed with the id). */
  listed: boolean;
  job: Job | undefined;
  /** Scratch of the match of `CycleInput.running`: the pass that gave it a job, whether it was listed before, the pass its job left the list. */
  listPass: number;
  listedBefore: boolean;
  leftPass: number;
  /** Scratch: the pass that looked at it as changed. */
  changedPass: number;
  /** What it was counted for in the cache's sums (see `count` in running.ts): whether it was, team, whole GPUs (undefined: a fraction), stopping. */
  counted: boolean;
  countedTeam: string | undefined;
  countedGpus: number | undefined;
  countedStopping: boolean;
  /** What the last pass returned for it: returned again when nothing of it changed. */
  made: KeptRunningJob | undefined;
}

/** The node list as last sorted, with what depends on it alone. */
export interface NodeListMemo {
  /** `snapshot.nodes` as given (a copy of the array), to tell whether the next snapshot lists the same objects. */
  readonly given: readonly NodeInfo[];
  /** First entry per name, ordered by name. */
  readonly sorted: readonly NodeInfo[];
  /** Position in `sorted` by name. */
  readonly ordinalByName: ReadonlyMap<string, number>;
  /** The entry of each node of `sorted`. */
  readonly entries: readonly NodeEntry[];
  readonly readyGpuTypes: readonly string[];
  /** Smallest memory of a GPU of each ready type, side by side with `readyGpuTypes`. */
  readonly readyGpuMinMemoryMiB: readonly number[];
  readonly maxGpusPerReadyNode: number;
}

/** The parts of a `SnapshotIndex` made from its indexed nodes alone. */
export interface IndexedNodeLists {
  readonly nodes: readonly IndexedNode[];
  readonly readyNodes: readonly IndexedNode[];
  readonly byName: ReadonlyMap<string, IndexedNode>;
}

/** Entries not met for a while are forgotten once they outnumber those met by this much. */
const SWEEP_SLACK = 1_024;

export class NodeIndexCache {
  /** @param sweepSlack entries kept beyond twice those in use before the unused are forgotten (small in tests, to sweep often) */
  constructor(private readonly sweepSlack = SWEEP_SLACK) {}

  readonly nodes = new Map<string, NodeEntry>();
  /** Snapshots indexed so far. */
  nodePass = 0;
  nodeList: NodeListMemo | undefined;
  /** What the last pass found: whether the node list was the one before, its allocations in node order, the nodes indexed again, its index. */
  sameNodeList = false;
  inNodeOrder = false;
  changedNodes: readonly NodeEntry[] = [];
  lastIndex: SnapshotIndex | undefined;
  /** The last pass's node lists, handed out again when no node changed. */
  lastLists: IndexedNodeLists | undefined;
  /** The free counts of the node pass `pass`, kept to bring up to date for the next (see `startingCountsOf`). */
  startingCounts: { pass: number; readonly freeCounts: Int32Array; readonly countIndex: FreeCountIndex | undefined } | undefined;

  readonly running = new Map<string, RunningEntry>();
  /** Running jobs resolved so far. */
  runningPass = 0;
  /** The node pass the last running pass read, and whether its allocations were in node order. */
  runningNodePass = -1;
  runningInNodeOrder = false;
  /** Whether the last running pass ran to its end (else the next one starts from scratch). */
  runningComplete = false;
  /** The present entries of the last running pass, in its order (by id); its input and what it returned. */
  runningOrder: readonly RunningEntry[] = [];
  runningInput: readonly Job[] | undefined;
  runningResult: readonly RunningJob[] | undefined;
  /** The clock the kept `RunningJob`s read, and the default run time their expected ends were made with (NaN: a learned estimate too). */
  readonly clock: CycleClock = { now: 0 };
  runningEstimateMs = Number.NaN;
  /**
   * The last pass's `CycleInput.running` (a copy) and each job's entry (undefined: none then); `inputMatched` tells
   * whether they can be matched with the next input object by object (no id listed twice, no entry forgotten since).
   */
  lastInput: readonly Job[] = [];
  lastInputEntries: readonly (RunningEntry | undefined)[] = [];
  inputMatched = false;
  /** Sums over the running entries listed with a job: whole GPUs and jobs per team, jobs holding fractions, jobs being stopped. */
  readonly gpusByTeam = new Map<string, number>();
  readonly jobsByTeam = new Map<string, number>();
  fractionalJobs = 0;
  stoppingJobs = 0;

  nodeEntry(name: string): NodeEntry {
    let entry = this.nodes.get(name);
    if (!entry) {
      entry = { name, seen: NO_ALLOCATIONS, info: undefined, indexed: undefined, indexedOrdinal: -1, listedIn: undefined, ordinal: -1, pass: -1, matched: 0, differing: undefined, changedPass: -1, previousSeen: NO_ALLOCATIONS };
      this.nodes.set(name, entry);
    }
    return entry;
  }

  runningEntry(id: string): RunningEntry {
    let entry = this.running.get(id);
    if (!entry) {
      entry = {
        id,
        seen: [],
        byNode: new Map(),
        byType: new Map(),
        present: false,
        pass: -1,
        matched: 0,
        differing: undefined,
        dirtyPass: -1,
        onChanged: undefined,
        gpuCount: 0,
        wholeGpus: true,
        listed: false,
        job: undefined,
        listPass: -1,
        listedBefore: false,
        leftPass: -1,
        changedPass: -1,
        counted: false,
        countedTeam: undefined,
        countedGpus: undefined,
        countedStopping: false,
        made: undefined,
      };
      this.running.set(id, entry);
    }
    return entry;
  }

  /** After a pass that met `met` nodes: forget the nodes it did not meet, once they outnumber the others. */
  sweepNodes(met: number): void {
    if (this.nodes.size > 2 * met + this.sweepSlack) forget(this.nodes, (entry) => entry.pass !== this.nodePass && entry.listedIn !== this.nodeList);
  }

  /** After a running pass with `present` jobs: forget the others, once they outnumber these. Returns whether it did. */
  sweepRunning(present: number): boolean {
    if (this.running.size <= 2 * present + this.sweepSlack) return false;
    forget(this.running, (entry) => !entry.present);
    return true;
  }
}

/** Deletes the entries `stale` picks. */
function forget<V>(map: Map<string, V>, stale: (value: V) => boolean): void {
  for (const [key, value] of map) if (stale(value)) map.delete(key);
}
