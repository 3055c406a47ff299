/**
 * The `backfill` plugin (EASY): the first job of the queue that is blocked for capacity gets a reservation, the
 * earliest time at which it fits once running jobs end (each at startedAt + maxDurationMs, else an estimate), on
 * the GPUs it would get then. The GPUs of the reservation that are free now are held: later jobs in the queue may
 * use them only if they end (by their own maxDurationMs) before the reservation starts. Every other free GPU stays
 * usable, so backfilled jobs never delay the reservation.
 *
 * Cost: a binary search over running jobs by end time, each probe one placement: O(log R × placement).
 */
import type { GpuDevice, PlacedNode } from '@tutti/model';
import { ExtraFreeView, type PlanOverlay } from './plan-overlay.ts';
import type { ResourceShape } from './resource-shape.ts';
import type { RunningJob } from './running.ts';
import type { CapacityView } from './snapshot-index.ts';

export interface ComputedReservation {
  readonly startAt: number;
  readonly nodes: PlacedNode[];
  /** Running jobs whose end it waits for (the last ones to end among those it needs freed). */
  readonly waitsFor: readonly string[];
}

/**
 * @param ending running jobs sorted by `endAt` (then id); jobs already chosen as victims may be in it.
 */
export function computeReservation(shape: ResourceShape, overlay: PlanOverlay, ending: readonly RunningJob[], now: number, place: (shape: ResourceShape, view: CapacityView) => PlacedNode[] | undefined): ComputedReservation | undefined {
  const viewAfter = (k: number): CapacityView => {
    const extra = new Map<number, GpuDevice[]>();
    for (let i = 0; i < k; i++) {
      for (const [ordinal, gpus] of (ending[i] as RunningJob).byNode) {
        const list = extra.get(ordinal);
        if (list) list.push(...gpus);
        else extra.set(ordinal, [...gpus]);
      }
    }
    return new ExtraFreeView(overlay, extra);
  };
  if (!place(shape, viewAfter(ending.length))) return undefined;
  let lo = 1;
  let hi = ending.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (place(shape, viewAfter(mid))) hi = mid;
    else lo = mid + 1;
  }
  // Jobs ending at the same moment as the last one needed all end then: take them all, for a stable answer.
  const endAt = ending[lo - 1]?.endAt ?? now;
  let k = lo;
  while (k < ending.length && (ending[k] as RunningJob).endAt === endAt) k++;
  const nodes = place(shape, viewAfter(k));
  if (!nodes) return undefined;
  const waitsFor = ending.slice(0, k).filter((r) => r.endAt === endAt).map((r) => r.id);
  return { startAt: Math.max(now, endAt), nodes, waitsFor };
}
