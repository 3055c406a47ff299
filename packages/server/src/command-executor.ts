/**
 * Carries out the control core's commands against the store and the execution backend. It decides nothing: the
 * core said what to do and in which order; this does it, durably.
 *
 * - Each job's commands run in the order decided, one job's at a time under its lock (a lock is FIFO), so the
 *   records of one job land in that order: a stop is recorded before its signal, a rank's exit before the job's end.
 * - A command refused for a failure that passes by itself — a full disk, the database unreachable (a PostgreSQL
 *   restart) — is kept with the rest of its job's commands and carried out on a later tick; commands decided meanwhile
 *   for the job wait behind them. Without that, a job whose rank exited during a full disk or a database restart
 *   would run forever.
 */
import type { Job } from '@tutti/model';
import type { JobLifecycle, LifecycleCommand, LifecycleEvent } from '@tutti/control';
import type { ExecutionBackend } from '@tutti/backends';
import { handleOfTask } from '@tutti/backends';
import type { StateStore, TaskUpdate } from '@tutti/store';
import { isLive } from './backend-events.ts';
import type { EventFeed } from './event-feed.ts';
import type { PassLifecyclePoint } from './lifecycle-point.ts';
import type { Logger } from './logger.ts';
import type { ProgressWatch } from './progress-watch.ts';

export interface CommandExecutorOptions {
  store: StateStore;
  backend: ExecutionBackend;
  lifecycle: JobLifecycle;
  feed: EventFeed;
  logger: Logger;
  now: () => number;
  progress: ProgressWatch;
  /** Whether `error` passes by itself — a full disk, the database unreachable — (then told once per episode, not logged here). */
  reportTransient: (error: unknown) => boolean;
  /** Whether the controller is closing: a passing failure's refusal is then an error, not kept for later. */
  isClosed: () => boolean;
  lifecyclePoint: PassLifecyclePoint;
  /** Carries out `launch` (the job's lock held): see attempt-launcher.ts. */
  launch: (jobId: string) => Promise<void>;
  /** The job's placement is no longer to be launched (it finished or went back to the queue first). */
  forgetPlacement: (jobId: string) => void;
  /** The job is pending again: it goes back to the queue. */
  requeued: (job: Job) => void;
  /** Asks for a scheduling cycle (GPUs were freed, a job was requeued). */
  requestSchedule: () => void;
  /** Asks for a cycle at `at` (epoch ms), when a restart's backoff is over. */
  wakeQueueAt: (at: number) => void;
}

export class CommandExecutor {
  private readonly options: CommandExecutorOptions;
  /** Per-job serialisation of the commands carried out, so the records of one job land in the order decided. */
  private readonly jobLocks = new Map<string, Promise<void>>();
  /** Command sequences in flight, so `close` can wait for them. */
  private readonly inFlight = new Set<Promise<void>>();
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

  constructor(options: CommandExecutorOptions) {
    this.options = options;
  }

  /** Feeds one event to the core and carries out what it answers. */
  dispatch(event: LifecycleEvent): void {
    void this.carryOutAll(this.options.lifecycle.handle(event, this.options.now()));
  }

  /** Carries out commands: each job's in order under its lock (a lock is FIFO, so in the order decided). */
  carryOutAll(commands: readonly LifecycleCommand[]): Promise<void> {
    const byJob = new Map<string, LifecycleCommand[]>();
    for (const command of commands) {
      if (command.kind === 'wake_at') {
        // Deadlines and hang timers are checked on every tick; only a backoff's end needs its own wake-up.
        if (command.why === 'backoff') this.options.wakeQueueAt(command.at);
        continue;
      }
      const list = byJob.get(command.jobId);
      if (list) list.push(command);
      else byJob.set(command.jobId, [command]);
    }
    const done: Array<Promise<void>> = [];
    for (const [jobId, list] of byJob) {
      const work = this.withJobLock(jobId, () => this.carryOut(jobId, list)).catch((error: unknown) => {
        if (!this.options.reportTransient(error)) this.options.logger.error(`carrying out ${list.map((c) => c.kind).join(', ')} for job ${jobId} failed`, error);
      });
      this.inFlight.add(work);
      void work.finally(() => this.inFlight.delete(work));
      done.push(work);
    }
    return Promise.all(done).then(() => undefined);
  }

  /** Feeds an event of the job whose lock is held and carries out its commands at once (not queued behind the lock). */
  async carryOutNow(jobId: string, event: LifecycleEvent): Promise<void> {
    const commands = this.options.lifecycle.handle(event, this.options.now());
    const own = commands.filter((c) => c.kind !== 'wake_at' && c.jobId === jobId);
    await this.carryOutAll(commands.filter((c) => !own.includes(c)));
    await this.carryOut(jobId, own);
  }

  /** Runs `write` (the job's lock held); if it is refused for a passing failure, keeps it to run again on each tick. */
  async carryOutNowOrLater(jobId: string, what: string, write: () => Promise<void>): Promise<void> {
    try {
      await write();
    } catch (error) {
      if (!this.options.reportTransient(error) || this.options.isClosed()) throw error;
      this.unwritten.set(`${what} (#${++this.unwrittenCount})`, () => this.withJobLock(jobId, write));
    }
  }

  /** Writes what a passing failure refused, oldest first; stops at the first one still refused (called on each tick). */
  writeUnwritten(): void {
    if (this.unwritten.size === 0 || this.writingUnwritten) return;
    this.writingUnwritten = (async () => {
      for (const [what, write] of [...this.unwritten]) {
        try {
          await write();
          this.unwritten.delete(what);
        } catch (error) {
          if (this.options.reportTransient(error)) return;
          this.unwritten.delete(what);
          this.options.logger.error(`recording ${what} failed`, error);
        }
      }
    })().finally(() => (this.writingUnwritten = undefined));
  }

  /** Resolves once every command sequence started so far is done, as are those they started meanwhile. */
  async settled(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /** Resolves once nothing is being carried out or written any more (for a clean close). */
  async idle(): Promise<void> {
    await this.writingUnwritten;
    await this.settled();
    await Promise.allSettled([...this.jobLocks.values()]);
  }

  withJobLock(jobId: string, work: () => Promise<void>): Promise<void> {
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

  /**
   * Carries out one job's commands in order (its lock held). One refused for a passing failure is kept with the rest, to be
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
        if (!this.options.reportTransient(error) || this.options.isClosed()) throw error;
        this.stashed.set(jobId, commands.slice(i));
        this.unwritten.set(`the records of job ${jobId} (#${++this.unwrittenCount})`, () => this.withJobLock(jobId, () => this.carryOutStashed(jobId)));
        return;
      }
    }
  }

  /** The commands of a job a passing failure refused, carried out in order; throws (keeping the rest) while still refused. */
  private async carryOutStashed(jobId: string): Promise<void> {
    const list = this.stashed.get(jobId);
    while (list && list.length > 0) {
      await this.execute(list[0]!);
      list.shift();
    }
    this.stashed.delete(jobId);
  }

  private async execute(command: LifecycleCommand): Promise<void> {
    const { store, now, feed, logger, progress, lifecyclePoint } = this.options;
    switch (command.kind) {
      case 'launch':
        return this.options.launch(command.jobId);
      case 'record_rank_exit': {
        const update: TaskUpdate = { jobId: command.jobId, rank: command.rank, status: command.status, exitCode: command.exitCode, finishedAt: command.finishedAt };
        await store.updateTasks([update]);
        lifecyclePoint('rank_exit_recorded', command.jobId);
        await store.appendEvent(command.jobId, 'rank_exited', command.detail, now(), { rank: command.rank, exit_code: command.exitCode, signal: command.signal ?? null, lost: command.status === 'lost' });
        feed.notify();
        return;
      }
      case 'record_ranks_lost':
        await store.updateTasks(command.ranks.map((rank) => ({ jobId: command.jobId, rank, status: 'lost', exitCode: null, finishedAt: command.at })));
        return;
      case 'record_stop':
        await store.appendEvent(command.jobId, 'stopping', command.message, now(), { ...command.stop });
        lifecyclePoint('stop_recorded', command.jobId);
        feed.notify();
        return;
      case 'signal_ranks':
        return this.signalRanks(command);
      case 'append_event':
        if (command.type === 'hung') logger.warn(`job ${command.jobId} is hung: ${command.message}`);
        await store.appendEvent(command.jobId, command.type, command.message, now(), command.data);
        feed.notify();
        return;
      case 'finish': {
        await progress.drain(command.jobId);
        const finished = await store.finishJob(command.jobId, command.end, now());
        this.options.forgetPlacement(command.jobId);
        if (finished) {
          feed.notify();
          this.options.requestSchedule();
        }
        return;
      }
      case 'requeue': {
        await progress.drain(command.jobId);
        this.options.forgetPlacement(command.jobId);
        if (!(await store.requeueJob(command.jobId, command.reason, now(), command.options))) return;
        lifecyclePoint('requeued', command.jobId);
        logger.warn(`job ${command.jobId}: ${command.reason}`);
        const pending = await store.getJob(command.jobId);
        if (pending?.status === 'pending') this.options.requeued(pending);
        feed.notify();
        this.options.requestSchedule();
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
    const { store, backend, logger } = this.options;
    const tasks = await store.getTasks(command.jobId);
    const handles = tasks.filter(isLive).flatMap((t) => handleOfTask(t, command.attempt) ?? []);
    if (handles.length === 0) return;
    const leftMs = command.deadline - this.options.now();
    if (command.resumed) {
      logger.info(`job ${command.jobId}: resuming its stop after the restart (${leftMs > 0 ? `SIGKILL in ${Math.ceil(leftMs / 1000)}s` : 'its deadline has passed: SIGKILL now'})`);
    }
    // Also when resumed: the crash may have come between the record and this write. The deadline is the recorded one.
    await backend.writeStopDeadline(handles, command.deadline);
    const stop = leftMs > 0 ? { graceMs: leftMs, signal: command.signal as NodeJS.Signals } : { graceMs: 0, signal: 'SIGKILL' as const };
    void backend.stop(handles, stop).catch((error: unknown) => logger.error(`stopping job ${command.jobId} failed`, error));
  }
}
