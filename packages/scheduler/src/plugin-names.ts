/**
 * Names of the scheduler's steps. Each `Diagnosis` names the step that stopped a job, so these strings are part of
 * the API (the CLI and web show them, tests match on them): rename one only with a changelog entry.
 *
 * Today the steps are plain functions called in a fixed order by `runCycle`; the plugin framework that comes later
 * registers plugins under these same names.
 */
export const PLUGIN = {
  /** Orders the queue: priority, then submission order (`queue-sort.ts`). */
  queueSort: 'queue-sort',
  /** Could the job ever fit the inventory, were the cluster empty (`feasibility.ts`). */
  feasibility: 'feasibility',
  /** Free GPUs of an accepted type and memory on one node (`gpu-fit.ts`). */
  gpuFit: 'gpu-fit',
  /** Free CPUs and host memory on one node (`host-fit.ts`). */
  hostResources: 'host-resources',
  /** Enough distinct nodes for every node-rank of a gang (`gang-placement.ts`). */
  gang: 'gang',
} as const;

export type PluginName = (typeof PLUGIN)[keyof typeof PLUGIN];
