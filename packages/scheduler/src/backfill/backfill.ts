/**
 * The `backfill` plugin (EASY): the first job of the queue that is blocked for capacity gets a reservation, the
 * earliest time at which it fits once running jobs end (each at startedAt + maxDurationMs, else an estimate), on
 * the GPUs it would get then. The GPUs of the reservation that are free now are held: later jobs in the queue may
 * use them only if they end (by their own maxDurationMs) before the reservation starts. Every other free GPU stays
 * usable, so backfilled jobs never delay the reservation.
 *
 * Cost: a binary search over running jobs by end time, each probe one placement: O(log R × placement). The search
 * starts at a bound counted in one pass, O(R + nodes): before that many jobs have ended, too few nodes have enough free
 * GPUs of any type for the job, so no placement can succeed; on a busy cluster the bound is usually the answer.
 */
import type { GpuDevice, PlacedNode } from '@tutti/model';
import { ExtraFreeView, type PlanOverlay } from '../cycle/plan-overlay.ts';
import type { ResourceShape } from '../cycle/resource-shape.ts';
import type { RunningJob } from '../cycle/running.ts';
import type { CapacityView } from '../cycle/snapshot-index.ts';

export interface ComputedReservation {
  readonly startAt: number;
  readonly nodes: PlacedNode[];
  /** Running jobs whose end it waits for (the last ones to end among those it needs freed). */
  readonly waitsFor: readonly string[];
  /** How many of `ending` (from the first) must have ended: what the start time rests on. */
  readonly freed: number;
}

/**
 * @param ending running jobs sorted by `endAt` (then id); jobs already chosen as victims may be in it.
 */
export function computeReservation(shape: ResourceShape, overlay: PlanOverlay, ending: readonly RunningJob[], now: number, place: (shape: ResourceShape, view: CapacityView) => PlacedNode[] | undefined): ComputedReservation | undefined {
  let extra = new Map<number, GpuDevice[]>();
  // `forEach`, not `for...of`: no [key, value] pair made per node of thousands of running jobs.
  const addFreed = (gpus: readonly GpuDevice[], ordinal: number): void => {
    const list = extra.get(ordinal);
    if (list) list.push(...gpus);
    else extra.set(ordinal, [...gpus]);
  };
  const viewAfter = (k: number): CapacityView => {
    extra = new Map();
    for (let i = 0; i < k; i++) (ending[i] as RunningJob).byNode.forEach(addFreed);
    return new ExtraFreeView(overlay, extra);
  };
  // The smallest k for which the job fits once the first k have ended. Probed at the bound first: on a busy cluster
  // that is usually the answer, and the probes that free every running job at once are the most costly.
  const placedAfter = new Map<number, PlacedNode[] | undefined>();
  const fitsAfter = (k: number): boolean => {
    if (!placedAfter.has(k)) placedAfter.set(k, place(shape, viewAfter(k)));
    return placedAfter.get(k) !== undefined;
  };
  if (ending.length === 0) return undefined;
  let lo = Math.max(1, countEndingBeforeRoom(shape, overlay, ending));
  let hi = ending.length;
  if (!fitsAfter(lo)) {
    if (!fitsAfter(hi)) return undefined;
    lo++;
  } else hi = lo;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (fitsAfter(mid)) hi = mid;
    else lo = mid + 1;
  }
  // Jobs ending at the same moment as the last one needed all end then: take them all, for a stable answer.
  const endAt = ending[lo - 1]?.endAt ?? now;
  let k = lo;
  while (k < ending.length && (ending[k] as RunningJob).endAt === endAt) k++;
  fitsAfter(k);
  const nodes = placedAfter.get(k);
  if (!nodes) return undefined;
  const waitsFor = ending.slice(0, k).filter((r) => r.endAt === endAt).map((r) => r.id);
  return { startAt: Math.max(now, endAt), nodes, waitsFor, freed: k };
}

/**
 * How many of `ending` must end, at least, before `numNodes` ready nodes have `gpuCount` free GPUs each, types and
 * memory aside: a lower bound of where a whole-GPU job can first be placed (1 for other jobs). A GPU named by two
 * running jobs is counted twice, which only lowers the bound.
 */
function countEndingBeforeRoom(shape: ResourceShape, overlay: PlanOverlay, ending: readonly RunningJob[]): number {
  const { gpuCount, numNodes } = shape;
  if (shape.fractionParts !== undefined || gpuCount === 0) return 1;
  const { nodes, readyNodes } = overlay.index;
  const free = new Int32Array(nodes.length);
  let roomy = 0;
  for (const node of readyNodes) {
    const n = overlay.freeGpuCount(node);
    free[node.ordinal] = n;
    if (n >= gpuCount) roomy++;
  }
  if (roomy >= numNodes) return 1;
  const addFreed = (gpus: readonly GpuDevice[], ordinal: number): void => {
    if (nodes[ordinal]?.ready !== true) return;
    const before = free[ordinal] as number;
    free[ordinal] = before + gpus.length;
    if (before < gpuCount && before + gpus.length >= gpuCount) roomy++;
  };
  for (let i = 0; i < ending.length; i++) {
    (ending[i] as RunningJob).byNode.forEach(addFreed);
    if (roomy >= numNodes) return i + 1;
  }
  return ending.length;
}
