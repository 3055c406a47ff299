/**
 * One scheduling cycle: a pure function from a snapshot and a queue to a plan and a diagnosis for every job left
 * waiting. See README.md for the steps drawn out.
 */
import { decideStopGrace, formatApproxDuration, formatDuration, type ClusterSnapshot, type CycleResult, type Diagnosis, type GpuDevice, type Job, type PlacedNode, type Preemption, type Reservation, type TeamConfig, type TeamUsage } from '@tutti/model';
import { computeReservation } from './backfill/backfill.ts';
import { Diagnoser } from './diagnose/diagnose.ts';
import { createDurationEstimator, type DurationHistory } from './queue-sort/duration-estimate.ts';
import { CycleCache } from './perf/cycle-cache.ts';
import { computeFairShareQueue } from './queue-sort/fair-share.ts';
import { formatAnd, formatSome } from './cycle/format.ts';
import { computeCandidateTypes } from './filter/gpu-fit.ts';
import { computeLasOrder } from './queue-sort/las-sort.ts';
import { computeOracleOrder } from './queue-sort/oracle-sort.ts';
import { KIND_VARIANTS, OutcomeMemo } from './perf/outcome-memo.ts';
import { createQueueRank } from './preemption/order-preemption.ts';
import { computePlacement, type PlacementOptions } from './gang/placement.ts';
import { ExtraFreeView, PlanOverlay } from './cycle/plan-overlay.ts';
import { PLUGIN } from './framework/plugin-names.ts';
import { computePreemption, VictimPool, type PreemptionChoice } from './preemption/preemption.ts';
import { compileProfile, DEFAULT_PROFILE, readMaxGraceMs, type SchedulerProfile } from './framework/profile.ts';
import { describeQuotaFailure, QuotaLedger } from './admission/quota.ts';
import { computeQueueOrder } from './queue-sort/queue-sort.ts';
import { computeShapeProblem, withKey, type ResourceShape } from './cycle/resource-shape.ts';
import { computeRunningGpusByTeam, computeRunningJobs, type RunningJob } from './cycle/running.ts';
import { computeTeamPreemption } from './preemption/team-preemption.ts';
import { describeStartBasis, type EndBasis } from './backfill/start-estimate.ts';
import { computeStoppingVictims, withStoppingEnds, type RunningJobInput } from './preemption/stopping.ts';
import { computeSnapshotIndex, type CapacityView, type SnapshotIndex } from './cycle/snapshot-index.ts';
import { WaitingDiagnoses } from './diagnose/waiting-diagnoses.ts';

export interface CycleInput {
  /** The cluster to decide on. Never mutated. */
  snapshot: ClusterSnapshot;
  /** Jobs waiting to run, in any order (the cycle sorts them). Their `status` is not looked at. */
  pending: readonly Job[];
  /**
   * Running jobs (with `startedAt`); their GPUs are in `snapshot.allocations`. Needed for quotas (a job's team),
   * preemption (only these can be victims) and backfill (their expected ends). @default [] (an allocation whose
   * job is not listed is busy until `now` + the backfill estimate and is never preempted)
   */
  running?: readonly RunningJobInput[];
  /** Teams and their quotas. @default [] (no quotas: every job is admitted; fair share treats teams alike) */
  teams?: readonly TeamConfig[];
  /** Recent GPU use per team, for fair share. @default [] */
  usage?: readonly TeamUsage[];
  /** Epoch milliseconds of the cycle: ageing, decay of usage, reservation times. */
  now: number;
  /**
   * The grace of a victim without its own `preemption_grace` (the server's `--grace`), ms; each victim's grace is
   * decided by `decideStopGrace` (@tutti/model), capped by the profile's `maxGraceMs`. @default 60 s
   */
  defaultGraceMs?: number;
  /** Seed for any randomised choice, so that a cycle can be replayed. Every choice is ordered today; kept for plugins. */
  seed: number;
  /**
   * ORACLE input, simulator only: the true remaining run time (ms) of pending and running jobs, by job id, read by
   * the `oracle-shortest` queue sort (`sjf`, `srtf`). The live server never sets it (those profiles then use the
   * declared `max_duration`). No other plugin reads it.
   */
  oracleRemainingMs?: ReadonlyMap<string, number>;
  /**
   * GPU × milliseconds each job has run, summed over all its runs (pending: earlier runs; running: including the
   * current one), by job id; for `las` (`tiresias`). @default a running job's current run only, a pending job 0
   */
  attainedServiceGpuMs?: ReadonlyMap<string, number>;
  /** Recent run times of finished jobs, for run-time estimates (`fair-share` `withinTeam`; see duration-estimate.ts). */
  durationHistory?: DurationHistory;
  /**
   * What this cycle may keep for the next (see cycle-cache.ts): pass the same one to every cycle of a server or a
   * simulation. It changes no result, only the cost of a long queue that changes little between cycles.
   * @default a fresh one
   */
  cache?: CycleCache;
}

/**
 * The cycle, in numbered steps:
 *
 *   1. compile the profile (cached), index the snapshot, resolve running jobs, count quota usage;
 *   2. queue-sort: fair share across teams (or priority-FIFO);
 *   3. for each job in queue order (a job of a kind answered since the cycle last changed gets that answer):
 *        a. strict FIFO: once a job is blocked, the rest wait (BlockedByQueueHead);
 *        b. admission (quota): restrict to the GPU types the team may still take, or QuotaExceeded;
 *        c. gang placement (filters and scores, topology) on the overlay; a job that ends before every reservation
 *           starts may also use the GPUs held for them;
 *        d. otherwise: victims already being stopped for it → a reservation on their GPUs, nothing more preempted;
 *           else preemption (victims + a reservation for the job at now + grace) → WaitingForReclaim;
 *           capacity held by a reservation it would delay → WaitingForReservation;
 *           EASY backfill: the first blocked job gets a reservation (estimatedStartAt);
 *   4. diagnose every job left waiting, with its position in its team's queue.
 *
 * Same input → same result: nothing depends on iteration order of the input arrays, the clock or randomness.
 * Capacity only shrinks during a cycle (placements and holds), so a shape that stopped fitting is not searched again.
 */
export function runCycle(input: CycleInput, profile: SchedulerProfile = DEFAULT_PROFILE): CycleResult {
  return runCycleWith(input, profile, FAST_PATHS);
}

/**
 * Shortcuts a cycle takes that never change its result; each can be switched off, so that tests can compare the
 * plain path with the fast one on random inputs.
 */
export interface CycleShortcuts {
  /** Best-fit searches walk free-count buckets instead of every node (`capacity-index.ts`). */
  readonly capacityIndex: boolean;
  /** A job of a kind answered since the cycle last changed gets that answer (`outcome-memo.ts`). */
  readonly sameKindMemo: boolean;
  /** Preemption walks running jobs kept in victim order per node (`VictimPool`) instead of sorting candidates. */
  readonly victimPool: boolean;
  /** The cycle uses `CycleInput.cache` (else a fresh cache, as if it were the first cycle). */
  readonly keepAcrossCycles: boolean;
}

/** A victim's grace when neither it nor the cycle's input says (the simulator's, and the scheduler tests'). */
export const DEFAULT_GRACE_MS = 60_000;

export const FAST_PATHS: CycleShortcuts = { capacityIndex: true, sameKindMemo: true, victimPool: true, keepAcrossCycles: true };
export const PLAIN_PATHS: CycleShortcuts = { capacityIndex: false, sameKindMemo: false, victimPool: false, keepAcrossCycles: false };

/** `runCycle` with chosen shortcuts (for tests and benchmarks; the result is the same either way). */
export function runCycleWith(input: CycleInput, profile: SchedulerProfile, shortcuts: CycleShortcuts): CycleResult {
  const config = compileProfile(profile);
  const { now } = input;
  const cache = (shortcuts.keepAcrossCycles ? input.cache : undefined) ?? new CycleCache();
  const cycle = cache.begin();
  const index = computeSnapshotIndex(input.snapshot, cache.nodeIndex);
  const overlay = new PlanOverlay(index, shortcuts.capacityIndex);
  const estimator = config.fairShare && config.fairShare.withinTeam !== 'priority' ? createDurationEstimator(input.durationHistory, { window: config.fairShare.estimateWindow, minSamples: config.fairShare.estimateMinSamples }) : undefined;
  const running = computeRunningJobs(index, input.running ?? [], now, config.backfillArgs.estimatedRuntimeMs, estimator && ((job) => estimator(job)?.ms), cache.nodeIndex);
  // Victims of earlier cycles still within their grace (see stopping.ts).
  const maxGraceMs = readMaxGraceMs(profile);
  const defaultGraceMs = input.defaultGraceMs ?? DEFAULT_GRACE_MS;
  /** The grace a victim gets: the same rule the server applies when it stops it. */
  const graceOf = (job: Job) => decideStopGrace(job.spec.preemptionGraceMs, defaultGraceMs, maxGraceMs);
  const graceMsOf = (job: Job) => graceOf(job).graceMs;
  const stopping = computeStoppingVictims(input.running ?? [], running, graceMsOf, now, cache.nodeIndex);
  const teams = input.teams ?? [];
  const readyGpus = config.quota && teams.length > 0 ? countReadyGpus(index) : undefined;
  const ledger = readyGpus ? new QuotaLedger(teams, readyGpus) : undefined;
  /** Usage of running jobs only (less this cycle's victims): who works on borrowed GPUs, for reclaim. */
  const runningLedger = readyGpus ? new QuotaLedger(teams, readyGpus) : undefined;
  const runningGpus = computeRunningGpusByTeam(running, cache.nodeIndex);
  if (ledger || runningLedger) {
    for (const r of running) {
      if (!r.job || stopping.ids.has(r.id)) continue;
      for (const [type, n] of r.byType) {
        ledger?.charge(r.job.spec.team, type, n);
        runningLedger?.charge(r.job.spec.team, type, n);
      }
    }
  }

  // The queue: one record per job id (its first entry), as record numbers of the cache (see cycle-cache.ts).
  const records = cache.readPending(input.pending);
  const queue: Int32Array = config.fairShare
    ? computeFairShareQueue(records, { teams, usage: input.usage ?? [], runningGpus, now, args: config.fairShare, estimate: estimator, defaultEstimateMs: config.backfillArgs.estimatedRuntimeMs, attainedServiceGpuMs: input.attainedServiceGpuMs }, cache)
    : inQueueOrder(
        config.oracle
          ? computeOracleOrder(input.pending, input.oracleRemainingMs)
          : config.las
            ? computeLasOrder(input.pending, input.attainedServiceGpuMs, now, config.las)
            : computeQueueOrder(input.pending),
        cache,
      );
  const queueRank = config.orderPreemption ? createQueueRank(config, input) : undefined;
  const preemptionArgs = config.preemption ?? config.orderPreemption;

  const placementOptions: PlacementOptions = { enforceRequire: config.topologyFilter, preferTight: config.topologyScore !== undefined, tightLevel: config.topologyScore?.defaultPrefer === 'zone' ? 'zone' : 'rack', packing: config.packing };
  const place = (shape: ResourceShape, view: CapacityView): PlacedNode[] | undefined => computePlacement(shape, view, index, placementOptions);
  const diagnoser = new Diagnoser(index, overlay, cache, queue.length, place);
  const noLongerFit = new Set<string>();
  const restricted = new Map<string, ResourceShape>();
  /** The memo key of each shape for a job that may use held GPUs, by shape key. */
  const shortKeys = new Map<string, string>();
  /** GPU types each shape accepts among the ready ones, by shape key. */
  const candidateTypes = new Map<string, readonly string[]>();
  const preemptions: Preemption[] = [];
  const reservations: Reservation[] = [];
  const estimatedStart = new Map<string, number>();
  /** What each expected start rests on (start-estimate.ts). */
  const estimateBasis = new Map<string, string>();
  /** Jobs with a backfill reservation: what their diagnosis adds. */
  const reservedNote = new Map<string, string>();
  const endBasisOf = (r: RunningJob): EndBasis => {
    if (stopping.ids.has(r.id)) return 'stopping';
    if (!r.job) return 'assumed';
    const estimate = estimator?.(r.job);
    if (estimate) return estimate.basis === 'max_duration' ? 'max_duration' : 'history';
    return r.job.spec.maxDurationMs !== undefined ? 'max_duration' : 'assumed';
  };

  const victims = new Set<string>();
  /** Chosen this cycle or being stopped already: never a victim (again). */
  const notVictims = stopping.ids.size === 0 ? victims : { has: (id: string): boolean => victims.has(id) || stopping.ids.has(id) };
  /** Made when the first preemption search needs it: most cycles of a quiet cluster have none. */
  let victimPool: VictimPool | undefined;
  /** Running jobs by expected end, for EASY reservations: sorted when the first reservation is looked for. */
  let ending: RunningJob[] | undefined;
  const endingInOrder = (): RunningJob[] => (ending ??= withStoppingEnds(running, input.running ?? [], graceMsOf, now).sort((a, b) => a.endAt - b.endAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)));
  const waitingForHold = new Map<string, boolean>();
  const topologyBlocked = new Map<string, Diagnosis | undefined>();
  const noReservation = new Set<string>();
  /** Shape, team and priority whose preemption search found nothing: victims only get fewer during a cycle. */
  const noVictims = new Set<string>();
  let earliestReservation = Infinity;
  let backfillReservations = 0;
  let preemptors = 0;
  /** Preemption searches cost a placement each: at most this many per cycle, found or not. */
  let preemptionSearches = 0;
  /** The same bound for searches inside a team at its quota, kept apart so that they never use up the others'. */
  let teamSearches = 0;
  let blockedHead: Job | undefined;
  /**
   * Carries out a preemption choice for `job`: the victims leave the quota ledgers, the job is charged and holds its
   * placement from the end of the victims' grace. Returns the job's diagnosis. `inQuota`: the victims make room in
   * its team's quota (team-preemption.ts), not only on the GPUs.
   */
  const applyPreemption = (job: Job, choice: PreemptionChoice, preemptorRank: number | undefined, inQuota: boolean): Diagnosis => {
    preemptors++;
    let graceMs = 0;
    for (const v of choice.victims) {
      victims.add(v.running.id);
      const grace = graceOf(v.job);
      graceMs = Math.max(graceMs, grace.graceMs);
      preemptions.push({
        jobId: v.running.id,
        forJobId: job.id,
        reason: v.reason,
        graceMs: grace.graceMs,
        graceSource: grace.source,
        message:
          v.reason === 'priority'
            ? `preempted for job ${job.id} (priority ${job.spec.priority} > ${v.job.spec.priority})${inQuota ? `: team ${job.spec.team} is at its quota` : ''}`
            : v.reason === 'queue_order' && queueRank && preemptorRank !== undefined
              ? queueRank.explain(job, preemptorRank, v.orderRank ?? queueRank.of(v.job))
              : `preempted for job ${job.id}: team ${job.spec.team} reclaims GPUs team ${v.job.spec.team} borrowed`,
      });
      for (const [type, n] of v.running.byType) {
        ledger?.charge(v.job.spec.team, type, -n);
        runningLedger?.charge(v.job.spec.team, type, -n);
      }
    }
    if (ledger) chargePlacement(ledger, index, job, choice.nodes, 1);
    const startAt = now + graceMs;
    reservations.push({ jobId: job.id, startAt, nodes: choice.nodes });
    overlay.hold(choice.nodes);
    earliestReservation = Math.min(earliestReservation, startAt);
    estimatedStart.set(job.id, startAt);
    estimateBasis.set(job.id, `when the jobs being stopped for it have exited (within their ${formatDuration(graceMs)} grace)`);
    const names = formatSome(choice.victims.map((v) => v.running.id));
    const reasons = [...new Set(choice.victims.map((v) => (v.reason === 'priority' ? 'lower priority' : v.reason === 'queue_order' ? 'later in the queue order' : 'borrowed quota')))];
    const one = choice.victims.length === 1;
    return {
      plugin: PLUGIN.preemption,
      code: 'WaitingForReclaim',
      message: `${one ? 'job' : 'jobs'} ${names} (${formatAnd(reasons)}) ${one ? 'is' : 'are'} being stopped to make room${inQuota ? ` in team ${job.spec.team}'s quota` : ''}; starts after their ${Math.round(graceMs / 1000)} s grace`,
    };
  };
  /** What every preemption search reads. */
  const searchContext = { index, overlay, running, taken: notVictims, borrowLedger: runningLedger, allowPriority: config.preemption?.priority ?? false, place };
  /** Whether a job its team's quota refuses may look for victims in its own team (the limits of `mayPreempt` below). */
  const mayPreemptInTeam = (job: Job, shape: ResourceShape): boolean =>
    preemptionArgs !== undefined &&
    preemptors < preemptionArgs.maxPreemptorsPerCycle &&
    teamSearches < 4 * preemptionArgs.maxPreemptorsPerCycle &&
    shape.fractionParts === undefined &&
    shape.gpuCount > 0 &&
    running.length > 0 &&
    !stopping.forJob.has(job.id) &&
    // Without a queue order only lower priority makes a victim: most teams at their quota have none running.
    (queueRank !== undefined || (config.preemption?.priority === true && lowestRunningPriority(job.spec.team) < job.spec.priority));
  /** Per team, the lowest priority among its running jobs (made when first asked). */
  let lowestPriorities: Map<string, number> | undefined;
  const lowestRunningPriority = (team: string): number => {
    if (!lowestPriorities) {
      lowestPriorities = new Map();
      for (const r of running) {
        if (!r.job) continue;
        const { team: t, priority } = r.job.spec;
        if (priority < (lowestPriorities.get(t) ?? Infinity)) lowestPriorities.set(t, priority);
      }
    }
    return lowestPriorities.get(team) ?? Infinity;
  };
  const searchInTeam = (job: Job, shape: ResourceShape, amount: number): Diagnosis | undefined => {
    const preemptorRank = queueRank?.of(job);
    const key = `${shape.key}|${job.spec.team}|${job.spec.priority}${preemptorRank === undefined ? '' : `|${preemptorRank}`}|quota`;
    if (!ledger || noVictims.has(key)) return undefined;
    teamSearches++;
    const choice = computeTeamPreemption(job, shape, amount, {
      ...searchContext,
      ledger,
      ...(queueRank && preemptorRank !== undefined ? { order: { rank: queueRank, preemptorRank } } : {}),
      restrict: (s, types) => restrictTypes(s, types, restricted),
    });
    if (!choice) {
      noVictims.add(key);
      return undefined;
    }
    return applyPreemption(job, choice, preemptorRank, true);
  };

  // Same kind of job, same state → same outcome. Off where a job's outcome depends on more than its kind (its own
  // rank in the queue order for order-preemption).
  const memo = shortcuts.sameKindMemo && !queueRank ? new OutcomeMemo(cache.kindCount) : undefined;
  /** Every counter here only grows, so an equal sum means that nothing was decided in between. */
  const stateVersion = (): number =>
    overlay.version + (ledger?.version ?? 0) + (runningLedger?.version ?? 0) + preemptions.length + reservations.length + preemptors + backfillReservations + victims.size + (blockedHead ? 1 : 0);
  /** The job before, not yet settled: its kind, the state version at its turn and how many jobs had been noted. */
  // Three numbers, not an object: one per job that misses the memo, tens of thousands a cycle. Variant -1: none.
  let previousVariant = -1;
  let previousVersion = 0;
  let previousNoted = 0;
  const settlePrevious = (): void => {
    // Remember its outcome only if it was left waiting and decided nothing.
    if (memo && previousVariant >= 0 && diagnoser.notedCount === previousNoted + 1 && stateVersion() === previousVersion) memo.learn(previousVariant, previousVersion, diagnoser.lastAtTurn());
    previousVariant = -1;
  };

  // The hot fields of the queue's records, read on every turn (the job object only on the slow path).
  const { jobs: jobOf, kindOf, maxDurationOf, gpusOf, shapes: shapeOf } = cache;
  for (let turn = 0; turn < queue.length; turn++) {
    const no = queue[turn] as number;
    const declared = maxDurationOf[no] as number;
    const declaresDuration = declared === declared; // NaN: none
    const runFor = estimator ? estimator(jobOf[no] as Job)?.ms : declaresDuration ? declared : undefined;
    const short = runFor !== undefined && now + runFor <= earliestReservation && overlay.nodesWithHolds.size > 0;
    // A job that victims are being stopped for is not like the others of its kind.
    if (memo) settlePrevious();
    if (memo && (stopping.forJob.size === 0 || !stopping.forJob.has((jobOf[no] as Job).id))) {
      const variant = (kindOf[no] as number) * KIND_VARIANTS + (short ? 1 : 0) + (declaresDuration ? 0 : 2);
      const version = stateVersion();
      if (memo.knows(variant, version)) {
        diagnoser.noteUnplacedAs(no, kindOf[no] as number, memo.outcome(variant));
        continue;
      }
      previousVariant = variant;
      previousVersion = version;
      previousNoted = diagnoser.notedCount;
    }
    const job = jobOf[no] as Job;
    const original = shapeOf[no] as ResourceShape;
    if (computeShapeProblem(original) !== undefined) {
      diagnoser.noteUnplaced(no, job, original);
      continue;
    }
    if (blockedHead) {
      diagnoser.noteUnplaced(no, job, original, {
        plugin: PLUGIN.backfill,
        code: 'BlockedByQueueHead',
        message: `job ${blockedHead.id} ahead of it does not fit yet, and in strict FIFO order nothing passes it`,
      });
      continue;
    }

    // b. admission
    let shape = original;
    const amount = gpusOf[no] as number;
    if (ledger && shape.gpuCount > 0) {
      let types = candidateTypes.get(shape.key);
      if (!types) candidateTypes.set(shape.key, (types = computeCandidateTypes(shape, index.readyGpuTypes)));
      let everyType = types.length > 0;
      // The team's name from the record (the job's spec is another object to fetch).
      const team = cache.teamNames[cache.teamOf[no] as number] as string;
      for (let t = 0; t < types.length && everyType; t++) everyType = ledger.admits(team, types[t] as string, amount);
      // Usually every type is admitted, and nothing is built.
      if (!everyType) {
        const admitted: string[] = [];
        const refused: string[] = [];
        const refusedTypes: string[] = [];
        for (const type of types) {
          const check = ledger.check(job.spec.team, type, amount);
          if (check.ok) admitted.push(type);
          else {
            refused.push(check.message);
            refusedTypes.push(type);
          }
        }
        if (admitted.length === 0) {
          // Its team is at its quota: it may still take the place of the team's own jobs that rank below it.
          const inQuota = mayPreemptInTeam(job, shape) ? searchInTeam(job, shape, amount) : undefined;
          diagnoser.noteUnplaced(no, job, original, inQuota ?? { plugin: PLUGIN.quota, code: 'QuotaExceeded', message: describeQuotaFailure(refused, refusedTypes) });
          continue;
        }
        if (admitted.length < types.length) shape = restrictTypes(shape, admitted, restricted);
      }
    }

    // c. placement
    let memoKey = shape.key;
    if (short) {
      // Made once per shape: a key joined anew for each job is a new string to hash each time.
      let shortKey = shortKeys.get(shape.key);
      if (shortKey === undefined) shortKeys.set(shape.key, (shortKey = `${shape.key}|short`));
      memoKey = shortKey;
    }
    if (!noLongerFit.has(memoKey)) {
      const placed = place(shape, short ? releasedHolds(overlay) : overlay);
      if (placed) {
        overlay.applyPlacement(job, shape, placed);
        if (ledger) chargePlacement(ledger, index, job, placed, 1);
        continue;
      }
      noLongerFit.add(memoKey);
    }

    // d. not placed now
    let decided: Diagnosis | undefined;
    const feasible = diagnoser.feasibilityOf(shape).ok;
    if (feasible && shape.topology?.mode === 'require' && config.topologyFilter && !topologyBlocked.has(shape.key)) {
      // Decided now, before a reservation of its own holds the GPUs that are free.
      const { key: _key, ...rest } = shape;
      const fitsAnywhere = place(withKey({ ...rest, topology: undefined }), overlay) !== undefined;
      topologyBlocked.set(shape.key, fitsAnywhere ? topologyDiagnosis(shape) : undefined);
    }
    // Victims already being stopped for it: it waits for their GPUs and preempts nothing more.
    const waitingOn = stopping.forJob.size > 0 ? stopping.forJob.get(job.id) : undefined;
    if (feasible && waitingOn && shape.gpuCount > 0) {
      const nodes = place(shape, new ExtraFreeView(overlay, waitingOn.gpus));
      if (nodes) {
        const startAt = Math.max(now, waitingOn.goneBy);
        if (ledger) chargePlacement(ledger, index, job, nodes, 1);
        reservations.push({ jobId: job.id, startAt, nodes });
        overlay.hold(nodes);
        earliestReservation = Math.min(earliestReservation, startAt);
        estimatedStart.set(job.id, startAt);
        estimateBasis.set(job.id, `when the jobs being stopped for it have exited (within their grace, ${formatDuration(startAt - now)} from now)`);
        const one = waitingOn.victims.length === 1;
        decided = {
          plugin: PLUGIN.preemption,
          code: 'WaitingForReclaim',
          message: `${one ? 'job' : 'jobs'} ${formatSome(waitingOn.victims)} ${one ? 'is' : 'are'} being stopped to make room; starts when ${one ? 'it has' : 'they have'} exited (within ${formatDuration(startAt - now)})`,
        };
      }
    }
    const mayPreempt = feasible && !waitingOn && preemptionArgs !== undefined && preemptors < preemptionArgs.maxPreemptorsPerCycle && shape.fractionParts === undefined && shape.gpuCount > 0 && running.length > 0 && preemptionSearches < 4 * preemptionArgs.maxPreemptorsPerCycle;
    // Keyed only when a search may run: most jobs of a long queue come after the searches are spent.
    const preemptorRank = mayPreempt ? queueRank?.of(job) : undefined;
    const preemptKey = mayPreempt ? `${memoKey}|${job.spec.team}|${job.spec.priority}${preemptorRank === undefined ? '' : `|${preemptorRank}`}` : '';
    if (mayPreempt && preemptionArgs && !noVictims.has(preemptKey)) {
      preemptionSearches++;
      const choice = computePreemption(job, shape, amount, {
        ...searchContext,
        ledger,
        allowReclaim: config.preemption?.reclaim ?? false,
        ...(queueRank && preemptorRank !== undefined ? { order: { rank: queueRank, preemptorRank } } : {}),
        ...(shortcuts.victimPool ? { pool: (victimPool ??= new VictimPool(running)) } : {}),
      });
      if (!choice) noVictims.add(preemptKey);
      if (choice) decided = applyPreemption(job, choice, preemptorRank, false);
    }
    if (!decided && overlay.nodesWithHolds.size > 0 && feasible) {
      let held = waitingForHold.get(memoKey);
      if (held === undefined) waitingForHold.set(memoKey, (held = place(shape, releasedHolds(overlay)) !== undefined));
      if (held) {
        const holders = formatSome(reservations.map((r) => r.jobId));
        decided = {
          plugin: PLUGIN.backfill,
          code: 'WaitingForReservation',
          message: `the free GPUs it could use are held for ${reservations.length === 1 ? 'job' : 'jobs'} ${holders}, and it would delay ${reservations.length === 1 ? 'it' : 'them'}${job.spec.maxDurationMs === undefined ? ' (a max_duration short enough would let it backfill)' : ''}`,
        };
      }
    }
    if (!decided && feasible && config.backfill === 'easy' && backfillReservations < config.backfillArgs.reservations && !noReservation.has(memoKey)) {
      const candidates = endingInOrder().filter((r) => !victims.has(r.id));
      const reservation = computeReservation(shape, overlay, candidates, now, place);
      // Capacity only shrinks during a cycle: a shape that gets no reservation now gets none later in it.
      if (!reservation) noReservation.add(memoKey);
      if (reservation) {
        backfillReservations++;
        reservations.push({ jobId: job.id, startAt: reservation.startAt, nodes: reservation.nodes });
        overlay.hold(reservation.nodes);
        earliestReservation = Math.min(earliestReservation, reservation.startAt);
        // The time is told only with what it rests on, and not at all when that is the default run time alone.
        const basis = describeStartBasis(candidates.slice(0, reservation.freed), endBasisOf, config.backfillArgs.estimatedRuntimeMs);
        const waitsFor = `${reservation.waitsFor.length === 1 ? 'job' : 'jobs'} ${formatSome([...reservation.waitsFor])} ${reservation.waitsFor.length === 1 ? 'ends' : 'end'}`;
        if (basis !== undefined) {
          estimatedStart.set(job.id, reservation.startAt);
          estimateBasis.set(job.id, basis);
          const when = reservation.startAt <= now ? 'any moment now' : `in ${formatApproxDuration(reservation.startAt - now)}`;
          reservedNote.set(job.id, `; reserved: expected to start ${when}, when ${waitsFor} (${basis}); smaller jobs start only where they do not delay it`);
        } else {
          reservedNote.set(job.id, `; reserved: starts when ${waitsFor} (no max_duration to estimate when); smaller jobs start only where they do not delay it`);
        }
      }
    }
    if (!decided && feasible && config.backfill === 'strict') blockedHead = job;
    if (!decided && feasible && shape.topology?.mode === 'require' && config.topologyFilter) decided = topologyBlocked.get(shape.key);
    diagnoser.noteUnplaced(no, job, original, decided);
  }

  const waiting = diagnoser.finish();
  // 4. positions in each team's queue (jobs left waiting, in queue order); the diagnoses themselves are put
  // together when read (waiting-diagnoses.ts).
  const waitingNumbers = waiting.numbers;
  const count = waitingNumbers.length;
  const waitingJobs = new Array<Job>(count);
  const positions = new Int32Array(count);
  const teamSizes = new Int32Array(count);
  const { teamOf, waitingAtOf, waitingCycleOf } = cache;
  const waitingInTeam = new Int32Array(cache.teamCount);
  for (let i = 0; i < count; i++) {
    const no = waitingNumbers[i] as number;
    (waitingInTeam[teamOf[no] as number] as number)++;
    waitingAtOf[no] = i;
    waitingCycleOf[no] = cycle;
    waitingJobs[i] = jobOf[no] as Job;
  }
  const seenInTeam = new Int32Array(cache.teamCount);
  for (let i = 0; i < count; i++) {
    const team = teamOf[waitingNumbers[i] as number] as number;
    positions[i] = ++(seenInTeam[team] as number);
    teamSizes[i] = waitingInTeam[team] as number;
  }
  const diagnoses = new WaitingDiagnoses({ jobs: waitingJobs, atTurn: waiting.diagnoses, positions, teamSizes, reservedNote, estimatedStart, estimateBasis, cache, cycle });
  cache.sweep(records.length);

  return { plan: { snapshotVersion: input.snapshot.version, placements: overlay.placements, preemptions, reservations }, diagnoses };
}

/**
 * The cycle's records in the order of `ordered`, a sort of the pending jobs that lists each id once. A record stands
 * for its id's first entry in the input; the sorts keep an id's first entry in their own order, which differs only
 * for an id listed twice with different contents.
 */
function inQueueOrder(ordered: readonly Job[], cache: CycleCache): Int32Array {
  const queue = new Int32Array(ordered.length);
  let count = 0;
  for (const job of ordered) {
    const no = cache.peek(job.id);
    if (no >= 0) queue[count++] = no;
  }
  return queue.subarray(0, count);
}

/** GPUs on ready nodes, by type. */
function countReadyGpus(index: SnapshotIndex): Map<string, number> {
  const byType = new Map<string, number>();
  for (const node of index.readyNodes) {
    // The node's list when no GPU index repeats in it (the usual case): an array walk, no iterator per node.
    const gpus = node.info.gpus.length === node.gpuByIndex.size ? node.info.gpus : [...node.gpuByIndex.values()];
    for (let g = 0; g < gpus.length; g++) {
      const type = (gpus[g] as GpuDevice).type;
      byType.set(type, (byType.get(type) ?? 0) + 1);
    }
  }
  return byType;
}

function chargePlacement(ledger: QuotaLedger, index: SnapshotIndex, job: Job, nodes: readonly PlacedNode[], sign: number): void {
  const fraction = job.spec.resources.gpus.fraction ?? 1;
  for (const placed of nodes) {
    const node = index.byName.get(placed.node);
    for (const gpuIndex of placed.gpuIndices) {
      const gpu = node?.gpuByIndex.get(gpuIndex);
      if (gpu) ledger.charge(job.spec.team, gpu.type, sign * fraction);
    }
  }
}

/** The shape limited to the GPU types quota admits (memoised per cycle, so that the "no longer fits" memo still works). */
function restrictTypes(shape: ResourceShape, types: readonly string[], memo: Map<string, ResourceShape>): ResourceShape {
  const key = `${shape.key}|${types.join(',')}`;
  let found = memo.get(key);
  if (!found) {
    const { key: _key, ...rest } = shape;
    memo.set(key, (found = withKey({ ...rest, gpuTypes: types })));
  }
  return found;
}

/** The overlay with the GPUs held for reservations counted free: for a job that ends before they start. */
function releasedHolds(overlay: PlanOverlay): CapacityView {
  const extra = new Map<number, readonly GpuDevice[]>();
  for (const ordinal of overlay.nodesWithHolds) {
    const node = overlay.index.nodes[ordinal];
    if (node) extra.set(ordinal, overlay.heldGpus(node));
  }
  return new ExtraFreeView(overlay, extra);
}

function topologyDiagnosis(shape: ResourceShape): Diagnosis {
  const level = shape.topology?.level ?? 'node';
  const where = { nvlink: 'one NVLink domain', node: 'one node', rack: 'one rack', zone: 'one zone' }[level];
  const gpus = `${shape.gpuCount} free GPU${shape.gpuCount === 1 ? '' : 's'}`;
  const need = shape.numNodes === 1 ? `${gpus} inside ${where}` : `${shape.numNodes} nodes with ${gpus} each inside ${where}`;
  return { plugin: PLUGIN.topology, code: 'TopologyUnavailable', message: `waiting for ${need}; enough GPUs are free, but spread over more than ${where}` };
}
