/**
 * Reads job traces in the shared CSV schema of ../shared/traces:
 *
 *   job_id,submit_time_s,duration_s,num_gpus,gpu_type,user,queue,status
 *
 * gzip or plain (told apart by the gzip magic bytes, not the file name), streamed line by line so that a large trace
 * never sits in memory as text. Columns are found by header name, so extra columns are ignored.
 *
 * Fractional GPUs (Alibaba 2023): a `gpu_milli` column (1000 = one whole GPU) makes a 1-GPU job with 0 < gpu_milli <
 * 1000 ask for that share of one GPU. It may sit in the trace itself or in a side file joined by `job_id`
 * (`extraFile`, e.g. ../shared/traces/alibaba_gpu2023.extra.csv.gz).
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import type { JobSpec } from '@tutti/model';

/** One job of a trace. Times are seconds from the trace's start. */
export interface TraceJob {
  /** The trace's own id (`philly-123`). */
  traceId: string;
  submitS: number;
  /** Run time on the GPUs it asked for; the work the simulator replays. */
  durationS: number;
  numGpus: number;
  /** Normalised GPU type, or '' for any. */
  gpuType: string;
  user: string;
  /** The trace's queue or virtual cluster; the simulator maps it to a team. '' when unknown. */
  queue: string;
  status: string;
  /** A share of one GPU (0 < f < 1) for a 1-GPU job that asks for part of a GPU; absent for whole GPUs. */
  gpuFraction?: number;
  /** Priority (0..1000) for scenarios written by hand; trace files carry none, and every trace job gets 50. */
  priority?: number;
  /** What else happens to the job, for scenarios written by hand (trace files carry none). */
  scenario?: JobScenario;
}

/**
 * A hand-written job's life beyond its run time: its restart policy and grace, and how its attempts end. The
 * simulator plays it through the same control core as the live server (failures, hangs, cancels, backoffs).
 */
export interface JobScenario {
  /** Spec fields as a job file sets them (`preemption_grace`, `max_restarts`, `restart_on`, `restart_backoff`, `hang_timeout`, `max_duration`). */
  spec?: Pick<JobSpec, 'preemptionGraceMs' | 'maxRestarts' | 'restartOn' | 'restartBackoffMs' | 'hangTimeoutMs' | 'maxDurationMs'>;
  /**
   * How each attempt ends, attempt 1 first; an attempt beyond the list runs its remaining work to the end. `fail`:
   * rank 0 exits with `exitCode` after `afterS` seconds of the attempt; `hang`: the job stops reporting progress after
   * `afterS` seconds and runs on until stopped.
   */
  attempts?: ReadonlyArray<{ fail: { afterS: number; exitCode: number } } | { hang: { afterS: number } }>;
  /** A cancel asked at this trace second. */
  cancelAtS?: number;
  /** On a stop signal the job exits at once (true), or uses its whole grace to checkpoint and is gone at the deadline (false). @default false */
  exitsOnSignal?: boolean;
}

export interface TraceReadOptions {
  /** Keep jobs submitted at or after this trace second. */
  fromS?: number;
  /** Keep jobs submitted before this trace second. */
  toS?: number;
  /** Stop after this many kept jobs. */
  limit?: number;
  /** A side CSV with `job_id` and `gpu_milli` columns (plain or gzip), joined by job id. */
  extraFile?: string;
}

export interface TraceReadResult {
  jobs: TraceJob[];
  /** Rows that could not be read (bad numbers, missing fields), with the first few line numbers. */
  skipped: { count: number; examples: string[] };
}

const REQUIRED = ['job_id', 'submit_time_s', 'duration_s', 'num_gpus'] as const;

/** Reads a trace file, gzip or plain. Jobs come back sorted by submission time (stable for ties). */
export async function readTraceFile(file: string, options: TraceReadOptions = {}): Promise<TraceReadResult> {
  const result = await readTraceStream(await openText(file), options);
  if (options.extraFile !== undefined) {
    const milli = await readGpuMilli(await openText(options.extraFile));
    for (const job of result.jobs) {
      const m = milli.get(job.traceId);
      if (m !== undefined) applyGpuMilli(job, m);
    }
  }
  return result;
}

/** `job_id` → `gpu_milli` of a side file. */
async function readGpuMilli(stream: Readable): Promise<Map<string, number>> {
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  const out = new Map<string, number>();
  let id = -1;
  let milli = -1;
  for await (const line of lines) {
    if (line.trim() === '') continue;
    const fields = line.split(',');
    if (id < 0) {
      id = fields.findIndex((f) => f.trim() === 'job_id');
      milli = fields.findIndex((f) => f.trim() === 'gpu_milli');
      if (id < 0 || milli < 0) throw new Error('the extra file needs job_id and gpu_milli columns');
      continue;
    }
    const value = Number(fields[milli]);
    if (Number.isFinite(value)) out.set((fields[id] ?? '').trim(), value);
  }
  stream.destroy();
  return out;
}

function applyGpuMilli(job: TraceJob, milli: number): void {
  if (job.numGpus === 1 && milli > 0 && milli < 1000) job.gpuFraction = milli / 1000;
}

async function openText(file: string): Promise<Readable> {
  const handle = await open(file, 'r');
  const magic = Buffer.alloc(2);
  try {
    await handle.read(magic, 0, 2, 0);
  } finally {
    await handle.close();
  }
  const raw = createReadStream(file);
  return magic[0] === 0x1f && magic[1] === 0x8b ? raw.pipe(createGunzip()) : raw;
}

/** Reads a trace from a text stream (already decompressed). */
export async function readTraceStream(stream: Readable, options: TraceReadOptions = {}): Promise<TraceReadResult> {
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  const jobs: TraceJob[] = [];
  const skipped = { count: 0, examples: [] as string[] };
  let columns: Map<string, number> | undefined;
  let lineNumber = 0;
  const fromS = options.fromS ?? -Infinity;
  const toS = options.toS ?? Infinity;
  for await (const line of lines) {
    lineNumber++;
    if (line.trim() === '') continue;
    const fields = line.split(',');
    if (!columns) {
      columns = new Map(fields.map((name, i) => [name.trim(), i]));
      const missing = REQUIRED.filter((name) => !columns?.has(name));
      if (missing.length > 0) throw new Error(`trace header is missing ${missing.join(', ')} (expected job_id,submit_time_s,duration_s,num_gpus,gpu_type,user,queue,status)`);
      continue;
    }
    const job = parseRow(fields, columns);
    if (!job) {
      skipped.count++;
      if (skipped.examples.length < 5) skipped.examples.push(`line ${lineNumber}: ${line.slice(0, 80)}`);
      continue;
    }
    if (job.submitS < fromS || job.submitS >= toS) continue;
    jobs.push(job);
    if (options.limit !== undefined && jobs.length >= options.limit) break;
  }
  lines.close();
  stream.destroy();
  // Stable: Array.prototype.sort keeps the file order of jobs submitted in the same second.
  jobs.sort((a, b) => a.submitS - b.submitS);
  return { jobs, skipped };
}

function parseRow(fields: string[], columns: Map<string, number>): TraceJob | undefined {
  const get = (name: string): string => {
    const i = columns.get(name);
    return i === undefined ? '' : (fields[i] ?? '').trim();
  };
  const submitS = Number(get('submit_time_s'));
  const durationS = Number(get('duration_s'));
  const numGpus = Number(get('num_gpus'));
  const traceId = get('job_id');
  if (traceId === '' || get('submit_time_s') === '' || get('duration_s') === '' || get('num_gpus') === '') return undefined;
  if (!Number.isFinite(submitS) || !Number.isFinite(durationS) || durationS < 0 || !Number.isInteger(numGpus) || numGpus < 0) return undefined;
  const job: TraceJob = { traceId, submitS, durationS, numGpus, gpuType: get('gpu_type').toUpperCase(), user: get('user'), queue: get('queue'), status: get('status') };
  const milli = get('gpu_milli');
  if (milli !== '' && Number.isFinite(Number(milli))) applyGpuMilli(job, Number(milli));
  return job;
}
