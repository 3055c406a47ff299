/**
 * The life of a running job as one pure state machine: events in, commands out (see lifecycle-events.ts). The server
 * and the simulator drive the same instance type; neither decides anything about a job's life itself.
 *
 *   placed ──launch──▶ ranks_started ──▶ running ──rank_exited (all 0)──────────────────────▶ finish (succeeded)
 *                                           │ rank failed / lost, cancel, preempt, max_duration, hang
 *                                           ▼
 *                           stopping: record_stop, then signal_ranks (SIGKILL at the deadline)
 *                                           │ last rank out
 *                                           ▼
 *                     decideAttemptOutcome: finish, or requeue (a preemption; a restart after its backoff)
 *
 * It owns, per running attempt: its ranks' states, the stop under way (the first cause wins; a stop decided while
 * the ranks are still being launched is signalled once they are), the max_duration deadline and the hang timer. And
 * across jobs: the attained service of requeued jobs and the run times of finished ones (what the next cycle's
 * input reads), and which victims are being stopped for which pending job (marked in the cycle's `running`, so the
 * scheduler neither names them again nor forgets their GPUs are about to be free).
 *
 * Pure: no I/O, no clock (every event comes with `now`), no randomness. The store stays the truth: after a restart,
 * the driver rebuilds this state from it (`restored`, then `adopted`).
 */
import { computeGpusHeld, decideStopGrace, describeGraceSource, formatDuration } from '@tutti/model';
import type { Job, StopGrace } from '@tutti/model';
import { recordFinishedDuration } from '@tutti/scheduler';
import type { RunningJobInput } from '@tutti/scheduler';
import { decideAttemptOutcome, findFirstFailedRank } from './attempt-outcome.ts';
import type { RankEnd } from './attempt-outcome.ts';
import type { LifecycleCommand, LifecycleEvent, PlacedRank, RestoredRank } from './lifecycle-events.ts';
import { describeRankExit, describeStop } from './stop.ts';
import type { RecordedStop, StopCause } from './stop.ts';
import { TeamUsageLedger } from './team-usage-ledger.ts';

export interface LifecycleSettings {
  /** The grace of a stop of a job without its own `preemption_grace` (`tutti up --grace`). */
  defaultGraceMs: number;
  /** The scheduler profile's maximum grace (`maxGraceMs`), if it sets one. */
  maxGraceMs?: number;
  /** The one fair-share half-life (the profile's `fair-share.halfLifeMs`). */
  halfLifeMs: number;
  /**
   * Finished run times kept per key for run-time estimates (the profile's estimate window); none are kept without
   * it (no plugin of the profile reads them).
   */
  durationWindow?: number;
  /**
   * How late the backend may report a rank's exit after the rank ended (the Slurm backend's: until Slurm releases the
   * job's nodes, bounded). A hang is declared only after `hang_timeout` plus this much silence, so that a gang whose
   * exits are still on their way is never taken for a hung one. @default 0
   */
  exitReportDelayMs?: number;
}

type RankStatus = 'launching' | 'running' | 'exited' | 'lost';

interface RankState extends RankEnd {
  node: string;
  status: RankStatus;
}

interface ActiveStop {
  cause: StopCause;
  /** When the stop was decided (epoch ms). */
  since: number;
  /** As recorded (`record_stop`), once it was. */
  recorded?: RecordedStop;
  /** Whether its ranks were signalled (a stop decided during the launch waits for it). */
  signalled: boolean;
}

interface Attempt {
  job: Job;
  attempt: number;
  /** Its ranks, in the order placed (or restored): rank numbers 0..n-1, so rank r is at r (see `rankOf`). */
  ranks: RankState[];
  launched: boolean;
  startedAt?: number;
  stop?: ActiveStop;
  maxDurationAt?: number;
  /** The last progress record's time, or when the attempt started being watched. */
  lastProgressAt: number;
  watchedSince: number;
  lastValues?: Readonly<Record<string, unknown>>;
  /** A restored attempt waits for `adopted` before its stop is carried on. */
  awaitingAdoption: boolean;
}

/** The attempt's rank numbered `rank`: at that position, as placed, else found by its number. */
function rankOf(attempt: Attempt, rank: number): RankState | undefined {
  const at = attempt.ranks[rank];
  return at?.rank === rank ? at : attempt.ranks.find((r) => r.rank === rank);
}

/** Whether a pending job may be placed now: not while it waits out a restart's backoff. */
export function isEligible(job: Pick<Job, 'notBefore'>, now: number): boolean {
  return job.notBefore === undefined || job.notBefore <= now;
}

/**
 * What an event that commands nothing answers: one shared, frozen array. The simulator feeds hundreds of thousands of
 * events (a rank exit per GPU of every job), most of which command nothing; an array each was garbage to collect.
 */
const NO_COMMANDS: readonly LifecycleCommand[] = Object.freeze([]);

export class JobLifecycle {
  readonly settings: LifecycleSettings;
  /** Each team's decayed GPU use: the one ledger the cycle's fair share and the views read. */
  readonly usage: TeamUsageLedger;
  /** Run times of recently succeeded jobs by team and size (the scheduler's `durationHistory`). */
  readonly durationHistory = new Map<string, number[]>();
  private readonly attempts = new Map<string, Attempt>();
  /** GPU-milliseconds of each queued or running job's ended attempts (least-attained-service profiles). */
  private readonly pastServiceGpuMs = new Map<string, number>();
  /** Milliseconds each queued or running job ran in its ended attempts: a finished job's run time is all of them. */
  private readonly pastRunMs = new Map<string, number>();

  constructor(settings: LifecycleSettings) {
    this.settings = settings;
    this.usage = new TeamUsageLedger(settings.halfLifeMs);
  }

  /** The grace of every stop of `job`: its own, else the default, at most the profile's maximum (`decideStopGrace`). */
  stopGraceOf(job: Job): StopGrace {
    return decideStopGrace(job.spec.preemptionGraceMs, this.settings.defaultGraceMs, this.settings.maxGraceMs);
  }

  /** What a hang waits beyond `hang_timeout`: how late the backend may report exits (`exitReportDelayMs`). */
  private get hangSlackMs(): number {
    return this.settings.exitReportDelayMs ?? 0;
  }

  /** Whether the job's current attempt is being stopped. */
  isStopping(jobId: string): boolean {
    return this.attempts.get(jobId)?.stop !== undefined;
  }

  /** Whether a progress record for the job is taken: only while it runs and is not being stopped. */
  acceptsProgress(jobId: string): boolean {
    const attempt = this.attempts.get(jobId);
    return attempt !== undefined && attempt.launched && attempt.stop === undefined;
  }

  /** The running job's current attempt number, if the core tracks it. */
  attemptOf(jobId: string): number | undefined {
    return this.attempts.get(jobId)?.attempt;
  }

  /** How many ranks the job's current attempt has (0 when the core tracks none): those a driver ends them all by. */
  rankCountOf(jobId: string): number {
    return this.attempts.get(jobId)?.ranks.length ?? 0;
  }

  /** The victim marker of a job stopped for a plan's preemption (what the cycle's `running` carries), if it is one. */
  stoppingMarkerOf(jobId: string): RunningJobInput['stopping'] {
    const stop = this.attempts.get(jobId)?.stop;
    if (stop?.cause.kind !== 'preempted' || stop.cause.forJobId === undefined) return undefined;
    return { since: stop.since, forJobId: stop.cause.forJobId };
  }

  /** `running` as the cycle's input: victims being stopped for a pending job are marked with it. */
  markStopping(running: readonly Job[]): RunningJobInput[] {
    return running.map((job) => {
      const stopping = this.stoppingMarkerOf(job.id);
      return stopping ? { ...job, stopping } : job;
    });
  }

  /** Attained service (GPU-ms) of every job that has any: its ended attempts, plus the current run of `running`. */
  attainedServiceGpuMs(running: readonly Job[], now: number): Map<string, number> {
    const attained = new Map(this.pastServiceGpuMs);
    for (const job of running) if (job.startedAt !== undefined) attained.set(job.id, this.attainedServiceGpuMsOf(job, now));
    return attained;
  }

  /** Attained service (GPU-ms) of one job: its ended attempts, plus its current run while it runs (or is being stopped). */
  attainedServiceGpuMsOf(job: Job, now: number): number {
    const past = this.pastServiceGpuMs.get(job.id) ?? 0;
    if (job.status !== 'running' || job.startedAt === undefined) return past;
    return past + computeGpusHeld(job.spec) * Math.max(0, now - job.startedAt);
  }

  /** After a restart: how long a job's ended attempts ran, read back from the store. */
  seedPastAttempts(jobId: string, gpus: number, runMs: number): void {
    if (runMs <= 0) return;
    this.pastRunMs.set(jobId, runMs);
    this.pastServiceGpuMs.set(jobId, gpus * runMs);
  }

  /** After a restart: a succeeded job's run time, oldest first (kept only when the profile estimates from them). */
  seedFinishedDuration(team: string, gpus: number, ms: number): void {
    if (this.settings.durationWindow !== undefined) recordFinishedDuration(this.durationHistory, team, gpus, ms, this.settings.durationWindow);
  }

  /** Handles one event at `now` (epoch ms); answers the commands to carry out, in order (read-only: often shared). */
  handle(event: LifecycleEvent, now: number): readonly LifecycleCommand[] {
    switch (event.kind) {
      case 'placed':
        return this.placed(event.job, event.ranks, now);
      case 'ranks_started':
        return this.ranksStarted(event.jobId, event.attempt, event.at, now, event.nodes);
      case 'launch_failed':
        return this.launchFailed(event.jobId, event.attempt, event.detail, event.retryAfterMs, now);
      case 'rank_exited':
        return this.rankExited(event, now);
      case 'cancel_requested': {
        const attempt = this.attempts.get(event.jobId);
        if (!attempt) return NO_COMMANDS;
        attempt.job = { ...attempt.job, cancelRequestedAt: attempt.job.cancelRequestedAt ?? now };
        return this.beginStop(attempt, { kind: 'cancelled' }, now);
      }
      case 'preempt': {
        const attempt = this.attempts.get(event.jobId);
        if (!attempt || attempt.stop) return NO_COMMANDS;
        return this.beginStop(attempt, { kind: 'preempted', message: event.message, ...(event.forJobId !== undefined ? { forJobId: event.forJobId } : {}) }, now);
      }
      case 'progress': {
        const attempt = this.attempts.get(event.jobId);
        if (!attempt || attempt.attempt !== event.attempt || attempt.stop) return NO_COMMANDS;
        attempt.lastProgressAt = Math.max(attempt.lastProgressAt, event.at);
        if (event.values) attempt.lastValues = { ...attempt.lastValues, ...event.values };
        return NO_COMMANDS;
      }
      case 'tick':
        return this.tick(event.gpusIdleSince, now);
      case 'node_state':
        return this.nodeState(event.node, event.state, event.detail, now);
      case 'restored':
        this.restored(event.job, event.ranks, event.stop, now);
        return NO_COMMANDS;
      case 'adopted':
        return this.adopted(event.jobId, now);
      case 'launch_interrupted':
        return this.launchInterrupted(event.job);
    }
  }

  // ---- transitions ------------------------------------------------------------------------------------------

  private placed(job: Job, ranks: readonly PlacedRank[], now: number): readonly LifecycleCommand[] {
    const attempt = job.attempt ?? 1;
    // Every field an attempt (and a rank) will have, from the start: one object shape for all, no fields added later.
    const state: Attempt = {
      job,
      attempt,
      ranks: ranks.map(({ rank, node }) => ({ rank, node, status: 'launching', exitCode: undefined, finishedAt: undefined })),
      launched: false,
      startedAt: undefined,
      stop: undefined,
      maxDurationAt: undefined,
      lastProgressAt: now,
      watchedSince: now,
      lastValues: undefined,
      awaitingAdoption: false,
    };
    this.attempts.set(job.id, state);
    return [{ kind: 'launch', jobId: job.id, attempt }];
  }

  private ranksStarted(jobId: string, attemptNumber: number, at: number, now: number, nodes: readonly PlacedRank[] | undefined): readonly LifecycleCommand[] {
    const attempt = this.current(jobId, attemptNumber);
    if (!attempt || attempt.launched) return NO_COMMANDS;
    attempt.launched = true;
    // A node's state changes reach the ranks that run there, not where they were placed.
    if (nodes) {
      for (const { rank, node } of nodes) {
        const placed = rankOf(attempt, rank);
        if (placed) placed.node = node;
      }
    }
    attempt.startedAt = at;
    attempt.lastProgressAt = now;
    attempt.watchedSince = now;
    for (const rank of attempt.ranks) if (rank.status === 'launching') rank.status = 'running';
    const { maxDurationMs, hangTimeoutMs } = attempt.job.spec;
    const pendingStop = attempt.stop !== undefined && !attempt.stop.signalled;
    // Most attempts have no deadline, no hang timer and no stop: they command nothing.
    if (maxDurationMs === undefined && hangTimeoutMs === undefined && !pendingStop && attempt.job.cancelRequestedAt === undefined) return NO_COMMANDS;
    const commands: LifecycleCommand[] = [];
    if (maxDurationMs !== undefined) {
      attempt.maxDurationAt = at + maxDurationMs;
      commands.push({ kind: 'wake_at', at: attempt.maxDurationAt, why: 'max_duration' });
    }
    if (hangTimeoutMs !== undefined) commands.push({ kind: 'wake_at', at: now + hangTimeoutMs + this.hangSlackMs, why: 'hang' });
    // A stop decided while the ranks were being launched found nothing to signal: it is carried out now.
    if (pendingStop) commands.push(...this.signalStop(attempt, now));
    else if (attempt.job.cancelRequestedAt !== undefined) commands.push(...this.beginStop(attempt, { kind: 'cancelled' }, now));
    return commands;
  }

  private launchFailed(jobId: string, attemptNumber: number, detail: string, retryAfterMs: number | undefined, now: number): readonly LifecycleCommand[] {
    const attempt = this.current(jobId, attemptNumber);
    if (!attempt) return NO_COMMANDS;
    this.attempts.delete(jobId);
    if (retryAfterMs !== undefined && attempt.job.cancelRequestedAt === undefined) {
      const notBefore = now + retryAfterMs;
      return [
        { kind: 'requeue', jobId, attempt: attempt.attempt, reason: `could not start: ${detail}; tried again in ${formatDuration(retryAfterMs)}`, options: { notBefore } },
        { kind: 'wake_at', at: notBefore, why: 'backoff', jobId },
      ];
    }
    const end = attempt.job.cancelRequestedAt !== undefined
      ? { status: 'cancelled' as const, exitCode: null, endReason: 'cancelled' }
      : { status: 'failed' as const, exitCode: null, endReason: `could not start: ${detail}` };
    return [
      { kind: 'record_ranks_lost', jobId, attempt: attempt.attempt, ranks: attempt.ranks.map((r) => r.rank), at: now },
      { kind: 'finish', jobId, attempt: attempt.attempt, end },
    ];
  }

  private rankExited(exit: Extract<LifecycleEvent, { kind: 'rank_exited' }>, now: number): readonly LifecycleCommand[] {
    // A rank of an attempt that is over (killed while its job was requeued) must not act on the next attempt.
    const attempt = this.current(exit.jobId, exit.attempt);
    const rank = attempt && rankOf(attempt, exit.rank);
    if (!attempt || !rank || rank.status === 'exited' || rank.status === 'lost') return NO_COMMANDS;
    rank.status = exit.lost ? 'lost' : 'exited';
    rank.exitCode = exit.exitCode;
    rank.finishedAt = exit.at;
    const detail = describeRankExit(exit.rank, exit);
    const record: Extract<LifecycleCommand, { kind: 'record_rank_exit' }> = { kind: 'record_rank_exit', jobId: exit.jobId, attempt: attempt.attempt, rank: exit.rank, status: rank.status, exitCode: exit.exitCode, finishedAt: exit.at, detail };
    if (exit.signal !== undefined) record.signal = exit.signal;
    const commands: LifecycleCommand[] = [record];
    if (exit.lost || exit.exitCode !== 0) {
      commands.push(...this.beginStop(attempt, { kind: 'rank_failed', rank: exit.rank, exitCode: exit.exitCode, detail, ...(exit.lost ? { lost: true } : {}) }, now));
    }
    commands.push(...this.endIfAllOut(attempt, now));
    return commands;
  }

  private tick(gpusIdleSince: ReadonlyMap<string, number> | undefined, now: number): readonly LifecycleCommand[] {
    const commands: LifecycleCommand[] = [];
    for (const attempt of [...this.attempts.values()]) {
      if (!attempt.launched || attempt.stop || attempt.awaitingAdoption) continue;
      const { maxDurationMs, hangTimeoutMs } = attempt.job.spec;
      if (attempt.maxDurationAt !== undefined && maxDurationMs !== undefined && now >= attempt.maxDurationAt) {
        commands.push(...this.beginStop(attempt, { kind: 'max_duration', limitMs: maxDurationMs }, now));
        continue;
      }
      if (hangTimeoutMs === undefined) continue;
      const idleSince = gpusIdleSince?.get(attempt.job.id);
      const gpusIdle = idleSince !== undefined && now - Math.max(idleSince, attempt.watchedSince) >= hangTimeoutMs + this.hangSlackMs;
      const quiet = now - attempt.lastProgressAt >= hangTimeoutMs + this.hangSlackMs;
      if (!quiet && !gpusIdle) {
        commands.push({ kind: 'wake_at', at: attempt.lastProgressAt + hangTimeoutMs + this.hangSlackMs, why: 'hang' });
        continue;
      }
      const last = attempt.lastValues
        ? `last progress ${JSON.stringify(attempt.lastValues)} at ${new Date(attempt.lastProgressAt).toISOString()}`
        : 'no progress record since the attempt started';
      const detail = quiet
        ? `no progress record for ${formatDuration(hangTimeoutMs)} (hang_timeout); ${last}`
        : `every GPU of the job idle (0% utilization) for ${formatDuration(hangTimeoutMs)} (hang_timeout) while its processes live; ${last}`;
      commands.push({ kind: 'append_event', jobId: attempt.job.id, type: 'hung', message: `declared hung: ${detail}`, data: { last: attempt.lastValues ?? null, last_progress_at: attempt.lastProgressAt } });
      commands.push(...this.beginStop(attempt, { kind: 'hung', timeoutMs: hangTimeoutMs, detail }, now));
    }
    return commands;
  }

  private nodeState(node: string, state: string, detail: string | undefined, now: number): readonly LifecycleCommand[] {
    if (state !== 'down') return NO_COMMANDS;
    const commands: LifecycleCommand[] = [];
    for (const attempt of [...this.attempts.values()]) {
      for (const rank of attempt.ranks) {
        if (rank.node !== node || rank.status === 'exited' || rank.status === 'lost') continue;
        commands.push(...this.rankExited({ kind: 'rank_exited', jobId: attempt.job.id, attempt: attempt.attempt, rank: rank.rank, exitCode: null, lost: true, at: now }, now));
      }
    }
    void detail;
    return commands;
  }

  private restored(job: Job, ranks: readonly RestoredRank[], recorded: { recorded: RecordedStop; at: number } | undefined, now: number): void {
    const attempt = job.attempt ?? 1;
    const state: Attempt = {
      job,
      attempt,
      ranks: ranks.map((r) => ({ rank: r.rank, node: r.node, status: r.status === 'starting' ? 'running' : r.status, exitCode: r.exitCode, finishedAt: r.finishedAt })),
      launched: true,
      startedAt: job.startedAt,
      stop: undefined,
      maxDurationAt: job.spec.maxDurationMs !== undefined && job.startedAt !== undefined ? job.startedAt + job.spec.maxDurationMs : undefined,
      lastProgressAt: now,
      watchedSince: now,
      lastValues: undefined,
      awaitingAdoption: true,
    };
    // Why the attempt was being stopped when the control plane died: the stop it recorded (then signalled, or about to
    // be), else a cancel, else the first rank recorded as failed (their stops had not begun).
    if (recorded && recorded.recorded.attempt === attempt) {
      state.stop = { cause: recorded.recorded.cause, since: recorded.at, recorded: recorded.recorded, signalled: false };
    } else if (job.cancelRequestedAt !== undefined) {
      state.stop = { cause: { kind: 'cancelled' }, since: now, signalled: false };
    } else {
      const failed = findFirstFailedRank(state.ranks);
      if (failed) {
        const detail = describeRankExit(failed.rank, { exitCode: failed.exitCode ?? null, lost: failed.status === 'lost' });
        state.stop = { cause: { kind: 'rank_failed', rank: failed.rank, exitCode: failed.exitCode ?? null, detail, ...(failed.status === 'lost' ? { lost: true } : {}) }, since: now, signalled: false };
      }
    }
    this.attempts.set(job.id, state);
  }

  private adopted(jobId: string, now: number): readonly LifecycleCommand[] {
    const attempt = this.attempts.get(jobId);
    if (!attempt?.awaitingAdoption) return NO_COMMANDS;
    attempt.awaitingAdoption = false;
    const ended = this.endIfAllOut(attempt, now);
    if (ended.length > 0) return ended;
    if (!attempt.stop) return NO_COMMANDS;
    const recorded = attempt.stop.recorded;
    if (!recorded) return this.signalStop(attempt, now);
    // Carried on as recorded: the deadline the ranks were told stays the one they get; nothing new is recorded.
    attempt.stop.signalled = true;
    return [{ kind: 'signal_ranks', jobId, attempt: attempt.attempt, signal: recorded.signal, deadline: recorded.deadline, resumed: true }];
  }

  private launchInterrupted(job: Job): readonly LifecycleCommand[] {
    this.attempts.delete(job.id);
    const attempt = job.attempt ?? 1;
    if (job.cancelRequestedAt !== undefined) return [{ kind: 'finish', jobId: job.id, attempt, end: { status: 'cancelled', exitCode: null, endReason: 'cancelled' } }];
    return [{ kind: 'requeue', jobId: job.id, attempt, reason: 'the control plane restarted before the job was launched', options: {} }];
  }

  // ---- stops and ends ---------------------------------------------------------------------------------------

  /** Starts stopping a gang unless it is already being stopped: the first cause is the one the job ends with. */
  private beginStop(attempt: Attempt, cause: StopCause, now: number): readonly LifecycleCommand[] {
    if (attempt.stop) return NO_COMMANDS;
    attempt.stop = { cause, since: now, signalled: false };
    if (!attempt.launched || attempt.awaitingAdoption) return NO_COMMANDS;
    return this.signalStop(attempt, now);
  }

  /** Records the stop (cause, signal, deadline), then signals the live ranks: durable before any rank hears of it. */
  private signalStop(attempt: Attempt, now: number): readonly LifecycleCommand[] {
    const stop = attempt.stop;
    if (!stop || !this.hasLiveRanks(attempt)) return NO_COMMANDS;
    stop.signalled = true;
    const { graceMs, source } = this.stopGraceOf(attempt.job);
    const signal = attempt.job.spec.stopSignal ?? 'SIGTERM';
    const recorded: RecordedStop = { signal, grace_ms: graceMs, grace_source: source, deadline: now + graceMs, attempt: attempt.attempt, cause: stop.cause };
    stop.recorded = recorded;
    return [
      {
        kind: 'record_stop',
        jobId: attempt.job.id,
        stop: recorded,
        message: `${describeStop(stop.cause)} (${signal}, SIGKILL after ${formatDuration(Math.max(1, graceMs))}: ${describeGraceSource(source)})`,
      },
      { kind: 'signal_ranks', jobId: attempt.job.id, attempt: attempt.attempt, signal, deadline: recorded.deadline, resumed: false },
    ];
  }

  private hasLiveRanks(attempt: Attempt): boolean {
    for (const rank of attempt.ranks) if (rank.status === 'running' || rank.status === 'launching') return true;
    return false;
  }

  /** Once every rank is out: the attempt's outcome (`decideAttemptOutcome`), and the ledgers updated with it. */
  private endIfAllOut(attempt: Attempt, now: number): readonly LifecycleCommand[] {
    if (attempt.awaitingAdoption || attempt.ranks.length === 0 || this.hasLiveRanks(attempt)) return NO_COMMANDS;
    const { job } = attempt;
    this.attempts.delete(job.id);
    const cause = attempt.stop?.cause ?? (job.cancelRequestedAt !== undefined ? ({ kind: 'cancelled' } as const) : undefined);
    const outcome = decideAttemptOutcome(job, cause, attempt.ranks);
    const ranMs = attempt.startedAt === undefined ? 0 : Math.max(0, now - attempt.startedAt);
    const gpus = computeGpusHeld(job.spec);
    if (outcome.kind === 'finish') {
      // The run-time history learns how long the job needed: every attempt it ran, not only the last.
      const totalRunMs = (this.pastRunMs.get(job.id) ?? 0) + ranMs;
      this.pastServiceGpuMs.delete(job.id);
      this.pastRunMs.delete(job.id);
      if (outcome.end.status === 'succeeded' && this.settings.durationWindow !== undefined) {
        recordFinishedDuration(this.durationHistory, job.spec.team, gpus, totalRunMs, this.settings.durationWindow);
      }
      const finish: Extract<LifecycleCommand, { kind: 'finish' }> = { kind: 'finish', jobId: job.id, attempt: attempt.attempt, end: outcome.end };
      if (cause !== undefined) finish.cause = cause;
      return [finish];
    }
    this.pastServiceGpuMs.set(job.id, (this.pastServiceGpuMs.get(job.id) ?? 0) + gpus * ranMs);
    this.pastRunMs.set(job.id, (this.pastRunMs.get(job.id) ?? 0) + ranMs);
    const notBefore = outcome.backoffMs > 0 ? now + outcome.backoffMs : undefined;
    const commands: LifecycleCommand[] = [
      { kind: 'requeue', jobId: job.id, attempt: attempt.attempt, reason: outcome.reason, options: { ...outcome.options, ...(notBefore !== undefined ? { notBefore } : {}) }, ...(cause !== undefined ? { cause } : {}) },
    ];
    if (notBefore !== undefined) commands.push({ kind: 'wake_at', at: notBefore, why: 'backoff', jobId: job.id });
    return commands;
  }

  /** The tracked attempt of `jobId` if it is attempt `attemptNumber`. */
  private current(jobId: string, attemptNumber: number): Attempt | undefined {
    const attempt = this.attempts.get(jobId);
    return attempt && attempt.attempt === attemptNumber ? attempt : undefined;
  }

  /** Forgets a job the driver saw leave (finished outside the lifecycle, e.g. a recovery that requeued it). */
  forget(jobId: string): void {
    this.attempts.delete(jobId);
  }
}
