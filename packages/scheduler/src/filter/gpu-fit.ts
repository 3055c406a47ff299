/**
 * The `gpu-fit` step: which free GPUs of a node a job could use. All GPUs that one node gives a job are of one
 * type (ranks of one node run in lockstep; a mixed set runs at the speed of the slowest card).
 */
import type { GpuDevice } from '@tutti/model';
import { hasEnoughMemory, type ResourceShape } from '../cycle/resource-shape.ts';
import type { CapacityView, IndexedNode } from '../cycle/snapshot-index.ts';

const NONE: readonly GpuDevice[] = [];

/** Free GPUs of `type` on `node` with enough memory for `shape`, ordered by index. Does not check the type list. */
export function computeMatchingGpus(view: CapacityView, node: IndexedNode, shape: ResourceShape, type: string): readonly GpuDevice[] {
  const free = view.freeGpusByType(node).get(type) ?? NONE;
  if (shape.gpuMemoryMiB === undefined) return free;
  return free.filter((gpu) => hasEnoughMemory(shape, gpu));
}

/** How many GPUs `computeMatchingGpus` would return, without building the list. */
export function countMatchingGpus(view: CapacityView, node: IndexedNode, shape: ResourceShape, type: string): number {
  const free = view.freeGpusByType(node).get(type);
  if (!free) return 0;
  if (shape.gpuMemoryMiB === undefined) return free.length;
  let n = 0;
  for (const gpu of free) if (hasEnoughMemory(shape, gpu)) n++;
  return n;
}

/** The types to try for `shape`, in order: its own preference list, or every type on a ready node when it takes any. */
export function computeCandidateTypes(shape: ResourceShape, readyGpuTypes: readonly string[]): readonly string[] {
  return shape.gpuTypes.length > 0 ? shape.gpuTypes : readyGpuTypes;
}

/**
 * The most free matching GPUs of a single accepted type on `node` (what "free on this node" means to the job).
 */
export function computeMaxMatchingFree(view: CapacityView, node: IndexedNode, shape: ResourceShape, types: readonly string[]): number {
  let best = 0;
  for (const type of types) best = Math.max(best, countMatchingGpus(view, node, shape, type));
  return best;
}
