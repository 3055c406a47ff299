/**
 * The `order-preemption` plugin: a waiting job preempts running jobs that its profile's queue order ranks strictly
 * after it, whole gangs, never one of higher priority.
 *
 *   - with `oracle-shortest` (`srtf`): rank = remaining time; a job preempts those with more remaining time;
 *   - with `las` (`tiresias`): rank = attained-service queue; a job of a higher queue preempts those of lower queues
 *     (jobs of one queue never preempt each other);
 *   - with `fair-share` and `withinTeam: least-attained`: rank = the attained-service queue of the fair-share
 *     arguments' `lasThresholdsGpuS`, as with `las`; whose jobs it may preempt is `acrossTeams`:
 *       never       only its own team's;
 *       over-share  its own team's, and another team's when that team's share, less the victim's GPUs, is still at
 *                   least the preemptor's team's share plus the preemptor's GPUs (shares as fair share counts them at
 *                   the start of the cycle: running GPUs + decayed usage, by weight), so that LAS never takes GPUs
 *                   from a team that fair share puts first, and the preemption cannot be undone by the queue order.
 *     The default is `over-share`: fair share between teams is the point of that profile. `never` leaves a big
 *     team's long jobs running while small teams' short ones wait (on the quarter-pool Philly what-if: 5% longer
 *     average JCT, 2.7× the p99 queueing, for 27% fewer preemptions). Preempting any team's job is not offered: the
 *     queue order then disagrees with the preemption order — the victim's team, now below its share, is ahead in
 *     the queue, so the victim takes its GPUs back as they free and the preemptor preempts it again (on that
 *     what-if one job had been preempted 490 times 3.4 days into the window, and a 4-day replay that takes
 *     `over-share` 30 s had not finished after 15 minutes).
 *
 * Victims are chosen like `preemption` chooses them (fewest, then the cheapest per node, then unneeded ones dropped),
 * with the lowest-ranked (longest remaining, most service) first, then the most recently started. The victim gets the
 * profile's grace to checkpoint and goes back to the queue; reason `queue_order`.
 */
import { formatDuration, type Job, type TeamConfig, type TeamUsage } from '@tutti/model';
import { computeTeamShares, jobGpus } from '../queue-sort/fair-share.ts';
import { computeAttainedGpuMs, computeLasQueue, type LasArgs } from '../queue-sort/las-sort.ts';
import { computeOracleRankMs } from '../queue-sort/oracle-sort.ts';
import type { AcrossTeams, FairShareArgs } from '../framework/profile.ts';

export interface OrderPreemptionArgs {
  /** The most a victim's grace may be, ms (see `PreemptionArgs.maxGraceMs`). @default none */
  readonly maxGraceMs?: number;
  /** At most this many waiting jobs get room made by preemption per cycle. @default 16 */
  readonly maxPreemptorsPerCycle: number;
  /** Under `fair-share` with `withinTeam: least-attained` only: whose jobs a job may preempt (module comment). @default over-share */
  readonly acrossTeams: AcrossTeams;
}

/** A job's place in the queue order as a number: smaller goes first. Defined for pending and running jobs. */
export interface QueueRank {
  readonly of: (job: Job) => number;
  /** Why `victim` ranks after `preemptor`, for the victim's history. */
  readonly explain: (preemptor: Job, preemptorRank: number, victimRank: number) => string;
  /** Whether `preemptor` may preempt `victim` at all (ranks aside); absent: always. */
  readonly mayPreempt?: (preemptor: Job, victim: Job) => boolean;
}

export interface QueueRankInput {
  readonly now: number;
  readonly oracleRemainingMs?: ReadonlyMap<string, number>;
  readonly attainedServiceGpuMs?: ReadonlyMap<string, number>;
  /** For fair share (`acrossTeams: over-share`): running jobs, teams and usage as `CycleInput` has them. */
  readonly running?: readonly Job[];
  readonly teams?: readonly TeamConfig[];
  readonly usage?: readonly TeamUsage[];
}

/** What of the compiled profile the rank reads (`CompiledProfile` is one). */
export interface QueueRankConfig {
  readonly oracle: boolean;
  readonly las: LasArgs | undefined;
  readonly fairShare?: FairShareArgs | undefined;
  readonly orderPreemption?: OrderPreemptionArgs | undefined;
}

/** The rank of the profile's queue sort, or undefined for a sort that ranks by nothing but priority and submission. */
export function createQueueRank(queueSort: QueueRankConfig, input: QueueRankInput): QueueRank | undefined {
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
  const fairShare = queueSort.fairShare;
  if (fairShare?.withinTeam === 'least-attained') {
    const attained = input.attainedServiceGpuMs;
    const thresholds = { queueThresholdsGpuS: fairShare.lasThresholdsGpuS };
    const acrossTeams = queueSort.orderPreemption?.acrossTeams ?? 'over-share';
    return {
      of: (job) => computeLasQueue(computeAttainedGpuMs(job, attained, input.now), thresholds),
      explain: (preemptor, p, v) => `preempted for job ${preemptor.id} of team ${preemptor.spec.team} (least attained service within fair share: queue ${p} is ahead of this job's queue ${v})`,
      mayPreempt: createTeamRule(acrossTeams, fairShare, input),
    };
  }
  return undefined;
}

/** Which teams' jobs a job may preempt under fair share (see the module comment). */
function createTeamRule(acrossTeams: AcrossTeams, args: FairShareArgs, input: QueueRankInput): (preemptor: Job, victim: Job) => boolean {
  if (acrossTeams === 'never') return (preemptor, victim) => victim.spec.team === preemptor.spec.team;
  const runningGpus = new Map<string, number>();
  for (const job of input.running ?? []) runningGpus.set(job.spec.team, (runningGpus.get(job.spec.team) ?? 0) + jobGpus(job));
  const shares = computeTeamShares({ teams: input.teams ?? [], usage: input.usage ?? [], runningGpus, now: input.now, args });
  return (preemptor, victim) => {
    const mine = preemptor.spec.team;
    const theirs = victim.spec.team;
    if (theirs === mine) return true;
    return shares.shareOf(theirs) - jobGpus(victim) / shares.weightOf(theirs) >= shares.shareOf(mine) + jobGpus(preemptor) / shares.weightOf(mine);
  };
}

/** Whether `victim` may be preempted for `preemptor` under the queue order, and its rank (higher = preempted first). */
export function rankOrderVictim(preemptor: Job, preemptorRank: number, victim: Job, rank: QueueRank): number | undefined {
  if (victim.spec.priority > preemptor.spec.priority) return undefined;
  if (rank.mayPreempt && !rank.mayPreempt(preemptor, victim)) return undefined;
  const victimRank = rank.of(victim);
  return victimRank > preemptorRank ? victimRank : undefined;
}

function formatRemaining(ms: number): string {
  return Number.isFinite(ms) ? formatDuration(Math.max(0, Math.round(ms))) : 'unknown';
}
