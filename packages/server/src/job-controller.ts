/**
 * The server's driver of the control core: it turns what happens — a cycle due, a placement committed, a rank's
 * exit, a cancel, a tick, a progress record, a restart — into lifecycle events, feeds them to the core
 * (`JobLifecycle` of @tutti/control, the same one the simulator drives) and carries out the commands it answers
 * against the store and the execution backend. No decision about a job's life is made here.
 *
 *   cycle:  store.snapshot + queue ──buildCycleInput──▶ runCycle ──applyCycleResult──▶ commit placements ──▶ placed
 *   events: placed / ranks_started / rank_exited / cancel / preempt / tick / progress ──▶ JobLifecycle.handle
 *   commands (in order, per job under its lock): launch, record_rank_exit, record_stop, signal_ranks, finish, requeue…
 *
 * Every command that records is durable in the store before the next one acts: a stop is recorded before its signal,
 * a rank's exit before the job's end. A restart (see restart-recovery.ts) rebuilds the core's state from the store
 * and carries on: running ranks are adopted, ranks that ended meanwhile are read back with their real exit codes, a
 * stop under way is resumed at its recorded deadline.
 *
 * This file only composes the parts, each in its own file:
 * - scheduling-loop.ts: the pending queue and the pace of cycles (the cycle's input and plan are the core's);
 * - command-executor.ts: the core's commands carried out, per job in order under its lock, kept through a full disk;
 * - attempt-launcher.ts: `launch` carried out (runtime environment, backend launch, handles recorded);
 * - progress-watch.ts: progress records read from rank logs and the API, told to the core;
 * - restart-recovery.ts: running jobs re-adopted after a restart, the ledgers seeded from the store;
 * - backend-events.ts: the backend's rank exits and node changes as the core's events.
 */
import type { Diagnosis, Job, NodeInfo, TeamConfig } from '@tutti/model';
import { JobLifecycle, lifecycleSettingsFor } from '@tutti/control';
import type { LifecycleEvent } from '@tutti/control';
import type { SchedulerProfile } from '@tutti/scheduler';
import type { ExecutionBackend } from '@tutti/backends';
import { asDiskFull } from '@tutti/store';
import type { CancelOutcome, StateStore } from '@tutti/store';
import { AttemptLauncher } from './attempt-launcher.ts';
import { nodeStateEvent, rankExitEvent } from './backend-events.ts';
import { CommandExecutor } from './command-executor.ts';
import type { DiskFullLog } from './disk-full-log.ts';
import type { EventFeed } from './event-feed.ts';
import type { JobTokens } from './job-tokens.ts';
import type { LifecyclePoint } from './lifecycle-point.ts';
import type { Logger } from './logger.ts';
import type { ServerMetrics } from './metrics.ts';
import { ProgressWatch } from './progress-watch.ts';
import { StoreOutageLog } from './store-outage.ts';
import { recoverRunningJobs, seedFromHistory } from './restart-recovery.ts';
import { SchedulingLoop } from './scheduling-loop.ts';

export type { LifecyclePoint } from './lifecycle-point.ts';

export interface JobControllerOptions {
  store: StateStore;
  backend: ExecutionBackend;
  feed: EventFeed;
  metrics: ServerMetrics;
  logger: Logger;
  now: () => number;
  /**
   * Time between the stop signal and SIGKILL on any stop (cancel, preemption, restart) of a job without its own
   * `preemption_grace` (`tutti up --grace`); the profile's `maxGraceMs` caps both (see `decideStopGrace`).
   */
  stopGraceMs: number;
  /**
   * The server's data dir, named when a full disk is told. The controller opens no file itself: rank directories,
   * logs and the stop deadline are the backend's (`prepareAttempt`, `readLog`, `writeStopDeadline`).
   */
  dataDir: string;
  /** A scheduling cycle also runs on this period, even when nothing happened (ages, max_duration). */
  tickMs: number;
  /** The scheduler profile every cycle runs with. */
  profile: SchedulerProfile;
  /** Teams and their quotas (from `tutti up --config`); none means every job is admitted. */
  teams: readonly TeamConfig[];
  /** Issues each job's TUTTI_JOB_TOKEN. */
  jobTokens: JobTokens;
  /** The API's address for TUTTI_API_URL (undefined until the server listens). */
  apiUrl: () => string | undefined;
  /**
   * Since when every GPU of a running job has been idle (0% utilization in every sample), or undefined when that is
   * not known (fake GPUs, no samples yet) or a GPU was busy in the latest sample.
   */
  gpusIdleSince?: (jobId: string) => number | undefined;
  /** Where a full disk is told (once per episode); without it, full-disk failures are not logged at all. */
  diskFull?: DiskFullLog;
  /** Each rank log's size cap (see log-cap.ts); none means logs grow without bound. */
  maxLogBytes?: number;
  /** Called right after each durable step of a job's life (see `LifecyclePoint`); tests kill the process there. */
  onLifecyclePoint?: (point: LifecyclePoint, jobId: string) => void;
  /**
   * Among replicas: how often the reasons pending jobs wait for that changed are written to the store, for followers
   * to answer from (a server alone writes them on shutdown only, and answers from memory).
   */
  pendingReasonsWriteMs?: number;
}

/** The most changed pending reasons one periodic write carries (see `pendingReasonsWriteMs`). */
const PENDING_REASONS_PER_WRITE = 1000;

export class JobController {
  private readonly store: StateStore;
  private readonly options: JobControllerOptions;
  /** The control core: every decision about a running job's life, and the ledgers the cycle reads. */
  private readonly lifecycle: JobLifecycle;
  private readonly scheduling: SchedulingLoop;
  private readonly executor: CommandExecutor;
  private readonly launcher: AttemptLauncher;
  private readonly progress: ProgressWatch;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(options: JobControllerOptions) {
    this.options = options;
    this.store = options.store;
    const { store, backend, feed, metrics, logger, now } = options;
    const lifecycle = (this.lifecycle = new JobLifecycle(lifecycleSettingsFor(options.profile, options.stopGraceMs, options.backend.exitReportDelayMs)));
    const isClosed = () => this.closed;
    const outages = new StoreOutageLog(logger, now);
    // Failures that pass by themselves: the write is kept and tried again on a later tick, and told once per episode.
    const reportTransient = (error: unknown) => outages.report(error) || (options.diskFull ? options.diskFull.report(error) : asDiskFull(error) !== undefined);
    const lifecyclePoint = (point: LifecyclePoint, jobId: string) => options.onLifecyclePoint?.(point, jobId);
    const dispatch = (event: LifecycleEvent) => this.executor.dispatch(event);
    this.progress = new ProgressWatch({
      store, backend, feed, logger, now, dispatch, reportTransient,
      acceptsProgress: (jobId) => lifecycle.acceptsProgress(jobId),
      ...(options.maxLogBytes !== undefined ? { maxLogBytes: options.maxLogBytes } : {}),
    });
    this.scheduling = new SchedulingLoop({
      store, lifecycle, metrics, feed, logger, now, isClosed, reportTransient, lifecyclePoint,
      profile: options.profile,
      teams: options.teams,
      carryOutAll: (commands) => this.executor.carryOutAll(commands),
      placed: (job, placement, tasks) => {
        this.launcher.hold(job.id, placement, tasks);
        dispatch({ kind: 'placed', job, ranks: tasks.map((t) => ({ rank: t.rank, node: t.node })) });
      },
    });
    this.executor = new CommandExecutor({
      store, backend, lifecycle, feed, logger, now, isClosed, reportTransient, lifecyclePoint,
      progress: this.progress,
      launch: (jobId) => this.launcher.launch(jobId),
      forgetPlacement: (jobId) => this.launcher.forget(jobId),
      requeued: (job) => this.scheduling.requeued(job),
      requestSchedule: () => this.scheduling.requestSchedule(),
      wakeQueueAt: (at) => this.scheduling.wakeQueueAt(at),
    });
    this.launcher = new AttemptLauncher({
      store, backend, lifecycle, feed, metrics, logger, now, reportTransient, lifecyclePoint,
      executor: this.executor,
      progress: this.progress,
      dataDir: options.dataDir,
      jobTokens: options.jobTokens,
      apiUrl: options.apiUrl,
      ...(options.diskFull ? { diskFull: options.diskFull } : {}),
    });
    backend.onRankExit((exit) => dispatch(rankExitEvent(exit, lifecycle.attemptOf(exit.jobId))));
    backend.onNodeState((change) => dispatch(nodeStateEvent(change)));
  }

  /** True until re-adoption after a (re)start is done: the API answers, but nothing is scheduled yet. */
  get recovering(): boolean {
    return !this.scheduling.isOpen && !this.closed;
  }

  /** Re-adopts what ran before a restart, then starts the loop. */
  async start(): Promise<void> {
    const { store, backend, feed, logger, now } = this.options;
    for (const job of await store.listJobsByStatus(['pending'])) this.scheduling.enqueue(job);
    const parts = { store, backend, feed, logger, now, lifecycle: this.lifecycle, executor: this.executor, progress: this.progress };
    await recoverRunningJobs(parts);
    await seedFromHistory(parts, this.scheduling.queued());
    // A recovery may have requeued jobs: the queue is read again, with the backoffs still to wait out.
    this.scheduling.open(await store.listJobsByStatus(['pending']));
    let lastReasonsWrite = this.options.now();
    this.timer = setInterval(() => {
      const { pendingReasonsWriteMs } = this.options;
      if (pendingReasonsWriteMs !== undefined && this.options.now() - lastReasonsWrite >= pendingReasonsWriteMs) {
        lastReasonsWrite = this.options.now();
        this.scheduling.persistChangedPendingReasons(PENDING_REASONS_PER_WRITE);
      }
      this.executor.writeUnwritten();
      this.executor.dispatch({ kind: 'tick', gpusIdleSince: this.progress.gpusIdleSince(this.options.gpusIdleSince) });
      this.progress.poll();
      this.scheduling.tick();
    }, this.options.tickMs);
    this.timer.unref();
    this.scheduling.requestSchedule();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.scheduling.stop();
    await this.scheduling.idle();
    await this.progress.idle();
    await this.executor.idle();
    await this.scheduling.persistPendingReasons().catch((error: unknown) => this.options.logger.warn(`could not save pending reasons: ${String(error)}`));
  }

  /** The stored nodes changed (a node drained, down or back): the next cycle places by them. */
  nodesChanged(): void {
    this.scheduling.requestSchedule();
  }

  /** A job the API just stored as pending. */
  enqueue(job: Job): void {
    this.scheduling.enqueue(job);
  }

  /** Each team's decayed GPU use as of now (what the next cycle's fair share starts from), and the half-life. */
  fairShareState(): { decayedGpuSeconds: ReadonlyMap<string, number>; halfLifeMs: number } {
    const usage = this.lifecycle.usage.peek(this.options.now() / 1000);
    return { decayedGpuSeconds: new Map(usage.map((u) => [u.team, u.decayedGpuSeconds])), halfLifeMs: this.lifecycle.usage.halfLifeMs };
  }

  /** Pending jobs per team, from the queue. */
  pendingCountsByTeam(): Map<string, number> {
    return this.scheduling.pendingCountsByTeam();
  }

  /** Why a pending job waits, from the latest cycle (undefined before its first cycle). */
  pendingDiagnosis(jobId: string): Diagnosis | undefined {
    return this.scheduling.pendingDiagnosis(jobId);
  }

  get queueLength(): number {
    return this.scheduling.queueLength;
  }

  /**
   * Asks for a scheduling cycle. Cycles never overlap; requests during a cycle coalesce into one more; and under
   * load, consecutive cycles keep a gap (see scheduling-loop.ts). Before `start` nothing is scheduled.
   */
  requestSchedule(): void {
    this.scheduling.requestSchedule();
  }

  /** Resolves once no cycle is running or requested (for tests and benchmarks). */
  settle(): Promise<void> {
    return this.scheduling.settle();
  }

  /**
   * A cancel the store has recorded (by this replica's API, see ReplicaControl.cancel, or another's): a pending job
   * leaves the queue, a running one's gang is stopped. Told twice, the second changes nothing.
   */
  cancelRecorded(jobId: string, outcome: CancelOutcome): void {
    if (outcome === 'cancelled') this.scheduling.dequeue(jobId);
    if (outcome === 'stopping') {
      this.options.onLifecyclePoint?.('cancel_recorded', jobId);
      this.executor.dispatch({ kind: 'cancel_requested', jobId });
    }
  }

  /** Whether the job is in this controller's queue. */
  isQueued(jobId: string): boolean {
    return this.scheduling.isQueued(jobId);
  }

  /**
   * Preempts a running job: stops its gang with its stop signal and grace, then puts it back in the queue as
   * `pending` with a `preempted` event. Not counted against max_restarts. A job already being stopped keeps its
   * first cause.
   */
  async preempt(jobId: string, options: { message?: string } = {}): Promise<'preempting' | 'not_running' | 'not_found'> {
    const job = await this.store.getJob(jobId);
    if (!job) return 'not_found';
    if (job.status !== 'running') return 'not_running';
    this.executor.dispatch({ kind: 'preempt', jobId, message: options.message ?? 'preempted' });
    return 'preempting';
  }

  /** The last progress record of each running attempt (for /metrics and views). */
  lastProgress(): ReadonlyMap<string, { attempt: number; at: number; values: Readonly<Record<string, string | number | boolean>> }> {
    return this.progress.lastProgress();
  }

  /**
   * A progress record posted to the API (`POST /v1/jobs/:id/progress` with the job's token): stored and counted
   * for hang detection exactly like a record printed on stdout. Only a running job reports progress.
   */
  recordProgress(jobId: string, rank: number, values: Record<string, string | number | boolean>): Promise<'recorded' | 'not_running'> {
    return this.progress.recordProgress(jobId, rank, values);
  }
}

export type { NodeInfo, TeamConfig };
