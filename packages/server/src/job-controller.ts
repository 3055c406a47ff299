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
 * a rank's exit before the job's end. A restart (see `recover`) rebuilds the core's state from the store and carries
 * on: running ranks are adopted, ranks that ended meanwhile are read back with their real exit codes, a stop under
 * way is resumed at its recorded deadline.
 */
import { computeGpusHeld, computeTasksForPlacement, formatByteSize } from '@tutti/model';
import type { Diagnosis, Job, JobSpec, NodeInfo, Placement, Task, TeamConfig } from '@tutti/model';
import { JobLifecycle, SEED_HALF_LIVES, applyCycleResult, buildCycleInput, lifecycleSettingsFor, parseRecordedStop } from '@tutti/control';
import type { LifecycleCommand, LifecycleEvent } from '@tutti/control';
import { CycleCache, runCycle } from '@tutti/scheduler';
import type { SchedulerProfile } from '@tutti/scheduler';
import type { ExecutionBackend, LogTrim, RankExit, RankHandle } from '@tutti/backends';
import { describeLaunchedRanks, handleOfTask, recordOfHandle } from '@tutti/backends';
import { asDiskFull } from '@tutti/store';
import type { GpuUse, NewProgressRecord, StateStore, TaskUpdate } from '@tutti/store';
import type { DiskFullLog } from './disk-full-log.ts';
import type { EventFeed } from './event-feed.ts';
import type { Logger } from './logger.ts';
import type { JobTokens } from './job-tokens.ts';
import type { ServerMetrics } from './metrics.ts';
import { LogTail, parseProgressLine } from './progress-tail.ts';

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
}

/**
 * The moments of a job's life right after a durable step, each leaving the store in a state of its own. A crash
 * at any of them is what `recover` converges from; `onLifecyclePoint` lets a test crash at exactly one.
 * - `placed`: the job is running with its GPUs, its ranks not launched.
 * - `launched`: the backend started the ranks; their handles are not recorded.
 * - `ranks_recorded`: the ranks' handles are recorded.
 * - `rank_exit_recorded`: a rank's exit is recorded; the job is neither finished nor requeued.
 * - `stop_recorded`: why the gang is being stopped is recorded (the `stopping` event); no rank signalled yet.
 * - `cancel_recorded`: a cancel is recorded; the stop not begun.
 * - `requeued`: the job is back to pending (a restart waiting out its backoff, or a preemption).
 */
export type LifecyclePoint = 'placed' | 'launched' | 'ranks_recorded' | 'rank_exit_recorded' | 'stop_recorded' | 'cancel_recorded' | 'requeued';

/** Progress tailing of one running attempt (the records' times go to the core, which owns the hang timer). */
interface AttemptWatch {
  attempt: number;
  tails: Array<{ rank: number; tail: LogTail }>;
  /** The last progress record's time and values, for /metrics and views. */
  lastProgressAt: number;
  last?: Record<string, string | number | boolean>;
}

function toProgressRecord(jobId: string, attempt: number, rank: number, at: number, values: Record<string, string | number | boolean>): NewProgressRecord {
  const record: NewProgressRecord = { jobId, attempt, rank, at, values };
  if (typeof values.step === 'number') record.step = values.step;
  if (typeof values.loss === 'number') record.loss = values.loss;
  if (typeof values.checkpoint === 'string') record.checkpoint = values.checkpoint;
  return record;
}

/** The periodic tick runs a cycle at least this often even when nothing changed. */
const MAX_IDLE_CYCLE_GAP_MS = 10_000;
/** A job that could not start because the disk was full waits this long before it is tried again. */
const DISK_FULL_RETRY_MS = 10_000;

export class JobController {
  private readonly store: StateStore;
  private readonly backend: ExecutionBackend;
  private readonly options: JobControllerOptions;
  /** The control core: every decision about a running job's life, and the ledgers the cycle reads. */
  private readonly lifecycle: JobLifecycle;
  /** Per-job serialisation of the commands carried out, so the records of one job land in the order decided. */
  private readonly jobLocks = new Map<string, Promise<void>>();
  /**
   * The queue: every pending job, oldest first. The store is the truth; this server is its only writer (the
   * data-dir lock sees to that), so the queue is loaded once at start and kept in step with each transition,
   * instead of re-reading every pending row on every cycle.
   */
  private readonly queue = new Map<string, Job>();
  /** Placements committed and not launched yet: what a `launch` command starts. */
  private readonly placed = new Map<string, { placement: Placement; tasks: Task[] }>();
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
  /** Kept across cycles: what the scheduler derives from each queued job, so a long queue is not re-derived each cycle. */
  private readonly cycleCache = new CycleCache();
  /** Command sequences in flight, so `close` can wait for them. */
  private readonly inFlight = new Set<Promise<void>>();
  /** Running attempts whose logs are tailed for progress records. */
  private readonly watches = new Map<string, AttemptWatch>();
  private progressPoll: Promise<void> | undefined;
  /** Set once re-adoption is done: cycles run only from then on. */
  private started = false;
  /** Timers that wake the queue when a restart's backoff is over. */
  private readonly backoffTimers = new Set<NodeJS.Timeout>();
  /**
   * Records refused for lack of space, in the order they happened, tried again on every tick until they are
   * written: without them a job whose rank exited during a full disk would run forever. Per job: the commands not
   * carried out yet (later commands of that job wait behind them, so its records keep their order).
   */
  private readonly unwritten = new Map<string, () => Promise<void>>();
  private readonly stashed = new Map<string, LifecycleCommand[]>();
  private writingUnwritten: Promise<void> | undefined;
  /** Numbers the unwritten records, so that two of the same kind never share a key. */
  private unwrittenCount = 0;

  constructor(options: JobControllerOptions) {
    this.options = options;
    this.store = options.store;
    this.backend = options.backend;
    this.lifecycle = new JobLifecycle(lifecycleSettingsFor(options.profile, options.stopGraceMs));
    this.backend.onRankExit((exit) => this.dispatch(rankExitEvent(exit, this.lifecycle.attemptOf(exit.jobId))));
    this.backend.onNodeState((change) => this.dispatch({ kind: 'node_state', node: change.node, state: change.state, ...(change.reason !== undefined ? { detail: change.reason } : {}) }));
  }

  /** True until re-adoption after a (re)start is done: the API answers, but nothing is scheduled yet. */
  get recovering(): boolean {
    return !this.started && !this.closed;
  }

  /** Re-adopts what ran before a restart, then starts the loop. */
  async start(): Promise<void> {
    for (const job of await this.store.listJobsByStatus(['pending'])) this.queue.set(job.id, job);
    await this.recover();
    const now = this.options.now();
    const past = await this.store.listGpuUseEndedSince(now - SEED_HALF_LIVES * this.lifecycle.usage.halfLifeMs);
    this.lifecycle.usage.seed(now, past, await this.store.listJobsByStatus(['running']));
    await this.seedServiceHistory(past);
    this.started = true;
    // A recovery may have requeued jobs: the queue is read again, with the backoffs still to wait out.
    this.queue.clear();
    for (const job of await this.store.listJobsByStatus(['pending'])) {
      this.queue.set(job.id, job);
      // A restart that was waiting out its backoff when the server died is woken when the backoff ends.
      if (job.notBefore !== undefined && job.notBefore > now) this.wakeQueueAt(job.notBefore);
    }
    this.timer = setInterval(() => {
      this.writeUnwritten();
      this.dispatch({ kind: 'tick', gpusIdleSince: this.gpusIdleSince() });
      this.progressPoll ??= this.pollProgress().finally(() => (this.progressPoll = undefined));
      if (this.queueChanged || performance.now() - this.lastCycleStart > MAX_IDLE_CYCLE_GAP_MS) this.requestSchedule();
      else {
        void this.store
          .snapshot()
          .then((snapshot) => snapshot.version !== this.lastSnapshotVersion && this.requestSchedule())
          .catch((error: unknown) => this.options.logger.error('reading the cluster snapshot failed', error));
      }
    }, this.options.tickMs);
    this.timer.unref();
    this.requestSchedule();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.cycleTimer) clearTimeout(this.cycleTimer);
    for (const timer of this.backoffTimers) clearTimeout(timer);
    await this.cycleRunning;
    await this.progressPoll;
    await this.writingUnwritten;
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    await Promise.allSettled([...this.jobLocks.values()]);
    await this.persistPendingReasons().catch((error: unknown) => this.options.logger.warn(`could not save pending reasons: ${String(error)}`));
  }

  /** A job the API just stored as pending. */
  enqueue(job: Job): void {
    this.queue.set(job.id, job);
    this.queueChanged = true;
    this.requestSchedule();
  }

  /** Each team's decayed GPU use as of now (what the next cycle's fair share starts from), and the half-life. */
  fairShareState(): { decayedGpuSeconds: ReadonlyMap<string, number>; halfLifeMs: number } {
    const usage = this.lifecycle.usage.peek(this.options.now() / 1000);
    return { decayedGpuSeconds: new Map(usage.map((u) => [u.team, u.decayedGpuSeconds])), halfLifeMs: this.lifecycle.usage.halfLifeMs };
  }

  /** Pending jobs per team, from the queue. */
  pendingCountsByTeam(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const job of this.queue.values()) counts.set(job.spec.team, (counts.get(job.spec.team) ?? 0) + 1);
    return counts;
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
    // Before start() nothing is scheduled: what arrives is queued, and start() runs the first cycle.
    if (this.closed || !this.started) return;
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
        // Tried again on the next tick (a placement refused for a full disk is still in the queue).
        this.queueChanged = true;
        if (!this.reportDiskFull(error)) this.options.logger.error('scheduling cycle failed', error);
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
    if (outcome === 'stopping') {
      this.lifecyclePoint('cancel_recorded', jobId);
      this.dispatch({ kind: 'cancel_requested', jobId });
    }
    return outcome;
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
    this.dispatch({ kind: 'preempt', jobId, message: options.message ?? 'preempted' });
    return 'preempting';
  }

  /** The last progress record of each running attempt (for /metrics and views). */
  lastProgress(): ReadonlyMap<string, { attempt: number; at: number; values: Readonly<Record<string, string | number | boolean>> }> {
    const out = new Map<string, { attempt: number; at: number; values: Record<string, string | number | boolean> }>();
    for (const [jobId, watch] of this.watches) if (watch.last) out.set(jobId, { attempt: watch.attempt, at: watch.lastProgressAt, values: watch.last });
    return out;
  }

  private async runSchedulingCycle(): Promise<void> {
    const { store, metrics, teams, profile } = this.options;
    this.queueChanged = false;
    if (this.queue.size === 0) {
      this.diagnoses = new Map();
      return;
    }
    const snapshot = await store.snapshot();
    this.lastSnapshotVersion = snapshot.version;
    const now = this.options.now();
    const running = await store.listJobsByStatus(['running']);
    const started = performance.now();
    const input = buildCycleInput(this.lifecycle, { snapshot, queue: this.queue.values(), running, teams, now, seed: this.seed++, cache: this.cycleCache });
    const result = runCycle(input, profile);
    metrics.observeCycle((performance.now() - started) / 1000);

    // Only the placed jobs matter from here on: no per-cycle maps over the whole queue (100,000 jobs is a real queue).
    const specs = new Map<string, JobSpec>();
    for (const jobId of [...result.plan.placements.map((p) => p.jobId), ...result.plan.preemptions.map((p) => p.forJobId)]) {
      const job = this.queue.get(jobId);
      if (job) specs.set(job.id, job.spec);
    }
    // A plan that fails verification is a scheduler bug: its faulty part is dropped (the simulator drops the same),
    // the rest carried out, and each violation said loudly. Victims are stopped through the core, which skips those
    // already being stopped: they are marked in the cycle's input, so the scheduler does not name them again.
    const applied = applyCycleResult(this.lifecycle, { snapshot, plan: result.plan, specs, running, teams, now });
    for (const violation of applied.violations) this.options.logger.error(`scheduler produced an invalid plan for job ${violation.jobId}: ${violation.message}`);
    for (const victim of applied.preempted) this.options.logger.info(`job ${victim.jobId}: ${victim.message}`);
    this.carryOutAll(applied.commands);

    const placements = applied.placements;
    if (placements.length > 0) {
      const withTasks = placements.map((placement) => ({ placement, tasks: computeTasksForPlacement(specs.get(placement.jobId)!, placement) }));
      const outcomes = await store.applyPlacements(withTasks, now);
      const committed: Array<{ job: Job; placement: Placement; tasks: Task[] }> = [];
      withTasks.forEach(({ placement, tasks }, i) => {
        const outcome = outcomes[i];
        const job = this.queue.get(placement.jobId);
        // A job that is no longer pending (cancelled meanwhile) leaves the queue; one whose GPUs were taken stays.
        if (outcome && (outcome.applied || outcome.reason === 'job_not_pending')) this.queue.delete(placement.jobId);
        if (outcome?.applied && job) committed.push({ job, placement, tasks });
      });
      for (const { job, placement, tasks } of committed) {
        this.lifecyclePoint('placed', job.id);
        // The queue's copy may be older than the last attempt: the attempt number and checkpoint come from the store.
        const current = (await store.getJob(job.id)) ?? job;
        this.placed.set(job.id, { placement, tasks });
        this.dispatch({ kind: 'placed', job: current, ranks: tasks.map((t) => ({ rank: t.rank, node: t.node })) });
      }
      this.options.feed.notify();
    }
    this.diagnoses = result.diagnoses;
  }

  /** On a clean shutdown the store keeps the last reasons, so they are there for whoever reads it next. */
  private async persistPendingReasons(): Promise<void> {
    const reasons = new Map<string, Diagnosis>();
    for (const [jobId, diagnosis] of this.diagnoses) if (this.queue.has(jobId)) reasons.set(jobId, diagnosis);
    if (reasons.size > 0) await this.store.setPendingReasons(reasons);
  }

  // ---- events in, commands out ------------------------------------------------------------------------------

  /** Feeds one event to the core and carries out what it answers. */
  private dispatch(event: LifecycleEvent): void {
    this.carryOutAll(this.lifecycle.handle(event, this.options.now()));
  }

  /** Carries out commands: each job's in order under its lock (a lock is FIFO, so in the order decided). */
  private carryOutAll(commands: readonly LifecycleCommand[]): Promise<void> {
    const byJob = new Map<string, LifecycleCommand[]>();
    for (const command of commands) {
      if (command.kind === 'wake_at') {
        // Deadlines and hang timers are checked on every tick; only a backoff's end needs its own wake-up.
        if (command.why === 'backoff') this.wakeQueueAt(command.at);
        continue;
      }
      const list = byJob.get(command.jobId);
      if (list) list.push(command);
      else byJob.set(command.jobId, [command]);
    }
    const done: Array<Promise<void>> = [];
    for (const [jobId, list] of byJob) {
      const work = this.withJobLock(jobId, () => this.carryOut(jobId, list)).catch((error: unknown) => {
        if (!this.reportDiskFull(error)) this.options.logger.error(`carrying out ${list.map((c) => c.kind).join(', ')} for job ${jobId} failed`, error);
      });
      this.inFlight.add(work);
      void work.finally(() => this.inFlight.delete(work));
      done.push(work);
    }
    return Promise.all(done).then(() => undefined);
  }

  /**
   * Carries out one job's commands in order (its lock held). One refused for a full disk is kept with the rest, to be
   * carried out on a later tick; commands decided meanwhile for the job wait behind them.
   */
  private async carryOut(jobId: string, commands: readonly LifecycleCommand[]): Promise<void> {
    const waiting = this.stashed.get(jobId);
    if (waiting) {
      waiting.push(...commands);
      return;
    }
    for (let i = 0; i < commands.length; i++) {
      try {
        await this.execute(commands[i]!);
      } catch (error) {
        if (!this.reportDiskFull(error) || this.closed) throw error;
        this.stashed.set(jobId, commands.slice(i));
        this.unwritten.set(`the records of job ${jobId} (#${++this.unwrittenCount})`, () => this.withJobLock(jobId, () => this.carryOutStashed(jobId)));
        return;
      }
    }
  }

  /** The commands of a job a full disk refused, carried out in order; throws (keeping the rest) while still refused. */
  private async carryOutStashed(jobId: string): Promise<void> {
    const list = this.stashed.get(jobId);
    while (list && list.length > 0) {
      await this.execute(list[0]!);
      list.shift();
    }
    this.stashed.delete(jobId);
  }

  private async execute(command: LifecycleCommand): Promise<void> {
    const { store, now } = this.options;
    switch (command.kind) {
      case 'launch':
        return this.launch(command.jobId);
      case 'record_rank_exit': {
        const update: TaskUpdate = { jobId: command.jobId, rank: command.rank, status: command.status, exitCode: command.exitCode, finishedAt: command.finishedAt };
        await store.updateTasks([update]);
        this.lifecyclePoint('rank_exit_recorded', command.jobId);
        await store.appendEvent(command.jobId, 'rank_exited', command.detail, now(), { rank: command.rank, exit_code: command.exitCode, signal: command.signal ?? null, lost: command.status === 'lost' });
        this.options.feed.notify();
        return;
      }
      case 'record_ranks_lost':
        await store.updateTasks(command.ranks.map((rank) => ({ jobId: command.jobId, rank, status: 'lost', exitCode: null, finishedAt: command.at })));
        return;
      case 'record_stop':
        await store.appendEvent(command.jobId, 'stopping', command.message, now(), { ...command.stop });
        this.lifecyclePoint('stop_recorded', command.jobId);
        this.options.feed.notify();
        return;
      case 'signal_ranks':
        return this.signalRanks(command);
      case 'append_event':
        if (command.type === 'hung') this.options.logger.warn(`job ${command.jobId} is hung: ${command.message}`);
        await store.appendEvent(command.jobId, command.type, command.message, now(), command.data);
        this.options.feed.notify();
        return;
      case 'finish': {
        await this.drainProgress(command.jobId);
        const finished = await store.finishJob(command.jobId, command.end, now());
        this.placed.delete(command.jobId);
        if (finished) {
          this.options.feed.notify();
          this.requestSchedule();
        }
        return;
      }
      case 'requeue': {
        await this.drainProgress(command.jobId);
        this.placed.delete(command.jobId);
        if (!(await store.requeueJob(command.jobId, command.reason, now(), command.options))) return;
        this.lifecyclePoint('requeued', command.jobId);
        this.options.logger.warn(`job ${command.jobId}: ${command.reason}`);
        const pending = await store.getJob(command.jobId);
        if (pending?.status === 'pending') {
          this.queue.set(command.jobId, pending);
          this.queueChanged = true;
        }
        this.options.feed.notify();
        this.requestSchedule();
        return;
      }
      case 'wake_at':
        return;
    }
  }

  /**
   * Signals every live rank of the attempt: the deadline first (to `TUTTI_CONTROL_DIR/preempt-deadline`, so a rank
   * that catches the signal can read how long it has to checkpoint), then the signal, SIGKILL at the deadline (at
   * once when it has passed). The backend's stop runs on without holding the job's lock: the ranks' exits it causes
   * come back as events.
   */
  private async signalRanks(command: Extract<LifecycleCommand, { kind: 'signal_ranks' }>): Promise<void> {
    const tasks = await this.store.getTasks(command.jobId);
    const handles = tasks.filter(isLive).flatMap((t) => handleOfTask(t, command.attempt) ?? []);
    if (handles.length === 0) return;
    const leftMs = command.deadline - this.options.now();
    if (command.resumed) {
      this.options.logger.info(`job ${command.jobId}: resuming its stop after the restart (${leftMs > 0 ? `SIGKILL in ${Math.ceil(leftMs / 1000)}s` : 'its deadline has passed: SIGKILL now'})`);
    }
    // Also when resumed: the crash may have come between the record and this write. The deadline is the recorded one.
    await this.backend.writeStopDeadline(handles, command.deadline);
    const stop = leftMs > 0 ? { graceMs: leftMs, signal: command.signal as NodeJS.Signals } : { graceMs: 0, signal: 'SIGKILL' as const };
    void this.backend.stop(handles, stop).catch((error: unknown) => this.options.logger.error(`stopping job ${command.jobId} failed`, error));
  }

  private lifecyclePoint(point: LifecyclePoint, jobId: string): void {
    this.options.onLifecyclePoint?.(point, jobId);
  }

  /** Since when every GPU of each watched job has been idle, where known (for the core's hang check). */
  private gpusIdleSince(): ReadonlyMap<string, number> | undefined {
    const idleSince = this.options.gpusIdleSince;
    if (!idleSince) return undefined;
    const out = new Map<string, number>();
    for (const jobId of this.watches.keys()) {
      const since = idleSince(jobId);
      if (since !== undefined) out.set(jobId, since);
    }
    return out;
  }

  // ---- launching ----------------------------------------------------------------------------------------------

  /**
   * The per-job variables of an attempt, with its directories made by the backend where its ranks run (the job's
   * `checkpoint_dir`, or the backend's default; a relative one is resolved there, never against the server's own
   * working directory). The checkpoint to resume from is the one the job reported last, or else the newest complete
   * entry of its checkpoint dir (see `ExecutionBackend.prepareAttempt`).
   */
  private async runtimeEnvironment(job: Job, tasks: readonly Task[]): Promise<Record<string, string>> {
    const { checkpointDir, controlDir, newestCheckpoint } = await this.backend.prepareAttempt({
      jobId: job.id,
      attempt: job.attempt ?? 1,
      nodes: [...new Set(tasks.map((t) => t.node))],
      ...(job.spec.checkpointDir !== undefined ? { checkpointDir: job.spec.checkpointDir } : {}),
      ...(job.spec.workdir !== undefined ? { workdir: job.spec.workdir } : {}),
    });
    const resumeFrom = job.lastCheckpoint ?? newestCheckpoint;
    // The grace every stop of this attempt gets, whatever its cause: what the rank is told is what it will get.
    const { graceMs } = this.lifecycle.stopGraceOf(job);
    const apiUrl = this.options.apiUrl();
    return {
      TUTTI_CHECKPOINT_DIR: checkpointDir,
      TUTTI_CONTROL_DIR: controlDir,
      TUTTI_STOP_SIGNAL: job.spec.stopSignal ?? 'SIGTERM',
      TUTTI_PREEMPT_GRACE_S: String(Math.floor(graceMs / 1000)),
      TUTTI_JOB_TOKEN: this.options.jobTokens.tokenFor(job.id),
      ...(apiUrl !== undefined ? { TUTTI_API_URL: apiUrl } : {}),
      ...(resumeFrom !== undefined ? { TUTTI_RESUME_FROM: resumeFrom } : {}),
    };
  }

  /** Carries out `launch` (the job's lock held): its ranks started and recorded, then `ranks_started` or `launch_failed`. */
  private async launch(jobId: string): Promise<void> {
    const { store, now, logger } = this.options;
    const placed = this.placed.get(jobId);
    const job = await store.getJob(jobId);
    if (!placed || !job) return;
    this.placed.delete(jobId);
    const { placement, tasks } = placed;
    const attempt = job.attempt ?? 1;
    let handles: RankHandle[];
    let runtimeEnv: Record<string, string> = {};
    try {
      runtimeEnv = await this.runtimeEnvironment(job, tasks);
      handles = await this.backend.launch({
        jobId: job.id,
        jobName: job.spec.name,
        run: job.spec.run,
        workdir: job.spec.workdir,
        env: job.spec.env,
        runtimeEnv,
        attempt,
        ranks: tasks.map((t) => ({ rank: t.rank, localRank: t.localRank, nodeRank: t.nodeRank, node: t.node, gpus: t.gpus })),
      });
      this.lifecyclePoint('launched', job.id);
      // Its files were written: a full disk that kept jobs from starting is over.
      this.options.diskFull?.recovered(runtimeEnv.TUTTI_CHECKPOINT_DIR ?? this.options.dataDir);
    } catch (error) {
      const full = asDiskFull(error, this.options.dataDir);
      const detail = full ? full.message : error instanceof Error ? error.message : String(error);
      // A full disk is not the job's fault, and over once space is freed: back to the queue, tried again after a pause.
      if (full) this.reportDiskFull(error);
      else logger.warn(`job ${job.id} could not start: ${detail}`);
      await this.carryOutNow(job.id, { kind: 'launch_failed', jobId: job.id, attempt, detail, ...(full ? { retryAfterMs: DISK_FULL_RETRY_MS } : {}) });
      return;
    }
    const resumed = runtimeEnv.TUTTI_RESUME_FROM ?? null;
    const startedAt = handles[0]?.startedAt ?? now();
    // The ranks run now: their handles must reach the store even if the disk is full at this moment.
    await this.carryOutNowOrLater(job.id, `the start of job ${job.id}`, async () => {
      await store.updateTasks(handles.map(recordOfHandle));
      this.lifecyclePoint('ranks_recorded', job.id);
      await store.appendEvent(
        job.id,
        'started',
        `started attempt ${attempt}: ${handles.length} rank${handles.length === 1 ? '' : 's'} on ${placement.nodes.map((n) => n.node).join(', ')}${resumed ? `, resuming from ${resumed}` : ''}`,
        now(),
        { ranks: describeLaunchedRanks(handles), attempt, resume_from: resumed },
      );
    });
    this.watchAttempt(job, attempt, handles, 'start');
    this.options.metrics.observeStartLatency(startedAt - job.createdAt);
    this.options.feed.notify();
    await this.carryOutNow(job.id, { kind: 'ranks_started', jobId: job.id, attempt, at: startedAt });
  }

  /** Feeds an event of the job whose lock is held and carries out its commands at once (not queued behind the lock). */
  private async carryOutNow(jobId: string, event: LifecycleEvent): Promise<void> {
    const commands = this.lifecycle.handle(event, this.options.now());
    const own = commands.filter((c) => c.kind !== 'wake_at' && c.jobId === jobId);
    await this.carryOutAll(commands.filter((c) => !own.includes(c)));
    await this.carryOut(jobId, own);
  }

  /** Runs `write` (the job's lock held); if it is refused for a full disk, keeps it to run again on each tick. */
  private async carryOutNowOrLater(jobId: string, what: string, write: () => Promise<void>): Promise<void> {
    try {
      await write();
    } catch (error) {
      if (!this.reportDiskFull(error) || this.closed) throw error;
      this.unwritten.set(`${what} (#${++this.unwrittenCount})`, () => this.withJobLock(jobId, write));
    }
  }

  /** Whether `error` is a full disk (told to the disk-full log, which logs it once per episode). */
  private reportDiskFull(error: unknown): boolean {
    return this.options.diskFull ? this.options.diskFull.report(error) : asDiskFull(error) !== undefined;
  }

  /** Writes what a full disk refused, oldest first; stops at the first one still refused. */
  private writeUnwritten(): void {
    if (this.unwritten.size === 0 || this.writingUnwritten) return;
    this.writingUnwritten = (async () => {
      for (const [what, write] of [...this.unwritten]) {
        try {
          await write();
          this.unwritten.delete(what);
        } catch (error) {
          if (this.reportDiskFull(error)) return;
          this.unwritten.delete(what);
          this.options.logger.error(`recording ${what} failed`, error);
        }
      }
    })().finally(() => (this.writingUnwritten = undefined));
  }

  /** Asks for a cycle once a restart's backoff is over (a cycle before then passes the job over). */
  private wakeQueueAt(notBefore: number): void {
    if (this.closed) return;
    const timer = setTimeout(() => {
      this.backoffTimers.delete(timer);
      this.queueChanged = true;
      this.requestSchedule();
    }, Math.max(0, notBefore - this.options.now()));
    timer.unref();
    this.backoffTimers.add(timer);
  }

  // ---- progress records ---------------------------------------------------------------------------------------

  /** Starts tailing an attempt's rank logs: from the start for a fresh launch, from their end for an adoption. */
  private watchAttempt(job: Job, attempt: number, handles: readonly RankHandle[], from: 'start' | 'end'): void {
    // Records written while no server watched are not replayed on adoption (their time is unknown).
    const maxBytes = this.options.maxLogBytes;
    const tails = handles.map((h) => ({
      rank: h.rank,
      tail: new LogTail(this.backend, { jobId: h.jobId, rank: h.rank, attempt: h.attempt ?? attempt }, from, maxBytes === undefined ? undefined : { maxBytes, onTrim: (trim) => this.logTrimmed(job.id, h.rank, maxBytes, trim) }),
    }));
    this.watches.set(job.id, { attempt, tails, lastProgressAt: this.options.now() });
  }

  /** A rank's log passed the cap and lost its oldest output: said on the job, so its owner knows why. */
  private logTrimmed(jobId: string, rank: number, maxBytes: number, trim: LogTrim): void {
    const message = `rank ${rank}'s log passed the log cap of ${formatByteSize(maxBytes)}: ${trim.droppedBytes} bytes of its oldest output dropped (${trim.totalDroppedBytes} in all)`;
    void this.store
      .appendEvent(jobId, 'log_trimmed', message, this.options.now(), { rank, dropped_bytes: trim.droppedBytes, total_dropped_bytes: trim.totalDroppedBytes, max_log_bytes: maxBytes })
      .then(() => this.options.feed.notify())
      .catch((error: unknown) => {
        if (!this.reportDiskFull(error)) this.options.logger.error(`recording the log trim of job ${jobId} failed`, error);
      });
  }

  /** Reads new progress records of every running attempt and stores them (the core hears of each). */
  private async pollProgress(): Promise<void> {
    for (const jobId of [...this.watches.keys()]) {
      await this.readProgress(jobId).catch((error: unknown) => this.options.logger.warn(`reading progress of job ${jobId} failed: ${String(error)}`));
    }
  }

  private async readProgress(jobId: string): Promise<void> {
    const watch = this.watches.get(jobId);
    if (!watch) return;
    const now = this.options.now();
    const records: NewProgressRecord[] = [];
    for (const { rank, tail } of watch.tails) {
      for (const line of await tail.readLines()) {
        const values = parseProgressLine(line);
        if (values) records.push(toProgressRecord(jobId, watch.attempt, rank, now, values));
      }
    }
    await this.storeProgress(jobId, watch, records);
  }

  /**
   * A progress record posted to the API (`POST /v1/jobs/:id/progress` with the job's token): stored and counted
   * for hang detection exactly like a record printed on stdout. Only a running job reports progress.
   */
  async recordProgress(jobId: string, rank: number, values: Record<string, string | number | boolean>): Promise<'recorded' | 'not_running'> {
    const watch = this.watches.get(jobId);
    if (!watch || !this.lifecycle.acceptsProgress(jobId)) return 'not_running';
    await this.storeProgress(jobId, watch, [toProgressRecord(jobId, watch.attempt, rank, this.options.now(), values)]);
    return 'recorded';
  }

  private async storeProgress(jobId: string, watch: AttemptWatch, records: NewProgressRecord[]): Promise<void> {
    const last = records.at(-1);
    if (!last) return;
    watch.lastProgressAt = last.at;
    watch.last = { ...watch.last, ...(last.values as Record<string, string | number | boolean>) };
    this.dispatch({ kind: 'progress', jobId, attempt: watch.attempt, at: last.at, values: watch.last });
    await this.store.appendProgress(records);
  }

  /** The last records of an attempt that just ended, then forget it. */
  private async drainProgress(jobId: string): Promise<void> {
    await this.readProgress(jobId).catch(() => undefined);
    this.watches.delete(jobId);
  }

  // ---- after a restart ------------------------------------------------------------------------------------------

  /**
   * After a restart: the attained service of queued and running jobs that ran before, and the run times of jobs that
   * succeeded in the fair-share window (`past`: the attempts that ended in it), newest last.
   */
  private async seedServiceHistory(past: readonly GpuUse[]): Promise<void> {
    for (const job of [...this.queue.values(), ...(await this.store.listJobsByStatus(['running']))]) {
      if ((job.attempt ?? 0) === 0 || (job.status === 'running' && (job.attempt ?? 0) <= 1)) continue;
      const attempts = await this.store.listAttempts(job.id);
      const ms = attempts.reduce((sum, a) => sum + (a.startedAt === undefined ? 0 : Math.max(0, a.finishedAt - a.startedAt)), 0);
      this.lifecycle.seedAttainedService(job.id, computeGpusHeld(job.spec) * ms);
    }
    const lastAttempt = new Map<string, GpuUse>();
    for (const use of past) lastAttempt.set(use.jobId, use);
    const succeeded = [...lastAttempt.values()].filter((use) => use.jobStatus === 'succeeded').sort((a, b) => a.finishedAt - b.finishedAt);
    for (const use of succeeded) this.lifecycle.seedFinishedDuration(use.team, use.gpus, use.finishedAt - use.startedAt);
  }

  /**
   * After a restart, every job the store says is running converges, whatever step of its life the crash cut:
   * - its ranks that still run are adopted (watched again, their exits reported as usual);
   * - ranks that ended while no server watched are read back with their real exit codes;
   * - ranks the backend started but the crash kept from being recorded are found (`findStarted`) and adopted;
   *   if only some of a gang are found, they are killed and the job is queued again, as is a job of which nothing
   *   was started (a cancelled one is finished instead);
   * - a stop that was under way (its cause recorded in the `stopping` event), a cancel, or a rank failure whose
   *   stop had not begun is carried through (the core's `restored`, then `adopted`);
   * - a job whose ranks have all exited — also one whose last exit was recorded just before the crash — is
   *   finished or requeued exactly as if the server had lived, and its GPUs are freed.
   */
  private async recover(): Promise<void> {
    const { store, logger } = this.options;
    const started = performance.now();
    const running = await store.listJobsByStatus(['running']);
    if (running.length === 0) return;
    const byJob = new Map<string, Task[]>();
    for (const task of await store.listActiveTasks()) byJob.set(task.jobId, [...(byJob.get(task.jobId) ?? []), task]);
    for (const job of running) {
      await this.recoverJob(job, byJob.get(job.id) ?? (await store.getTasks(job.id))).catch((error: unknown) =>
        logger.error(`recovering job ${job.id} after the restart failed`, error),
      );
    }
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    this.options.feed.notify();
    const stillRunning = (await store.countJobsByStatus()).running;
    logger.info(`recovered ${running.length} running job${running.length === 1 ? '' : 's'} in ${Math.round(performance.now() - started)} ms: ${stillRunning} still running`);
  }

  private async recoverJob(job: Job, recorded: Task[]): Promise<void> {
    const { store, logger, now } = this.options;
    const attempt = job.attempt ?? 1;
    let tasks = recorded;
    const unrecorded = tasks.filter((t) => isLive(t) && !handleOfTask(t, attempt));
    // A running job without ranks has nothing to adopt or wait for: it goes back to the queue like an unlaunched one.
    if (unrecorded.length > 0 || tasks.length === 0) {
      const found = await this.backend.findStarted(job.id, attempt, unrecorded);
      if (found.length < unrecorded.length || tasks.length === 0) {
        // Not the whole gang started (or nothing did): nothing of it may run on, and it starts again from the queue.
        // Under the job's lock, so the exits of the ranks killed here find the job requeued and are ignored.
        await this.withJobLock(job.id, async () => {
          if (found.length > 0) await this.backend.stop(found, { graceMs: 0, signal: 'SIGKILL' });
          if (job.cancelRequestedAt !== undefined) {
            await store.finishJob(job.id, { status: 'cancelled', exitCode: null, endReason: 'cancelled' }, now());
            return;
          }
          await store.requeueJob(job.id, 'the control plane restarted before the job was launched', now());
          logger.warn(`job ${job.id} had not been launched before the restart; requeued`);
        });
        return;
      }
      await store.updateTasks(found.map(recordOfHandle));
      tasks = await store.getTasks(job.id);
    }
    const stopping = await store.lastEventOfType(job.id, 'stopping');
    const recordedStop = parseRecordedStop(stopping?.data);
    this.lifecycle.handle(
      {
        kind: 'restored',
        job,
        ranks: tasks.map((t) => ({ rank: t.rank, node: t.node, status: t.status === 'exited' || t.status === 'lost' || t.status === 'running' ? t.status : 'starting', ...(t.exitCode !== undefined ? { exitCode: t.exitCode } : {}), ...(t.finishedAt !== undefined ? { finishedAt: t.finishedAt } : {}) })),
        ...(recordedStop && stopping ? { stop: { recorded: recordedStop, at: stopping.at } } : {}),
      },
      now(),
    );
    const handles = tasks.filter(isLive).flatMap((t) => handleOfTask(t, attempt) ?? []);
    const observations = await this.backend.adopt(handles);
    const adopted = observations.filter((o) => o.state === 'running').length;
    if (adopted > 0) {
      this.watchAttempt(job, attempt, handles, 'end');
      await store.appendEvent(job.id, 'adopted', `re-adopted ${adopted} running rank${adopted === 1 ? '' : 's'} after a control-plane restart`, now());
    }
    for (const observation of observations) {
      if (observation.state === 'running') continue;
      const exit: RankExit =
        observation.state === 'exited'
          ? { jobId: job.id, rank: observation.rank, exitCode: observation.exitCode, signal: observation.signal, lost: false, at: observation.finishedAt, attempt }
          : { jobId: job.id, rank: observation.rank, exitCode: null, lost: true, at: now(), attempt };
      await this.carryOutAll(this.lifecycle.handle(rankExitEvent(exit, attempt), now()));
    }
    // Every rank may have been out before the crash already: then no exit above ends the job, `adopted` does; a stop
    // under way resumes at its recorded deadline.
    await this.carryOutAll(this.lifecycle.handle({ kind: 'adopted', jobId: job.id }, now()));
  }

  private withJobLock(jobId: string, work: () => Promise<void>): Promise<void> {
    const previous = this.jobLocks.get(jobId) ?? Promise.resolve();
    const next = previous.then(work, work);
    const release = () => {
      if (this.jobLocks.get(jobId) === tracked) this.jobLocks.delete(jobId);
    };
    // Never rejects: the caller handles `next`'s failure. (A `finally` here rejected with it, and when no later work
    // of the job chained on it, that was an unhandled rejection, which ends the process: a rank exit retried while
    // the disk was still full did exactly that.)
    const tracked: Promise<void> = next.then(release, release);
    this.jobLocks.set(jobId, tracked);
    return next;
  }
}

const isLive = (task: Task) => task.status === 'running' || task.status === 'starting';

/** A backend's rank exit as the core's event (`attempt`: the job's current one when the backend named none). */
function rankExitEvent(exit: RankExit, currentAttempt: number | undefined): LifecycleEvent {
  return {
    kind: 'rank_exited', jobId: exit.jobId, attempt: exit.attempt ?? currentAttempt ?? 1, rank: exit.rank, exitCode: exit.exitCode, lost: exit.lost, at: exit.at,
    ...(exit.signal ? { signal: exit.signal } : {}),
  };
}

export type { NodeInfo, TeamConfig };
