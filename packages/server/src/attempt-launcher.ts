/**
 * Carries out `launch`: a committed placement's ranks started through the backend with their runtime environment,
 * their handles recorded, and the core told `ranks_started` (or `launch_failed`, which decides what happens next).
 */
import type { Job, Placement, Task } from '@tutti/model';
import type { JobLifecycle, PlacedRank } from '@tutti/control';
import { isPreemptionReason } from '@tutti/control';
import type { ExecutionBackend, RankHandle } from '@tutti/backends';
import { LaunchError, describeLaunchedRanks, recordOfHandle } from '@tutti/backends';
import { FencedError, asDiskFull } from '@tutti/store';
import type { StateStore } from '@tutti/store';
import type { CommandExecutor } from './command-executor.ts';
import type { DiskFullLog } from './disk-full-log.ts';
import type { EventFeed } from './event-feed.ts';
import type { JobTokens } from './job-tokens.ts';
import { NotLeaderError } from './leadership.ts';
import type { PassLifecyclePoint } from './lifecycle-point.ts';
import type { Logger } from './logger.ts';
import type { ServerMetrics } from './metrics.ts';
import type { ProgressWatch } from './progress-watch.ts';

/**
 * What a backend's own time limit (Slurm's `--time`) adds to max_duration and the stop's grace: tutti's stop, from its
 * tick, always comes first, so the job ends as `max_duration` with its grace rather than killed by the backend.
 */
const BACKEND_TIME_LIMIT_MARGIN_MS = 60_000;

/** A job that could not start for a passing failure (a full disk, the database unreachable) waits this long before it is tried again. */
const PASSING_FAILURE_RETRY_MS = 10_000;

export interface AttemptLauncherOptions {
  store: StateStore;
  backend: ExecutionBackend;
  lifecycle: JobLifecycle;
  executor: CommandExecutor;
  progress: ProgressWatch;
  feed: EventFeed;
  metrics: ServerMetrics;
  logger: Logger;
  now: () => number;
  /** The server's data dir, named when a full disk is told. */
  dataDir: string;
  diskFull?: DiskFullLog;
  jobTokens: JobTokens;
  apiUrl: () => string | undefined;
  /** Whether `error` passes by itself — a full disk, the database unreachable — (then told once per episode, not logged here). */
  reportTransient: (error: unknown) => boolean;
  lifecyclePoint: PassLifecyclePoint;
}

export class AttemptLauncher {
  private readonly options: AttemptLauncherOptions;
  /** Placements committed and not launched yet: what a `launch` command starts. */
  private readonly placed = new Map<string, { placement: Placement; tasks: Task[] }>();

  constructor(options: AttemptLauncherOptions) {
    this.options = options;
  }

  /** A committed placement, launched when the core says `launch`. */
  hold(jobId: string, placement: Placement, tasks: Task[]): void {
    this.placed.set(jobId, { placement, tasks });
  }

  /** The job finished or went back to the queue: its placement, if not launched yet, never will be. */
  forget(jobId: string): void {
    this.placed.delete(jobId);
  }

  /** Carries out `launch` (the job's lock held): its ranks started and recorded, then `ranks_started` or `launch_failed`. */
  async launch(jobId: string): Promise<void> {
    const { store, backend, executor, now, logger } = this.options;
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
      const preemptions = await this.preemptionsOf(job);
      // Among replicas: the last word of the database before ranks start that no store can take back (the backend
      // checks this replica's lease by its clock as well). A deposed leader launches nothing; the next one requeues
      // the placement it finds unlaunched.
      await store.checkFence();
      handles = await backend.launch({
        jobId: job.id,
        jobName: job.spec.name,
        run: job.spec.run,
        workdir: job.spec.workdir,
        env: job.spec.env,
        runtimeEnv,
        attempt,
        ranks: tasks.map((t) => ({ rank: t.rank, localRank: t.localRank, nodeRank: t.nodeRank, node: t.node, gpus: t.gpus })),
        team: job.spec.team,
        ...(job.spec.launcher !== undefined ? { launcher: job.spec.launcher } : {}),
        ...(job.spec.pythonEnv !== undefined ? { pythonEnv: job.spec.pythonEnv } : {}),
        restarts: { count: job.restarts ?? 0, max: job.spec.maxRestarts ?? 0 },
        preemptions,
        ...(job.spec.resources.cpus !== undefined ? { cpus: job.spec.resources.cpus } : {}),
        ...(job.spec.maxDurationMs !== undefined ? { timeLimitMs: job.spec.maxDurationMs + this.options.lifecycle.stopGraceOf(job).graceMs + BACKEND_TIME_LIMIT_MARGIN_MS } : {}),
      });
      this.options.lifecyclePoint('launched', job.id);
      // Its files were written: a full disk that kept jobs from starting is over.
      this.options.diskFull?.recovered(runtimeEnv.TUTTI_CHECKPOINT_DIR ?? this.options.dataDir);
    } catch (error) {
      if (error instanceof FencedError || error instanceof NotLeaderError) {
        logger.warn(`job ${job.id} not launched: ${error.message}`);
        return;
      }
      const full = asDiskFull(error, this.options.dataDir);
      const detail = full ? full.message : error instanceof Error ? error.message : String(error);
      // A full disk, the database unreachable (its fence could not be checked), or a node that died before the
      // scheduler knew, is not the job's fault, and over by itself: back to the queue, tried again after a pause.
      const passing = this.options.reportTransient(error) || full !== undefined;
      if (!passing) logger.warn(`job ${job.id} could not start: ${detail}`);
      const retryAfterMs = passing ? PASSING_FAILURE_RETRY_MS : error instanceof LaunchError ? error.retryAfterMs : undefined;
      await executor.carryOutNow(job.id, { kind: 'launch_failed', jobId: job.id, attempt, detail, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) });
      return;
    }
    const resumed = runtimeEnv.TUTTI_RESUME_FROM ?? null;
    const startedAt = handles[0]?.startedAt ?? now();
    let moved: PlacedRank[] = [];
    // The ranks run now: their handles must reach the store even if the disk is full at this moment.
    await executor.carryOutNowOrLater(job.id, `the start of job ${job.id}`, async () => {
      moved = await recordLaunchedRanks(store, job.id, handles, tasks, now());
      this.options.lifecyclePoint('ranks_recorded', job.id);
      const nodes = moved.length > 0 ? [...new Set(handles.map((h) => h.node))] : placement.nodes.map((n) => n.node);
      await store.appendEvent(
        job.id,
        'started',
        `started attempt ${attempt}: ${handles.length} rank${handles.length === 1 ? '' : 's'} on ${nodes.join(', ')}${resumed ? `, resuming from ${resumed}` : ''}`,
        now(),
        { ranks: describeLaunchedRanks(handles), attempt, resume_from: resumed },
      );
    });
    this.options.progress.watchAttempt(job, attempt, handles, 'start');
    this.options.metrics.observeStartLatency(startedAt - job.createdAt);
    this.options.feed.notify();
    await executor.carryOutNow(job.id, { kind: 'ranks_started', jobId: job.id, attempt, at: startedAt, ...(moved.length > 0 ? { nodes: moved } : {}) });
  }

  /** How often the job was preempted before this attempt (TUTTI_PREEMPTIONS): its earlier attempts that ended so. */
  private async preemptionsOf(job: Job): Promise<number> {
    if ((job.attempt ?? 1) <= 1) return 0;
    const attempts = await this.options.store.listAttempts(job.id);
    return attempts.filter((a) => isPreemptionReason(a.reason)).length;
  }

  /**
   * The per-job variables of an attempt, with its directories made by the backend where its ranks run (the job's
   * `checkpoint_dir`, or the backend's default; a relative one is resolved there, never against the server's own
   * working directory). The checkpoint to resume from is the one the job reported last, or else the newest complete
   * entry of its checkpoint dir (see `ExecutionBackend.prepareAttempt`).
   */
  private async runtimeEnvironment(job: Job, tasks: readonly Task[]): Promise<Record<string, string>> {
    const { checkpointDir, controlDir, newestCheckpoint } = await this.options.backend.prepareAttempt({
      jobId: job.id,
      attempt: job.attempt ?? 1,
      nodes: [...new Set(tasks.map((t) => t.node))],
      ...(job.spec.checkpointDir !== undefined ? { checkpointDir: job.spec.checkpointDir } : {}),
      ...(job.spec.workdir !== undefined ? { workdir: job.spec.workdir } : {}),
    });
    const resumeFrom = job.lastCheckpoint ?? newestCheckpoint;
    // The grace every stop of this attempt gets, whatever its cause: what the rank is told is what it will get.
    const { graceMs } = this.options.lifecycle.stopGraceOf(job);
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
}

/**
 * Records launched ranks' handles. Ranks a backend started elsewhere than they were placed (the Slurm backend's
 * `placement: 'slurm'`: Slurm chose the nodes) are first recorded where they run, their GPUs and the job's allocations
 * with them. Answers those ranks and their nodes.
 */
export async function recordLaunchedRanks(store: StateStore, jobId: string, handles: readonly RankHandle[], tasks: readonly Task[], now: number): Promise<PlacedRank[]> {
  const placedOn = new Map(tasks.map((t) => [t.rank, t.node]));
  const moved = handles.filter((h) => placedOn.has(h.rank) && placedOn.get(h.rank) !== h.node).map((h) => ({ rank: h.rank, node: h.node }));
  if (moved.length > 0) await store.relocateRanks(jobId, moved, now);
  await store.updateTasks(handles.map(recordOfHandle));
  return moved;
}
