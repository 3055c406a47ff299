/**
 * tutti's own job history in the trace schema that `tutti sim` replays (the schema of ../shared/traces):
 *
 *   job_id,submit_time_s,duration_s,num_gpus,gpu_type,user,queue,status
 *
 * so that a site can measure a scheduling policy on its own workload before running it.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { JobSummary } from '@tutti/model';
import { computeGpusHeld } from '@tutti/model';
import type { JobSummaryPage } from '@tutti/store';

export const TRACE_HEADER = 'job_id,submit_time_s,duration_s,num_gpus,gpu_type,user,queue,status';

/**
 * The trace CSV a piece at a time: the header, then one chunk of lines per page of `readPage` (the store's
 * `listRunHistory`: jobs that ran and ended, in submission order). Only one page is held at a time, and no page is
 * read once `signal` aborts (the client went away), so an export costs the server what the client takes of it.
 *
 * Times count from the first job's submission. `duration_s` is the run time of the job's last attempt (the work a
 * replay gives it); `num_gpus` is GPUs per node × nodes; `gpu_type` is the first type the job asked for ('' for
 * any); `user` is who submitted it ('' when unknown); `queue` is its team.
 */
export async function* streamHistoryTrace(readPage: (cursor: string | undefined) => Promise<JobSummaryPage>, signal: AbortSignal): AsyncGenerator<string> {
  yield `${TRACE_HEADER}\n`;
  let origin: number | undefined;
  let cursor: string | undefined;
  do {
    // Let other requests in between pages: each page is a synchronous read of the store.
    await nextTurn();
    if (signal.aborted) return;
    const page = await readPage(cursor);
    origin ??= page.jobs[0]?.createdAt;
    if (page.jobs.length > 0) yield `${page.jobs.map((job) => formatTraceLine(job, origin ?? job.createdAt)).join('\n')}\n`;
    cursor = page.nextCursor;
  } while (cursor !== undefined);
}

function formatTraceLine(job: JobSummary, origin: number): string {
  const seconds = (ms: number) => Math.round(ms) / 1000;
  return [
    job.id,
    seconds(job.createdAt - origin),
    seconds(Math.max(0, (job.finishedAt ?? 0) - (job.startedAt ?? 0))),
    computeGpusHeld(job.spec),
    csvField(job.spec.resources.gpus.types[0] ?? ''),
    csvField(job.user ?? ''),
    csvField(job.spec.team),
    job.status,
  ].join(',');
}

function csvField(value: string): string {
  return /[",\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}
