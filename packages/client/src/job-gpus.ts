/** How many GPUs a job holds, in words: one wording for the dashboard and the CLI. */
import type { JobView } from './api-types.ts';

/** "1 GPU", "4 GPUs", "0 GPUs", and a share of one GPU as the fraction it is: "0.5 GPU", "0.25 GPU". */
export function formatGpuCount(gpus: number): string {
  return `${gpus} GPU${gpus === 1 || (gpus > 0 && gpus < 1) ? '' : 's'}`;
}

/** The job's GPUs over all its nodes: whole GPUs, or a share of one GPU (0.5) for a fractional job. */
export function totalJobGpus(job: Pick<JobView, 'gpus_per_node' | 'num_nodes'>): number {
  return job.gpus_per_node * job.num_nodes;
}
