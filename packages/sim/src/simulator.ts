/**
 * The discrete-event simulator: a virtual clock, an event queue, the cluster's state in memory and a simulated
 * backend — a driver of the same control core (`JobLifecycle` of @tutti/control) and the same `runCycle` as the
 * live server. Every decision about a job's life (its stops and their grace, what follows an attempt, restarts and
 * their backoff, hangs, max_duration, the usage ledger, the victims marked as being stopped) is the core's.
 *
 *   events at time t (arrivals, completions, stop deadlines, scripted failures / cancels, core wake-ups, ticks)
 *        │   ──▶ lifecycle events ──▶ JobLifecycle.handle ──▶ commands carried out on the simulated cluster
 *        │   (all events of the same t are applied before any cycle: coalescing)
 *        ▼
 *   for each partition touched at t:  snapshot + queue ──▶ runCycle ──▶ applyCycleResult (screenPlan, stop victims)
 *        │                                                              ──▶ apply placements (placed ▶ launch)
 *        ▼
 *   completions, stop deadlines and wake-ups go back into the event queue
 *
 * Time is virtual: trace seconds, turned into epoch milliseconds (trace second s = s × 1000 ms) for the scheduler.
 * Nothing in the scheduler knows it is being simulated.
 *
 * Partitions: with `partition: 'team-label'` a node labelled `team: X` serves only team X's jobs (Philly's virtual
 * clusters, each a team with a quota equal to its size and borrowing off), and each partition runs its own cycles
 * over its own nodes. Jobs map to teams by the trace's `queue`. With `partition: 'none'` all nodes form one pool.
 *
 * Inputs beyond the live server's, each given only to the profiles that read them:
 *   - `oracleRemainingMs` (ORACLE, `oracle-shortest`: `sjf`, `srtf`): each pending and running job's true remaining
 *     work, from the trace's duration;
 *   - `attainedServiceGpuMs` (`las`: `tiresias`; `fair-share` with `withinTeam: least-attained`): GPUs × time
 *     held, summed over the job's runs; a running job's crossing of a queue threshold is an event, so its demotion
 *     is acted on at once;
 *   - `durationHistory` (every profile): run times of the jobs that have finished so far, by team and GPU count —
 *     what the server knows too (the default profile's estimates come from it, never from the trace's durations of
 *     jobs still to finish).
 */
import { GPU_SHARE_EPSILON, computeTasksForPlacement, isTeamAdmitted, shareFitsGpu, type ClusterConfig, type ClusterSnapshot, type GpuAllocation, type Job, type JobSpec, type NodeInfo, type PlacedNode, type Plan } from '@tutti/model';
import { applyFairShareHalfLife, checkFeasibility, compareQueueOrder, compileProfile, CycleCache, ProfileError, runCycle, type PlanViolationCode } from '@tutti/scheduler';
import type { CycleInput, RunningJobInput } from '@tutti/scheduler';
import { JobLifecycle, applyCycleResult, isEligible, lifecycleSettingsFor } from '@tutti/control';
import type { LifecycleCommand, StopCause } from '@tutti/control';
import { EventQueue } from './event-queue.ts';
import type { SimPolicy } from './policies.ts';
import type { TraceJob } from './trace-reader.ts';

export interface SimOptions {
  /** Seconds between periodic scheduling cycles; 0 runs cycles only on events. @default 0 */
  cycleIntervalS?: number;
  /** Seconds a preempted job spends restarting (reloading its checkpoint) before it makes progress again. @default 30 */
  restartOverheadS?: number;
  /** Seconds of work between checkpoints; a preempted job loses the work since its last one. 0: it checkpoints when signalled and loses nothing. @default 1800 */
  checkpointIntervalS?: number;
  /** Seed passed to every cycle. @default 1 */
  seed?: number;
  /** `auto`: `team-label` when some node carries a `team` label, else `none`. @default 'auto' */
  partition?: 'auto' | 'team-label' | 'none';
  /**
   * Skip a cycle of an unpruned profile when no waiting job's gang shape fits the free GPUs and the profile cannot
   * preempt (see `runSimulation`): such a cycle places nothing. @default true
   */
  skipIdleCycles?: boolean;
  /** Called now and then with (jobs done or unplaceable, all jobs). */
  onProgress?: (done: number, total: number) => void;
  /**
   * Called with every decision applied, in order: each start with its placement, each preemption with its reason.
   * For comparing the simulator's decisions with the live server's on one scenario.
   */
  onDecision?: (decision: SimDecision) => void;
}

/**
 * A decision applied by the simulator, as the control core made it. `traceId` is the trace's job id. `preempt` is a
 * stop to make room; `stop` one for any other cause (a failed rank, a cancel, a hang, max_duration); `requeue` the
 * job back in the queue (`preempted`, or `restarting` after a failure); `finish` its end.
 */
export type SimDecision =
  | { kind: 'start'; timeS: number; traceId: string; nodes: readonly PlacedNode[] }
  | { kind: 'preempt'; timeS: number; traceId: string; reason: string; /** The job it makes room for, when a plan chose it. */ forTraceId?: string }
  | { kind: 'stop'; timeS: number; traceId: string; cause: StopCause['kind'] }
  | { kind: 'requeue'; timeS: number; traceId: string; event: 'preempted' | 'restarting' | 'requeued' }
  | { kind: 'finish'; timeS: number; traceId: string; status: 'succeeded' | 'failed' | 'cancelled' };

export type UnplaceableReason =
  /** Partitioned by team and the job has no queue/team. */
  | 'no_team'
  /** Its team has no nodes (a VC without capacity), or the cluster config lists teams and not this one (`isTeamAdmitted`). */
  | 'team_without_capacity'
  /** Larger than its team's partition (or asks for a GPU type it does not have). */
  | 'larger_than_team'
  /** Can never fit the whole cluster. */
  | 'never_fits';

export const UNPLACEABLE_REASONS: readonly UnplaceableReason[] = ['no_team', 'team_without_capacity', 'larger_than_team', 'never_fits'];

/** How a trace job's GPU count became a gang. */
export interface GangShape {
  numNodes: number;
  gpusPerNode: number;
}

/**
 * Jobs that fit one node stay on one node. A larger job becomes a gang of `ceil(gpus / G)` nodes with
 * `ceil(gpus / nodes)` GPUs each (G = the most GPUs any node has): 16 → 2 × 8, 12 → 2 × 6, 20 → 3 × 7 (21 GPUs,
 * one more than asked: every node of a gang gets the same request). Work is accounted on the GPUs allocated.
 */
export function computeGangShape(numGpus: number, gpusPerNodeMax: number): GangShape {
  if (numGpus <= gpusPerNodeMax || gpusPerNodeMax <= 0) return { numNodes: 1, gpusPerNode: numGpus };
  const numNodes = Math.ceil(numGpus / gpusPerNodeMax);
  return { numNodes, gpusPerNode: Math.ceil(numGpus / numNodes) };
}

/** Per job, in trace (submission) order. Times in trace seconds; NaN where it never happened. */
export interface JobOutcomes {
  submitS: Float64Array;
  durationS: Float64Array;
  firstStartS: Float64Array;
  finishS: Float64Array;
  /** GPUs allocated (after gang rounding); a share of one GPU for a fractional job. */
  gpus: Float64Array;
  /** Index into `teams`. */
  team: Uint16Array;
  /** Index into UNPLACEABLE_REASONS, or 255 when placeable. */
  unplaceable: Uint8Array;
  preemptions: Uint16Array;
  /** GPU-seconds held, over all runs (for finished jobs: work + what preemptions and restarts lost). */
  attainedGpuS: Float64Array;
}

/** A part of a plan that failed `verifyPlan` (a scheduler bug) and was dropped, as the live server drops it. */
export interface SimPlanViolation {
  timeS: number;
  /** The trace job at fault. */
  traceId: string;
  code: PlanViolationCode;
  message: string;
}

export interface SimResult {
  policy: string;
  profile: string;
  pruning: SimPolicy['pruning'];
  partitioned: boolean;
  teams: string[];
  jobs: JobOutcomes;
  totalGpus: number;
  /** GPU-seconds held by jobs (including restart overhead, grace periods and work later lost). */
  usedGpuS: number;
  /** GPU-seconds of the trace's own work (duration × allocated GPUs) of the jobs that finished. */
  workGpuS: number;
  /** GPU-seconds held but not kept: work since the last checkpoint, restart overhead, grace after the checkpoint. */
  lostGpuS: number;
  preemptions: number;
  /** Busy GPUs integrated over time from the cluster's side, to cross-check `usedGpuS`. */
  busyGpuSFromNodes: number;
  /** Step functions sampled after each batch of events: time (s), busy GPUs, pending jobs, fragmented GPUs. */
  timeline: { t: Float64Array; busyGpus: Float64Array; pendingJobs: Float64Array; fragmentedGpus: Float64Array };
  /**
   * Fragmentation, measured only for traces with fractional jobs (else undefined): free GPU capacity that a job
   * drawn from the trace's own mix of requests could not use, expected over that mix (see `computeNodeFragmentation`),
   * integrated over time from the first submission to the last finish (GPU-seconds).
   */
  fragmentedGpuS: number | undefined;
  /** Free GPU capacity integrated over the same span (GPU-seconds), to read fragmentation as a share of what is free. */
  freeGpuS: number;
  cycles: number;
  cyclesSkipped: number;
  /** Parts of plans that failed `verifyPlan` and were dropped (empty unless the profile has a bug). */
  planViolations: SimPlanViolation[];
  /** Jobs whose gang rounding allocated more GPUs than the trace asked. */
  roundedUpJobs: number;
  wallS: number;
}

// ---------------------------------------------------------------------------------------------------------------

interface SimNode {
  info: NodeInfo;
  /** Holder sim-job index per GPU position, -1 when free or shared. */
  holder: Int32Array;
  /** Share of each GPU position held by fractional jobs (0 when none). A GPU is whole-held or shared, never both. */
  share: Float64Array;
  /** The fractional jobs on this node. */
  sharers: Array<{ job: number; position: number; fraction: number; memoryMiB: number | undefined }>;
  /** Fragmented GPUs of this node (see computeNodeFragmentation), kept up to date when fragmentation is measured. */
  fragmented: number;
  positionOfIndex: Map<number, number>;
  freeCount: number;
  /** Nodes of one class (same CPUs, memory, GPU types, memory and NVLink) are interchangeable for placement. */
  classId: number;
  /**
   * The node's allocations as snapshots list them, made when first asked after a change (undefined until then): the
   * same objects from cycle to cycle while the node does not change, which the scheduler's cache compares cheaply.
   */
  allocations: GpuAllocation[] | undefined;
  /** Position in its partition's `nodes`, and whether it is in the partition's `changedNodes`. */
  position: number;
  changed: boolean;
}

interface ShapeQueue {
  /** Pending sim-job indexes in queue order; live from `head`. */
  items: number[];
  head: number;
  gpusPerNode: number;
  numNodes: number;
  /** A share of one GPU: it may fit a shared GPU even when no GPU is wholly free. */
  fractional: boolean;
}

interface Partition {
  name: string;
  nodes: SimNode[];
  totalGpus: number;
  /** Number of nodes with c free GPUs, at index c. */
  freeHistogram: number[];
  queues: Map<string, ShapeQueue>;
  pending: number;
  /** Running (or stopping) jobs by sim-job index, for the cycle's `running` input. */
  running: Map<number, RunningJobInput>;
  /** The jobs of `running`, in its order, as cycles take them; made when first asked after a change. */
  runningJobs: RunningJobInput[] | undefined;
  /**
   * The allocations of all its nodes, node by node, as the last snapshot of the whole partition listed them, where each
   * node's start (by position, and the end at the last position), and the positions of nodes changed since. The next
   * whole snapshot copies the unchanged runs and puts in the changed nodes.
   */
  allocations: GpuAllocation[];
  allocationStarts: Int32Array;
  changedNodes: number[];
  /** Nodes by name, for applying plans. */
  nodeByName: Map<string, SimNode>;
  dirty: boolean;
}

/** Where a job is in its life; numbers so that a job record stays small. */
const State = { Waiting: 0, Pending: 1, Running: 2, Stopping: 3, Done: 4, Unplaceable: 5 } as const;
type State = (typeof State)[keyof typeof State];

/** Where a running job holds GPUs: a part per node, its GPU positions there (a share of one GPU: the fraction). */
type JobPlacement = ReadonlyArray<{ node: SimNode; positions: number[]; fraction?: number }>;

/**
 * The placement of every job that holds no GPUs: one shared empty array rather than one per job, kept by each job
 * not yet started or already over (most of a trace's jobs at any time).
 */
const NOT_PLACED: JobPlacement = Object.freeze([]);

interface SimJob {
  job: Job;
  partition: Partition | undefined;
  shapeKey: string;
  state: State;
  epoch: number;
  placement: JobPlacement;
  // No more fields without need: one of these lives for each of a trace's jobs (111,549 on Philly) through the whole
  // run, so every field is about 1 MB more of the live heap, and the heap the collector lets grow is a multiple of it.
  // What only some jobs have (a scenario, a scripted hang) is kept aside (`trace[i].scenario`, `hangsAtS`); a running
  // attempt's ranks are counted by the control core (`JobLifecycle.rankCountOf`); times and work in seconds are in
  // `work`'s typed arrays (a fractional number in an object's field is a heap number of its own, per job).
}

/** Runs one policy over a trace on a cluster. Synchronous and deterministic: the same inputs give the same result. */
export function runSimulation(trace: readonly TraceJob[], cluster: ClusterConfig, policy: SimPolicy, options: SimOptions = {}): SimResult {
  const started = performance.now();
  const restartOverheadS = options.restartOverheadS ?? 30;
  const checkpointIntervalS = options.checkpointIntervalS ?? 1800;
  const cycleIntervalS = options.cycleIntervalS ?? 0;
  const seed = options.seed ?? 1;
  // The cluster config's fair_share_half_life is the profile's fair-share halfLifeMs, as on the server: one half-life
  // for the queue sort's shares and for the usage accumulated below.
  const resolved = applyFairShareHalfLife(policy.profile, cluster.scheduler.fairShareHalfLifeMs);
  if (!resolved.ok) throw new ProfileError(resolved.error);
  const profile = resolved.profile;
  // The control core the live server drives: every job's life (stops and their grace, outcomes, restarts and their
  // backoff, hangs, the usage ledger, the victims being stopped) is decided by it here too. Times in it are ms.
  const lifecycle = new JobLifecycle(lifecycleSettingsFor(profile));
  const partitioned = options.partition === 'team-label' || ((options.partition ?? 'auto') === 'auto' && cluster.nodes.some((n) => n.labels.team !== undefined));

  // Nodes and partitions.
  const gpusPerNodeMax = cluster.nodes.reduce((max, n) => Math.max(max, n.gpus.length), 0);
  const partitions = new Map<string, Partition>();
  const classIds = new Map<string, number>();
  const classIdOf = (key: string): number => {
    let id = classIds.get(key);
    if (id === undefined) classIds.set(key, (id = classIds.size));
    return id;
  };
  const sortedNodes = [...cluster.nodes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const info of sortedNodes) {
    const key = partitioned ? (info.labels.team ?? '') : '*';
    let partition = partitions.get(key);
    if (!partition) partitions.set(key, (partition = { name: key, nodes: [], totalGpus: 0, freeHistogram: new Array<number>(gpusPerNodeMax + 1).fill(0), queues: new Map(), pending: 0, running: new Map(), runningJobs: undefined, allocations: [], allocationStarts: new Int32Array(0), changedNodes: [], nodeByName: new Map(), dirty: false }));
    const node: SimNode = {
      info,
      holder: new Int32Array(info.gpus.length).fill(-1),
      share: new Float64Array(info.gpus.length),
      sharers: [],
      fragmented: 0,
      positionOfIndex: new Map(info.gpus.map((g, i) => [g.index, i])),
      freeCount: info.gpus.length,
      classId: classIdOf(`${info.cpus}/${info.memoryMiB}/${info.gpus.map((g) => `${g.type}:${g.memoryMiB}:${g.nvlinkPeers.join('.')}`).join(',')}`),
      allocations: undefined,
      position: partition.nodes.length,
      changed: false,
    };
    partition.nodes.push(node);
    partition.nodeByName.set(info.name, node);
    partition.totalGpus += info.gpus.length;
    partition.freeHistogram[node.freeCount] = (partition.freeHistogram[node.freeCount] ?? 0) + 1;
  }
  for (const partition of partitions.values()) partition.allocationStarts = new Int32Array(partition.nodes.length + 1);
  const totalGpus = cluster.nodes.reduce((sum, n) => sum + n.gpus.length, 0);
  const partitionNodeInfos = new Map<Partition, NodeInfo[]>([...partitions.values()].map((p) => [p, p.nodes.map((n) => n.info)]));

  // Jobs.
  const teamNames: string[] = [];
  const teamIndex = new Map<string, number>();
  const teamOf = (name: string): number => {
    let i = teamIndex.get(name);
    if (i === undefined) {
      i = teamNames.length;
      teamNames.push(name);
      teamIndex.set(name, i);
    }
    return i;
  };
  const n = trace.length;
  const outcomes: JobOutcomes = {
    submitS: new Float64Array(n),
    durationS: new Float64Array(n),
    firstStartS: new Float64Array(n).fill(NaN),
    finishS: new Float64Array(n).fill(NaN),
    gpus: new Float64Array(n),
    team: new Uint16Array(n),
    unplaceable: new Uint8Array(n).fill(255),
    preemptions: new Uint16Array(n),
    attainedGpuS: new Float64Array(n),
  };
  /** Per job, by index: its work and its current run, in seconds. */
  const work = {
    /** Work checkpointed so far. */
    doneS: new Float64Array(n),
    /** When the current run started. */
    runStartS: new Float64Array(n),
    /** Restart overhead of the current run. */
    overheadS: new Float64Array(n),
  };
  const specCache = new Map<string, JobSpec>();
  // One string per distinct shape, shared by its jobs, rather than one per job kept as long as the run.
  const shapeKeys = new Map<string, string>();
  const internShapeKey = (key: string): string => {
    const known = shapeKeys.get(key);
    if (known !== undefined) return known;
    shapeKeys.set(key, key);
    return key;
  };
  const feasibility = new Map<string, boolean>();
  const jobs: SimJob[] = new Array<SimJob>(n);
  let roundedUpJobs = 0;
  for (let i = 0; i < n; i++) {
    const t = trace[i] as TraceJob;
    const team = t.queue === '' ? 'default' : t.queue;
    const shape = computeGangShape(t.numGpus, gpusPerNodeMax);
    if (shape.numNodes * shape.gpusPerNode !== t.numGpus) roundedUpJobs++;
    const fraction = shape.numNodes === 1 && shape.gpusPerNode === 1 ? t.gpuFraction : undefined;
    const priority = t.priority ?? 50;
    const specKey = `${team}|${shape.gpusPerNode}|${shape.numNodes}|${t.gpuType}|${fraction ?? ''}|${priority}${t.scenario?.spec ? `|${i}` : ''}`;
    let spec = specCache.get(specKey);
    if (!spec) {
      spec = {
        name: 'trace-job',
        team,
        priority,
        resources: { gpus: { count: shape.gpusPerNode, types: t.gpuType === '' ? [] : [t.gpuType], ...(fraction !== undefined ? { fraction } : {}) } },
        numNodes: shape.numNodes,
        run: { kind: 'argv', argv: ['trace-job'] },
        env: {},
        ...t.scenario?.spec,
      };
      specCache.set(specKey, spec);
    }
    const partition = partitioned ? (t.queue === '' ? undefined : partitions.get(t.queue)) : partitions.get('*');
    outcomes.submitS[i] = t.submitS;
    outcomes.durationS[i] = t.durationS;
    outcomes.gpus[i] = fraction ?? shape.numNodes * shape.gpusPerNode;
    outcomes.team[i] = teamOf(partitioned ? (t.queue === '' ? '(none)' : t.queue) : team);
    let reason: UnplaceableReason | undefined;
    if (partitioned && t.queue === '') reason = 'no_team';
    // The live server refuses such a job at submit (422 unknown_team): here it never runs either.
    else if (!isTeamAdmitted(cluster.teams, team)) reason = 'team_without_capacity';
    else if (!partition || partition.totalGpus === 0) reason = partitioned ? 'team_without_capacity' : 'never_fits';
    else {
      const feasibilityKey = `${partition.name}|${specKey}`;
      let ok = feasibility.get(feasibilityKey);
      if (ok === undefined) feasibility.set(feasibilityKey, (ok = checkFeasibility(partitionNodeInfos.get(partition) ?? [], spec).ok));
      if (!ok) reason = partitioned ? 'larger_than_team' : 'never_fits';
    }
    if (reason !== undefined) outcomes.unplaceable[i] = UNPLACEABLE_REASONS.indexOf(reason);
    jobs[i] = {
      job: { id: String(i + 1), spec, status: 'pending', createdAt: t.submitS * 1000 },
      partition,
      shapeKey: internShapeKey(`${shape.gpusPerNode}x${shape.numNodes}|${t.gpuType}|${fraction ?? ''}`),
      state: reason === undefined ? State.Waiting : State.Unplaceable,
      epoch: 0,
      placement: NOT_PLACED,
    };
  }

  const events = new EventQueue();
  /** When a running attempt stops reporting progress (a scripted hang), by job index: only such attempts are here. */
  const hangsAtS = new Map<number, number>();
  let remaining = 0;
  for (let i = 0; i < n; i++) {
    if ((jobs[i] as SimJob).state === State.Waiting) {
      events.push({ kind: 'arrival', time: outcomes.submitS[i] as number, job: i });
      remaining++;
      const cancelAtS = trace[i]?.scenario?.cancelAtS;
      if (cancelAtS !== undefined) events.push({ kind: 'cancel', time: Math.max(cancelAtS, outcomes.submitS[i] as number), job: i });
    }
  }
  const total = n;
  const unplaceableCount = n - remaining;
  if (cycleIntervalS > 0 && remaining > 0) events.push({ kind: 'tick', time: (trace[0]?.submitS ?? 0) + cycleIntervalS });

  // Accounting.
  let usedGpuS = 0;
  let workGpuS = 0;
  let lostGpuS = 0;
  let preemptions = 0;
  let busyGpus = 0;
  let pendingJobs = 0;
  let busyGpuSFromNodes = 0;
  let lastT = trace[0]?.submitS ?? 0;
  let cycles = 0;
  let cyclesSkipped = 0;
  const planViolations: SimPlanViolation[] = [];
  let version = 0;
  /**
   * One per partition for the whole run, as the live server keeps one for its cluster (see the scheduler's
   * cycle-cache.ts): each partition's cycles see its own nodes and queue, which one cache shared by all would see
   * change completely from one cycle to the next.
   */
  const cycleCaches = new Map<Partition, CycleCache>();
  let doneCount = 0;
  let pruning = policy.pruning;
  const tl = { t: [] as number[], busy: [] as number[], pending: [] as number[], frag: [] as number[] };
  // Extra inputs, by what the profile reads (compileProfile validated it already in resolvePolicies or throws here).
  const compiled = compileProfile(profile);
  const needsOracle = compiled.oracle;
  // LAS thresholds of the queue sort: `las`, or fair share ordering each team by least attained service.
  const lasThresholdsGpuS = compiled.las?.queueThresholdsGpuS ?? (compiled.fairShare?.withinTeam === 'least-attained' ? compiled.fairShare.lasThresholdsGpuS : undefined);
  // A cycle in which no waiting job fits the free GPUs places nothing; it can still preempt. `order-preemption` may
  // preempt whenever something waits. `preemption` needs a running job of lower priority (trace files give every
  // job the same priority, so never; a scenario written by hand may not) or quota reclaim (a victim of another team
  // that borrows: impossible when each partition is one team's nodes, or without quotas).
  const priorities = new Set(trace.map((t) => t.priority ?? 50));
  const mayPreempt =
    compiled.orderPreemption !== undefined ||
    (compiled.preemption !== undefined && compiled.preemption.priority && priorities.size > 1) ||
    (compiled.preemption !== undefined && compiled.preemption.reclaim && compiled.quota && !partitioned && cluster.teams.some((t) => Object.keys(t.nominal).length > 0));
  const skipIdle = (options.skipIdleCycles ?? true) && !mayPreempt;

  // Fragmentation (traces with fractional jobs only): the request mix of the trace's placeable single-node jobs.
  const requestCounts = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const sj = jobs[i] as SimJob;
    if (sj.state !== State.Waiting || sj.job.spec.numNodes !== 1) continue;
    const g = sj.job.spec.resources.gpus;
    const demand = g.fraction ?? g.count;
    if (demand > 0) requestCounts.set(demand, (requestCounts.get(demand) ?? 0) + 1);
  }
  const measureFragmentation = trace.some((t) => t.gpuFraction !== undefined);
  const requestMix = computeRequestMix(requestCounts);
  let fragmentedGpus = 0;
  const updateFragmentation = (node: SimNode): void => {
    if (!measureFragmentation) return;
    const value = computeNodeFragmentation(node.holder, node.share, requestMix);
    fragmentedGpus += value - node.fragmented;
    node.fragmented = value;
  };
  if (measureFragmentation) for (const partition of partitions.values()) for (const node of partition.nodes) updateFragmentation(node);
  let fragmentedGpuS = 0;
  let freeGpuS = 0;
  // Attained service as the cycle reads it: the control core's (its ended attempts and its current run), in GPU-seconds.
  const attainedOf = (index: number, now: number): number => lifecycle.attainedServiceGpuMsOf((jobs[index] as SimJob).job, now * 1000) / 1000;
  /** Pushes the event for the next LAS threshold a running job's attained service will cross, if any. */
  const scheduleServiceEvent = (index: number, now: number): void => {
    if (!lasThresholdsGpuS) return;
    const attained = attainedOf(index, now);
    const gpus = outcomes.gpus[index] as number;
    const next = lasThresholdsGpuS.find((threshold) => threshold > attained + 1e-6);
    if (next === undefined || gpus === 0) return;
    const sj = jobs[index] as SimJob;
    events.push({ kind: 'service', time: now + (next - attained) / gpus, job: index, epoch: sj.epoch });
  };
  // Fair-share history: GPUs held per team now, fed to the core's usage ledger (the server's) at every event time.
  const teamBusy = new Map<string, number>();
  lifecycle.usage.advance(lastT, teamBusy);
  const advanceUsage = (now: number): void => lifecycle.usage.advance(now, teamBusy);

  const enqueue = (index: number): void => {
    const sj = jobs[index] as SimJob;
    const partition = sj.partition as Partition;
    let queue = partition.queues.get(sj.shapeKey);
    if (!queue) {
      const spec = sj.job.spec;
      partition.queues.set(sj.shapeKey, (queue = { items: [], head: 0, gpusPerNode: spec.resources.gpus.count, numNodes: spec.numNodes, fractional: spec.resources.gpus.fraction !== undefined }));
    }
    // Arrivals come in queue order (ids increase with submission); a preempted job goes back to its place.
    const items = queue.items;
    let at = items.length;
    if (at > queue.head && compareQueueOrder((jobs[items[at - 1] as number] as SimJob).job, sj.job) > 0) {
      let lo = queue.head;
      let hi = items.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (compareQueueOrder((jobs[items[mid] as number] as SimJob).job, sj.job) < 0) lo = mid + 1;
        else hi = mid;
      }
      at = lo;
    }
    items.splice(at, 0, index);
    sj.state = State.Pending;
    partition.pending++;
    pendingJobs++;
    partition.dirty = true;
  };

  const setFree = (partition: Partition, node: SimNode, delta: number): void => {
    const h = partition.freeHistogram;
    h[node.freeCount] = (h[node.freeCount] ?? 0) - 1;
    node.freeCount += delta;
    h[node.freeCount] = (h[node.freeCount] ?? 0) + 1;
  };

  const release = (index: number, now: number): number => {
    const sj = jobs[index] as SimJob;
    const partition = sj.partition as Partition;
    let gpus = 0;
    for (const { node, positions, fraction } of sj.placement) {
      if (fraction !== undefined) {
        const p = positions[0] as number;
        const left = (node.share[p] as number) - fraction;
        node.share[p] = left < GPU_SHARE_EPSILON ? 0 : left;
        node.sharers = node.sharers.filter((x) => x.job !== index);
        allocationsChanged(partition, node);
        if (node.share[p] === 0) setFree(partition, node, 1);
        gpus += fraction;
      } else {
        for (const p of positions) node.holder[p] = -1;
        allocationsChanged(partition, node);
        setFree(partition, node, positions.length);
        gpus += positions.length;
      }
      updateFragmentation(node);
    }
    sj.placement = NOT_PLACED;
    partition.running.delete(index);
    partition.runningJobs = undefined;
    teamBusy.set(sj.job.spec.team, (teamBusy.get(sj.job.spec.team) ?? 0) - gpus);
    busyGpus -= gpus;
    const ranS = now - (work.runStartS[index] as number);
    usedGpuS += ranS * gpus;
    outcomes.attainedGpuS[index] = (outcomes.attainedGpuS[index] as number) + ranS * gpus;
    partition.dirty = true;
    version++;
    return gpus;
  };

  /** Whether some waiting gang shape has enough nodes with enough free GPUs (necessary for any placement). */
  const anyShapeFits = (partition: Partition): boolean => {
    const h = partition.freeHistogram;
    for (const queue of partition.queues.values()) {
      if (queue.items.length === queue.head) continue;
      if (queue.gpusPerNode === 0 || queue.fractional) return true;
      let nodes = 0;
      for (let c = queue.gpusPerNode; c < h.length; c++) nodes += h[c] ?? 0;
      if (nodes >= queue.numNodes) return true;
    }
    return false;
  };

  /** A node's allocations: whole GPUs by position, then shares in the order they were placed. */
  const allocationsOf = (node: SimNode): GpuAllocation[] => {
    if (node.allocations) return node.allocations;
    const allocations: GpuAllocation[] = [];
    for (let p = 0; p < node.holder.length; p++) {
      const holder = node.holder[p] as number;
      if (holder >= 0) allocations.push({ jobId: (jobs[holder] as SimJob).job.id, node: node.info.name, gpuIndex: (node.info.gpus[p] as NodeInfo['gpus'][number]).index });
    }
    for (const x of node.sharers) {
      const allocation: GpuAllocation = { jobId: (jobs[x.job] as SimJob).job.id, node: node.info.name, gpuIndex: (node.info.gpus[x.position] as NodeInfo['gpus'][number]).index, fraction: x.fraction };
      if (x.memoryMiB !== undefined) allocation.memoryMiB = x.memoryMiB;
      allocations.push(allocation);
    }
    return (node.allocations = allocations);
  };

  const allocationsChanged = (partition: Partition, node: SimNode): void => {
    node.allocations = undefined;
    if (node.changed) return;
    node.changed = true;
    partition.changedNodes.push(node.position);
  };

  /**
   * The allocations of all the partition's nodes, node by node: last time's array again when no node changed, else a
   * new one made of last time's runs of unchanged nodes and the changed nodes' allocations (an array handed to a
   * cycle is never changed afterwards).
   */
  const partitionAllocations = (partition: Partition): GpuAllocation[] => {
    const changed = partition.changedNodes;
    if (changed.length === 0) return partition.allocations;
    changed.sort((a, b) => a - b);
    const { nodes, allocations: before, allocationStarts: starts } = partition;
    const parts: GpuAllocation[][] = [];
    const nextStarts = new Int32Array(nodes.length + 1);
    let from = 0;
    let at = 0;
    for (const position of changed) {
      // The unchanged nodes before this one keep their allocations, shifted.
      const shift = at - (starts[from] as number);
      for (let p = from; p < position; p++) nextStarts[p] = (starts[p] as number) + shift;
      if ((starts[position] as number) > (starts[from] as number)) parts.push(before.slice(starts[from], starts[position]));
      at += (starts[position] as number) - (starts[from] as number);
      const node = nodes[position] as SimNode;
      node.changed = false;
      const own = allocationsOf(node);
      nextStarts[position] = at;
      parts.push(own);
      at += own.length;
      from = position + 1;
    }
    const shift = at - (starts[from] as number);
    for (let p = from; p <= nodes.length; p++) nextStarts[p] = (starts[p] as number) + shift;
    parts.push(before.slice(starts[from], starts[nodes.length]));
    changed.length = 0;
    partition.allocations = ([] as GpuAllocation[]).concat(...parts);
    partition.allocationStarts = nextStarts;
    return partition.allocations;
  };

  let bucketCounts = new Int32Array(0);
  const runPartitionCycle = (partition: Partition, now: number): void => {
    partition.dirty = false;
    if (partition.pending === 0) return;
    // Choose what the cycle sees.
    const pending: Job[] = [];
    let nodeInfos: NodeInfo[];
    let includedNodes: SimNode[];
    if (pruning === 'greedy-best-fit') {
      let nodeRanks = 0;
      let cpuOnly = false;
      for (const queue of partition.queues.values()) {
        const live = queue.items.length - queue.head;
        if (live === 0) continue;
        let cap: number;
        if (queue.gpusPerNode === 0 || queue.fractional) {
          // CPU-only and fractional jobs: every node may matter (shared GPUs are not interchangeable by free count).
          cap = live;
          cpuOnly = true;
        } else {
          let slots = 0;
          const h = partition.freeHistogram;
          for (let c = queue.gpusPerNode; c < h.length; c++) slots += (h[c] ?? 0) * Math.floor(c / queue.gpusPerNode);
          cap = Math.floor(slots / queue.numNodes);
        }
        const take = Math.min(cap, live);
        for (let k = 0; k < take; k++) {
          // A restart waiting out its backoff is not a candidate yet (the core's eligibility rule).
          const job = (jobs[queue.items[queue.head + k] as number] as SimJob).job;
          if (isEligible(job, now * 1000)) pending.push(job);
        }
        nodeRanks += take * queue.numNodes;
      }
      if (pending.length === 0) {
        cyclesSkipped++;
        return;
      }
      includedNodes = [];
      if (cpuOnly) includedNodes = partition.nodes;
      else {
        // Nodes taken per (class, free GPUs) bucket, reused across cycles.
        const width = gpusPerNodeMax + 1;
        if (bucketCounts.length < classIds.size * width) bucketCounts = new Int32Array(classIds.size * width);
        else bucketCounts.fill(0);
        for (const node of partition.nodes) {
          if (node.freeCount === 0) continue;
          const bucket = node.classId * width + node.freeCount;
          const count = bucketCounts[bucket] as number;
          if (count >= nodeRanks) continue;
          bucketCounts[bucket] = count + 1;
          includedNodes.push(node);
        }
      }
      nodeInfos = includedNodes.map((node) => node.info);
    } else {
      if (skipIdle && !anyShapeFits(partition)) {
        cyclesSkipped++;
        return;
      }
      for (const queue of partition.queues.values()) {
        for (let k = queue.head; k < queue.items.length; k++) {
          const job = (jobs[queue.items[k] as number] as SimJob).job;
          if (job.notBefore === undefined || isEligible(job, now * 1000)) pending.push(job);
        }
      }
      includedNodes = partition.nodes;
      nodeInfos = partitionNodeInfos.get(partition) ?? [];
    }
    let allocations: GpuAllocation[];
    if (includedNodes === partition.nodes) allocations = partitionAllocations(partition);
    else {
      allocations = [];
      for (const node of includedNodes) {
        if (node.freeCount === node.holder.length) continue;
        for (const allocation of allocationsOf(node)) allocations.push(allocation);
      }
    }
    const snapshot: ClusterSnapshot = { version, nodes: nodeInfos, allocations };
    let cache = cycleCaches.get(partition);
    if (!cache) cycleCaches.set(partition, (cache = new CycleCache()));
    const input: CycleInput = { snapshot, pending, now: now * 1000, seed, cache };
    if (pruning === 'none') {
      // Profiles that look at running jobs, quotas and fair share get them; the pruned path serves only profiles
      // that read none of these.
      input.running = partition.runningJobs ??= [...partition.running.values()];
      input.teams = cluster.teams;
      advanceUsage(now);
      input.usage = lifecycle.usage.usage(now);
      input.durationHistory = lifecycle.durationHistory;
      input.defaultGraceMs = lifecycle.settings.defaultGraceMs;
      if (needsOracle || lasThresholdsGpuS) {
        const byId = new Map<string, number>();
        const add = (index: number): void => {
          const sj = jobs[index] as SimJob;
          if (needsOracle) {
            // Remaining work; a running job's current run counts from the end of its restart overhead.
            const ranS = sj.state === State.Running || sj.state === State.Stopping ? Math.max(0, now - (work.runStartS[index] as number) - (work.overheadS[index] as number)) : 0;
            byId.set(sj.job.id, Math.max(0, (outcomes.durationS[index] as number) - (work.doneS[index] as number) - ranS) * 1000);
          } else byId.set(sj.job.id, lifecycle.attainedServiceGpuMsOf(sj.job, now * 1000));
        };
        for (const job of pending) add(Number(job.id) - 1);
        for (const index of partition.running.keys()) add(index);
        if (needsOracle) input.oracleRemainingMs = byId;
        else input.attainedServiceGpuMs = byId;
      }
    }
    cycles++;
    const { plan } = runCycle(input, profile);
    if (pruning === 'greedy-best-fit' && (plan.preemptions.length > 0 || plan.reservations.length > 0)) {
      // The profile preempts or reserves: pruning is no longer exact. Redo this cycle, and the rest, unpruned.
      pruning = 'none';
      partition.dirty = true;
      runPartitionCycle(partition, now);
      return;
    }
    applyPlan(partition, snapshot, plan, pending, input, now);
  };

  /**
   * What `verifyPlan` needs of the snapshot: without preemptions and quotas to check it reads only the allocations
   * of the nodes the plan places on, so those alone are given (the same checks, the same answer, without a pass over
   * every allocation of the partition).
   */
  const verifiedPart = (partition: Partition, snapshot: ClusterSnapshot, plan: Plan, input: CycleInput): ClusterSnapshot => {
    if (plan.preemptions.length > 0 || (input.teams ?? []).length > 0) return snapshot;
    const allocations: GpuAllocation[] = [];
    const named = new Set<string>();
    for (const placement of plan.placements) {
      for (const placed of placement.nodes) {
        const node = partition.nodeByName.get(placed.node);
        if (named.has(placed.node) || !node) continue;
        named.add(placed.node);
        for (const allocation of allocationsOf(node)) allocations.push(allocation);
      }
    }
    return { version: snapshot.version, nodes: snapshot.nodes, allocations };
  };

  const applyPlan = (partition: Partition, snapshot: ClusterSnapshot, proposed: Plan, pending: readonly Job[], input: CycleInput, now: number): void => {
    const specs = new Map<string, JobSpec>();
    for (const job of pending) specs.set(job.id, job.spec);
    // As the live server: the core screens the plan (the faulty part of an invalid plan, a scheduler bug, is dropped
    // and recorded, the rest applied) and stops the victims not already being stopped.
    const applied = applyCycleResult(lifecycle, { snapshot: verifiedPart(partition, snapshot, proposed, input), plan: proposed, specs, running: input.running, teams: input.teams, now: now * 1000 });
    for (const v of applied.violations) {
      const traceJob = trace[Number(v.jobId) - 1];
      planViolations.push({ timeS: now, traceId: traceJob?.traceId ?? v.jobId, code: v.code, message: v.message });
    }
    const byName = partition.nodeByName;
    for (const placement of applied.placements) {
      const index = Number(placement.jobId) - 1;
      const sj = jobs[index] as SimJob;
      if (sj.state !== State.Pending) throw new Error(`policy ${policy.name} placed job ${placement.jobId}, which is not pending`);
      removeFromQueue(index);
      let gpus = 0;
      const held: Array<JobPlacement[number]> = [];
      for (const placed of placement.nodes) {
        const node = byName.get(placed.node) as SimNode;
        const positions = placed.gpuIndices.map((g) => node.positionOfIndex.get(g) as number);
        if (placed.gpuFraction !== undefined) {
          const p = positions[0] as number;
          if (node.share[p] === 0) setFree(partition, node, -1);
          node.share[p] = (node.share[p] as number) + placed.gpuFraction;
          node.sharers.push({ job: index, position: p, fraction: placed.gpuFraction, memoryMiB: placed.gpuMemoryMiB });
          allocationsChanged(partition, node);
          gpus += placed.gpuFraction;
          held.push({ node, positions, fraction: placed.gpuFraction });
        } else {
          for (const p of positions) node.holder[p] = index;
          allocationsChanged(partition, node);
          setFree(partition, node, -positions.length);
          gpus += positions.length;
          held.push({ node, positions });
        }
        updateFragmentation(node);
      }
      sj.placement = held;
      busyGpus += gpus;
      // A new job object: one given to a cycle is not edited afterwards (the scheduler's caches rely on it).
      sj.job = { ...sj.job, status: 'running', startedAt: now * 1000, attempt: (sj.job.attempt ?? 0) + 1 };
      partition.running.set(index, sj.job);
      partition.runningJobs = undefined;
      teamBusy.set(sj.job.spec.team, (teamBusy.get(sj.job.spec.team) ?? 0) + gpus);
      version++;
      sj.state = State.Running;
      const doneS = work.doneS[index] as number;
      const overheadS = doneS > 0 || (outcomes.preemptions[index] ?? 0) > 0 ? restartOverheadS : 0;
      work.runStartS[index] = now;
      work.overheadS[index] = overheadS;
      if (Number.isNaN(outcomes.firstStartS[index] as number)) outcomes.firstStartS[index] = now;
      sj.epoch++;
      const attempt = sj.job.attempt ?? 1;
      const script = (trace[index] as TraceJob).scenario?.attempts?.[attempt - 1];
      if (script && 'hang' in script) hangsAtS.set(index, now + overheadS + script.hang.afterS);
      else hangsAtS.delete(index);
      // A hung attempt makes no progress: it never completes its work, it is only stopped.
      if (!hangsAtS.has(index)) events.push({ kind: 'completion', time: now + overheadS + ((outcomes.durationS[index] as number) - doneS), job: index, epoch: sj.epoch });
      if (script && 'fail' in script) events.push({ kind: 'rank_failure', time: now + overheadS + script.fail.afterS, job: index, epoch: sj.epoch, exitCode: script.fail.exitCode });
      scheduleServiceEvent(index, now);
      options.onDecision?.({ kind: 'start', timeS: now, traceId: (trace[index] as TraceJob).traceId, nodes: placement.nodes });
      // The simulated backend starts every rank at once: the ranks the live server launches (model's
      // computeTasksForPlacement, a process per GPU), so that a failed rank has the others to stop, as live.
      const ranks = computeTasksForPlacement(sj.job.spec, placement);
      carryOut(lifecycle.handle({ kind: 'placed', job: sj.job, ranks }, now * 1000), now);
    }
    if (applied.commands.length > 0) carryOut(applied.commands, now, new Map(applied.preempted.map((p) => [p.jobId, p.reason])));
  };

  /**
   * Carries out the core's commands on the simulated cluster: `launch` starts the ranks at once, `signal_ranks`
   * stops the job (gone at its SIGKILL deadline, or at once if it exits on the signal), `finish` and `requeue` end
   * its attempt. What the server records (`record_*`, `append_event`) the simulator keeps no log of.
   */
  const carryOut = (commands: readonly LifecycleCommand[], now: number, preemptionReasons?: ReadonlyMap<string, string>): void => {
    let cause: StopCause | undefined;
    for (const command of commands) {
      switch (command.kind) {
        case 'launch':
          carryOut(lifecycle.handle({ kind: 'ranks_started', jobId: command.jobId, attempt: command.attempt, at: now * 1000 }, now * 1000), now);
          break;
        case 'record_stop':
          cause = command.stop.cause;
          break;
        case 'signal_ranks':
          stopJob(Number(command.jobId) - 1, cause, now, preemptionReasons);
          break;
        case 'finish':
          endJob(Number(command.jobId) - 1, command.end.status, now);
          break;
        case 'requeue':
          requeueJob(Number(command.jobId) - 1, command.options, now);
          break;
        case 'wake_at':
          events.push(command.why === 'backoff' && command.jobId !== undefined ? { kind: 'backoff_over', time: command.at / 1000, job: Number(command.jobId) - 1 } : { kind: 'lifecycle_tick', time: command.at / 1000 });
          break;
        case 'record_rank_exit':
        case 'record_ranks_lost':
        case 'append_event':
          break;
      }
    }
  };

  /** A running job is being stopped: marked for the cycles (a victim, with the job it makes room for), gone at its deadline. */
  const stopJob = (index: number, cause: StopCause | undefined, now: number, preemptionReasons: ReadonlyMap<string, string> | undefined): void => {
    const sj = jobs[index] as SimJob;
    if (sj.state !== State.Running) return;
    const partition = sj.partition as Partition;
    sj.state = State.Stopping;
    sj.epoch++;
    const traceId = (trace[index] as TraceJob).traceId;
    if (cause?.kind === 'preempted') {
      preemptions++;
      outcomes.preemptions[index] = (outcomes.preemptions[index] ?? 0) + 1;
      const forTraceId = cause.forJobId !== undefined ? trace[Number(cause.forJobId) - 1]?.traceId : undefined;
      options.onDecision?.({ kind: 'preempt', timeS: now, traceId, reason: preemptionReasons?.get(sj.job.id) ?? cause.message, ...(forTraceId !== undefined ? { forTraceId } : {}) });
    } else if (cause) options.onDecision?.({ kind: 'stop', timeS: now, traceId, cause: cause.kind });
    const stopping = lifecycle.stoppingMarkerOf(sj.job.id);
    if (stopping) {
      partition.running.set(index, { ...sj.job, stopping });
      partition.runningJobs = undefined;
      partition.dirty = true;
    }
    const graceS = lifecycle.stopGraceOf(sj.job).graceMs / 1000;
    events.push({ kind: 'stopped', time: (trace[index] as TraceJob).scenario?.exitsOnSignal ? now : now + graceS, job: index, epoch: sj.epoch });
  };

  /** Every rank of the job exits now (with `exitCode`, or 0 on completion); the core decides what follows. */
  const ranksExit = (index: number, exitCode: number, now: number): void => {
    const sj = jobs[index] as SimJob;
    const attempt = sj.job.attempt ?? 1;
    const ranks = lifecycle.rankCountOf(sj.job.id);
    for (let rank = 0; rank < ranks; rank++) {
      carryOut(lifecycle.handle({ kind: 'rank_exited', jobId: sj.job.id, attempt, rank, exitCode, lost: false, at: now * 1000 }, now * 1000), now);
    }
  };

  /** The job's attempt is over and so is the job. */
  const endJob = (index: number, status: 'succeeded' | 'failed' | 'cancelled', now: number): void => {
    const sj = jobs[index] as SimJob;
    if (sj.state === State.Pending) {
      removeFromQueue(index);
    } else if (sj.state === State.Running || sj.state === State.Stopping) {
      const runStartS = work.runStartS[index] as number;
      const gpus = release(index, now);
      if (status === 'succeeded') {
        workGpuS += (outcomes.durationS[index] as number) * gpus;
        lostGpuS += (work.overheadS[index] as number) * gpus;
        work.doneS[index] = outcomes.durationS[index] as number;
      } else lostGpuS += (now - runStartS) * gpus;
    }
    sj.state = State.Done;
    sj.job = { ...sj.job, status };
    outcomes.finishS[index] = now;
    doneCount++;
    touched.add(sj.partition as Partition);
    options.onDecision?.({ kind: 'finish', timeS: now, traceId: (trace[index] as TraceJob).traceId, status });
  };

  /** The job's attempt is over; it goes back to its place in the queue with the work it checkpointed. */
  const requeueJob = (index: number, requeue: { event?: 'requeued' | 'restarting' | 'preempted'; countRestart?: boolean; notBefore?: number }, now: number): void => {
    const sj = jobs[index] as SimJob;
    const duration = outcomes.durationS[index] as number;
    const doneS = work.doneS[index] as number;
    const runStartS = work.runStartS[index] as number;
    const ranS = Math.min(Math.max(0, now - runStartS - (work.overheadS[index] as number)), duration - doneS);
    const reached = doneS + ranS;
    // A preempted job checkpoints when signalled (interval 0) or keeps its last periodic checkpoint; a failed or hung
    // attempt is not asked: it keeps only its last periodic checkpoint.
    const periodic = checkpointIntervalS > 0 ? Math.max(doneS, Math.floor(reached / checkpointIntervalS) * checkpointIntervalS) : doneS;
    const kept = checkpointIntervalS === 0 && requeue.event === 'preempted' ? reached : periodic;
    const gpus = release(index, now);
    const held = (now - runStartS) * gpus;
    lostGpuS += held - (kept - doneS) * gpus;
    work.doneS[index] = kept;
    const { notBefore: _previous, ...job } = sj.job;
    sj.job = { ...job, status: 'pending', ...(requeue.countRestart ? { restarts: (sj.job.restarts ?? 0) + 1 } : {}), ...(requeue.notBefore !== undefined ? { notBefore: requeue.notBefore } : {}) };
    enqueue(index);
    touched.add(sj.partition as Partition);
    options.onDecision?.({ kind: 'requeue', timeS: now, traceId: (trace[index] as TraceJob).traceId, event: requeue.event ?? 'requeued' });
  };

  const removeFromQueue = (index: number): void => {
    const sj = jobs[index] as SimJob;
    const partition = sj.partition as Partition;
    const queue = partition.queues.get(sj.shapeKey) as ShapeQueue;
    const items = queue.items;
    if (items[queue.head] === index) {
      queue.head++;
      if (queue.head > 1024 && queue.head * 2 > items.length) {
        items.splice(0, queue.head);
        queue.head = 0;
      }
    } else {
      const at = items.indexOf(index, queue.head);
      items.splice(at, 1);
    }
    partition.pending--;
    pendingJobs--;
  };

  // The loop.
  const progressEvery = Math.max(1, Math.floor(total / 200));
  let nextProgress = progressEvery;
  options.onProgress?.(unplaceableCount, total);
  const touched = new Set<Partition>();
  while (events.size > 0) {
    const now = events.peekTime() as number;
    busyGpuSFromNodes += busyGpus * (now - lastT);
    if (doneCount + unplaceableCount < total || busyGpus > 0) {
      fragmentedGpuS += fragmentedGpus * (now - lastT);
      freeGpuS += (totalGpus - busyGpus) * (now - lastT);
    }
    lastT = now;
    advanceUsage(now);
    while (events.peekTime() === now) {
      const event = events.pop();
      if (!event) break;
      switch (event.kind) {
        case 'arrival': {
          const sj = jobs[event.job] as SimJob;
          enqueue(event.job);
          touched.add(sj.partition as Partition);
          break;
        }
        case 'completion': {
          const sj = jobs[event.job] as SimJob;
          if (sj.epoch !== event.epoch || sj.state !== State.Running) break;
          // Its work is done: every rank exits 0, and the core finishes the job.
          ranksExit(event.job, 0, now);
          break;
        }
        case 'stopped': {
          const sj = jobs[event.job] as SimJob;
          if (sj.epoch !== event.epoch || sj.state !== State.Stopping) break;
          // It checkpointed within its grace and exited on the signal (143): the core decides what follows.
          ranksExit(event.job, 143, now);
          break;
        }
        case 'rank_failure': {
          const sj = jobs[event.job] as SimJob;
          if (sj.epoch !== event.epoch || sj.state !== State.Running) break;
          carryOut(lifecycle.handle({ kind: 'rank_exited', jobId: sj.job.id, attempt: sj.job.attempt ?? 1, rank: 0, exitCode: event.exitCode, lost: false, at: now * 1000 }, now * 1000), now);
          break;
        }
        case 'cancel': {
          const sj = jobs[event.job] as SimJob;
          if (sj.state === State.Pending) endJob(event.job, 'cancelled', now);
          else if (sj.state === State.Running || sj.state === State.Stopping) {
            sj.job = { ...sj.job, cancelRequestedAt: now * 1000 };
            carryOut(lifecycle.handle({ kind: 'cancel_requested', jobId: sj.job.id }, now * 1000), now);
          }
          break;
        }
        case 'lifecycle_tick': {
          // The simulated jobs report progress continuously, until a scripted hang: what the core's hang timer reads.
          for (const partition of partitions.values()) {
            for (const index of partition.running.keys()) {
              const sj = jobs[index] as SimJob;
              if (sj.state !== State.Running || sj.job.spec.hangTimeoutMs === undefined) continue;
              const at = Math.min(now, hangsAtS.get(index) ?? now);
              lifecycle.handle({ kind: 'progress', jobId: sj.job.id, attempt: sj.job.attempt ?? 1, at: at * 1000 }, now * 1000);
            }
          }
          carryOut(lifecycle.handle({ kind: 'tick' }, now * 1000), now);
          break;
        }
        case 'backoff_over': {
          const sj = jobs[event.job] as SimJob;
          if (sj.state === State.Pending) touched.add(sj.partition as Partition);
          break;
        }
        case 'service': {
          const sj = jobs[event.job] as SimJob;
          if (sj.epoch !== event.epoch || sj.state !== State.Running) break;
          touched.add(sj.partition as Partition);
          scheduleServiceEvent(event.job, now);
          break;
        }
        case 'tick': {
          for (const partition of partitions.values()) if (partition.pending > 0) touched.add(partition);
          // Keep ticking while something can still change; pending jobs with nothing running and no events left
          // are reported below rather than ticked forever.
          if (doneCount + unplaceableCount < total && (events.size > 0 || busyGpus > 0)) events.push({ kind: 'tick', time: now + cycleIntervalS });
          break;
        }
      }
    }
    for (const partition of touched) runPartitionCycle(partition, now);
    touched.clear();
    const last = tl.t.length - 1;
    if (last >= 0 && tl.busy[last] === busyGpus && tl.pending[last] === pendingJobs && tl.frag[last] === fragmentedGpus) {
      // Unchanged: the step function needs no new point.
    } else {
      tl.t.push(now);
      tl.busy.push(busyGpus);
      tl.pending.push(pendingJobs);
      tl.frag.push(fragmentedGpus);
    }
    if (options.onProgress && doneCount + unplaceableCount >= nextProgress) {
      nextProgress += progressEvery;
      options.onProgress(doneCount + unplaceableCount, total);
    }
  }
  // Jobs still pending when events run out can never start (a bug in a profile, or a cluster that shrank).
  for (const partition of partitions.values()) {
    if (partition.pending > 0) {
      const dropped = planViolations.length > 0 ? ` (its plans had ${planViolations.length} invalid placements or preemptions, dropped; the first: ${planViolations[0]?.message})` : '';
      throw new Error(`policy ${policy.name}: ${partition.pending} jobs of ${partition.name === '*' ? 'the cluster' : `team ${partition.name}`} were left pending with nothing running${dropped}`);
    }
  }
  options.onProgress?.(total, total);

  return {
    policy: policy.name,
    profile: policy.profile.name,
    pruning: policy.pruning,
    partitioned,
    teams: teamNames,
    jobs: outcomes,
    totalGpus,
    usedGpuS,
    workGpuS,
    lostGpuS,
    preemptions,
    busyGpuSFromNodes,
    timeline: { t: Float64Array.from(tl.t), busyGpus: Float64Array.from(tl.busy), pendingJobs: Float64Array.from(tl.pending), fragmentedGpus: Float64Array.from(tl.frag) },
    fragmentedGpuS: measureFragmentation ? fragmentedGpuS : undefined,
    freeGpuS,
    cycles,
    cyclesSkipped,
    planViolations,
    roundedUpJobs,
    wallS: (performance.now() - started) / 1000,
  };
}

/** The trace's request mix: each distinct single-node demand (whole GPUs, or a share of one) with its probability. */
export function computeRequestMix(counts: ReadonlyMap<number, number>): Array<{ demand: number; p: number }> {
  let total = 0;
  for (const c of counts.values()) total += c;
  return [...counts].sort((a, b) => a[0] - b[0]).map(([demand, c]) => ({ demand, p: c / total }));
}

/**
 * Fragmented GPUs of one node against a request mix (the measure of "Beware of Fragmentation", ATC'23): for each
 * request, the free capacity the request cannot use here — all of the node's free capacity when the request does not
 * fit on the node, else the free capacity of the GPUs it cannot use (partly shared GPUs for a whole-GPU request,
 * shares smaller than the request for a fractional one) — weighted by the request's probability.
 * Whether a share fits a partly shared GPU is model's sharing rule (`shareFitsGpu`), on shares alone: GPU memory is
 * not part of this measure.
 *
 * @param holder whole-GPU holder per GPU position (-1: not whole-held)
 * @param share  fractional share held per GPU position
 */
export function computeNodeFragmentation(holder: Int32Array, share: Float64Array, mix: ReadonlyArray<{ demand: number; p: number }>): number {
  let freeTotal = 0;
  let wholeFree = 0;
  let partialFree = 0;
  let largestPartial = 0;
  for (let p = 0; p < holder.length; p++) {
    if ((holder[p] as number) >= 0) continue;
    const free = 1 - (share[p] as number);
    freeTotal += free;
    if (free >= 1 - GPU_SHARE_EPSILON) wholeFree++;
    else {
      partialFree += free;
      if (free > largestPartial) largestPartial = free;
    }
  }
  if (freeTotal <= GPU_SHARE_EPSILON) return 0;
  let expected = 0;
  for (const { demand, p } of mix) {
    let unusable: number;
    if (demand >= 1) unusable = wholeFree >= demand ? partialFree : freeTotal;
    else if (wholeFree > 0 || shareFitsGpu(1 - largestPartial, 0, demand, 0, Infinity)) {
      // Fits: only partly shared GPUs with less room than the request are lost to it.
      unusable = 0;
      for (let q = 0; q < holder.length; q++) {
        if ((holder[q] as number) >= 0) continue;
        const free = 1 - (share[q] as number);
        if (free < 1 - GPU_SHARE_EPSILON && !shareFitsGpu(share[q] as number, 0, demand, 0, Infinity)) unusable += free;
      }
    } else unusable = freeTotal;
    expected += p * unusable;
  }
  return expected;
}
