/**
 * The `order-preemption` plugin: a waiting job preempts running jobs that its profile's queue order ranks strictly
 * after it, whole gangs, never one of higher priority.
 *
 *   - with `oracle-shortest` (`srtf`): rank = remaining time; a job preempts those with more remaining time;
 *   - with `las` (`tiresias`): rank = attained-service queue; a job of a higher queue preempts those of lower queues
 *     (jobs of one queue never preempt each other).
 *
 * Victims are chosen like `preemption` chooses them (fewest, then the cheapest per node, then unneeded ones dropped),
 * with the lowest-ranked (longest remaining, most service) first, then the most recently started. The victim gets the
 * profile's grace to checkpoint and goes back to the queue; reason `queue_order`.
 */
import { formatDuration, type Job } from '@tutti/model';
import { computeAttainedGpuMs, computeLasQueue, type LasArgs } from './las-sort.ts';
import { computeOracleRankMs } from './oracle-sort.ts';

export interface OrderPreemptionArgs {
  /** Time a victim gets to checkpoint and exit, ms. @default 60 s */
  readonly graceMs: number;
  /** At most this many waiting jobs get room made by preemption per cycle. @default 16 */
  readonly maxPreemptorsPerCycle: number;
}

/** A job's place in the queue order as a number: smaller goes first. Defined for pending and running jobs. */
export interface QueueRank {
  readonly of: (job: Job) => number;
  /** Why `victim` ranks after `preemptor`, for the victim's history. */
  readonly explain: (preemptor: Job, preemptorRank: number, victimRank: number) => string;
}

export interface QueueRankInput {
  readonly now: number;
  readonly oracleRemainingMs?: ReadonlyMap<string, number>;
  readonly attainedServiceGpuMs?: ReadonlyMap<string, number>;
}

/** The rank of the profile's queue sort, or undefined for a sort that ranks by nothing but priority and submission. */
export function createQueueRank(queueSort: { oracle: boolean; las: LasArgs | undefined }, input: QueueRankInput): QueueRank | undefined {
  if (queueSort.oracle) {
    const oracle = input.oracleRemainingMs;
    return {
      of: (job) => computeOracleRankMs(job, oracle),
      explain: (preemptor, p, v) => `preempted for job ${preemptor.id} (${oracle?.has(preemptor.id) ? 'remaining' : 'declared'} ${formatRemaining(p)} < ${formatRemaining(v)})`,
    };
  }
  const las = queueSort.las;
  if (las) {
    const attained = input.attainedServiceGpuMs;
    return {
      of: (job) => computeLasQueue(computeAttainedGpuMs(job, attained, input.now), las),
      explain: (preemptor, p, v) => `preempted for job ${preemptor.id} (least attained service: queue ${p} is ahead of this job's queue ${v})`,
    };
  }
  return undefined;
}

/** Whether `victim` may be preempted for `preemptor` under the queue order, and its rank (higher = preempted first). */
export function rankOrderVictim(preemptor: Job, preemptorRank: number, victim: Job, rank: QueueRank): number | undefined {
  if (victim.spec.priority > preemptor.spec.priority) return undefined;
  const victimRank = rank.of(victim);
  return victimRank > preemptorRank ? victimRank : undefined;
}

function formatRemaining(ms: number): string {
  return Number.isFinite(ms) ? formatDuration(Math.max(0, Math.round(ms))) : 'unknown';
}
