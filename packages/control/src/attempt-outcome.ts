/**
 * What follows an attempt once every rank of it is out: the job ends, or the whole gang goes back to the queue.
 * Decided from the job (its restart policy, restarts so far, a cancel asked), the cause it was stopped for, and its
 * ranks' exits. The same decision live and in the simulator.
 */
import { DEFAULT_RESTART_BACKOFF_MS, DEFAULT_RESTART_ON, MAX_RESTART_BACKOFF_MS, formatDuration } from '@tutti/model';
import type { Job, JobEnd, RequeueOptions, RestartCause } from '@tutti/model';
import type { StopCause } from './stop.ts';

/** What the outcome reads of a rank: how and when it ended. A `Task` is one. */
export interface RankEnd {
  rank: number;
  /** A Task's status ('exited', 'lost' end it), or the core's own 'launching'. */
  status: string;
  exitCode?: number | null;
  finishedAt?: number;
}

/** What happens to a job once every rank of its attempt is out. */
export type AttemptOutcome =
  | { kind: 'finish'; end: JobEnd }
  | { kind: 'requeue'; reason: string; options: RequeueOptions & { event: 'restarting' | 'preempted' }; backoffMs: number };

/** The rank that failed first (lost, or a non-zero exit), by when it ended, then by rank number. */
export function findFirstFailedRank<T extends RankEnd>(ranks: readonly T[]): T | undefined {
  // One pass, no sorted copy: every attempt's end asks this, the simulator's of each of a trace's jobs.
  let first: T | undefined;
  for (const rank of ranks) {
    if (rank.status !== 'lost' && (rank.status !== 'exited' || rank.exitCode === 0)) continue;
    if (first === undefined || ((rank.finishedAt ?? 0) - (first.finishedAt ?? 0) || rank.rank - first.rank) < 0) first = rank;
  }
  return first;
}

/** The restart cause an ended attempt stands for, if it ended by failing. */
function restartCauseOf(cause: StopCause | undefined, ranks: readonly RankEnd[]): RestartCause | undefined {
  if (cause?.kind === 'hung') return 'hang';
  if (cause?.kind === 'rank_failed') return cause.lost ? 'node_lost' : 'failure';
  if (cause !== undefined) return undefined;
  if (ranks.some((t) => t.status === 'lost')) return 'node_lost';
  return ranks.some((t) => t.exitCode !== 0) ? 'failure' : undefined;
}

/**
 * What follows an attempt whose ranks are all out: the job ends, or the whole gang goes back to the queue.
 * - A cancel (also one asked during a preemption) ends it `cancelled`; max_duration ends it `failed`.
 * - A preemption requeues it with a `preempted` event, not counted as a restart, without backoff.
 * - A failure, a lost rank or a hang requeues it (`restarting`) when that cause is in `restart_on` and
 *   `restarts < max_restarts`, after `restart_backoff × 2^restarts` (capped); otherwise the job fails, and the
 *   reason says when it was because the restarts ran out.
 */
/** What the reason of an attempt that was preempted starts with. */
const PREEMPTED_PREFIX = 'preempted: ';

/** Whether an attempt's recorded reason says it was preempted (what TUTTI_PREEMPTIONS counts). */
export function isPreemptionReason(reason: string): boolean {
  return reason.startsWith(PREEMPTED_PREFIX);
}

export function decideAttemptOutcome(job: Job, cause: StopCause | undefined, ranks: readonly RankEnd[]): AttemptOutcome {
  if (job.cancelRequestedAt !== undefined) return { kind: 'finish', end: decideJobEnd({ kind: 'cancelled' }, ranks) };
  if (cause?.kind === 'preempted') {
    const reason = `${PREEMPTED_PREFIX}${cause.message}`;
    return { kind: 'requeue', reason, backoffMs: 0, options: { event: 'preempted', attemptEnd: { exitCode: null, reason } } };
  }
  const end = decideJobEnd(cause, ranks);
  const restartCause = end.status === 'failed' ? restartCauseOf(cause, ranks) : undefined;
  if (restartCause === undefined) return { kind: 'finish', end };
  const maxRestarts = job.spec.maxRestarts ?? 0;
  const restarts = job.restarts ?? 0;
  const restartOn = job.spec.restartOn ?? DEFAULT_RESTART_ON;
  if (maxRestarts === 0) return { kind: 'finish', end };
  if (!restartOn.includes(restartCause)) {
    return { kind: 'finish', end: { ...end, endReason: `${end.endReason} (not restarted: restart_on is [${restartOn.join(', ')}])` } };
  }
  if (restarts >= maxRestarts) {
    return { kind: 'finish', end: { ...end, endReason: `${end.endReason} (max_restarts ${maxRestarts} exhausted after ${restarts + 1} attempts)` } };
  }
  const base = job.spec.restartBackoffMs ?? DEFAULT_RESTART_BACKOFF_MS;
  const backoffMs = Math.min(MAX_RESTART_BACKOFF_MS, base * 2 ** restarts);
  const wait = backoffMs > 0 ? ` in ${formatDuration(backoffMs)}` : '';
  return {
    kind: 'requeue',
    reason: `${end.endReason}; restarting the whole gang${wait} (restart ${restarts + 1} of ${maxRestarts})`,
    backoffMs,
    options: { event: 'restarting', countRestart: true, attemptEnd: { exitCode: end.exitCode, reason: end.endReason } },
  };
}

/** How a gang ended, from why it was stopped (if it was) and its ranks' exit codes. */
export function decideJobEnd(cause: StopCause | undefined, ranks: readonly RankEnd[]): JobEnd {
  if (cause?.kind === 'cancelled') return { status: 'cancelled', exitCode: null, endReason: 'cancelled' };
  if (cause?.kind === 'max_duration') return { status: 'failed', exitCode: null, endReason: `exceeded max_duration ${formatDuration(cause.limitMs)}` };
  if (cause?.kind === 'rank_failed') return { status: 'failed', exitCode: cause.exitCode, endReason: cause.detail };
  if (cause?.kind === 'hung') return { status: 'failed', exitCode: null, endReason: `hung: ${cause.detail}` };
  if (cause?.kind === 'preempted') return { status: 'failed', exitCode: null, endReason: `${PREEMPTED_PREFIX}${cause.message}` };
  const failed = findFirstFailedRank(ranks);
  if (failed) {
    return {
      status: 'failed',
      exitCode: failed.exitCode ?? null,
      endReason: failed.status === 'lost' ? `rank ${failed.rank} was lost` : `rank ${failed.rank} exited with code ${failed.exitCode}`,
    };
  }
  return { status: 'succeeded', exitCode: 0, endReason: ranks.length === 1 ? 'its rank exited with code 0' : `all ${ranks.length} ranks exited with code 0` };
}
