/**
 * One scheduling cycle: a pure function from a snapshot and a queue to a plan and a diagnosis for every job left
 * waiting. See README.md for the steps drawn out.
 */
import { formatDuration, type ClusterSnapshot, type CycleResult, type Diagnosis, type GpuDevice, type Job, type PlacedNode, type Preemption, type Reservation, type TeamConfig, type TeamUsage } from '@tutti/model';
import { computeReservation } from './backfill.ts';
import { Diagnoser } from './diagnose.ts';
import { computeFairShareOrder, jobGpus } from './fair-share.ts';
import { formatAnd, formatSome } from './format.ts';
import { computeCandidateTypes } from './gpu-fit.ts';
import { computePlacement, type PlacementOptions } from './placement.ts';
import { ExtraFreeView, PlanOverlay } from './plan-overlay.ts';
import { PLUGIN } from './plugin-names.ts';
import { computePreemption } from './preemption.ts';
import { compileProfile, DEFAULT_PROFILE, type SchedulerProfile } from './profile.ts';
import { describeQuotaFailure, QuotaLedger } from './quota.ts';
import { computeQueueOrder } from './queue-sort.ts';
import { computeResourceShape, computeShapeProblem, withKey, type ResourceShape } from './resource-shape.ts';
import { computeRunningJobs } from './running.ts';
import { computeSnapshotIndex, type CapacityView, type SnapshotIndex } from './snapshot-index.ts';

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
  running?: readonly Job[];
  /** Teams and their quotas. @default [] (no quotas: every job is admitted; fair share treats teams alike) */
  teams?: readonly TeamConfig[];
  /** Recent GPU use per team, for fair share. @default [] */
  usage?: readonly TeamUsage[];
  /** Epoch milliseconds of the cycle: ageing, decay of usage, reservation times. */
  now: number;
  /** Seed for any randomised choice, so that a cycle can be replayed. Every choice is ordered today; kept for plugins. */
  seed: number;
}

/**
 * The cycle, in numbered steps:
 *
 *   1. compile the profile (cached), index the snapshot, resolve running jobs, count quota usage;
 *   2. queue-sort: fair share across teams (or priority-FIFO);
 *   3. for each job in queue order:
 *        a. strict FIFO: once a job is blocked, the rest wait (BlockedByQueueHead);
 *        b. admission (quota): restrict to the GPU types the team may still take, or QuotaExceeded;
 *        c. gang placement (filters and scores, topology) on the overlay; a job that ends before every reservation
 *           starts may also use the GPUs held for them;
 *        d. otherwise: preemption (victims + a reservation for the job at now + grace) → WaitingForReclaim;
 *           capacity held by a reservation it would delay → WaitingForReservation;
 *           EASY backfill: the first blocked job gets a reservation (estimatedStartAt);
 *   4. diagnose every job left waiting, with its position in its team's queue.
 *
 * Same input → same result: nothing depends on iteration order of the input arrays, the clock or randomness.
 * Capacity only shrinks during a cycle (placements and holds), so a shape that stopped fitting is not searched again.
 */
export function runCycle(input: CycleInput, profile: SchedulerProfile = DEFAULT_PROFILE): CycleResult {
  const config = compileProfile(profile);
  const { now } = input;
  const index = computeSnapshotIndex(input.snapshot);
  const overlay = new PlanOverlay(index);
  const running = computeRunningJobs(index, input.running ?? [], now, config.backfillArgs.estimatedRuntimeMs);
  const teams = input.teams ?? [];
  const ledger = config.quota && teams.length > 0 ? new QuotaLedger(teams, countReadyGpus(index)) : undefined;
  /** Usage of running jobs only (less this cycle's victims): who works on borrowed GPUs, for reclaim. */
  const runningLedger = ledger ? new QuotaLedger(teams, countReadyGpus(index)) : undefined;
  const runningGpus = new Map<string, number>();
  for (const r of running) {
    if (!r.job) continue;
    for (const [type, n] of r.byType) {
      ledger?.charge(r.job.spec.team, type, n);
      runningLedger?.charge(r.job.spec.team, type, n);
      runningGpus.set(r.job.spec.team, (runningGpus.get(r.job.spec.team) ?? 0) + n);
    }
  }

  const queue = config.fairShare
    ? computeFairShareOrder(input.pending, { teams, usage: input.usage ?? [], runningGpus, now, args: config.fairShare })
    : computeQueueOrder(input.pending);

  const placementOptions: PlacementOptions = { enforceRequire: config.topologyFilter, preferTight: config.topologyScore !== undefined, tightLevel: config.topologyScore?.defaultPrefer === 'zone' ? 'zone' : 'rack' };
  const place = (shape: ResourceShape, view: CapacityView): PlacedNode[] | undefined => computePlacement(shape, view, index, placementOptions);
  const diagnoser = new Diagnoser(index, overlay, place);
  const noLongerFit = new Set<string>();
  const restricted = new Map<string, ResourceShape>();
  const preemptions: Preemption[] = [];
  const reservations: Reservation[] = [];
  const estimatedStart = new Map<string, number>();
  /** Jobs with a backfill reservation: what their diagnosis adds. */
  const reservedNote = new Map<string, string>();

  const victims = new Set<string>();
  const ending = config.backfill === 'easy' ? [...running].sort((a, b) => a.endAt - b.endAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)) : [];
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
  let blockedHead: Job | undefined;

  for (const job of queue) {
    const original = computeResourceShape(job.spec);
    if (computeShapeProblem(original) !== undefined) {
      diagnoser.noteUnplaced(job, original);
      continue;
    }
    if (blockedHead) {
      diagnoser.noteUnplaced(job, original, {
        plugin: PLUGIN.backfill,
        code: 'BlockedByQueueHead',
        message: `job ${blockedHead.id} ahead of it does not fit yet, and in strict FIFO order nothing passes it`,
      });
      continue;
    }

    // b. admission
    let shape = original;
    const amount = jobGpus(job);
    if (ledger && shape.gpuCount > 0) {
      const types = computeCandidateTypes(shape, index.readyGpuTypes);
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
        diagnoser.noteUnplaced(job, original, { plugin: PLUGIN.quota, code: 'QuotaExceeded', message: describeQuotaFailure(refused, refusedTypes) });
        continue;
      }
      if (admitted.length < types.length) shape = restrictTypes(shape, admitted, restricted);
    }

    // c. placement
    const short = job.spec.maxDurationMs !== undefined && now + job.spec.maxDurationMs <= earliestReservation && overlay.nodesWithHolds.size > 0;
    const memoKey = short ? `${shape.key}|short` : shape.key;
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
    const preemptKey = `${memoKey}|${job.spec.team}|${job.spec.priority}`;
    if (feasible && config.preemption && preemptors < config.preemption.maxPreemptorsPerCycle && shape.fractionParts === undefined && shape.gpuCount > 0 && running.length > 0 && !noVictims.has(preemptKey) && preemptionSearches < 4 * config.preemption.maxPreemptorsPerCycle) {
      preemptionSearches++;
      const choice = computePreemption(job, shape, amount, {
        index,
        overlay,
        running,
        taken: victims,
        ledger,
        borrowLedger: runningLedger,
        allowPriority: config.preemption.priority,
        allowReclaim: config.preemption.reclaim,
        place,
      });
      if (!choice) noVictims.add(preemptKey);
      if (choice) {
        preemptors++;
        const graceMs = config.preemption.graceMs;
        for (const v of choice.victims) {
          victims.add(v.running.id);
          preemptions.push({
            jobId: v.running.id,
            forJobId: job.id,
            reason: v.reason,
            graceMs,
            message:
              v.reason === 'priority'
                ? `preempted for job ${job.id} (priority ${job.spec.priority} > ${v.job.spec.priority})`
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
        const names = formatSome(choice.victims.map((v) => v.running.id));
        const reasons = [...new Set(choice.victims.map((v) => (v.reason === 'priority' ? 'lower priority' : 'borrowed quota')))];
        decided = {
          plugin: PLUGIN.preemption,
          code: 'WaitingForReclaim',
          message: `${choice.victims.length === 1 ? 'job' : 'jobs'} ${names} (${formatAnd(reasons)}) ${choice.victims.length === 1 ? 'is' : 'are'} being stopped to make room; starts after their ${Math.round(graceMs / 1000)} s grace`,
        };
      }
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
      const reservation = computeReservation(shape, overlay, ending.filter((r) => !victims.has(r.id)), now, place);
      // Capacity only shrinks during a cycle: a shape that gets no reservation now gets none later in it.
      if (!reservation) noReservation.add(memoKey);
      if (reservation) {
        backfillReservations++;
        reservations.push({ jobId: job.id, startAt: reservation.startAt, nodes: reservation.nodes });
        overlay.hold(reservation.nodes);
        earliestReservation = Math.min(earliestReservation, reservation.startAt);
        estimatedStart.set(job.id, reservation.startAt);
        const when = reservation.startAt <= now ? 'now' : `in ${formatDuration(reservation.startAt - now)}`;
        reservedNote.set(job.id, `; reserved: expected to start ${when}, when ${reservation.waitsFor.length === 1 ? 'job' : 'jobs'} ${formatSome([...reservation.waitsFor])} ${reservation.waitsFor.length === 1 ? 'ends' : 'end'} (smaller jobs start only where they do not delay it)`);
      }
    }
    if (!decided && feasible && config.backfill === 'strict') blockedHead = job;
    if (!decided && feasible && shape.topology?.mode === 'require' && config.topologyFilter) decided = topologyBlocked.get(shape.key);
    diagnoser.noteUnplaced(job, original, decided);
  }

  const diagnoses = diagnoser.finish();
  // 4. positions in each team's queue (jobs left waiting, in queue order), and estimated starts.
  const teamTotals = new Map<string, number>();
  for (const job of queue) if (diagnoses.has(job.id)) teamTotals.set(job.spec.team, (teamTotals.get(job.spec.team) ?? 0) + 1);
  const teamSeen = new Map<string, number>();
  for (const job of queue) {
    const d = diagnoses.get(job.id);
    if (!d) continue;
    const team = job.spec.team;
    const at = (teamSeen.get(team) ?? 0) + 1;
    teamSeen.set(team, at);
    const start = estimatedStart.get(job.id);
    const note = reservedNote.get(job.id);
    const withPosition: Diagnosis = { ...d, message: note && d.code !== 'NeverFits' ? `${d.message}${note}` : d.message, position: { team, index: at, of: teamTotals.get(team) ?? at } };
    if (start !== undefined) withPosition.estimatedStartAt = start;
    diagnoses.set(job.id, withPosition);
  }

  return { plan: { snapshotVersion: input.snapshot.version, placements: overlay.placements, preemptions, reservations }, diagnoses };
}

function countReadyGpus(index: SnapshotIndex): number {
  let n = 0;
  for (const node of index.readyNodes) n += node.gpuByIndex.size;
  return n;
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
