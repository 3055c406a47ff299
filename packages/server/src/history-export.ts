/**
 * tutti's own job history in the trace schema that `tutti sim` replays (the schema of ../shared/traces):
 *
 *   job_id,submit_time_s,duration_s,num_gpus,gpu_type,user,queue,status
 *
 * so that a site can measure a scheduling policy on its own workload before running it.
 */
import type { Job } from '@tutti/model';
import { computeGpusHeld } from '@tutti/model';

export const TRACE_HEADER = 'job_id,submit_time_s,duration_s,num_gpus,gpu_type,user,queue,status';

/**
 * Finished jobs that ran, oldest first, as CSV lines. Times count from the first job's submission. `duration_s` is
 * the run time of the job's last attempt (the work a replay gives it); `num_gpus` is GPUs per node × nodes;
 * `gpu_type` is the first type the job asked for ('' for any); `user` is who submitted it ('' when unknown); `queue` is its team.
 */
export function formatHistoryTrace(jobs: readonly Job[]): string {
  const ran = jobs
    .filter((job) => (job.status === 'succeeded' || job.status === 'failed' || job.status === 'cancelled') && job.startedAt !== undefined && job.finishedAt !== undefined)
    .sort((a, b) => a.createdAt - b.createdAt || Number(a.id) - Number(b.id));
  const origin = ran[0]?.createdAt ?? 0;
  const seconds = (ms: number) => Math.round(ms) / 1000;
  const lines = ran.map((job) => {
    const gpus = job.spec.resources.gpus;
    return [
      job.id,
      seconds(job.createdAt - origin),
      seconds(Math.max(0, (job.finishedAt ?? 0) - (job.startedAt ?? 0))),
      computeGpusHeld(job.spec),
      csvField(gpus.types[0] ?? ''),
      csvField(job.user ?? ''),
      csvField(job.spec.team),
      job.status,
    ].join(',');
  });
  return `${[TRACE_HEADER, ...lines].join('\n')}\n`;
}

function csvField(value: string): string {
  return /[",\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}
