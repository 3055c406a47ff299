/**
 * Victims already being stopped. A job chosen as a preemption victim stays running through its grace period, so
 * the cycles in between see it again. The caller marks it (`RunningJobInput.stopping`) and the cycle then:
 *
 *   - never chooses it as a victim again;
 *   - takes its GPUs off its team's quota usage (it is leaving, as in the cycle that chose it);
 *   - expects it to end by the time its grace runs out (backfill reservations count on that);
 *   - counts its GPUs as about to be free for the pending job it was stopped for: that job, when it does not fit
 *     the free GPUs alone, gets a reservation on them (`WaitingForReclaim`) and preempts nothing more.
 */
import type { GpuDevice, Job } from '@tutti/model';
import type { NodeIndexCache } from '../perf/node-index-cache.ts';
import { noneStopping, type RunningJob } from '../cycle/running.ts';

/** A running job as a cycle takes it: a `Job`, possibly marked as being stopped. */
export interface RunningJobInput extends Job {
  /**
   * Set by whoever applies a plan's preemption (SIGTERM sent) until the job exits: `since` is when it was told to
   * stop (epoch ms), `forJobId` the pending job it was stopped for (`Preemption.forJobId`).
   */
  stopping?: { readonly since: number; readonly forJobId: string };
}

export interface StoppingVictims {
  /** Ids of the running jobs being stopped. */
  readonly ids: ReadonlySet<string>;
  /** By pending job id: the jobs being stopped for it, their GPUs by node ordinal, and when they are all gone. */
  readonly forJob: ReadonlyMap<string, { readonly victims: readonly string[]; readonly gpus: ReadonlyMap<number, readonly GpuDevice[]>; readonly goneBy: number }>;
}

/**
 * Stopping jobs of `input` that the snapshot still shows running; each is gone by `since` + its grace (`graceMsOf`; never before
 * `now`). With the cache `running` was computed with, a cycle in which it counted none being stopped reads no job.
 */
export function computeStoppingVictims(input: readonly RunningJobInput[], running: readonly RunningJob[], graceMsOf: (job: RunningJobInput) => number, now: number, cache?: NodeIndexCache): StoppingVictims {
  const ids = new Set<string>();
  const forJob = new Map<string, { victims: string[]; gpus: Map<number, GpuDevice[]>; goneBy: number }>();
  if (noneStopping(input, running, cache) === true) return { ids, forJob };
  const marked = new Map<string, { since: number; forJobId: string; graceMs: number }>();
  for (const job of input) if (job.stopping) marked.set(job.id, { ...job.stopping, graceMs: graceMsOf(job) });
  if (marked.size === 0) return { ids, forJob };
  for (const r of running) {
    const stop = marked.get(r.id);
    if (!stop) continue;
    ids.add(r.id);
    let entry = forJob.get(stop.forJobId);
    if (!entry) forJob.set(stop.forJobId, (entry = { victims: [], gpus: new Map(), goneBy: now }));
    entry.victims.push(r.id);
    entry.goneBy = Math.max(entry.goneBy, stop.since + stop.graceMs);
    for (const [ordinal, gpus] of r.byNode) {
      const list = entry.gpus.get(ordinal);
      if (list) list.push(...gpus);
      else entry.gpus.set(ordinal, [...gpus]);
    }
  }
  return { ids, forJob };
}

/** `running` with each stopping job expected to end when its grace runs out (if that is earlier). */
export function withStoppingEnds(running: readonly RunningJob[], input: readonly RunningJobInput[], graceMsOf: (job: RunningJobInput) => number, now: number): RunningJob[] {
  const goneBy = new Map<string, number>();
  for (const job of input) if (job.stopping) goneBy.set(job.id, Math.max(now, job.stopping.since + graceMsOf(job)));
  if (goneBy.size === 0) return [...running];
  return running.map((r) => {
    const end = goneBy.get(r.id);
    return end === undefined || end >= r.endAt ? r : { ...r, endAt: end };
  });
}
