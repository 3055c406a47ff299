/**
 * The control loop: decide on a snapshot, act through a plan, reconcile what the backend reports.
 *
 *   schedule(): snapshot + pending ──runCycle──▶ plan ──screenPlan──▶ store.applyPlacements ──▶ backend.launch
 *   rank exits (backend) ──▶ record the rank ──▶ first failure stops the gang ──▶ last rank out ends the job
 *
 * Every decision is durable in the store before it is acted on, so a restart (see `recover`) finds the same
 * world: running ranks are adopted, ranks that ended meanwhile are read back with their real exit codes.
 */
import {
  DEFAULT_RESTART_BACKOFF_MS,
  DEFAULT_RESTART_ON,
  MAX_RESTART_BACKOFF_MS,
  computeGpusHeld,
  computeTasksForPlacement,
  decideStopGrace,
  describeGraceSource,
  formatByteSize,
  formatDuration,
  isTerminalJobStatus,
} from '@tutti/model';
import type { Diagnosis, GraceSource, Job, JobSpec, NodeInfo, Placement, RestartCause, StopGrace, Task, TeamConfig } from '@tutti/model';
import { SEED_HALF_LIVES, TeamUsageTracker } from './team-usage.ts';
import { CycleCache, readFairShareHalfLifeMs, readMaxGraceMs, recordFinishedDuration, runCycle, screenPlan } from '@tutti/scheduler';
import type { RunningJobInput } from '@tutti/scheduler';
import type { SchedulerProfile } from '@tutti/scheduler';
import type { ExecutionBackend, LogTrim, RankExit, RankHandle } from '@tutti/backends';
import { asDiskFull } from '@tutti/store';
import type { DiskFullError, GpuUse, JobEnd, NewProgressRecord, RequeueOptions, StateStore, TaskUpdate } from '@tutti/store';
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

/** Why a running gang is being stopped. The first cause wins: the ranks that die of our SIGTERM do not count. */
export type StopCause =
  | { kind: 'rank_failed'; rank: number; exitCode: number | null; detail: string; lost?: boolean }
  | { kind: 'cancelled' }
  | { kind: 'max_duration'; limitMs: number }
  /** No progress record for `timeoutMs` while the ranks lived. */
  | { kind: 'hung'; timeoutMs: number; detail: string }
  /** Stopped to make room (`preempt`), for the pending job `forJobId` when the scheduler chose it: back to pending, not counted as a restart. */
  | { kind: 'preempted'; message: string; forJobId?: string };

/** A stop as its `stopping` event records it, before any rank is signalled (the event's data). */
interface RecordedStop {
  signal: NodeJS.Signals;
  grace_ms: number;
  /** Which setting decided `grace_ms` (see `decideStopGrace`). */
  grace_source: GraceSource;
  /** Epoch ms: SIGKILL then, also by a server started after this one died. */
  deadline: number;
  attempt: number | null;
  cause: StopCause;
}

/** What happens to a job once every rank of its attempt is out. */
export type AttemptOutcome =
  | { kind: 'finish'; end: JobEnd }
  | { kind: 'requeue'; reason: string; options: RequeueOptions & { event: 'restarting' | 'preempted' }; backoffMs: number };

/** Progress tailing and hang detection of one running attempt. */
interface AttemptWatch {
  attempt: number;
  tails: Array<{ rank: number; tail: LogTail }>;
  /** The last progress record's time, or the attempt's start. */
  lastProgressAt: number;
  /** When the control plane started watching this attempt. */
  watchedSince: number;
  last?: Record<string, string | number | boolean>;
  /** From the job's spec: no record for this long → hung. */
  hangTimeoutMs?: number;
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
  private readonly usage: TeamUsageTracker;
  private lastSnapshotVersion = -1;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private seed = 1;
  /** Kept across cycles: what the scheduler derives from each queued job, so a long queue is not re-derived each cycle. */
  private readonly cycleCache = new CycleCache();
  /** Launches in flight, so `close` can wait for them to be recorded. */
  private readonly launches = new Set<Promise<void>>();
  /** Running attempts whose logs are tailed for progress records. */
  private readonly watches = new Map<string, AttemptWatch>();
  private progressPoll: Promise<void> | undefined;
  /**
   * GPU-milliseconds of each queued or running job's ended attempts (for least-attained-service profiles such as
   * `tiresias`); a running job's current run is added at cycle time.
   */
  private readonly pastServiceGpuMs = new Map<string, number>();
  /** Run times of recently succeeded jobs by team and size, for profiles that estimate run times. */
  private readonly durationHistory = new Map<string, number[]>();
  /**
   * Victims this controller is stopping for a plan's preemption, with the pending job they make room for: the next
   * cycles see them marked (`RunningJobInput.stopping`), so they are not chosen again and their GPUs count as
   * about to be free for that job.
   */
  private readonly preemptedFor = new Map<string, { since: number; forJobId: string }>();
  /** Set once re-adoption is done: cycles run only from then on. */
  private started = false;
  /** Timers that wake the queue when a restart's backoff is over. */
  private readonly backoffTimers = new Set<NodeJS.Timeout>();
  /**
   * Records refused for lack of space (a rank's exit, a launch's pids), in the order they happened, tried again on
   * every tick until they are written: without them a job whose rank exited during a full disk would run forever.
   */
  private readonly unwritten = new Map<string, () => Promise<void>>();
  private writingUnwritten: Promise<void> | undefined;
  /** Numbers the unwritten records, so that two of the same kind never share a key. */
  private unwrittenCount = 0;

  constructor(options: JobControllerOptions) {
    this.options = options;
    this.store = options.store;
    this.backend = options.backend;
    // The profile's half-life: the one the queue sort decays usage with (the config's fair_share_half_life sets it).
    this.usage = new TeamUsageTracker(readFairShareHalfLifeMs(options.profile));
    this.backend.onRankExit((exit) => {
      const record = () => this.handleRankExit(exit);
      void this.withJobLock(exit.jobId, () => this.writeNowOrLater(exit.jobId, `the exit of rank ${exit.rank} of job ${exit.jobId}`, record)).catch((error: unknown) =>
        this.options.logger.error(`reconciling rank ${exit.rank} of job ${exit.jobId} failed`, error),
      );
    });
  }

  /** True until re-adoption after a (re)start is done: the API answers, but nothing is scheduled yet. */
  get recovering(): boolean {
    return !this.started && !this.closed;
  }

  /** Re-adopts what ran before a restart, then starts the loop. */
  async start(): Promise<void> {
    await this.recover();
    const now = this.options.now();
    const past = await this.store.listGpuUseEndedSince(now - SEED_HALF_LIVES * this.usage.halfLifeMs);
    this.usage.seed(now, past, await this.store.listJobsByStatus(['running']));
    await this.seedServiceHistory(past);
    this.started = true;
    for (const job of await this.store.listJobsByStatus(['pending'])) {
      this.queue.set(job.id, job);
      // A restart that was waiting out its backoff when the server died is woken when the backoff ends.
      if (job.notBefore !== undefined && job.notBefore > now) this.wakeQueueAt(job.notBefore);
    }
    this.timer = setInterval(() => {
      this.writeUnwritten();
      this.enforceDeadlines();
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

  /** Each team's decayed GPU use as of now (what the next cycle's fair share starts from), and the half-life. */
  fairShareState(): { decayedGpuSeconds: ReadonlyMap<string, number>; halfLifeMs: number } {
    const usage = this.usage.peek(this.options.now());
    return { decayedGpuSeconds: new Map(usage.map((u) => [u.team, u.decayedGpuSeconds])), halfLifeMs: this.usage.halfLifeMs };
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
      this.lifecycle('cancel_recorded', jobId);
      this.beginStop(jobId, { kind: 'cancelled' });
    }
    return outcome;
  }

  /**
   * Preempts a running job: stops its gang with its stop signal and grace (see `stopGrace`), then puts it back in
   * the queue as `pending` with a `preempted` event. Not counted against max_restarts. A job already being
   * stopped keeps its first cause. `forJobId`: the pending job it makes room for (recorded with the stop).
   */
  async preempt(jobId: string, options: { message?: string; forJobId?: string } = {}): Promise<'preempting' | 'not_running' | 'not_found'> {
    const job = await this.store.getJob(jobId);
    if (!job) return 'not_found';
    if (job.status !== 'running') return 'not_running';
    this.beginStop(jobId, { kind: 'preempted', message: options.message ?? 'preempted', ...(options.forJobId !== undefined ? { forJobId: options.forJobId } : {}) });
    return 'preempting';
  }

  /** The last progress record of each running attempt (for /metrics and views). */
  lastProgress(): ReadonlyMap<string, { attempt: number; at: number; values: Readonly<Record<string, string | number | boolean>> }> {
    const out = new Map<string, { attempt: number; at: number; values: Record<string, string | number | boolean> }>();
    for (const [jobId, watch] of this.watches) if (watch.last) out.set(jobId, { attempt: watch.attempt, at: watch.lastProgressAt, values: watch.last });
    return out;
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
    const now = this.options.now();
    // A job waiting out its restart backoff is not a candidate yet (its timer asks for a cycle when it is).
    const pending = [...this.queue.values()].filter((job) => job.notBefore === undefined || job.notBefore <= now);
    const running = await store.listJobsByStatus(['running']);
    const usage = this.usage.advance(now, running);
    const { teams, profile } = this.options;
    const started = performance.now();
    const attainedServiceGpuMs = new Map(this.pastServiceGpuMs);
    for (const job of running) {
      if (job.startedAt !== undefined) attainedServiceGpuMs.set(job.id, (attainedServiceGpuMs.get(job.id) ?? 0) + computeGpusHeld(job.spec) * Math.max(0, now - job.startedAt));
    }
    for (const jobId of [...this.preemptedFor.keys()]) if (!this.stopping.has(jobId)) this.preemptedFor.delete(jobId);
    const runningInput: RunningJobInput[] = this.preemptedFor.size === 0 ? running : running.map((job) => {
      const stopping = this.preemptedFor.get(job.id);
      return stopping ? { ...job, stopping } : job;
    });
    const result = runCycle(
      { snapshot, pending, running: runningInput, teams, usage, now, seed: this.seed++, attainedServiceGpuMs, durationHistory: this.durationHistory, defaultGraceMs: this.options.stopGraceMs, cache: this.cycleCache },
      profile,
    );
    metrics.observeCycle((performance.now() - started) / 1000);

    // Only the placed jobs matter from here on: no per-cycle maps over the whole queue (100,000 jobs is a real queue).
    const specs = new Map<string, JobSpec>();
    for (const jobId of [...result.plan.placements.map((p) => p.jobId), ...result.plan.preemptions.map((p) => p.forJobId)]) {
      const job = this.queue.get(jobId);
      if (job) specs.set(job.id, job.spec);
    }
    // A plan that fails verification is a scheduler bug: its faulty part is dropped (the simulator drops the same,
    // by the same screenPlan), the rest carried out, and each violation said loudly.
    const { plan, violations } = screenPlan(snapshot, result.plan, specs, { running, teams });
    for (const violation of violations) {
      this.options.logger.error(`scheduler produced an invalid plan for job ${violation.jobId}: ${violation.message}`);
    }
    const placements = plan.placements;
    // Victims are stopped with their grace period and come back as pending. Victims already being stopped are
    // marked in the cycle's input, so the scheduler does not name them again; one being stopped for another cause
    // (a cancel, a failed rank) keeps that first cause.
    for (const preemption of plan.preemptions) {
      if (this.stopping.has(preemption.jobId)) continue;
      void this.preempt(preemption.jobId, { message: preemption.message, forJobId: preemption.forJobId }).then((outcome) => {
        if (outcome !== 'preempting') return;
        this.preemptedFor.set(preemption.jobId, { since: now, forJobId: preemption.forJobId });
        this.options.logger.info(`job ${preemption.jobId}: ${preemption.message}`);
      });
    }

    if (placements.length > 0) {
      const withTasks = placements.map((placement) => ({ placement, tasks: computeTasksForPlacement(specs.get(placement.jobId)!, placement) }));
      const outcomes = await store.applyPlacements(withTasks, now);
      withTasks.forEach(({ placement, tasks }, i) => {
        const outcome = outcomes[i];
        const job = this.queue.get(placement.jobId);
        // A job that is no longer pending (cancelled meanwhile) leaves the queue; one whose GPUs were taken stays.
        if (outcome && (outcome.applied || outcome.reason === 'job_not_pending')) this.queue.delete(placement.jobId);
        if (!outcome?.applied || !job) return;
        this.lifecycle('placed', job.id);
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
    void launch
      .catch((error: unknown) => {
        if (!this.reportDiskFull(error)) this.options.logger.error('launching a job failed', error);
      })
      .finally(() => this.launches.delete(launch));
  }

  /** Whether `error` is a full disk (told to the disk-full log, which logs it once per episode). */
  private reportDiskFull(error: unknown): boolean {
    return this.options.diskFull ? this.options.diskFull.report(error) : asDiskFull(error) !== undefined;
  }

  /**
   * Runs `write` (under the job's lock, which the caller holds); if it is refused for a full disk, keeps it to run
   * again on each tick, in order, until it succeeds. Other errors propagate.
   */
  private async writeNowOrLater(jobId: string, what: string, write: () => Promise<void>): Promise<void> {
    try {
      await write();
    } catch (error) {
      if (!this.reportDiskFull(error) || this.closed) throw error;
      this.unwritten.set(`${what} (#${++this.unwrittenCount})`, () => this.withJobLock(jobId, write));
    }
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
    const { graceMs } = this.stopGrace(job);
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

  private async launch(queued: Job, placement: Placement, tasks: Task[]): Promise<void> {
    const { store, now, logger } = this.options;
    // The queue's copy may be older than the last attempt: the attempt number and checkpoint come from the store.
    const job = (await store.getJob(queued.id)) ?? queued;
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
      this.lifecycle('launched', job.id);
      // Its files were written: a full disk that kept jobs from starting is over.
      this.options.diskFull?.recovered(runtimeEnv.TUTTI_CHECKPOINT_DIR ?? this.options.dataDir);
    } catch (error) {
      const full = asDiskFull(error, this.options.dataDir);
      if (full) {
        // Not the job's fault, and over once space is freed: back to the queue, tried again after a pause.
        this.reportDiskFull(error);
        await this.writeNowOrLater(job.id, `the requeue of job ${job.id}`, () => this.requeueAfterDiskFull(job.id, full));
        return;
      }
      const detail = error instanceof Error ? error.message : String(error);
      logger.warn(`job ${job.id} could not start: ${detail}`);
      await store.updateTasks(tasks.map((t) => ({ jobId: t.jobId, rank: t.rank, status: 'lost', exitCode: null, finishedAt: now() })));
      await this.finish(job.id, { status: 'failed', exitCode: null, endReason: `could not start: ${detail}` });
      return;
    }
    const resumed = runtimeEnv.TUTTI_RESUME_FROM ?? null;
    const startedAt = now();
    // The ranks run now: their pids must reach the store even if the disk is full at this moment.
    await this.writeNowOrLater(job.id, `the start of job ${job.id}`, async () => {
      await store.updateTasks(handles.map(recordedHandle));
      this.lifecycle('ranks_recorded', job.id);
      await store.appendEvent(
        job.id,
        'started',
        `started attempt ${attempt}: ${handles.length} rank${handles.length === 1 ? '' : 's'} on ${placement.nodes.map((n) => n.node).join(', ')}${resumed ? `, resuming from ${resumed}` : ''}`,
        startedAt,
        { pids: handles.map((h) => h.pid), attempt, resume_from: resumed },
      );
    });
    this.watchAttempt(job, attempt, handles, 'start');
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

  /**
   * Signals every launched rank of a stopping job; ranks without a process yet are signalled once launched.
   * The job's `stop_signal` goes first, SIGKILL after its grace (`preemption_grace`, or the server's). Before the
   * signal, the deadline (epoch seconds) is written to `TUTTI_CONTROL_DIR/preempt-deadline`, so a rank that
   * catches the signal can read how long it has to checkpoint.
   */
  private async signalRanks(jobId: string, cause: StopCause): Promise<void> {
    try {
      const [job, tasks] = await Promise.all([this.store.getJob(jobId), this.store.getTasks(jobId)]);
      const attempt = job?.attempt;
      const handles = tasks.filter((t) => t.status === 'running' || t.status === 'starting').flatMap((t) => toHandle(t, attempt) ?? []);
      if (handles.length === 0) {
        if (tasks.every((t) => t.status === 'exited' || t.status === 'lost')) await this.withJobLock(jobId, () => this.maybeFinish(jobId));
        return;
      }
      const { graceMs, source } = job ? this.stopGrace(job) : { graceMs: this.options.stopGraceMs, source: 'default' as const };
      const signal = job?.spec.stopSignal ?? 'SIGTERM';
      const deadline = this.options.now() + graceMs;
      // Before the signal, so that a rank that catches it can read how long it has to checkpoint.
      await this.backend.writeStopDeadline(handles, deadline);
      // The stop (cause, signal, deadline, preemptor) is recorded before any rank is signalled: after a crash,
      // `recover` ends the attempt for this cause and sends SIGKILL at this deadline (`resumeStop`).
      const stop: RecordedStop = { signal, grace_ms: graceMs, grace_source: source, deadline, attempt: attempt ?? null, cause };
      await this.store.appendEvent(
        jobId,
        'stopping',
        `${describeStop(cause)} (${signal}, SIGKILL after ${formatDuration(Math.max(1, graceMs))}: ${describeGraceSource(source)})`,
        this.options.now(),
        { ...stop },
      );
      this.lifecycle('stop_recorded', jobId);
      this.options.feed.notify();
      await this.backend.stop(handles, { graceMs, signal });
    } catch (error) {
      if (!this.reportDiskFull(error)) this.options.logger.error(`stopping job ${jobId} failed`, error);
      // The stop is recorded before any rank is signalled: with the disk full, both wait for the next ticks.
      else if (!this.closed) this.unwritten.set(`the stop of job ${jobId} (#${++this.unwrittenCount})`, () => this.signalRanks(jobId, cause));
    }
  }

  /** The grace of every stop of `job` (see `decideStopGrace`): its own, else the server's, at most the profile's maximum. */
  private stopGrace(job: Job): StopGrace {
    return decideStopGrace(job.spec.preemptionGraceMs, this.options.stopGraceMs, readMaxGraceMs(this.options.profile));
  }

  /**
   * Carries on a stop a previous server recorded and may have begun: the stop signal again (the crash may have come
   * between the record and the signal; a rank may get it twice) and SIGKILL at the recorded deadline, at once when
   * it has passed. Nothing new is recorded: the deadline the ranks were told stays the one they get.
   */
  private async resumeStop(jobId: string, stop: RecordedStop): Promise<void> {
    try {
      const [job, tasks] = await Promise.all([this.store.getJob(jobId), this.store.getTasks(jobId)]);
      const handles = tasks.filter(isLive).flatMap((t) => toHandle(t, job?.attempt) ?? []);
      if (handles.length === 0) return;
      const leftMs = stop.deadline - this.options.now();
      this.options.logger.info(`job ${jobId}: resuming its stop after the restart (${leftMs > 0 ? `SIGKILL in ${formatDuration(leftMs)}` : 'its deadline has passed: SIGKILL now'})`);
      await this.backend.stop(handles, leftMs > 0 ? { graceMs: leftMs, signal: stop.signal } : { graceMs: 0, signal: 'SIGKILL' });
    } catch (error) {
      this.options.logger.error(`resuming the stop of job ${jobId} failed`, error);
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
    if (exit.attempt !== undefined) {
      // A rank of an attempt that is over (killed while its job was requeued) must not act on the next attempt.
      const job = await store.getJob(exit.jobId);
      if (job?.status !== 'running' || (job.attempt ?? 1) !== exit.attempt) return;
    }
    const update: TaskUpdate = { jobId: exit.jobId, rank: exit.rank, status: exit.lost ? 'lost' : 'exited', exitCode: exit.exitCode, finishedAt: exit.at };
    await store.updateTasks([update]);
    this.lifecycle('rank_exit_recorded', exit.jobId);
    const detail = exit.lost
      ? `rank ${exit.rank} was lost (its process vanished without an exit status)`
      : exit.signal
        ? `rank ${exit.rank} was killed by ${exit.signal}`
        : `rank ${exit.rank} exited with code ${exit.exitCode}`;
    await store.appendEvent(exit.jobId, 'rank_exited', detail, this.options.now(), { rank: exit.rank, exit_code: exit.exitCode, signal: exit.signal ?? null, lost: exit.lost });
    this.options.feed.notify();
    if (exit.lost || exit.exitCode !== 0) this.beginStop(exit.jobId, { kind: 'rank_failed', rank: exit.rank, exitCode: exit.exitCode, detail, lost: exit.lost });
    await this.maybeFinish(exit.jobId);
  }

  /** Ends the job once every rank is out. */
  private async maybeFinish(jobId: string): Promise<void> {
    const [job, tasks] = await Promise.all([this.store.getJob(jobId), this.store.getTasks(jobId)]);
    if (!job || isTerminalJobStatus(job.status) || job.status !== 'running') return;
    if (tasks.length === 0 || tasks.some((t) => t.status !== 'exited' && t.status !== 'lost')) return;
    const cause = this.stopping.get(jobId) ?? (job.cancelRequestedAt !== undefined ? ({ kind: 'cancelled' } as const) : undefined);
    await this.drainProgress(jobId);
    const outcome = decideAttemptOutcome(job, cause, tasks);
    const ranMs = job.startedAt === undefined ? 0 : Math.max(0, this.options.now() - job.startedAt);
    if (outcome.kind === 'finish') {
      this.pastServiceGpuMs.delete(jobId);
      if (outcome.end.status === 'succeeded') recordFinishedDuration(this.durationHistory, job.spec.team, computeGpusHeld(job.spec), ranMs);
      await this.finish(jobId, outcome.end);
      return;
    }
    this.pastServiceGpuMs.set(jobId, (this.pastServiceGpuMs.get(jobId) ?? 0) + computeGpusHeld(job.spec) * ranMs);
    const now = this.options.now();
    const notBefore = outcome.backoffMs > 0 ? now + outcome.backoffMs : undefined;
    const requeued = await this.store.requeueJob(jobId, outcome.reason, now, { ...outcome.options, ...(notBefore !== undefined ? { notBefore } : {}) });
    this.stopping.delete(jobId);
    this.deadlines.delete(jobId);
    if (!requeued) return;
    this.lifecycle('requeued', jobId);
    this.options.logger.warn(`job ${jobId}: ${outcome.reason}`);
    const pending = await this.store.getJob(jobId);
    if (pending?.status === 'pending') {
      this.queue.set(jobId, pending);
      this.queueChanged = true;
      if (notBefore !== undefined) this.wakeQueueAt(notBefore);
    }
    this.options.feed.notify();
    this.requestSchedule();
  }

  /** A job that could not start for a full disk goes back to the queue, not counted as a restart, after a pause. */
  private async requeueAfterDiskFull(jobId: string, full: DiskFullError): Promise<void> {
    const now = this.options.now();
    const notBefore = now + DISK_FULL_RETRY_MS;
    const reason = `could not start: ${full.message}; tried again in ${formatDuration(DISK_FULL_RETRY_MS)}`;
    if (!(await this.store.requeueJob(jobId, reason, now, { notBefore }))) return;
    const pending = await this.store.getJob(jobId);
    if (pending?.status === 'pending') {
      this.queue.set(jobId, pending);
      this.queueChanged = true;
      this.wakeQueueAt(notBefore);
    }
    this.options.feed.notify();
  }

  /** Asks for a cycle once a restart's backoff is over (a cycle before then passes the job over). */
  private wakeQueueAt(notBefore: number): void {
    const timer = setTimeout(() => {
      this.backoffTimers.delete(timer);
      this.queueChanged = true;
      this.requestSchedule();
    }, Math.max(0, notBefore - this.options.now()));
    timer.unref();
    this.backoffTimers.add(timer);
  }

  private lifecycle(point: LifecyclePoint, jobId: string): void {
    this.options.onLifecyclePoint?.(point, jobId);
  }

  // ---- progress records and hangs ---------------------------------------------------------------------------

  /** Starts tailing an attempt's rank logs: from the start for a fresh launch, from their end for an adoption. */
  private watchAttempt(job: Job, attempt: number, handles: readonly RankHandle[], from: 'start' | 'end'): void {
    // Records written while no server watched are not replayed on adoption (their time is unknown).
    const maxBytes = this.options.maxLogBytes;
    const tails = handles.map((h) => ({
      rank: h.rank,
      tail: new LogTail(this.backend, { jobId: h.jobId, rank: h.rank, attempt: h.attempt ?? attempt }, from, maxBytes === undefined ? undefined : { maxBytes, onTrim: (trim) => this.logTrimmed(job.id, h.rank, maxBytes, trim) }),
    }));
    const watch: AttemptWatch = { attempt, tails, lastProgressAt: this.options.now(), watchedSince: this.options.now(), ...(job.spec.hangTimeoutMs !== undefined ? { hangTimeoutMs: job.spec.hangTimeoutMs } : {}) };
    const jobId = job.id;
    this.watches.set(jobId, watch);
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

  /** Reads new progress records of every running attempt, stores them, and declares hung jobs. */
  private async pollProgress(): Promise<void> {
    for (const jobId of [...this.watches.keys()]) {
      await this.readProgress(jobId).catch((error: unknown) => this.options.logger.warn(`reading progress of job ${jobId} failed: ${String(error)}`));
    }
    this.checkHangs();
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
    await this.storeProgress(watch, records);
  }

  /**
   * A progress record posted to the API (`POST /v1/jobs/:id/progress` with the job's token): stored and counted
   * for hang detection exactly like a record printed on stdout. Only a running job reports progress.
   */
  async recordProgress(jobId: string, rank: number, values: Record<string, string | number | boolean>): Promise<'recorded' | 'not_running'> {
    const watch = this.watches.get(jobId);
    if (!watch || this.stopping.has(jobId)) return 'not_running';
    await this.storeProgress(watch, [toProgressRecord(jobId, watch.attempt, rank, this.options.now(), values)]);
    return 'recorded';
  }

  private async storeProgress(watch: AttemptWatch, records: NewProgressRecord[]): Promise<void> {
    if (records.length === 0) return;
    watch.lastProgressAt = records.at(-1)!.at;
    watch.last = { ...watch.last, ...(records.at(-1)?.values as Record<string, string | number | boolean>) };
    await this.store.appendProgress(records);
  }

  /** The last records of an attempt that just ended, then forget it. */
  private async drainProgress(jobId: string): Promise<void> {
    await this.readProgress(jobId).catch(() => undefined);
    this.watches.delete(jobId);
  }

  private checkHangs(): void {
    const now = this.options.now();
    for (const [jobId, watch] of this.watches) {
      if (this.stopping.has(jobId)) continue;
      const timeoutMs = watch.hangTimeoutMs;
      if (timeoutMs === undefined) continue;
      const idleSince = this.options.gpusIdleSince?.(jobId);
      const gpusIdle = idleSince !== undefined && now - Math.max(idleSince, watch.watchedSince) >= timeoutMs;
      if (now - watch.lastProgressAt < timeoutMs && !gpusIdle) continue;
      const last = watch.last ? `last progress ${JSON.stringify(watch.last)} at ${new Date(watch.lastProgressAt).toISOString()}` : 'no progress record since the attempt started';
      const detail = now - watch.lastProgressAt >= timeoutMs
        ? `no progress record for ${formatDuration(timeoutMs)} (hang_timeout); ${last}`
        : `every GPU of the job idle (0% utilization) for ${formatDuration(timeoutMs)} (hang_timeout) while its processes live; ${last}`;
      this.options.logger.warn(`job ${jobId} is hung: ${detail}`);
      void this.store
        .appendEvent(jobId, 'hung', `declared hung: ${detail}`, now, { last: watch.last ?? null, last_progress_at: watch.lastProgressAt })
        .then(() => this.options.feed.notify())
        .catch((error: unknown) => {
          if (!this.reportDiskFull(error)) this.options.logger.error(`recording that job ${jobId} hung failed`, error);
        });
      this.beginStop(jobId, { kind: 'hung', timeoutMs, detail });
    }
  }

  /**
   * After a restart: the attained service of queued and running jobs that ran before, and the run times of jobs that
   * succeeded in the fair-share window (`past`: the attempts that ended in it), newest last.
   */
  private async seedServiceHistory(past: readonly GpuUse[]): Promise<void> {
    for (const job of [...this.queue.values(), ...(await this.store.listJobsByStatus(['running']))]) {
      if ((job.attempt ?? 0) === 0 || (job.status === 'running' && (job.attempt ?? 0) <= 1)) continue;
      const attempts = await this.store.listAttempts(job.id);
      const ms = attempts.reduce((sum, a) => sum + (a.startedAt === undefined ? 0 : Math.max(0, a.finishedAt - a.startedAt)), 0);
      if (ms > 0) this.pastServiceGpuMs.set(job.id, computeGpusHeld(job.spec) * ms);
    }
    const lastAttempt = new Map<string, GpuUse>();
    for (const use of past) lastAttempt.set(use.jobId, use);
    const succeeded = [...lastAttempt.values()].filter((use) => use.jobStatus === 'succeeded').sort((a, b) => a.finishedAt - b.finishedAt);
    for (const use of succeeded) recordFinishedDuration(this.durationHistory, use.team, use.gpus, use.finishedAt - use.startedAt);
  }

  private async finish(jobId: string, end: JobEnd): Promise<void> {
    const finished = await this.store.finishJob(jobId, end, this.options.now());
    this.stopping.delete(jobId);
    this.deadlines.delete(jobId);
    this.watches.delete(jobId);
    if (finished) {
      this.options.feed.notify();
      this.requestSchedule();
    }
  }

  /**
   * After a restart, every job the store says is running converges, whatever step of its life the crash cut:
   * - its ranks that still run are adopted (watched again, their exits reported as usual);
   * - ranks that ended while no server watched are read back with their real exit codes;
   * - ranks the backend started but the crash kept from being recorded are found (`findStarted`) and adopted;
   *   if only some of a gang are found, they are killed and the job is queued again, as is a job of which nothing
   *   was started (a cancelled one is finished instead);
   * - a stop that was under way (its cause recorded in the `stopping` event), a cancel, or a rank failure whose
   *   stop had not begun is carried through;
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
    this.options.feed.notify();
    const stillRunning = (await store.countJobsByStatus()).running;
    logger.info(`recovered ${running.length} running job${running.length === 1 ? '' : 's'} in ${Math.round(performance.now() - started)} ms: ${stillRunning} still running`);
  }

  private async recoverJob(job: Job, recorded: Task[]): Promise<void> {
    const { store, logger, now } = this.options;
    const attempt = job.attempt ?? 1;
    let tasks = recorded;
    const unrecorded = tasks.filter((t) => isLive(t) && !toHandle(t, attempt));
    // A running job without ranks has nothing to adopt or wait for: it goes back to the queue like an unlaunched one.
    if (unrecorded.length > 0 || tasks.length === 0) {
      const found = await this.backend.findStarted(job.id, attempt, unrecorded);
      if (found.length < unrecorded.length || tasks.length === 0) {
        // Not the whole gang started (or nothing did): nothing of it may run on, and it starts again from the queue.
        // Under the job's lock, so the exits of the ranks killed here find the job requeued and are ignored.
        await this.withJobLock(job.id, async () => {
          if (found.length > 0) await this.backend.stop(found, { graceMs: 0, signal: 'SIGKILL' });
          if (job.cancelRequestedAt !== undefined) {
            await this.finish(job.id, { status: 'cancelled', exitCode: null, endReason: 'cancelled' });
            return;
          }
          await store.requeueJob(job.id, 'the control plane restarted before the job was launched', now());
          logger.warn(`job ${job.id} had not been launched before the restart; requeued`);
        });
        return;
      }
      await store.updateTasks(found.map(recordedHandle));
      tasks = await store.getTasks(job.id);
    }
    if (job.spec.maxDurationMs !== undefined && job.startedAt !== undefined) this.deadlines.set(job.id, job.startedAt + job.spec.maxDurationMs);
    const { cause, committed, committedAt } = await this.interruptedStop(job, tasks);
    // Set before any exit is handled, so the attempt ends for the cause it was being stopped for.
    if (cause) this.stopping.set(job.id, cause);
    // A victim stays marked for the job it makes room for, so the next cycles wait for it instead of choosing more.
    if (cause?.kind === 'preempted' && cause.forJobId !== undefined && committedAt !== undefined) this.preemptedFor.set(job.id, { since: committedAt, forJobId: cause.forJobId });
    const handles = tasks.filter(isLive).flatMap((t) => toHandle(t, attempt) ?? []);
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
      await this.withJobLock(job.id, () => this.handleRankExit(exit));
    }
    // Every rank may have been out before the crash already: then no exit above ends the job, this does.
    await this.withJobLock(job.id, () => this.maybeFinish(job.id));
    if (cause && (await store.getJob(job.id))?.status === 'running') void (committed ? this.resumeStop(job.id, committed) : this.signalRanks(job.id, cause));
  }

  /**
   * Why the current attempt was being stopped when the server died, if it was: the stop recorded in its
   * `stopping` event (with its deadline and when it was recorded), else a cancel, else the first rank recorded as
   * failed (their stops had not begun).
   */
  private async interruptedStop(job: Job, tasks: readonly Task[]): Promise<{ cause?: StopCause; committed?: RecordedStop; committedAt?: number }> {
    const stopping = await this.store.lastEventOfType(job.id, 'stopping');
    const committed = stopping?.data?.attempt === (job.attempt ?? 1) ? parseRecordedStop(stopping.data) : undefined;
    if (committed) return { cause: committed.cause, committed, committedAt: stopping!.at };
    if (job.cancelRequestedAt !== undefined) return { cause: { kind: 'cancelled' } };
    const failed = firstFailedRank(tasks);
    if (!failed) return {};
    const detail = failed.status === 'lost' ? `rank ${failed.rank} was lost (its process vanished without an exit status)` : `rank ${failed.rank} exited with code ${failed.exitCode}`;
    return { cause: { kind: 'rank_failed', rank: failed.rank, exitCode: failed.exitCode ?? null, detail, ...(failed.status === 'lost' ? { lost: true } : {}) } };
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

/** What the store keeps of a launched rank's handle. */
function recordedHandle(handle: RankHandle): TaskUpdate {
  return { jobId: handle.jobId, rank: handle.rank, status: 'running', pid: handle.pid, pidStartTime: handle.pidStartTime, logPath: handle.logPath, startedAt: handle.startedAt };
}

/** The rank that failed first (lost, or a non-zero exit), by when it ended. */
function firstFailedRank(tasks: readonly Task[]): Task | undefined {
  return [...tasks].sort((a, b) => (a.finishedAt ?? 0) - (b.finishedAt ?? 0) || a.rank - b.rank).find((t) => t.status === 'lost' || (t.status === 'exited' && t.exitCode !== 0));
}

const STOP_CAUSE_KINDS: ReadonlySet<string> = new Set<StopCause['kind']>(['rank_failed', 'cancelled', 'max_duration', 'hung', 'preempted']);

/** A stop as the `stopping` event recorded it; undefined for anything else (an event of an older server). */
function parseRecordedStop(data: Readonly<Record<string, unknown>>): RecordedStop | undefined {
  const cause = data.cause;
  if (typeof cause !== 'object' || cause === null) return undefined;
  const kind = (cause as { kind?: unknown }).kind;
  if (typeof kind !== 'string' || !STOP_CAUSE_KINDS.has(kind)) return undefined;
  if (typeof data.deadline !== 'number' || typeof data.signal !== 'string' || typeof data.grace_ms !== 'number') return undefined;
  return data as unknown as RecordedStop;
}

/** `attempt` is the job's: its ranks' status files live under that attempt's directory. */
function toHandle(task: Task, attempt: number | undefined): RankHandle | undefined {
  if (task.pid === undefined || task.pidStartTime === undefined || task.logPath === undefined) return undefined;
  return {
    jobId: task.jobId, rank: task.rank, node: task.node, pid: task.pid, pidStartTime: task.pidStartTime, logPath: task.logPath, startedAt: task.startedAt ?? 0,
    ...(attempt !== undefined ? { attempt } : {}),
  };
}

function describeStop(cause: StopCause): string {
  switch (cause.kind) {
    case 'rank_failed':
      return `stopping the other ranks: ${cause.detail}`;
    case 'cancelled':
      return 'stopping every rank: cancel requested';
    case 'max_duration':
      return `stopping every rank: exceeded max_duration ${formatDuration(cause.limitMs)}`;
    case 'hung':
      return `stopping every rank: hung, ${cause.detail}`;
    case 'preempted':
      return `stopping every rank: preempted (${cause.message})`;
  }
}

/** The restart cause an ended attempt stands for, if it ended by failing. */
function restartCauseOf(cause: StopCause | undefined, tasks: readonly Task[]): RestartCause | undefined {
  if (cause?.kind === 'hung') return 'hang';
  if (cause?.kind === 'rank_failed') return cause.lost ? 'node_lost' : 'failure';
  if (cause !== undefined) return undefined;
  if (tasks.some((t) => t.status === 'lost')) return 'node_lost';
  return tasks.some((t) => t.exitCode !== 0) ? 'failure' : undefined;
}

/**
 * What follows an attempt whose ranks are all out: the job ends, or the whole gang goes back to the queue.
 * - A cancel (also one asked during a preemption) ends it `cancelled`; max_duration ends it `failed`.
 * - A preemption requeues it with a `preempted` event, not counted as a restart, without backoff.
 * - A failure, a lost rank or a hang requeues it (`restarting`) when that cause is in `restart_on` and
 *   `restarts < max_restarts`, after `restart_backoff × 2^restarts` (capped); otherwise the job fails, and the
 *   reason says when it was because the restarts ran out.
 */
export function decideAttemptOutcome(job: Job, cause: StopCause | undefined, tasks: readonly Task[]): AttemptOutcome {
  if (job.cancelRequestedAt !== undefined) return { kind: 'finish', end: decideJobEnd({ kind: 'cancelled' }, tasks) };
  if (cause?.kind === 'preempted') {
    const reason = `preempted: ${cause.message}`;
    return { kind: 'requeue', reason, backoffMs: 0, options: { event: 'preempted', attemptEnd: { exitCode: null, reason } } };
  }
  const end = decideJobEnd(cause, tasks);
  const restartCause = end.status === 'failed' ? restartCauseOf(cause, tasks) : undefined;
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
export function decideJobEnd(cause: StopCause | undefined, tasks: readonly Task[]): JobEnd {
  if (cause?.kind === 'cancelled') return { status: 'cancelled', exitCode: null, endReason: 'cancelled' };
  if (cause?.kind === 'max_duration') return { status: 'failed', exitCode: null, endReason: `exceeded max_duration ${formatDuration(cause.limitMs)}` };
  if (cause?.kind === 'rank_failed') return { status: 'failed', exitCode: cause.exitCode, endReason: cause.detail };
  if (cause?.kind === 'hung') return { status: 'failed', exitCode: null, endReason: `hung: ${cause.detail}` };
  if (cause?.kind === 'preempted') return { status: 'failed', exitCode: null, endReason: `preempted: ${cause.message}` };
  const failed = firstFailedRank(tasks);
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
