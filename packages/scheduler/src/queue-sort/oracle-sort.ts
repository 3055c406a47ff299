/**
 * The `oracle-shortest` queue sort: the simulator's upper-bound references `sjf` (shortest job first) and `srtf`
 * (shortest remaining time first, with `order-preemption`). They read the TRUE remaining run time of each job from
 * `CycleInput.oracleRemainingMs`, which only the simulator can know and only it sets. Live, the server never sets it:
 * these profiles then order by the declared `max_duration` (a job without one goes last), which is an ordinary
 * shortest-declared-first policy, not an oracle.
 *
 * Order: higher priority first; then the shorter remaining time; then submission order.
 */
import type { Job } from '@tutti/model';
import { compareQueueOrder } from './queue-sort.ts';

/** The remaining time the order uses, ms: the oracle's, else the declared `max_duration`, else Infinity (last). */
export function computeOracleRankMs(job: Job, oracleRemainingMs: ReadonlyMap<string, number> | undefined): number {
  return oracleRemainingMs?.get(job.id) ?? job.spec.maxDurationMs ?? Infinity;
}

export function computeOracleOrder(pending: readonly Job[], oracleRemainingMs: ReadonlyMap<string, number> | undefined): Job[] {
  const keyed = new Map<string, { job: Job; rank: number }>();
  for (const job of pending) if (!keyed.has(job.id)) keyed.set(job.id, { job, rank: computeOracleRankMs(job, oracleRemainingMs) });
  return [...keyed.values()]
    .sort((a, b) => b.job.spec.priority - a.job.spec.priority || compareRanks(a.rank, b.rank) || compareQueueOrder(a.job, b.job))
    .map((k) => k.job);
}

/** Ascending, Infinity last and equal to itself. */
export function compareRanks(a: number, b: number): number {
  return a === b ? 0 : a < b ? -1 : 1;
}
