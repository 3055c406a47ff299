/**
 * Figures of merit computed from a `SimResult`. Pure arithmetic; the definitions are the ones the scheduling papers
 * that use these traces report:
 *
 * - JCT (job completion time) = finish − submit; queueing delay = first start − submit.
 * - Bounded slowdown = max(1, JCT / max(duration, 10 s)): short jobs do not dominate the average.
 * - Makespan = last finish − first submission of the simulated jobs.
 * - Utilization = GPU-seconds held by jobs / (all GPUs × makespan).
 * - Fairness = Jain's index over the teams' average bounded slowdowns: 1 when every team is slowed down alike,
 *   1/n when one team takes all the slowdown. Only teams with finished jobs count.
 * - Fragmentation (traces with fractional GPUs): fragmented GPUs (free capacity a request drawn from the trace's own
 *   mix could not use, see `computeNodeFragmentation`) averaged over time, as a share of all GPUs and of free ones.
 */
import { UNPLACEABLE_REASONS, type SimResult, type UnplaceableReason } from './simulator.ts';

export interface TeamMetrics {
  team: string;
  jobs: number;
  unplaceable: number;
  avgJctS: number;
  avgQueueS: number;
  avgSlowdown: number;
  gpuHours: number;
}

export interface PolicyMetrics {
  policy: string;
  profile: string;
  jobs: number;
  unplaceable: number;
  unplaceableByReason: Record<UnplaceableReason, number>;
  avgJctS: number;
  p50JctS: number;
  p95JctS: number;
  p99JctS: number;
  avgQueueS: number;
  p50QueueS: number;
  p99QueueS: number;
  avgBoundedSlowdown: number;
  makespanS: number;
  utilization: number;
  preemptions: number;
  gpuHoursLost: number;
  gpuHoursUsed: number;
  /** Time-averaged fragmented GPUs / all GPUs; undefined without fractional jobs. */
  fragmentationOfGpus: number | undefined;
  /** Fragmented GPU-seconds / free GPU-seconds; undefined without fractional jobs. */
  fragmentationOfFree: number | undefined;
  fairness: number;
  teams: TeamMetrics[];
  cycles: number;
  cyclesSkipped: number;
  wallS: number;
}

/** The JSON shape of `tutti sim --json`, one entry per policy. */
export interface PolicyJson {
  jobs: number;
  unplaceable: number;
  avg_jct_s: number;
  p50_jct_s: number;
  p99_jct_s: number;
  avg_queue_s: number;
  p99_queue_s: number;
  makespan_s: number;
  utilization: number;
  preemptions: number;
  gpu_hours_lost: number;
  /** Only for traces with fractional GPUs. */
  fragmentation_of_gpus?: number;
  fragmentation_of_free?: number;
  wall_s: number;
}

export const SLOWDOWN_BOUND_S = 10;

/** The q-quantile (0..1) of sorted values, nearest rank; NaN when empty. */
export function computeQuantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] as number;
}

/** Jain's fairness index: (Σx)² / (n Σx²); 1 for n ≤ 1. */
export function computeJainIndex(values: readonly number[]): number {
  if (values.length <= 1) return 1;
  let sum = 0;
  let squares = 0;
  for (const v of values) {
    sum += v;
    squares += v * v;
  }
  return squares === 0 ? 1 : (sum * sum) / (values.length * squares);
}

export function computePolicyMetrics(result: SimResult): PolicyMetrics {
  const { jobs } = result;
  const n = jobs.submitS.length;
  const jcts: number[] = [];
  const queues: number[] = [];
  let slowdownSum = 0;
  let firstSubmit = Infinity;
  let lastFinish = -Infinity;
  const unplaceableByReason = Object.fromEntries(UNPLACEABLE_REASONS.map((r) => [r, 0])) as Record<UnplaceableReason, number>;
  const perTeam = result.teams.map((team) => ({ team, jobs: 0, unplaceable: 0, jct: 0, queue: 0, slowdown: 0, gpuS: 0 }));
  for (let i = 0; i < n; i++) {
    const team = perTeam[jobs.team[i] as number];
    const reason = jobs.unplaceable[i] as number;
    if (reason !== 255) {
      unplaceableByReason[UNPLACEABLE_REASONS[reason] as UnplaceableReason]++;
      if (team) team.unplaceable++;
      continue;
    }
    const submit = jobs.submitS[i] as number;
    const finish = jobs.finishS[i] as number;
    if (Number.isNaN(finish)) continue;
    const jct = finish - submit;
    const queue = (jobs.firstStartS[i] as number) - submit;
    const slowdown = Math.max(1, jct / Math.max(jobs.durationS[i] as number, SLOWDOWN_BOUND_S));
    jcts.push(jct);
    queues.push(queue);
    slowdownSum += slowdown;
    if (submit < firstSubmit) firstSubmit = submit;
    if (finish > lastFinish) lastFinish = finish;
    if (team) {
      team.jobs++;
      team.jct += jct;
      team.queue += queue;
      team.slowdown += slowdown;
      team.gpuS += (jobs.durationS[i] as number) * (jobs.gpus[i] as number);
    }
  }
  const finished = jcts.length;
  const sortedJct = Float64Array.from(jcts).sort();
  const sortedQueue = Float64Array.from(queues).sort();
  const mean = (values: readonly number[]): number => (values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length);
  const makespanS = finished === 0 ? 0 : lastFinish - firstSubmit;
  const teams: TeamMetrics[] = perTeam
    .filter((t) => t.jobs > 0 || t.unplaceable > 0)
    .map((t) => ({
      team: t.team,
      jobs: t.jobs,
      unplaceable: t.unplaceable,
      avgJctS: t.jobs > 0 ? t.jct / t.jobs : NaN,
      avgQueueS: t.jobs > 0 ? t.queue / t.jobs : NaN,
      avgSlowdown: t.jobs > 0 ? t.slowdown / t.jobs : NaN,
      gpuHours: t.gpuS / 3600,
    }))
    .sort((a, b) => (a.team < b.team ? -1 : a.team > b.team ? 1 : 0));
  return {
    policy: result.policy,
    profile: result.profile,
    jobs: finished,
    unplaceable: Object.values(unplaceableByReason).reduce((a, b) => a + b, 0),
    unplaceableByReason,
    avgJctS: mean(jcts),
    p50JctS: computeQuantile(sortedJct, 0.5),
    p95JctS: computeQuantile(sortedJct, 0.95),
    p99JctS: computeQuantile(sortedJct, 0.99),
    avgQueueS: mean(queues),
    p50QueueS: computeQuantile(sortedQueue, 0.5),
    p99QueueS: computeQuantile(sortedQueue, 0.99),
    avgBoundedSlowdown: finished === 0 ? NaN : slowdownSum / finished,
    makespanS,
    utilization: makespanS > 0 && result.totalGpus > 0 ? result.usedGpuS / (result.totalGpus * makespanS) : 0,
    preemptions: result.preemptions,
    gpuHoursLost: result.lostGpuS / 3600,
    gpuHoursUsed: result.usedGpuS / 3600,
    fragmentationOfGpus: result.fragmentedGpuS === undefined || makespanS <= 0 || result.totalGpus === 0 ? undefined : result.fragmentedGpuS / (result.totalGpus * makespanS),
    fragmentationOfFree: result.fragmentedGpuS === undefined || result.freeGpuS <= 0 ? undefined : result.fragmentedGpuS / result.freeGpuS,
    fairness: computeJainIndex(teams.filter((t) => t.jobs > 0).map((t) => t.avgSlowdown)),
    teams,
    cycles: result.cycles,
    cyclesSkipped: result.cyclesSkipped,
    wallS: result.wallS,
  };
}

const round = (value: number, digits: number): number => (Number.isFinite(value) ? Number(value.toFixed(digits)) : value);

export function toPolicyJson(m: PolicyMetrics): PolicyJson {
  return {
    jobs: m.jobs,
    unplaceable: m.unplaceable,
    avg_jct_s: round(m.avgJctS, 1),
    p50_jct_s: round(m.p50JctS, 1),
    p99_jct_s: round(m.p99JctS, 1),
    avg_queue_s: round(m.avgQueueS, 1),
    p99_queue_s: round(m.p99QueueS, 1),
    makespan_s: round(m.makespanS, 1),
    utilization: round(m.utilization, 4),
    preemptions: m.preemptions,
    gpu_hours_lost: round(m.gpuHoursLost, 1),
    ...(m.fragmentationOfGpus !== undefined ? { fragmentation_of_gpus: round(m.fragmentationOfGpus, 4) } : {}),
    ...(m.fragmentationOfFree !== undefined ? { fragmentation_of_free: round(m.fragmentationOfFree, 4) } : {}),
    wall_s: round(m.wallS, 2),
  };
}
