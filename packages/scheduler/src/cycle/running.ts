/**
 * Running jobs as the cycle needs them: which GPUs each holds (from the snapshot's allocations), its team and
 * priority (from `CycleInput.running`), and when it is expected to end (for backfill reservations).
 *
 * With a cache kept from cycle to cycle (`NodeIndexCache`, see node-index-cache.ts for why each reuse is exact), a
 * cycle where a few jobs started or ended does work for those jobs only: their GPUs are resolved again from the nodes
 * that changed, the jobs listed in `CycleInput.running` are compared with last cycle's list object by object, and the
 * sorted list is last cycle's with those jobs taken out, put in or replaced.
 */
import type { GpuDevice, Job } from '@tutti/model';
import { NodeIndexCache, type NodeEntry, type ResolvedGpu, type RunningEntry } from '../perf/node-index-cache.ts';
import { compareNames, type IndexedNode, type SnapshotIndex } from './snapshot-index.ts';
import type { RunningJobInput } from '../preemption/stopping.ts';

export interface RunningJob {
  readonly id: string;
  /** Undefined for an allocation whose job is not in `CycleInput.running`: counted busy, never preempted. */
  readonly job: Job | undefined;
  /** Whole GPUs it holds, by node ordinal (fractional shares are not freed for others by its end or preemption). */
  readonly byNode: ReadonlyMap<number, readonly GpuDevice[]>;
  /** GPUs per type, a share counting its fraction. */
  readonly byType: ReadonlyMap<string, number>;
  /**
   * Expected end: startedAt + maxDurationMs (or the learned estimate, when given), else startedAt + the estimate; never
   * before `now`. Read it during the cycle that made the list: one made with a cache reads the cycle's `now` from it.
   */
  readonly endAt: number;
}

/**
 * The clock of the cycles a cache serves. A running job kept from cycle to cycle reads its expected end against it,
 * so that all the cycles in which its job, GPUs and expected run time stay the same use one object.
 */
export interface CycleClock {
  now: number;
}

/** A `RunningJob` made with a cache (its expected end reads the cache's clock). */
export class KeptRunningJob implements RunningJob {
  constructor(
    readonly id: string,
    readonly job: Job | undefined,
    readonly byNode: ReadonlyMap<number, readonly GpuDevice[]>,
    readonly byType: ReadonlyMap<string, number>,
    /** The job's `startedAt` (undefined: none, or no job; it then counts from now). */
    readonly startedAt: number | undefined,
    /** Expected run time: the learned estimate, else `maxDurationMs`, else the profile's estimate. */
    readonly runFor: number,
    private readonly clock: CycleClock,
  ) {}

  get endAt(): number {
    const { now } = this.clock;
    return Math.max(now, (this.startedAt ?? now) + this.runFor);
  }
}

/**
 * `estimateMs`: a learned run-time estimate (already capped by `max_duration`), used instead of `max_duration` when it
 * answers. Jobs come sorted by id.
 *
 * With a `cache` kept from earlier cycles (node-index-cache.ts) the result is the same; a job whose GPUs, job object
 * and expected run time are those of the last cycle is the same `RunningJob` object.
 */
export function computeRunningJobs(index: SnapshotIndex, running: readonly Job[], now: number, estimatedRuntimeMs: number, estimateMs?: (job: Job) => number | undefined, cache: NodeIndexCache = new NodeIndexCache()): RunningJob[] {
  const pass = ++cache.runningPass;
  const wasComplete = cache.runningComplete;
  cache.runningComplete = false;
  // Only the jobs on nodes indexed again need a look when the last pass read the snapshot before this one, the node
  // list is the same, and both snapshots list allocations node by node in node order (see node-index-cache.ts).
  const onChangedNodesOnly = wasComplete && index === cache.lastIndex && cache.runningNodePass === cache.nodePass - 1 && cache.sameNodeList && cache.inNodeOrder && cache.runningInNodeOrder;
  const resolved = onChangedNodesOnly ? resolveChangedNodes(cache, pass) : resolveAllAllocations(index, cache, pass);
  cache.runningNodePass = index === cache.lastIndex ? cache.nodePass : -1;
  cache.runningInNodeOrder = cache.inNodeOrder;

  cache.clock.now = now;
  // Expected run times are kept only while what made them holds: no learned estimate (it changes as jobs finish),
  // now or then, and the same default.
  const sameEstimates = estimateMs === undefined && cache.runningEstimateMs === estimatedRuntimeMs;
  cache.runningEstimateMs = estimateMs === undefined ? estimatedRuntimeMs : Number.NaN;
  const runTimeOf = (job: Job | undefined): number => (job ? (estimateMs?.(job) ?? job.spec.maxDurationMs) : undefined) ?? estimatedRuntimeMs;

  const result = (resolved.changed !== undefined && sameEstimates && cache.inputMatched && updateLastResult(running, resolved.changed, cache, pass, runTimeOf)) || assembleAll(running, resolved, cache, pass, runTimeOf);
  cache.runningInput = running;
  cache.runningResult = result;
  // Forgotten entries may be named in the last input's entries: the next pass matches its input from scratch.
  if (cache.sweepRunning(cache.runningOrder.length)) cache.inputMatched = false;
  cache.runningComplete = true;
  return result;
}

/**
 * GPUs held per team by the running jobs listed in `CycleInput.running` (a share counting its fraction), for fair
 * share. Summed as they are listed, type by type; when `running` is what `computeRunningJobs` last returned with this
 * cache and every count is a whole number, the cache's sums are the same numbers.
 */
export function computeRunningGpusByTeam(running: readonly RunningJob[], cache?: NodeIndexCache): ReadonlyMap<string, number> {
  if (cache !== undefined && running === cache.runningResult && cache.fractionalJobs === 0) return new Map(cache.gpusByTeam);
  const byTeam = new Map<string, number>();
  for (const r of running) {
    if (!r.job) continue;
    for (const n of r.byType.values()) byTeam.set(r.job.spec.team, (byTeam.get(r.job.spec.team) ?? 0) + n);
  }
  return byTeam;
}

/**
 * Whether no running job of `running` (as `computeRunningJobs` returned it with this cache, from the jobs `input`) is
 * marked as being stopped; undefined when the cache cannot tell.
 */
export function noneStopping(input: readonly RunningJobInput[], running: readonly RunningJob[], cache: NodeIndexCache | undefined): boolean | undefined {
  if (cache === undefined || running !== cache.runningResult || input !== cache.runningInput || !cache.inputMatched) return undefined;
  return cache.stoppingJobs === 0;
}

/** What a pass found of the running jobs' GPUs. */
interface Resolved {
  /** The last pass's order, with entries no longer running marked so, and the entries running now that were not then. */
  readonly kept: readonly RunningEntry[];
  readonly added: RunningEntry[];
  /** The entries whose GPUs or presence may have changed (undefined: any may have). */
  readonly changed: readonly RunningEntry[] | undefined;
}

/** Every allocation of the snapshot compared with its job's entry. */
function resolveAllAllocations(index: SnapshotIndex, cache: NodeIndexCache, pass: number): Resolved {
  /** Jobs with at least one allocation on a known GPU, in order of their first one. */
  const met: RunningEntry[] = [];
  // A job's allocations usually lie together: the previous one's entry and node answer without a look-up.
  let entry: RunningEntry | undefined;
  let lastNode: IndexedNode | undefined;
  for (const a of index.snapshot.allocations) {
    const node = lastNode !== undefined && lastNode.name === a.node ? lastNode : index.byName.get(a.node);
    const gpu = node?.gpuByIndex.get(a.gpuIndex);
    if (!node || !gpu) continue;
    lastNode = node;
    if (entry === undefined || entry.id !== a.jobId) entry = cache.runningEntry(a.jobId);
    if (entry.pass !== pass) {
      entry.pass = pass;
      entry.matched = 0;
      entry.differing = undefined;
      met.push(entry);
    }
    const fraction = a.fraction;
    if (entry.differing) {
      entry.differing.push({ ordinal: node.ordinal, gpu, fraction });
      continue;
    }
    const seen = entry.seen[entry.matched];
    if (seen !== undefined && seen.gpu === gpu && seen.ordinal === node.ordinal && seen.fraction === fraction) {
      entry.matched++;
      continue;
    }
    entry.differing = entry.seen.slice(0, entry.matched);
    entry.differing.push({ ordinal: node.ordinal, gpu, fraction });
  }
  const kept = cache.runningOrder;
  for (const e of kept) if (e.pass !== pass) e.present = false;
  const added: RunningEntry[] = [];
  for (const e of met) {
    setGpus(e, e.differing ?? (e.matched === e.seen.length ? e.seen : e.seen.slice(0, e.matched)));
    e.differing = undefined;
    if (!e.present) {
      e.present = true;
      added.push(e);
    }
  }
  return { kept, added, changed: undefined };
}

/**
 * The jobs on nodes indexed again in this pass, looked at again; the others have the same allocations as in the last
 * pass (see node-index-cache.ts). A job's GPUs on unchanged nodes are kept from its last ones, and its GPUs on changed
 * nodes merged in by node position: allocations listed node by node in node order put them in that order.
 */
function resolveChangedNodes(cache: NodeIndexCache, pass: number): Resolved {
  const looked: RunningEntry[] = [];
  const look = (entry: RunningEntry): void => {
    if (entry.dirtyPass === pass) return;
    entry.dirtyPass = pass;
    entry.onChanged = undefined;
    looked.push(entry);
  };
  for (const node of cache.changedNodes) {
    for (const id of node.previousSeen.jobIds) {
      const entry = cache.running.get(id);
      if (entry?.present) look(entry);
    }
    const indexed = node.indexed as IndexedNode;
    const seen = node.seen;
    const { jobIds, gpuIndexes } = seen;
    for (let i = 0; i < jobIds.length; i++) {
      const gpu = indexed.gpuByIndex.get(gpuIndexes[i] as number);
      if (!gpu) continue;
      const entry = cache.runningEntry(jobIds[i] as string);
      look(entry);
      (entry.onChanged ??= []).push({ ordinal: indexed.ordinal, gpu, fraction: seen.fractionAt(i) });
    }
  }
  const list = cache.nodeList as NonNullable<typeof cache.nodeList>;
  const added: RunningEntry[] = [];
  const changed: RunningEntry[] = [];
  for (const entry of looked) {
    const onChanged = entry.onChanged ?? NO_GPUS;
    entry.onChanged = undefined;
    const before = entry.present ? entry.seen : NO_GPUS;
    const gpus: ResolvedGpu[] = [];
    let c = 0;
    for (const g of before) {
      if ((list.entries[g.ordinal] as NodeEntry).changedPass === cache.nodePass) continue;
      while (c < onChanged.length && (onChanged[c] as ResolvedGpu).ordinal < g.ordinal) gpus.push(onChanged[c++] as ResolvedGpu);
      gpus.push(g);
    }
    while (c < onChanged.length) gpus.push(onChanged[c++] as ResolvedGpu);
    if (gpus.length === 0) {
      if (entry.present) changed.push(entry);
      entry.present = false;
      continue;
    }
    if (setGpus(entry, gpus) || !entry.present) changed.push(entry);
    if (!entry.present) {
      entry.present = true;
      added.push(entry);
    }
  }
  return { kept: cache.runningOrder, added, changed };
}

/**
 * The list made from scratch: every job of `running` matched with its entry, and every running entry given its job,
 * expected end, `RunningJob` (the last one when nothing of it changed) and place in the order; the sums kept for
 * `computeRunningGpusByTeam` and `noneStopping` counted again.
 */
function assembleAll(running: readonly Job[], resolved: Resolved, cache: NodeIndexCache, pass: number, runTimeOf: (job: Job | undefined) => number): RunningJob[] {
  for (const e of cache.lastInputEntries) if (e !== undefined) e.listed = false;
  const entries = new Array<RunningEntry | undefined>(running.length);
  let duplicates = false;
  // The job of each id is the last one listed with it.
  for (let i = 0; i < running.length; i++) {
    const job = running[i] as Job;
    const entry = cache.running.get(job.id);
    entries[i] = entry;
    if (entry === undefined) continue;
    if (entry.listPass === pass) duplicates = true;
    entry.listPass = pass;
    entry.listed = true;
    entry.job = job;
  }
  cache.lastInput = running.slice();
  cache.lastInputEntries = entries;
  // Listed twice: which job object an entry has depends on more than its own place in the list.
  cache.inputMatched = !duplicates;

  const { kept, added } = resolved;
  added.sort((a, b) => compareNames(a.id, b.id));
  const order: RunningEntry[] = [];
  const result: RunningJob[] = [];
  for (const e of kept) e.counted = false;
  cache.gpusByTeam.clear();
  cache.jobsByTeam.clear();
  cache.fractionalJobs = 0;
  cache.stoppingJobs = 0;
  const take = (e: RunningEntry): void => {
    order.push(e);
    result.push(remake(e, cache, runTimeOf));
    count(e, cache, 1);
  };
  let k = 0;
  for (const e of kept) {
    if (!e.present) continue;
    while (k < added.length && compareNames((added[k] as RunningEntry).id, e.id) < 0) take(added[k++] as RunningEntry);
    take(e);
  }
  while (k < added.length) take(added[k++] as RunningEntry);
  cache.runningOrder = order;
  return result;
}

/** Jobs looked for further ahead in last pass's list when the next one differs (the ones between have gone). */
const LOOKAHEAD = 8;

/**
 * Last pass's list with only what changed changed, or undefined when that cannot be told exactly (a job listed twice,
 * now or then): the jobs of `running` are compared with last pass's list object by object (the `CycleCache` contract:
 * a job given to a cycle is not edited afterwards, so the same object is the same job), and only the entries whose
 * job object, GPUs or presence changed are looked at.
 */
function updateLastResult(running: readonly Job[], resolvedChanged: readonly RunningEntry[], cache: NodeIndexCache, pass: number, runTimeOf: (job: Job | undefined) => number): RunningJob[] | undefined {
  const last = cache.lastInput;
  const lastEntries = cache.lastInputEntries;
  const entries = new Array<RunningEntry | undefined>(running.length);
  /** Entries given a job object in this pass, and entries whose job left the list. */
  const given: RunningEntry[] = [];
  const gone: RunningEntry[] = [];
  let duplicates = false;
  const give = (entry: RunningEntry, job: Job): void => {
    if (entry.listPass === pass) duplicates = true;
    entry.listPass = pass;
    entry.listedBefore = entry.listed;
    entry.listed = true;
    entry.job = job;
    given.push(entry);
  };
  const leave = (at: number): void => {
    const entry = lastEntries[at];
    if (entry === undefined) return;
    entry.leftPass = pass;
    gone.push(entry);
  };
  let j = 0;
  for (let i = 0; i < running.length; i++) {
    const job = running[i] as Job;
    if (job !== last[j]) {
      let ahead = 1;
      while (ahead <= LOOKAHEAD && j + ahead < last.length && last[j + ahead] !== job) ahead++;
      if (ahead > LOOKAHEAD || j + ahead >= last.length) {
        // Not in last pass's list near here: a job listed anew.
        const entry = cache.running.get(job.id);
        entries[i] = entry;
        if (entry !== undefined) give(entry, job);
        continue;
      }
      for (let q = j; q < j + ahead; q++) leave(q);
      j += ahead;
    }
    // The same object as last pass: the same job, listed with the same entry, unless its entry is new since.
    let entry = lastEntries[j];
    if (entry === undefined) {
      entry = cache.running.get(job.id);
      if (entry !== undefined) give(entry, job);
    }
    entries[i] = entry;
    j++;
  }
  for (; j < last.length; j++) leave(j);
  // A job given now whose entry was listed before and did not leave is listed twice.
  for (const entry of given) if (entry.listedBefore && entry.leftPass !== pass) duplicates = true;
  if (duplicates) return undefined;
  for (const entry of gone) if (entry.listPass !== pass) entry.listed = false;
  cache.lastInput = running.slice();
  cache.lastInputEntries = entries;

  // The entries to look at, each once: GPUs or presence changed, job given or gone.
  const changed: RunningEntry[] = [];
  for (const list of [resolvedChanged, given, gone]) {
    for (const e of list) {
      if (e.changedPass === pass) continue;
      e.changedPass = pass;
      changed.push(e);
    }
  }
  const order = cache.runningOrder.slice();
  const result = (cache.runningResult as readonly RunningJob[]).slice();
  const removed: RunningEntry[] = [];
  const inserted: RunningEntry[] = [];
  const replaced: RunningEntry[] = [];
  for (const e of changed) {
    const wasPresent = e.counted;
    if (wasPresent) count(e, cache, -1);
    if (!e.present) {
      if (wasPresent) removed.push(e);
      continue;
    }
    const before = e.made;
    const made = remake(e, cache, runTimeOf);
    count(e, cache, 1);
    if (!wasPresent) inserted.push(e);
    else if (made !== before) replaced.push(e);
  }
  for (const e of removed) {
    const at = positionOf(order, e.id);
    order.splice(at, 1);
    result.splice(at, 1);
  }
  for (const e of inserted) {
    const at = positionOf(order, e.id);
    order.splice(at, 0, e);
    result.splice(at, 0, e.made as RunningJob);
  }
  for (const e of replaced) result[positionOf(order, e.id)] = e.made as RunningJob;
  cache.runningOrder = order;
  return result;
}

/** Where an id is, or would go, in entries ordered by id. */
function positionOf(order: readonly RunningEntry[], id: string): number {
  let lo = 0;
  let hi = order.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compareNames((order[mid] as RunningEntry).id, id) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The entry's `RunningJob`: the last one when its job, GPUs and expected run time are the same. */
function remake(e: RunningEntry, cache: NodeIndexCache, runTimeOf: (job: Job | undefined) => number): RunningJob {
  const job = e.listed ? e.job : undefined;
  const startedAt = job?.startedAt;
  const runFor = runTimeOf(job);
  const made = e.made;
  if (made !== undefined && made.job === job && made.byNode === e.byNode && made.byType === e.byType && made.startedAt === startedAt && made.runFor === runFor) return made;
  return (e.made = new KeptRunningJob(e.id, job, e.byNode, e.byType, startedAt, runFor, cache.clock));
}

/** Adds (`sign` 1) or takes back (-1) what a running entry counts for: GPUs of its job's team, and whether it is being stopped. */
function count(e: RunningEntry, cache: NodeIndexCache, sign: 1 | -1): void {
  e.counted = sign === 1;
  // What is taken back is what was added, whatever the entry holds now.
  if (sign === 1) {
    const job = e.listed ? e.job : undefined;
    e.countedTeam = job?.spec.team;
    e.countedGpus = e.wholeGpus ? e.gpuCount : undefined;
    e.countedStopping = (job as RunningJobInput | undefined)?.stopping !== undefined;
  }
  if (e.countedStopping) cache.stoppingJobs += sign;
  const team = e.countedTeam;
  if (team === undefined) return;
  if (e.countedGpus === undefined) {
    cache.fractionalJobs += sign;
    return;
  }
  const jobs = (cache.jobsByTeam.get(team) ?? 0) + sign;
  if (jobs === 0) {
    cache.jobsByTeam.delete(team);
    cache.gpusByTeam.delete(team);
  } else {
    cache.jobsByTeam.set(team, jobs);
    cache.gpusByTeam.set(team, (cache.gpusByTeam.get(team) ?? 0) + sign * e.countedGpus);
  }
}

const NO_GPUS: readonly ResolvedGpu[] = [];

/** Gives the entry these GPUs; its maps are made again only when they differ from the ones it has. Returns whether they did. */
function setGpus(entry: RunningEntry, gpus: readonly ResolvedGpu[]): boolean {
  const seen = entry.seen;
  if (gpus === seen) return false;
  if (gpus.length === seen.length) {
    let same = true;
    for (let i = 0; i < gpus.length && same; i++) {
      const a = gpus[i] as ResolvedGpu;
      const b = seen[i] as ResolvedGpu;
      same = a.gpu === b.gpu && a.ordinal === b.ordinal && a.fraction === b.fraction;
    }
    if (same) return false;
  }
  const byNode = new Map<number, GpuDevice[]>();
  const byType = new Map<string, number>();
  for (const { ordinal, gpu, fraction } of gpus) {
    byType.set(gpu.type, (byType.get(gpu.type) ?? 0) + (fraction ?? 1));
    if (fraction !== undefined) continue;
    const list = byNode.get(ordinal);
    if (!list) byNode.set(ordinal, [gpu]);
    else if (!list.includes(gpu)) list.push(gpu);
  }
  let gpuCount = 0;
  for (const n of byType.values()) gpuCount += n;
  entry.seen = gpus;
  entry.byNode = byNode;
  entry.byType = byType;
  entry.gpuCount = gpuCount;
  // Sums of whole numbers come out the same in any order; sums of fractions may not.
  entry.wholeGpus = [...byType.values()].every((n) => Number.isInteger(n)) && gpuCount <= 1e9;
  return true;
}
