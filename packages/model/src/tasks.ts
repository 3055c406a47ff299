import type { JobSpec, Task } from './job.ts';
import type { Placement } from './plan.ts';

/**
 * The ranks of a placed job: the processes tutti starts (or, with `launcher: mpi`, the MPI runtime starts). Torchrun
 * style, one per GPU on each node (one for a CPU-only job); with `launcher: per-node`, one per node, holding the
 * node's GPUs, which starts its own workers. Rank numbering is node-major: node-rank 0 holds ranks 0..k-1, node-rank
 * 1 holds k..2k-1, and so on.
 */
export function computeTasksForPlacement(spec: JobSpec, placement: Placement): Task[] {
  const tasks: Task[] = [];
  const processesPerNode = processesPerNodeOf(spec);
  placement.nodes.forEach((placed, nodeRank) => {
    for (let localRank = 0; localRank < processesPerNode; localRank++) {
      tasks.push({
        jobId: placement.jobId,
        rank: nodeRank * processesPerNode + localRank,
        localRank,
        nodeRank,
        node: placed.node,
        gpus: [...placed.gpuIndices],
        status: 'starting',
      });
    }
  });
  return tasks;
}

/** How many ranks a job has on each of its nodes (see `computeTasksForPlacement`). */
export function processesPerNodeOf(spec: Pick<JobSpec, 'resources' | 'launcher'>): number {
  return spec.launcher === 'per-node' ? 1 : Math.max(1, spec.resources.gpus.count);
}
