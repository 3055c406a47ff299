/**
 * The `las` queue sort (Tiresias): two-dimensional least attained service, discretized.
 *
 *   attained service = GPUs × time run, summed over all the job's runs so far (GPU-seconds)
 *   queue            = how many thresholds its attained service has reached (0 = the top queue)
 *
 * Jobs go by queue, top first, and first come first served within a queue (submission order): a job that has
 * received little service goes ahead of one that has received much, without knowing either one's duration
 * (non-clairvoyant). Discretizing keeps jobs of one queue from preempting each other over small differences. With
 * `order-preemption`, a waiting job of a higher queue preempts running jobs of lower queues (whole gangs).
 *
 * Attained service comes from `CycleInput.attainedServiceGpuMs` (the simulator fills it; the server may sum a job's
 * attempts). A running job missing from it counts its current run: GPUs × (now − startedAt); a pending one counts 0.
 * Higher priority still goes first.
 */
import { computeGpusHeld, type Job } from '@tutti/model';
import { compareQueueOrder } from './queue-sort.ts';

export interface LasArgs {
  /** Attained-service thresholds between queues, GPU-seconds, ascending: n thresholds make n + 1 queues. @default [3600, 36000] */
  readonly queueThresholdsGpuS: readonly number[];
}

export const DEFAULT_LAS_ARGS: LasArgs = { queueThresholdsGpuS: [3_600, 36_000] };

/** Attained service of a job, GPU-ms (see the module comment for the fallback). */
export function computeAttainedGpuMs(job: Job, attained: ReadonlyMap<string, number> | undefined, now: number): number {
  const given = attained?.get(job.id);
  if (given !== undefined) return given;
  if (job.status === 'running' && job.startedAt !== undefined) return computeGpusHeld(job.spec) * Math.max(0, now - job.startedAt);
  return 0;
}

/** The queue (0 = top) of an attained service in GPU-ms. */
export function computeLasQueue(attainedGpuMs: number, args: LasArgs): number {
  let queue = 0;
  for (const threshold of args.queueThresholdsGpuS) {
    if (attainedGpuMs >= threshold * 1000) queue++;
    else break;
  }
  return queue;
}

export function computeLasOrder(pending: readonly Job[], attained: ReadonlyMap<string, number> | undefined, now: number, args: LasArgs): Job[] {
  const keyed = new Map<string, { job: Job; queue: number }>();
  for (const job of pending) if (!keyed.has(job.id)) keyed.set(job.id, { job, queue: computeLasQueue(computeAttainedGpuMs(job, attained, now), args) });
  return [...keyed.values()].sort((a, b) => b.job.spec.priority - a.job.spec.priority || a.queue - b.queue || compareQueueOrder(a.job, b.job)).map((k) => k.job);
}

/** Whether `value` is a list of attained-service thresholds: GPU-seconds > 0, strictly increasing (may be empty: one queue). */
export function isThresholdList(value: unknown): value is readonly number[] {
  return Array.isArray(value) && value.every((v, i) => typeof v === 'number' && Number.isFinite(v) && v > 0 && (i === 0 || v > (value[i - 1] as number)));
}

/** Checks `las` arguments; unknown keys and unordered thresholds are errors. */
export function parseLasArgs(raw: unknown): { ok: true; value: LasArgs } | { ok: false; error: string } {
  if (raw === undefined || raw === null) return { ok: true, value: DEFAULT_LAS_ARGS };
  if (typeof raw !== 'object' || Array.isArray(raw)) return { ok: false, error: `args.las: expected a mapping, got ${JSON.stringify(raw)}` };
  let thresholds = DEFAULT_LAS_ARGS.queueThresholdsGpuS;
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    if (key !== 'queueThresholdsGpuS') return { ok: false, error: `args.las.${key}: unknown argument; known: queueThresholdsGpuS` };
    if (!isThresholdList(value)) {
      return { ok: false, error: `args.las.queueThresholdsGpuS: expected a list of GPU-seconds > 0 in increasing order (e.g. [3600, 36000]), got ${JSON.stringify(value)}` };
    }
    thresholds = value as number[];
  }
  return { ok: true, value: { queueThresholdsGpuS: thresholds } };
}
