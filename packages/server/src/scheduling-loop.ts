/**
 * The scheduling loop: the pending queue kept in memory, and cycles run at a pace that leaves the event loop to the
 * API. A cycle reads the store, lets the core build its input (`buildCycleInput`), runs the scheduler, lets the core
 * apply the plan (`applyCycleResult`: verified, victims stopped through the core) and commits the placements.
 * What happens to a job once placed is the core's to decide (the `placed` event).
 */
import { computeTasksForPlacement } from '@tutti/model';
import type { Diagnosis, Job, JobSpec, Placement, Task, TeamConfig } from '@tutti/model';
import { applyCycleResult, buildCycleInput } from '@tutti/control';
import type { JobLifecycle, LifecycleCommand } from '@tutti/control';
import { CycleCache, runCycle } from '@tutti/scheduler';
import type { SchedulerProfile } from '@tutti/scheduler';
import type { StateStore } from '@tutti/store';
import type { EventFeed } from './event-feed.ts';
import type { PassLifecyclePoint } from './lifecycle-point.ts';
import type { Logger } from './logger.ts';
import type { ServerMetrics } from './metrics.ts';

/** The periodic tick runs a cycle at least this often even when nothing changed. */
const MAX_IDLE_CYCLE_GAP_MS = 10_000;

export interface SchedulingLoopOptions {
  store: StateStore;
  lifecycle: JobLifecycle;
  metrics: ServerMetrics;
  feed: EventFeed;
  logger: Logger;
  now: () => number;
  profile: SchedulerProfile;
  teams: readonly TeamConfig[];
  /** Whether the controller is closing: no cycle starts any more. */
  isClosed: () => boolean;
  /** Whether `error` passes by itself — a full disk, the database unreachable — (then told once per episode, not logged here). */
  reportTransient: (error: unknown) => boolean;
  lifecyclePoint: PassLifecyclePoint;
  /** Carries out the core's commands (the plan's victims stopped). */
  carryOutAll: (commands: readonly LifecycleCommand[]) => Promise<void>;
  /** A placement committed for `job` (as the store has it now): held for its launch, and told to the core. */
  placed: (job: Job, placement: Placement, tasks: Task[]) => void;
}

export class SchedulingLoop {
  private readonly options: SchedulingLoopOptions;
  /**
   * The queue: every pending job, oldest first. The store is the truth; this server is the only one that changes
   * jobs once submitted (the data-dir lock, or the lease of a leader among replicas, sees to that), so the queue is
   * loaded once at start and kept in step with each transition and each submission — those other replicas took
   * are learnt from the event log (leader-term.ts) — instead of re-reading every pending row on every cycle.
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
   * costs ~100 ms — and runs one at least every `MAX_IDLE_CYCLE_GAP_MS` all the same.
   */
  private queueChanged = true;
  private lastSnapshotVersion = -1;
  private seed = 1;
  /** Kept across cycles: what the scheduler derives from each queued job, so a long queue is not re-derived each cycle. */
  private readonly cycleCache = new CycleCache();
  /** Timers that wake the queue when a restart's backoff is over. */
  private readonly backoffTimers = new Set<NodeJS.Timeout>();
  /** What `persistChangedPendingReasons` last wrote per job (its JSON), and the write under way. */
  private readonly written = new Map<string, string>();
  private reasonWrite: Promise<void> | undefined;
  /** Set once re-adoption is done: cycles run only from then on. */
  private opened = false;

  constructor(options: SchedulingLoopOptions) {
    this.options = options;
  }

  /** Whether cycles run (re-adoption after a start is done). */
  get isOpen(): boolean {
    return this.opened;
  }

  /**
   * Re-adoption is done: cycles may run. The queue is read again (a recovery may have requeued jobs), and a restart
   * that was waiting out its backoff when the server died is woken when the backoff ends.
   */
  open(pending: readonly Job[]): void {
    this.opened = true;
    // Merged, not replaced: a job submitted while `pending` was read is queued already and may be missing from it.
    const now = this.options.now();
    for (const job of pending) {
      this.queue.set(job.id, job);
      if (job.notBefore !== undefined && job.notBefore > now) this.wakeQueueAt(job.notBefore);
    }
  }

  /** A pending job: queued, and a cycle asked for. */
  enqueue(job: Job): void {
    this.queue.set(job.id, job);
    this.queueChanged = true;
    this.requestSchedule();
  }

  /** A job back to pending (a preemption, a restart): queued for the next cycle, which its requeue asks for. */
  requeued(job: Job): void {
    this.queue.set(job.id, job);
    this.queueChanged = true;
  }

  /** A pending job that is no longer pending (cancelled). */
  dequeue(jobId: string): void {
    if (this.queue.delete(jobId)) this.queueChanged = true;
  }

  isQueued(jobId: string): boolean {
    return this.queue.has(jobId);
  }

  get queueLength(): number {
    return this.queue.size;
  }

  /** The queued jobs, oldest first. */
  queued(): Iterable<Job> {
    return this.queue.values();
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

  /** On each tick: a cycle if its inputs changed (or none ran for a while), else only if the snapshot did. */
  tick(): void {
    if (this.queueChanged || performance.now() - this.lastCycleStart > MAX_IDLE_CYCLE_GAP_MS) this.requestSchedule();
    else {
      void this.options.store
        .snapshot()
        .then((snapshot) => snapshot.version !== this.lastSnapshotVersion && this.requestSchedule())
        .catch((error: unknown) => this.options.logger.error('reading the cluster snapshot failed', error));
    }
  }

  /**
   * Asks for a scheduling cycle. Cycles never overlap; requests during a cycle coalesce into one more; and under
   * load, consecutive cycles keep a gap of twice the last cycle's length (at least 5 ms), so deciding never
   * takes more than about a third of the event loop from the API. An idle server schedules at once.
   */
  requestSchedule(): void {
    // Before open() nothing is scheduled: what arrives is queued, and the start runs the first cycle.
    if (this.options.isClosed() || !this.opened) return;
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
        if (!this.options.reportTransient(error)) this.options.logger.error('scheduling cycle failed', error);
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

  /** Asks for a cycle once a restart's backoff is over (a cycle before then passes the job over). */
  wakeQueueAt(notBefore: number): void {
    if (this.options.isClosed()) return;
    const timer = setTimeout(() => {
      this.backoffTimers.delete(timer);
      this.queueChanged = true;
      this.requestSchedule();
    }, Math.max(0, notBefore - this.options.now()));
    timer.unref();
    this.backoffTimers.add(timer);
  }

  /** Stops asking for cycles (the controller is closing); `idle` then waits for the one running. */
  stop(): void {
    if (this.cycleTimer) clearTimeout(this.cycleTimer);
    for (const timer of this.backoffTimers) clearTimeout(timer);
  }

  async idle(): Promise<void> {
    await this.cycleRunning;
  }

  /**
   * Among replicas, followers answer `why` and the job views from the store: the reasons that changed since the last
   * write are written, at most `limit` of them (the queue's head first: the jobs people ask about), so that followers
   * lag the leader by a few writes, not until its shutdown. Skipped while a write is under way.
   */
  persistChangedPendingReasons(limit: number): void {
    if (this.reasonWrite || this.options.isClosed()) return;
    const changed = new Map<string, Diagnosis>();
    for (const jobId of this.written.keys()) if (!this.queue.has(jobId)) this.written.delete(jobId);
    for (const jobId of this.queue.keys()) {
      const diagnosis = this.diagnoses.get(jobId);
      if (!diagnosis) continue;
      const json = JSON.stringify(diagnosis);
      if (this.written.get(jobId) === json) continue;
      changed.set(jobId, diagnosis);
      this.written.set(jobId, json);
      if (changed.size >= limit) break;
    }
    if (changed.size === 0) return;
    this.reasonWrite = this.options.store.setPendingReasons(changed).catch((error: unknown) => {
      for (const jobId of changed.keys()) this.written.delete(jobId);
      if (!this.options.reportTransient(error)) this.options.logger.warn(`could not save why ${changed.size} jobs wait: ${error instanceof Error ? error.message : String(error)}`);
    }).finally(() => (this.reasonWrite = undefined));
  }

  /** On a clean shutdown the store keeps the last reasons, so they are there for whoever reads it next. */
  async persistPendingReasons(): Promise<void> {
    await this.reasonWrite;
    const reasons = new Map<string, Diagnosis>();
    for (const [jobId, diagnosis] of this.diagnoses) if (this.queue.has(jobId)) reasons.set(jobId, diagnosis);
    if (reasons.size > 0) await this.options.store.setPendingReasons(reasons);
  }

  private async runSchedulingCycle(): Promise<void> {
    const { store, metrics, teams, profile, lifecycle } = this.options;
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
    const input = buildCycleInput(lifecycle, { snapshot, queue: this.queue.values(), running, teams, now, seed: this.seed++, cache: this.cycleCache });
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
    const applied = applyCycleResult(lifecycle, { snapshot, plan: result.plan, specs, running, teams, now });
    for (const violation of applied.violations) this.options.logger.error(`scheduler produced an invalid plan for job ${violation.jobId}: ${violation.message}`);
    for (const victim of applied.preempted) this.options.logger.info(`job ${victim.jobId}: ${victim.message}`);
    void this.options.carryOutAll(applied.commands);

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
        this.options.lifecyclePoint('placed', job.id);
        // The queue's copy may be older than the last attempt: the attempt number and checkpoint come from the store.
        const current = (await store.getJob(job.id)) ?? job;
        this.options.placed(current, placement, tasks);
      }
      this.options.feed.notify();
    }
    this.diagnoses = result.diagnoses;
  }
}
