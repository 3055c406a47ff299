/**
 * Run-time estimates learned from history, for profiles that must not read a job's true duration (`tutti`).
 *
 * The history is a summary the caller keeps up to date: for each key, the run times of the most recent finished
 * jobs (oldest first, at most `window`). `recordFinishedDuration` adds one finished job under three keys, from the
 * most specific to the least:
 *
 *   team|gpus      jobs of the same team asking for the same number of GPUs
 *   *|gpus         any team, same GPU count
 *   team|*         same team, any GPU count
 *
 * `estimateDurationMs` takes the median of the first key with at least `minSamples` durations, and caps it by the
 * job's declared `max_duration` (the job is stopped then anyway). The median, not the mean: run times are heavy-tailed
 * (a few jobs run for weeks), and one of them must not make every job of its kind look long.
 *
 * Pure: the simulator and the server feed it; it reads no clock and no true duration.
 */
import type { Job } from '@tutti/model';
import { jobGpus } from './fair-share.ts';

/** Recent run times (ms, oldest first) of finished jobs, by `durationHistoryKey`. */
export type DurationHistory = ReadonlyMap<string, readonly number[]>;

export interface DurationEstimateArgs {
  /** Finished jobs kept per key. @default 20 */
  readonly window: number;
  /** Durations a key needs before its median is trusted; fewer falls back to the next key. @default 3 */
  readonly minSamples: number;
}

export const DEFAULT_DURATION_ESTIMATE_ARGS: DurationEstimateArgs = { window: 20, minSamples: 3 };

/** The key of a team and a GPU count (`*` for any); GPUs are the job's total, fractions included. */
export function durationHistoryKey(team: string, gpus: number | '*'): string {
  return `${team}|${gpus}`;
}

/** Adds one finished job's run time under its three keys, dropping the oldest beyond `window`. */
export function recordFinishedDuration(history: Map<string, number[]>, team: string, gpus: number, durationMs: number, window = DEFAULT_DURATION_ESTIMATE_ARGS.window): void {
  for (const key of [durationHistoryKey(team, gpus), durationHistoryKey('*', gpus), durationHistoryKey(team, '*')]) {
    let list = history.get(key);
    if (!list) history.set(key, (list = []));
    list.push(durationMs);
    if (list.length > window) list.splice(0, list.length - window);
  }
}

export interface DurationEstimate {
  readonly ms: number;
  /** Which key answered, or `max_duration` when only the declared limit is known. */
  readonly basis: string;
}

/** A job's estimated run time, or undefined when nothing is known (one per cycle: see `createDurationEstimator`). */
export type DurationEstimator = (job: Job) => DurationEstimate | undefined;

/**
 * Estimates per job, memoised per key within one caller (a cycle): build one with `createDurationEstimator` and ask
 * it for every job.
 */
export function createDurationEstimator(history: DurationHistory | undefined, args: DurationEstimateArgs = DEFAULT_DURATION_ESTIMATE_ARGS): DurationEstimator {
  const medians = new Map<string, number | undefined>();
  const medianOf = (key: string): number | undefined => {
    if (medians.has(key)) return medians.get(key);
    const list = history?.get(key);
    let median: number | undefined;
    if (list && list.length >= args.minSamples) {
      const recent = list.slice(-args.window).sort((a, b) => a - b);
      const mid = recent.length >> 1;
      median = recent.length % 2 === 1 ? (recent[mid] as number) : ((recent[mid - 1] as number) + (recent[mid] as number)) / 2;
    }
    medians.set(key, median);
    return median;
  };
  return (job: Job): DurationEstimate | undefined => {
    const declared = job.spec.maxDurationMs;
    let found: DurationEstimate | undefined;
    if (history) {
      const gpus = jobGpus(job);
      for (const key of [durationHistoryKey(job.spec.team, gpus), durationHistoryKey('*', gpus), durationHistoryKey(job.spec.team, '*')]) {
        const median = medianOf(key);
        if (median !== undefined) {
          found = { ms: median, basis: key };
          break;
        }
      }
    }
    if (declared !== undefined && (found === undefined || declared < found.ms)) return { ms: declared, basis: 'max_duration' };
    return found;
  };
}
