/**
 * One scheduling cycle: a pure function from a snapshot and a queue to a plan and a diagnosis for every job left
 * waiting. It calls the profile's plugins (framework/extension-points.ts) at numbered steps and never asks which
 * plugin it runs. See README.md for the steps drawn out.
 */
import type { CycleResult, Diagnosis, Job } from '@tutti/model';
import { decideStopGrace } from '@tutti/model';
import { viewWithHoldsReleased } from './backfill/backfill-plugins.ts';
import { PlanOverlay } from './cycle/plan-overlay.ts';
import { computeShapeProblem, type ResourceShape } from './cycle/resource-shape.ts';
import { computeRunningGpusByTeam, computeRunningJobs } from './cycle/running.ts';
import { computeSnapshotIndex } from './cycle/snapshot-index.ts';
import { WaitingDiagnoses } from './diagnose/waiting-diagnoses.ts';
import { DEFAULT_GRACE_MS, FAST_PATHS, type CycleInput, type CycleShortcuts } from './framework/cycle-input.ts';
import { CycleState } from './framework/cycle-state.ts';
import type { AdmissionCycle } from './framework/extension-points.ts';
import { compileProfile, DEFAULT_PROFILE, type SchedulerProfile } from './framework/profile.ts';
import { CycleCache } from './perf/cycle-cache.ts';
import { KIND_VARIANTS, OutcomeMemo } from './perf/outcome-memo.ts';
import { mergePreemptionPlugins, PreemptionStep } from './preemption/preemption-step.ts';
import { computeStoppingVictims } from './preemption/stopping.ts';

export { DEFAULT_GRACE_MS, FAST_PATHS, PLAIN_PATHS, type CycleInput, type CycleShortcuts } from './framework/cycle-input.ts';

/**
 * The cycle, in numbered steps:
 *
 *   1. compile the profile into its plugins (cached per profile object);
 *   2. index the snapshot (cluster side of the cycle cache), start the overlay; the queue sort's run-time estimates;
 *   3. resolve running jobs and the victims of earlier cycles still being stopped; the cycle state;
 *   4. admission plugins count what running jobs use;
 *   5. queue sort: the pending jobs' records in queue order;
 *   6. the per-cycle parts of preemption, filters, backfill and diagnosis;
 *   7. for each job in queue order (a job of a kind answered since the cycle last changed gets that answer):
 *        a. backfill: strict FIFO: once a job is blocked, the rest wait (BlockedByQueueHead);
 *        b. admission: restrict to the GPU types the team may still take, or QuotaExceeded (unless its own team's
 *           lower jobs may make room: preemption inside a team);
 *        c. gang placement (filters and scores compiled in) on the overlay; a job that ends before every
 *           reservation starts may also use the GPUs held for them;
 *        d. not placed (and feasible): filters say whether they keep it out (decided now, before reservations);
 *           preemption: victims already being stopped for it → a reservation on their GPUs, else victims + a
 *           reservation at now + grace (WaitingForReclaim); backfill: capacity held by a reservation it would
 *           delay → WaitingForReservation, else EASY gives the first blocked job a reservation, strict blocks the
 *           rest; the filter's answer if nothing else decided;
 *   8. diagnose every job left waiting, with its position in its team's queue.
 *
 * Same input → same result: nothing depends on iteration order of the input arrays, the clock or randomness.
 * Capacity only shrinks during a cycle (placements and holds), so a shape that stopped fitting is not searched again.
 */
export function runCycle(input: CycleInput, profile: SchedulerProfile = DEFAULT_PROFILE): CycleResult {
  return runCycleWith(input, profile, FAST_PATHS);
}

/** `runCycle` with chosen shortcuts (for tests and benchmarks; the result is the same either way). */
export function runCycleWith(input: CycleInput, profile: SchedulerProfile, shortcuts: CycleShortcuts): CycleResult {
  // 1. the profile's plugins
  const plugins = compileProfile(profile).cycle;
  const preemptionPolicy = mergePreemptionPlugins(plugins.preemption);
  const { now } = input;

  // 2. the snapshot indexed, the overlay of this cycle's decisions, the queue sort's estimates
  const cache = (shortcuts.keepAcrossCycles ? input.cache : undefined) ?? new CycleCache();
  const cycle = cache.begin();
  const index = computeSnapshotIndex(input.snapshot, cache.nodeIndex);
  const overlay = new PlanOverlay(index, shortcuts.capacityIndex, cache.nodeIndex);
  const estimate = plugins.queueSort.createEstimator(input);
  const assumedRunMs = plugins.backfill.args.estimatedRuntimeMs;

  // 3. running jobs, victims of earlier cycles still within their grace (see stopping.ts), the cycle state
  const running = computeRunningJobs(index, input.running ?? [], now, assumedRunMs, estimate && ((job) => estimate(job)?.ms), cache.nodeIndex);
  const defaultGraceMs = input.defaultGraceMs ?? DEFAULT_GRACE_MS;
  const { maxGraceMs } = preemptionPolicy;
  /** The grace a victim gets: the same rule the server applies when it stops it. */
  const graceOf = (job: Job) => decideStopGrace(job.spec.preemptionGraceMs, defaultGraceMs, maxGraceMs);
  const stopping = computeStoppingVictims(input.running ?? [], running, (job) => graceOf(job).graceMs, now, cache.nodeIndex);
  const place = plugins.gang.createPlacer(index, plugins.placement);
  const state = new CycleState({ input, shortcuts, cache, index, overlay, running, stopping, place, estimate, assumedRunMs, graceOf });

  // 4. admission
  const admissions: AdmissionCycle[] = [];
  for (const plugin of plugins.admission) {
    const admission = plugin.beginCycle(state);
    if (admission) admissions.push(admission);
  }

  // 5. the queue: one record per job id (its first entry), as record numbers of the cache (see cycle-cache.ts)
  const records = cache.readPending(input.pending);
  const queue = plugins.queueSort.order(state, records, computeRunningGpusByTeam(running, cache.nodeIndex));

  // 6. the other plugins' per-cycle parts
  const preemption = new PreemptionStep(state, preemptionPolicy, admissions);
  const filters = plugins.filter.map((f) => f.beginCycle(state));
  const backfill = plugins.backfill.beginCycle(state);
  const diagnoser = plugins.diagnosis.beginCycle(state, queue.length);
  const noLongerFit = new Set<string>();
  /** The memo key of each shape for a job that may use held GPUs, by shape key. */
  const shortKeys = new Map<string, string>();

  // Same kind of job, same state → same outcome. Off where a job's outcome depends on more than its kind (its own
  // rank in the queue order for order-preemption).
  const memo = shortcuts.sameKindMemo && !preemption.rank ? new OutcomeMemo(cache.kindCount) : undefined;
  /** Every counter here only grows, so an equal sum means that nothing was decided in between. */
  const stateVersion = (): number => {
    let version = overlay.version + state.preemptions.length + state.reservations.length + preemption.version + backfill.version;
    for (let a = 0; a < admissions.length; a++) version += (admissions[a] as AdmissionCycle).version;
    return version;
  };
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

  // 7. each job in queue order. The hot fields of the queue's records, read on every turn (the job object only on
  // the slow path).
  const { jobs: jobOf, kindOf, maxDurationOf, gpusOf, shapes: shapeOf, teamOf, teamNames } = cache;
  for (let turn = 0; turn < queue.length; turn++) {
    const no = queue[turn] as number;
    const declared = maxDurationOf[no] as number;
    const declaresDuration = declared === declared; // NaN: none
    const runFor = estimate ? estimate(jobOf[no] as Job)?.ms : declaresDuration ? declared : undefined;
    const short = runFor !== undefined && now + runFor <= state.earliestReservation && overlay.nodesWithHolds.size > 0;
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
    // a. strict FIFO
    const blocked = backfill.blocking();
    if (blocked) {
      diagnoser.noteUnplaced(no, job, original, blocked);
      continue;
    }

    // b. admission
    let shape = original;
    const amount = gpusOf[no] as number;
    let refused: Diagnosis | undefined;
    for (let a = 0; a < admissions.length && !refused; a++) {
      // The team's name from the record (the job's spec is another object to fetch).
      const admission = (admissions[a] as AdmissionCycle).admit(job, teamNames[teamOf[no] as number] as string, shape, amount);
      if (admission.admitted) shape = admission.shape;
      // Its team is at its quota: it may still take the place of the team's own jobs that rank below it.
      else refused = preemption.decideInTeam(job, shape, amount) ?? admission.diagnosis;
    }
    if (refused) {
      diagnoser.noteUnplaced(no, job, original, refused);
      continue;
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
      const placed = place(shape, short ? viewWithHoldsReleased(overlay) : overlay);
      if (placed) {
        overlay.applyPlacement(job, shape, placed);
        for (let a = 0; a < admissions.length; a++) (admissions[a] as AdmissionCycle).charge(job, placed);
        continue;
      }
      noLongerFit.add(memoKey);
    }

    // d. not placed now
    if (!diagnoser.feasibilityOf(shape).ok) {
      diagnoser.noteUnplaced(no, job, original);
      continue;
    }
    // Decided now, before a reservation of its own holds the GPUs that are free.
    let filtered: Diagnosis | undefined;
    for (let f = 0; f < filters.length && !filtered; f++) filtered = filters[f]?.explainUnplaced(shape);
    let decided = preemption.decideUnplaced(job, shape, amount, memoKey) ?? backfill.explainHeld(job, shape, memoKey);
    if (!decided) {
      backfill.noteBlocked(job, shape, memoKey);
      decided = filtered;
    }
    diagnoser.noteUnplaced(no, job, original, decided);
  }

  // 8. positions in each team's queue (jobs left waiting, in queue order); the diagnoses themselves are put
  // together when read (waiting-diagnoses.ts).
  const waiting = diagnoser.finish();
  const waitingNumbers = waiting.numbers;
  const count = waitingNumbers.length;
  const waitingJobs = new Array<Job>(count);
  const positions = new Int32Array(count);
  const teamSizes = new Int32Array(count);
  const { waitingAtOf, waitingCycleOf } = cache;
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
  const { reservedNote, estimatedStart, estimateBasis } = state;
  const diagnoses = new WaitingDiagnoses({ jobs: waitingJobs, atTurn: waiting.diagnoses, positions, teamSizes, reservedNote, estimatedStart, estimateBasis, cache, cycle });
  cache.sweep(records.length);

  return { plan: { snapshotVersion: input.snapshot.version, placements: overlay.placements, preemptions: state.preemptions, reservations: state.reservations }, diagnoses };
}
