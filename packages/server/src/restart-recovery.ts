/**
 * After a (re)start: the control core's state rebuilt from the store, which is the truth. Running jobs converge
 * whatever step of their life the crash cut (`recoverRunningJobs`), and the ledgers the cycle reads — decayed team
 * usage, attained service, finished run times — are seeded from the recorded attempts (`seedFromHistory`).
 */
import { computeGpusHeld } from '@tutti/model';
import type { Job, Task } from '@tutti/model';
import { SEED_HALF_LIVES, parseRecordedStop } from '@tutti/control';
import type { JobLifecycle } from '@tutti/control';
import type { ExecutionBackend, RankExit } from '@tutti/backends';
import { handleOfTask } from '@tutti/backends';
import { recordLaunchedRanks } from './attempt-launcher.ts';
import type { GpuUse, StateStore } from '@tutti/store';
import { isLive, rankExitEvent } from './backend-events.ts';
import type { CommandExecutor } from './command-executor.ts';
import type { EventFeed } from './event-feed.ts';
import type { Logger } from './logger.ts';
import type { ProgressWatch } from './progress-watch.ts';

export interface RestartRecoveryOptions {
  store: StateStore;
  backend: ExecutionBackend;
  lifecycle: JobLifecycle;
  executor: CommandExecutor;
  progress: ProgressWatch;
  feed: EventFeed;
  logger: Logger;
  now: () => number;
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
export async function recoverRunningJobs(options: RestartRecoveryOptions): Promise<void> {
  const { store, logger } = options;
  const started = performance.now();
  const running = await store.listJobsByStatus(['running']);
  if (running.length === 0) return;
  const byJob = new Map<string, Task[]>();
  for (const task of await store.listActiveTasks()) byJob.set(task.jobId, [...(byJob.get(task.jobId) ?? []), task]);
  for (const job of running) {
    await recoverJob(options, job, byJob.get(job.id) ?? (await store.getTasks(job.id))).catch((error: unknown) =>
      logger.error(`recovering job ${job.id} after the restart failed`, error),
    );
  }
  await options.executor.settled();
  options.feed.notify();
  const stillRunning = (await store.countJobsByStatus()).running;
  logger.info(`recovered ${running.length} running job${running.length === 1 ? '' : 's'} in ${Math.round(performance.now() - started)} ms: ${stillRunning} still running`);
}

async function recoverJob(options: RestartRecoveryOptions, job: Job, recorded: Task[]): Promise<void> {
  const { store, backend, lifecycle, executor, logger, now } = options;
  const attempt = job.attempt ?? 1;
  let tasks = recorded;
  const unrecorded = tasks.filter((t) => isLive(t) && !handleOfTask(t, attempt));
  // A running job without ranks has nothing to adopt or wait for: it goes back to the queue like an unlaunched one.
  if (unrecorded.length > 0 || tasks.length === 0) {
    const found = await backend.findStarted(job.id, attempt, unrecorded);
    if (found.length < unrecorded.length || tasks.length === 0) {
      // Not the whole gang started (or nothing did): nothing of it may run on. The core decides what becomes of the
      // job (requeued, or finished if cancelled); the exits of the ranks killed here belong to no attempt it watches.
      if (found.length > 0) await backend.stop(found, { graceMs: 0, signal: 'SIGKILL' });
      logger.warn(`job ${job.id} had not been launched before the restart (${found.length} of its ranks found and killed)`);
      await executor.carryOutAll(lifecycle.handle({ kind: 'launch_interrupted', job }, now()));
      return;
    }
    await recordLaunchedRanks(store, job.id, found, unrecorded, now());
    tasks = await store.getTasks(job.id);
  }
  const stopping = await store.lastEventOfType(job.id, 'stopping');
  const recordedStop = parseRecordedStop(stopping?.data);
  lifecycle.handle(
    {
      kind: 'restored',
      job,
      ranks: tasks.map((t) => ({ rank: t.rank, node: t.node, status: t.status === 'exited' || t.status === 'lost' || t.status === 'running' ? t.status : 'starting', ...(t.exitCode !== undefined ? { exitCode: t.exitCode } : {}), ...(t.finishedAt !== undefined ? { finishedAt: t.finishedAt } : {}) })),
      ...(recordedStop && stopping ? { stop: { recorded: recordedStop, at: stopping.at } } : {}),
    },
    now(),
  );
  const handles = tasks.filter(isLive).flatMap((t) => handleOfTask(t, attempt) ?? []);
  const observations = await backend.adopt(handles);
  const adopted = observations.filter((o) => o.state === 'running').length;
  if (adopted > 0) {
    options.progress.watchAttempt(job, attempt, handles, 'end');
    await store.appendEvent(job.id, 'adopted', `re-adopted ${adopted} running rank${adopted === 1 ? '' : 's'} after a control-plane restart`, now());
  }
  for (const observation of observations) {
    if (observation.state === 'running') continue;
    const exit: RankExit =
      observation.state === 'exited'
        ? { jobId: job.id, rank: observation.rank, exitCode: observation.exitCode, signal: observation.signal, lost: false, at: observation.finishedAt, attempt, ...(observation.error !== undefined ? { error: observation.error } : {}) }
        : { jobId: job.id, rank: observation.rank, exitCode: null, lost: true, at: now(), attempt };
    await executor.carryOutAll(lifecycle.handle(rankExitEvent(exit, attempt), now()));
  }
  // Every rank may have been out before the crash already: then no exit above ends the job, `adopted` does; a stop
  // under way resumes at its recorded deadline.
  await executor.carryOutAll(lifecycle.handle({ kind: 'adopted', jobId: job.id }, now()));
}

/**
 * After a start: each team's decayed GPU use (from the attempts that ended within `SEED_HALF_LIVES` half-lives and
 * the jobs running now), the attained service of queued and running jobs that ran before, and the run times of jobs
 * that succeeded in that window, newest last.
 */
export async function seedFromHistory(options: Pick<RestartRecoveryOptions, 'store' | 'lifecycle' | 'now'>, queued: Iterable<Job>): Promise<void> {
  const { store, lifecycle } = options;
  const now = options.now();
  const past = await store.listGpuUseEndedSince(now - SEED_HALF_LIVES * lifecycle.usage.halfLifeMs);
  lifecycle.usage.seed(now, past, await store.listJobsByStatus(['running']));
  await seedServiceHistory(options, [...queued], past);
}

/**
 * The attained service of queued and running jobs that ran before, and the run times of jobs that succeeded in the
 * fair-share window (`past`: the attempts that ended in it), newest last.
 */
async function seedServiceHistory(options: Pick<RestartRecoveryOptions, 'store' | 'lifecycle'>, queued: readonly Job[], past: readonly GpuUse[]): Promise<void> {
  const { store, lifecycle } = options;
  for (const job of [...queued, ...(await store.listJobsByStatus(['running']))]) {
    if ((job.attempt ?? 0) === 0 || (job.status === 'running' && (job.attempt ?? 0) <= 1)) continue;
    const attempts = await store.listAttempts(job.id);
    const ms = attempts.reduce((sum, a) => sum + (a.startedAt === undefined ? 0 : Math.max(0, a.finishedAt - a.startedAt)), 0);
    lifecycle.seedPastAttempts(job.id, computeGpusHeld(job.spec), ms);
  }
  const lastAttempt = new Map<string, GpuUse>();
  for (const use of past) lastAttempt.set(use.jobId, use);
  const succeeded = [...lastAttempt.values()].filter((use) => use.jobStatus === 'succeeded').sort((a, b) => a.finishedAt - b.finishedAt);
  for (const use of succeeded) lifecycle.seedFinishedDuration(use.team, use.gpus, use.finishedAt - use.startedAt);
}
