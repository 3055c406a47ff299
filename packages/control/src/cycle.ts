/**
 * The scheduling cycle as the control core runs it, for both drivers:
 *
 *   1. input: the eligible pending jobs (a restart waiting out its backoff is not a candidate), the running jobs with
 *      victims being stopped marked, the one decayed-usage ledger advanced to now, attained service, run-time history
 *      and the default grace — `buildCycleInput`;
 *   2. decide: the scheduler's `runCycle` (the driver calls it, with its cache);
 *   3. apply: `screenPlan` drops a plan's invalid parts (a scheduler bug, said loudly), then each victim not already
 *      being stopped is preempted through the lifecycle (record the stop, then signal) and the placements go to the
 *      driver to commit — `applyCycleResult`.
 */
import type { ClusterSnapshot, Job, JobSpec, Placement, Plan, Preemption, TeamConfig } from '@tutti/model';
import { screenPlan } from '@tutti/scheduler';
import type { CycleCache, CycleInput, PlanViolation, RunningJobInput } from '@tutti/scheduler';
import type { JobLifecycle } from './job-lifecycle.ts';
import { isEligible } from './job-lifecycle.ts';
import type { LifecycleCommand } from './lifecycle-events.ts';
import { countGpusByTeam } from './team-usage-ledger.ts';

export interface CycleInputArgs {
  snapshot: ClusterSnapshot;
  /** Every pending job (those waiting out a backoff are left out here). */
  queue: Iterable<Job>;
  running: readonly Job[];
  teams: readonly TeamConfig[];
  now: number;
  seed: number;
  cache?: CycleCache;
}

/** Step 1: the cycle's input, from the driver's snapshot and queue and the core's ledgers. Advances the usage ledger. */
export function buildCycleInput(lifecycle: JobLifecycle, args: CycleInputArgs): CycleInput {
  const { now } = args;
  const pending: Job[] = [];
  for (const job of args.queue) if (isEligible(job, now)) pending.push(job);
  lifecycle.usage.advance(now / 1000, countGpusByTeam(args.running));
  return {
    snapshot: args.snapshot,
    pending,
    running: lifecycle.markStopping(args.running),
    teams: args.teams,
    usage: lifecycle.usage.usage(now / 1000),
    now,
    seed: args.seed,
    attainedServiceGpuMs: lifecycle.attainedServiceGpuMs(args.running, now),
    durationHistory: lifecycle.durationHistory,
    defaultGraceMs: lifecycle.settings.defaultGraceMs,
    ...(args.cache ? { cache: args.cache } : {}),
  };
}

export interface AppliedCycle {
  /** The placements to commit (each then `placed` once committed). */
  placements: Placement[];
  /** Parts of the plan dropped as invalid. */
  violations: PlanViolation[];
  /** The victims' stops, in order (record, then signal). */
  commands: LifecycleCommand[];
  /** The victims newly being stopped, with why (the plan's reason code and its sentence). */
  preempted: Array<{ jobId: string; forJobId: string; reason: Preemption['reason']; message: string }>;
}

export interface ApplyCycleArgs {
  snapshot: ClusterSnapshot;
  plan: Plan;
  /** The specs of the jobs the plan places or makes room for. */
  specs: ReadonlyMap<string, JobSpec>;
  running?: readonly RunningJobInput[];
  teams?: readonly TeamConfig[];
  now: number;
}

/** Step 3: screens the plan, stops its victims through the lifecycle, hands back the placements to commit. */
export function applyCycleResult(lifecycle: JobLifecycle, args: ApplyCycleArgs): AppliedCycle {
  const { plan, violations } = screenPlan(args.snapshot, args.plan, args.specs, { running: args.running, teams: args.teams });
  const commands: LifecycleCommand[] = [];
  const preempted: AppliedCycle['preempted'] = [];
  // A victim already being stopped (for this job, or for another cause) keeps its first cause.
  for (const preemption of plan.preemptions) {
    if (lifecycle.isStopping(preemption.jobId)) continue;
    const stop = lifecycle.handle({ kind: 'preempt', jobId: preemption.jobId, message: preemption.message, forJobId: preemption.forJobId }, args.now);
    if (!lifecycle.isStopping(preemption.jobId)) continue;
    preempted.push({ jobId: preemption.jobId, forJobId: preemption.forJobId, reason: preemption.reason, message: preemption.message });
    commands.push(...stop);
  }
  return { placements: plan.placements, violations, commands, preempted };
}
