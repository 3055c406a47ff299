/** What a scheduling cycle decides. Pure data: the server applies it, the simulator replays it. */
import type { Diagnosis } from './job.ts';

/** Where each node-rank of a gang goes. `nodes[i]` is node-rank i; rank 0 lives on `nodes[0]`. */
export interface Placement {
  jobId: string;
  nodes: PlacedNode[];
}

export interface PlacedNode {
  node: string;
  /** GPU indices on that node, in the order ranks use them. */
  gpuIndices: number[];
}

export interface Plan {
  /** The snapshot version the plan was computed on; the applier rejects a stale plan. */
  snapshotVersion: number;
  placements: Placement[];
}

export interface CycleResult {
  plan: Plan;
  /** One diagnosis for every pending job that was not placed, keyed by job id. */
  diagnoses: Map<string, Diagnosis>;
}
