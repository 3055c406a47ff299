/**
 * The control loop: decide on a snapshot, act through a plan, reconcile what the backend reports.
 *
 *   schedule(): snapshot + pending ──runCycle──▶ plan ──verifyPlan──▶ store.applyPlacements ──▶ backend.launch
 *   rank exits (backend) ──▶ record the rank ──▶ first failure stops the gang ──▶ last rank out ends the job
 *
 * Every decision is durable in the store before it is acted on, so a restart (see `recover`) finds the same
 * world: running ranks are adopted, ranks that ended meanwhile are read back with their real exit codes.
 */
import { computeTasksForPlacement, formatDuration, isTerminalJobStatus } from '@tutti/model';
import type { Diagnosis, Job, JobSpec, NodeInfo, Placement, Task } from '@tutti/model';
import { DEFAULT_PROFILE, runCycle, verifyPlan } from '@tutti/scheduler';
import type { ExecutionBackend, RankExit, RankHandle } from '@tutti/backends';
import type { JobEnd, StateStore, TaskUpdate } from '@tutti/store';
import type { EventFeed } from './event-feed.ts';
import type { Logger } from './logger.ts';
import type { ServerMetrics } from './metrics.ts';

export interface JobControllerOptions {
  store: StateStore;
  backend: ExecutionBackend;
  feed: EventFeed;
  metrics: ServerMetrics;
  logger: Logger;
  now: () => number;
  /** Time between SIGTERM and SIGKILL when a job is cancelled or stopped. */
  stopGraceMs: number;
  /** A scheduling cycle also runs on this period, even when nothing happened (ages, max_duration). */
  tickMs: number;
}

/** Why a running gang is being stopped. The first cause wins: the ranks that die of our SIGTERM do not count. */
export type StopCause =
  | { kind: 'rank_failed'; rank: number; exitCode: number | null; detail: string }
  | { kind: 'cancelled' }
  | { kind: 'max_duration'; limitMs: number };

/** The periodic tick runs a cycle at least this often even when nothing changed. */
const MAX_IDLE_CYCLE_GAP_MS = 10_000;

export class JobController {
  private readonly store: StateStore;
  private readonly backend: ExecutionBackend;
  private readonly options: JobControllerOptions;
  /** Jobs being stopped, with why. */
  private readonly stopping = new Map<string, StopCause>();
  /** Running jobs with a max_duration: job id → deadline (epoch ms). */
  private readonly deadlines = new Map<string, number>();
  /** Per-job serialisation of reconciliation, so two rank exits of one job never race. */
  private readonly jobLocks = new Map<string, Promise<void>>();
  /**
   * The queue: every pending job, oldest first. The store is the truth; this server is its only writer (the
   * data-dir lock sees to that), so the queue is loaded once at start and kept in step with each transition,
   * instead of re-reading every pending row on every cycle.
   */
  private readonly queue = new Map<string, Job>();
  /** Why each pending job waits, from the latest cycle. */
  private diagnoses: ReadonlyMap<string, Diagnosis> = new Map();
  private cycleRunning: Promise<void> | undefined;
  private cycleRequested = false;
  private cycleTimer: NodeJS.Timeout | undefined;
  private lastCycleStart = 0;
  private lastCycleMs = 0;
  /**
   * Whether the inputs of a cycle (the queue, the snapshot's version) changed since the last one. A cycle is a
   * pure function of its inputs, so the periodic tick skips unchanged ones — with 100,000 pending jobs a cycle
   * costs ~100 ms — and runs one at least every `maxIdleCycleGapMs` all the same.
   */
  private queueChanged = true;
  private lastSnapshotVersion = -1;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private seed = 1;
  /** Launches in flight, so `close` can wait for them to be recorded. */
  private readonly launches = new Set<Promise<void>>();

  constructor(options: JobControllerOptions) {
    this.options = options;
    this.store = options.store;
    this.backend = options.backend;
    this.backend.onRankExit((exit) => {
      void this.withJobLock(exit.jobId, () => this.handleRankExit(exit)).catch((error: unknown) =>
        this.options.logger.error(`reconciling rank ${exit.rank} of job ${exit.jobId} failed`, error),
      );
    });
  }

  /** Re-adopts what ran before a restart, then starts the loop. */
  async start(): Promise<void> {
    await this.recover();
    for (const job of await this.store.listJobsByStatus(['pending'])) this.queue.set(job.id, job);
    this.timer = setInterval(() => {
      this.enforceDeadlines();
      if (this.queueChanged || performance.now() - this.lastCycleStart > MAX_IDLE_CYCLE_GAP_MS) this.requestSchedule();
      else void this.store.snapshot().then((snapshot) => snapshot.version !== this.lastSnapshotVersion && this.requestSchedule());
    }, this.options.tickMs);
    this.timer.unref();
    this.requestSchedule();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.cycleTimer) clearTimeout(this.cycleTimer);
    await this.cycleRunning;
    await Promise.allSettled([...this.launches]);
    await Promise.allSettled([...this.jobLocks.values()]);
    await this.persistPendingReasons().catch((error: unknown) => this.options.logger.warn(`could not save pending reasons: ${String(error)}`));
  }

  /** A job the API just stored as pending. */
  enqueue(job: Job): void {
    this.queue.set(job.id, job);
    this.queueChanged = true;
    this.requestSchedule();
  }

  /** Why a pending job waits, from the latest cycle (undefined before its first cycle). */
  pendingDiagnosis(jobId: string): Diagnosis | undefined {
    return this.diagnoses.get(jobId);
  }

  get queueLength(): number {
    return this.queue.size;
  }

  /**
   * Asks for a scheduling cycle. Cycles never overlap; requests during a cycle coalesce into one more; and under
   * load, consecutive cycles keep a gap of twice the last cycle's length (at least 5 ms), so deciding never
   * takes more than about a third of the event loop from the API. An idle server schedules at once.
   */
  requestSchedule(): void {
    if (this.closed) return;
    if (this.cycleRunning || this.cycleTimer) {
      this.cycleRequested = true;
      return;
    }
    const wait = this.lastCycleStart + Math.max(5, 2 * this.lastCycleMs) - performance.now();
    if (wait > 0) {
      this.cycleTimer = setTimeout(() => {
        this.cycleTimer = undefined;
        this.requestSchedule();
      }, wait);
      return;
    }
    this.cycleRunning = (async () => {
      try {
        this.cycleRequested = false;
        this.lastCycleStart = performance.now();
        await this.runSchedulingCycle();
        this.lastCycleMs = performance.now() - this.lastCycleStart;
      } catch (error) {
        this.options.logger.error('scheduling cycle failed', error);
      } finally {
        this.cycleRunning = undefined;
      }
      if (this.cycleRequested) this.requestSchedule();
    })();
  }

  /** Resolves once no cycle is running or requested (for tests and benchmarks). */
  async settle(): Promise<void> {
    while (this.cycleRunning || this.cycleTimer) {
      if (this.cycleRunning) await this.cycleRunning;
      else await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** Cancels a job: a pending one at once, a running one by stopping its gang. */
  async cancel(jobId: string): Promise<'cancelled' | 'stopping' | 'already_finished' | 'not_found'> {
    const outcome = await this.store.requestCancel(jobId, this.options.now());
    if (outcome === 'cancelled' && this.queue.delete(jobId)) this.queueChanged = true;
    if (outcome === 'cancelled' || outcome === 'stopping') this.options.feed.notify();
    if (outcome === 'stopping') this.beginStop(jobId, { kind: 'cancelled' });
    return outcome;
  }

  private async runSchedulingCycle(): Promise<void> {
    const { store, metrics } = this.options;
    this.queueChanged = false;
    if (this.queue.size === 0) {
      this.diagnoses = new Map();
      return;
    }
    const snapshot = await store.snapshot();
    this.lastSnapshotVersion = snapshot.version;
    const pending = [...this.queue.values()];
    const now = this.options.now();
    const started = performance.now();
    const result = runCycle({ snapshot, pending, now, seed: this.seed++ }, DEFAULT_PROFILE);
    metrics.observeCycle((performance.now() - started) / 1000);

    // Only the placed jobs matter from here on: no per-cycle maps over the whole queue (100,000 jobs is a real queue).
    const specs = new Map<string, JobSpec>();
    for (const placement of result.plan.placements) {
      const job = this.queue.get(placement.jobId);
      if (job) specs.set(job.id, job.spec);
    }
    const violations = verifyPlan(snapshot, result.plan, specs);
    const rejected = new Set(violations.map((v) => v.jobId));
    for (const violation of violations) {
      // A plan that fails verification is a scheduler bug: never act on it, and say so loudly.
      this.options.logger.error(`scheduler produced an invalid placement for job ${violation.jobId}: ${violation.message}`);
    }
    const placements = result.plan.placements.filter((p) => !rejected.has(p.jobId));

    if (placements.length > 0) {
      const withTasks = placements.map((placement) => ({ placement, tasks: computeTasksForPlacement(specs.get(placement.jobId)!, placement) }));
      const outcomes = await store.applyPlacements(withTasks, now);
      withTasks.forEach(({ placement, tasks }, i) => {
        const outcome = outcomes[i];
        const job = this.queue.get(placement.jobId);
        // A job that is no longer pending (cancelled meanwhile) leaves the queue; one whose GPUs were taken stays.
        if (outcome && (outcome.applied || outcome.reason === 'job_not_pending')) this.queue.delete(placement.jobId);
        if (!outcome?.applied || !job) return;
        // Under the job's lock: a rank that exits at once is recorded only after its launch is.
        this.trackLaunch(this.withJobLock(job.id, () => this.launch(job, placement, tasks)));
      });
      this.options.feed.notify();
    }
    this.recordPendingReasons(result.diagnoses);
  }

  /** The API reads reasons from memory: they are derived data, recomputed by every cycle. */
  private recordPendingReasons(diagnoses: ReadonlyMap<string, Diagnosis>): void {
    this.diagnoses = diagnoses;
  }

  /** On a clean shutdown the store keeps the last reasons, so they are there for whoever reads it next. */
  private async persistPendingReasons(): Promise<void> {
    const reasons = new Map<string, Diagnosis>();
    for (const [jobId, diagnosis] of this.diagnoses) if (this.queue.has(jobId)) reasons.set(jobId, diagnosis);
    if (reasons.size > 0) await this.store.setPendingReasons(reasons);
  }

  private trackLaunch(launch: Promise<void>): void {
    this.launches.add(launch);
    void launch.finally(() => this.launches.delete(launch));
  }

  private async launch(job: Job, placement: Placement, tasks: Task[]): Promise<void> {
    const { store, now, logger } = this.options;
    let handles: RankHandle[];
    try {
      handles = await this.backend.launch({
        jobId: job.id,
        jobName: job.spec.name,
        run: job.spec.run,
        workdir: job.spec.workdir,
        env: job.spec.env,
        ranks: tasks.map((t) => ({ rank: t.rank, localRank: t.localRank, nodeRank: t.nodeRank, node: t.node, gpus: t.gpus })),
      });
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      logger.warn(`job ${job.id} could not start: ${detail}`);
      await store.updateTasks(tasks.map((t) => ({ jobId: t.jobId, rank: t.rank, status: 'lost', exitCode: null, finishedAt: now() })));
      await this.finish(job.id, { status: 'failed', exitCode: null, endReason: `could not start: ${detail}` });
      return;
    }
    await store.updateTasks(
      handles.map((h) => ({ jobId: h.jobId, rank: h.rank, status: 'running', pid: h.pid, pidStartTime: h.pidStartTime, logPath: h.logPath, startedAt: h.startedAt })),
    );
    await store.appendEvent(job.id, 'started', `started ${handles.length} rank${handles.length === 1 ? '' : 's'} on ${placement.nodes.map((n) => n.node).join(', ')}`, now(), {
      pids: handles.map((h) => h.pid),
    });
    this.options.metrics.observeStartLatency((handles[0]?.startedAt ?? now()) - job.createdAt);
    this.options.feed.notify();
    if (job.spec.maxDurationMs !== undefined) this.deadlines.set(job.id, (handles[0]?.startedAt ?? now()) + job.spec.maxDurationMs);
    // A stop decided while the ranks were being launched found no pids to signal: act on it now.
    const pendingStop = this.stopping.get(job.id);
    if (pendingStop) {
      void this.signalRanks(job.id, pendingStop);
    } else if ((await store.getJob(job.id))?.cancelRequestedAt !== undefined) {
      this.beginStop(job.id, { kind: 'cancelled' });
    }
  }

  /** Starts stopping a gang unless it is already being stopped; the first cause is the one the job ends with. */
  private beginStop(jobId: string, cause: StopCause): void {
    if (this.stopping.has(jobId)) return;
    this.stopping.set(jobId, cause);
    void this.signalRanks(jobId, cause);
  }

  /** Signals every launched rank of a stopping job; ranks without a process yet are signalled once launched. */
  private async signalRanks(jobId: string, cause: StopCause): Promise<void> {
    try {
      const tasks = await this.store.getTasks(jobId);
      const handles = tasks.filter((t) => t.status === 'running' || t.status === 'starting').flatMap((t) => toHandle(t) ?? []);
      if (handles.length === 0) {
        if (tasks.every((t) => t.status === 'exited' || t.status === 'lost')) await this.withJobLock(jobId, () => this.maybeFinish(jobId));
        return;
      }
      await this.store.appendEvent(jobId, 'stopping', describeStop(cause), this.options.now());
      this.options.feed.notify();
      await this.backend.stop(handles, { graceMs: this.options.stopGraceMs });
    } catch (error) {
      this.options.logger.error(`stopping job ${jobId} failed`, error);
    }
  }

  private enforceDeadlines(): void {
    const now = this.options.now();
    for (const [jobId, deadline] of this.deadlines) {
      if (now < deadline) continue;
      this.deadlines.delete(jobId);
      void this.store.getJob(jobId).then((job) => {
        if (job?.status === 'running' && job.spec.maxDurationMs !== undefined) this.beginStop(jobId, { kind: 'max_duration', limitMs: job.spec.maxDurationMs });
      });
    }
  }

  private async handleRankExit(exit: RankExit): Promise<void> {
    const { store } = this.options;
    const update: TaskUpdate = { jobId: exit.jobId, rank: exit.rank, status: exit.lost ? 'lost' : 'exited', exitCode: exit.exitCode, finishedAt: exit.at };
    await store.updateTasks([update]);
    const detail = exit.lost
      ? `rank ${exit.rank} was lost (its process vanished without an exit status)`
      : exit.signal
        ? `rank ${exit.rank} was killed by ${exit.signal}`
        : `rank ${exit.rank} exited with code ${exit.exitCode}`;
    await store.appendEvent(exit.jobId, 'rank_exited', detail, this.options.now(), { rank: exit.rank, exit_code: exit.exitCode, signal: exit.signal ?? null, lost: exit.lost });
    this.options.feed.notify();
    if (exit.lost || exit.exitCode !== 0) this.beginStop(exit.jobId, { kind: 'rank_failed', rank: exit.rank, exitCode: exit.exitCode, detail });
    await this.maybeFinish(exit.jobId);
  }

  /** Ends the job once every rank is out. */
  private async maybeFinish(jobId: string): Promise<void> {
    const [job, tasks] = await Promise.all([this.store.getJob(jobId), this.store.getTasks(jobId)]);
    if (!job || isTerminalJobStatus(job.status) || job.status !== 'running') return;
    if (tasks.length === 0 || tasks.some((t) => t.status !== 'exited' && t.status !== 'lost')) return;
    const cause = this.stopping.get(jobId) ?? (job.cancelRequestedAt !== undefined ? ({ kind: 'cancelled' } as const) : undefined);
    await this.finish(jobId, decideJobEnd(cause, tasks));
  }

  private async finish(jobId: string, end: JobEnd): Promise<void> {
    const finished = await this.store.finishJob(jobId, end, this.options.now());
    this.stopping.delete(jobId);
    this.deadlines.delete(jobId);
    if (finished) {
      this.options.feed.notify();
      this.requestSchedule();
    }
  }

  /**
   * After a restart: every job the store says is running is either adopted (its ranks still run and are watched
   * again), finished (its ranks ended while the server was down: their real exit codes are read back), or
   * requeued (it never got as far as starting a process).
   */
  private async recover(): Promise<void> {
    const { store, logger, now } = this.options;
    const running = await store.listJobsByStatus(['running']);
    if (running.length === 0) return;
    const tasks = await store.listActiveTasks();
    const byJob = new Map<string, Task[]>();
    for (const task of tasks) byJob.set(task.jobId, [...(byJob.get(task.jobId) ?? []), task]);

    for (const job of running) {
      const jobTasks = byJob.get(job.id) ?? (await store.getTasks(job.id));
      const handles = jobTasks.flatMap((t) => (t.status === 'running' || t.status === 'starting' ? (toHandle(t) ?? []) : []));
      const unlaunched = jobTasks.filter((t) => (t.status === 'running' || t.status === 'starting') && !toHandle(t));
      if (handles.length === 0 && unlaunched.length > 0) {
        // The server died between placing the job and recording any process: nothing of it runs; queue it again.
        await store.requeueJob(job.id, 'the control plane restarted before the job was launched', now());
        logger.warn(`job ${job.id} had not been launched before the restart; requeued`);
        continue;
      }
      if (job.spec.maxDurationMs !== undefined && job.startedAt !== undefined) this.deadlines.set(job.id, job.startedAt + job.spec.maxDurationMs);
      const observations = await this.backend.adopt(handles);
      const adopted = observations.filter((o) => o.state === 'running').length;
      if (adopted > 0) await store.appendEvent(job.id, 'adopted', `re-adopted ${adopted} running rank${adopted === 1 ? '' : 's'} after a control-plane restart`, now());
      for (const task of unlaunched) {
        await this.withJobLock(job.id, () => this.handleRankExit({ jobId: job.id, rank: task.rank, exitCode: null, lost: true, at: now() }));
      }
      for (const observation of observations) {
        if (observation.state === 'running') continue;
        const exit: RankExit =
          observation.state === 'exited'
            ? { jobId: job.id, rank: observation.rank, exitCode: observation.exitCode, signal: observation.signal, lost: false, at: observation.finishedAt }
            : { jobId: job.id, rank: observation.rank, exitCode: null, lost: true, at: now() };
        await this.withJobLock(job.id, () => this.handleRankExit(exit));
      }
      if (job.cancelRequestedAt !== undefined) this.beginStop(job.id, { kind: 'cancelled' });
    }
    this.options.feed.notify();
  }

  private withJobLock(jobId: string, work: () => Promise<void>): Promise<void> {
    const previous = this.jobLocks.get(jobId) ?? Promise.resolve();
    const next = previous.then(work, work);
    const tracked = next.finally(() => {
      if (this.jobLocks.get(jobId) === tracked) this.jobLocks.delete(jobId);
    });
    this.jobLocks.set(jobId, tracked);
    return next;
  }
}

function toHandle(task: Task): RankHandle | undefined {
  if (task.pid === undefined || task.pidStartTime === undefined || task.logPath === undefined) return undefined;
  return { jobId: task.jobId, rank: task.rank, node: task.node, pid: task.pid, pidStartTime: task.pidStartTime, logPath: task.logPath, startedAt: task.startedAt ?? 0 };
}

function describeStop(cause: StopCause): string {
  switch (cause.kind) {
    case 'rank_failed':
      return `stopping the other ranks: ${cause.detail}`;
    case 'cancelled':
      return 'stopping every rank: cancel requested';
    case 'max_duration':
      return `stopping every rank: exceeded max_duration ${formatDuration(cause.limitMs)}`;
  }
}

/** How a gang ended, from why it was stopped (if it was) and its ranks' exit codes. */
export function decideJobEnd(cause: StopCause | undefined, tasks: readonly Task[]): JobEnd {
  if (cause?.kind === 'cancelled') return { status: 'cancelled', exitCode: null, endReason: 'cancelled' };
  if (cause?.kind === 'max_duration') return { status: 'failed', exitCode: null, endReason: `exceeded max_duration ${formatDuration(cause.limitMs)}` };
  if (cause?.kind === 'rank_failed') return { status: 'failed', exitCode: cause.exitCode, endReason: cause.detail };
  const failed = [...tasks].sort((a, b) => (a.finishedAt ?? 0) - (b.finishedAt ?? 0) || a.rank - b.rank).find((t) => t.status === 'lost' || t.exitCode !== 0);
  if (failed) {
    return {
      status: 'failed',
      exitCode: failed.exitCode ?? null,
      endReason: failed.status === 'lost' ? `rank ${failed.rank} was lost` : `rank ${failed.rank} exited with code ${failed.exitCode}`,
    };
  }
  return { status: 'succeeded', exitCode: 0, endReason: tasks.length === 1 ? 'its rank exited with code 0' : `all ${tasks.length} ranks exited with code 0` };
}

export type { NodeInfo };
