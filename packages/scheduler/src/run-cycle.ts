/**
 * One scheduling cycle: a pure function from a snapshot and a queue to a plan and a diagnosis for every job left
 * waiting. See README.md for the steps drawn out.
 */
import type { ClusterSnapshot, CycleResult, Job } from '@tutti/model';
import { Diagnoser } from './diagnose.ts';
import { computeGangPlacement } from './gang-placement.ts';
import { PlanOverlay } from './plan-overlay.ts';
import { DEFAULT_PROFILE, type SchedulerProfile } from './profile.ts';
import { computeQueueOrder } from './queue-sort.ts';
import { computeResourceShape, computeShapeProblem } from './resource-shape.ts';
import { computeSnapshotIndex } from './snapshot-index.ts';

export interface CycleInput {
  /** The cluster to decide on. Never mutated. */
  snapshot: ClusterSnapshot;
  /** Jobs waiting to run, in any order (the cycle sorts them). Their `status` is not looked at. */
  pending: readonly Job[];
  /** Epoch milliseconds of the cycle. Not used by this version (later: ageing, reservations, backfill windows). */
  now: number;
  /** Seed for any randomised choice, so that a cycle can be replayed. Not used by this version: every choice is ordered. */
  seed: number;
}

/**
 * Places as many pending jobs as fit, greedily in queue order, each all-or-nothing:
 *
 *   1. index the snapshot (free GPUs per node and type, NVLink peers), once;
 *   2. sort the queue: priority, then submission order;
 *   3. for each job: find a whole placement against the overlay (snapshot minus this cycle's placements); if one
 *      exists, take its resources in the overlay and add it to the plan; otherwise note it for diagnosis and go on
 *      with the next one (a smaller job behind may still fit: no job waits for capacity that another cannot use);
 *   4. diagnose every job left waiting.
 *
 * Same input → same result: nothing depends on iteration order of the input arrays, the clock or randomness.
 * Cost: O(nodes + GPUs + allocations) for the index, O(J log J) for the sort, and per job O(ready nodes × candidate
 * types × GPUs per node) — but only until its shape stops fitting: capacity only shrinks in a cycle, so later jobs of
 * that shape are diagnosed without a search.
 */
export function runCycle(input: CycleInput, _profile: SchedulerProfile = DEFAULT_PROFILE): CycleResult {
  const index = computeSnapshotIndex(input.snapshot);
  const overlay = new PlanOverlay(index);
  const queue = computeQueueOrder(input.pending);
  const diagnoser = new Diagnoser(index, overlay);
  const shapesThatNoLongerFit = new Set<string>();

  for (const job of queue) {
    const shape = computeResourceShape(job.spec);
    if (!shapesThatNoLongerFit.has(shape.key) && computeShapeProblem(shape) === undefined) {
      const placed = computeGangPlacement(shape, overlay, index);
      if (placed) {
        overlay.applyPlacement(job, shape, placed);
        continue;
      }
      shapesThatNoLongerFit.add(shape.key);
    }
    diagnoser.noteUnplaced(job, shape);
  }

  return { plan: { snapshotVersion: input.snapshot.version, placements: overlay.placements, preemptions: [], reservations: [] }, diagnoses: diagnoser.finish() };
}
