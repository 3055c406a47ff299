import type { JobSpec, Task } from './job.ts';
import type { Placement } from './plan.ts';

/**
 * The ranks of a placed job, torchrun style: one process per GPU on each node (one process for a CPU-only job).
 * Rank numbering is node-major: node-rank 0 holds ranks 0..k-1, node-rank 1 holds k..2k-1, and so on.
 */
export function computeTasksForPlacement(spec: JobSpec, placement: Placement): Task[] {
  const tasks: Task[] = [];
  const processesPerNode = Math.max(1, spec.resources.gpus.count);
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
