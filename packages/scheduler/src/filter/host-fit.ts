/**
 * The `host-resources` step: CPUs and host memory of a node.
 *
 * Limitation (see README): the snapshot records which job holds each GPU but not the CPUs and memory of running
 * jobs, so only jobs placed in this cycle are subtracted. The backend enforces the real limit when it launches.
 */
import type { ResourceShape } from '../cycle/resource-shape.ts';
import type { CapacityView, IndexedNode } from '../cycle/snapshot-index.ts';

export function fitsHost(view: CapacityView, node: IndexedNode, shape: ResourceShape): boolean {
  return (shape.cpus === undefined || view.freeCpus(node) >= shape.cpus) && (shape.memoryMiB === undefined || view.freeMemoryMiB(node) >= shape.memoryMiB);
}

/** Whether the node's capacity (ignoring all use) could ever hold one node-rank's CPUs and memory. */
export function hostCapacityFits(node: { cpus: number; memoryMiB: number }, shape: ResourceShape): boolean {
  return (shape.cpus === undefined || node.cpus >= shape.cpus) && (shape.memoryMiB === undefined || node.memoryMiB >= shape.memoryMiB);
}
