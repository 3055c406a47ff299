/**
 * The `packing` score: how placement chooses among the nodes (and, for a share of a GPU, the GPUs) that fit a job.
 *
 *   best-fit   fewest free matching GPUs first (the default, and what `best-fit` alone does): keeps whole nodes free
 *              for the big gangs behind; a share goes to the shared GPU with the least room left, else a free GPU on
 *              the fullest node.
 *   first-fit  the first nodes by name that fit, whatever they have free; a share goes to the first GPU (node
 *              name, then GPU index) with room for it, shared or free.
 *   spread     most free GPUs first (worst fit): spreads load, leaves every node a little busy; a share goes to a
 *              free GPU on the emptiest node, and onto a shared GPU (the one with the most room) only when no GPU is
 *              free.
 *
 * Placement asks `scoreNodeForPacking` for each candidate node (lower wins, ties to the lower node name) and, for
 * a share, `computeFractionalPlacementByPacking`. Topology domains and the GPU type choice are decided as before;
 * only the order of the candidates within them changes.
 */
import type { GpuDevice, PlacedNode } from '@tutti/model';
import { BestFitPicker } from './best-fit.ts';
import { computeCandidateTypes } from '../filter/gpu-fit.ts';
import { fitsHost } from '../filter/host-fit.ts';
import { hasShareRoom } from '../cycle/plan-overlay.ts';
import { isGpuAccepted, type ResourceShape } from '../cycle/resource-shape.ts';
import { FRACTION_PARTS, type CapacityView, type IndexedNode, type SnapshotIndex } from '../cycle/snapshot-index.ts';

export type PackingStrategy = 'best-fit' | 'first-fit' | 'spread';
export const PACKING_STRATEGIES: readonly PackingStrategy[] = ['best-fit', 'first-fit', 'spread'];

/** Arguments of `packing`. */
export interface PackingArgs {
  /** @default "best-fit" */
  readonly strategy: PackingStrategy;
}

export const DEFAULT_PACKING_ARGS: PackingArgs = { strategy: 'best-fit' };

/** Validates `args.packing`: `{strategy}`; unknown keys are errors. */
export function parsePackingArgs(raw: unknown): { ok: true; value: PackingArgs } | { ok: false; error: string } {
  if (raw === undefined || raw === null) return { ok: true, value: DEFAULT_PACKING_ARGS };
  if (typeof raw !== 'object' || Array.isArray(raw)) return { ok: false, error: `args.packing: expected a mapping, got ${JSON.stringify(raw)}` };
  let strategy: PackingStrategy = DEFAULT_PACKING_ARGS.strategy;
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    if (key !== 'strategy') return { ok: false, error: `args.packing.${key}: unknown argument; known: strategy` };
    if (typeof value !== 'string' || !(PACKING_STRATEGIES as readonly string[]).includes(value)) {
      return { ok: false, error: `args.packing.strategy: expected one of ${PACKING_STRATEGIES.join(', ')}, got ${JSON.stringify(value)}` };
    }
    strategy = value as PackingStrategy;
  }
  return { ok: true, value: { strategy } };
}

/**
 * A candidate node's score (lower wins; ties keep node-name order). `freeMatching`: its free GPUs that could serve
 * the job; `mostGpusPerNode`: the most GPUs any ready node has (so that spread's scores stay ≥ 0).
 */
export function scoreNodeForPacking(strategy: PackingStrategy, freeMatching: number, mostGpusPerNode: number): number {
  if (strategy === 'first-fit') return 0;
  if (strategy === 'spread') return Math.max(0, mostGpusPerNode - freeMatching);
  return freeMatching;
}

/** The best score a node could have for a job of `gpuCount` GPUs per node: once enough nodes have it, the search may stop. */
export function perfectNodeScore(strategy: PackingStrategy, gpuCount: number): number {
  return strategy === 'best-fit' ? gpuCount : 0;
}

/** One share of one GPU under `first-fit` or `spread` (best fit is placement's own `computeFractionalPlacement`). */
export function computeFractionalPlacementByPacking(strategy: PackingStrategy, shape: ResourceShape, view: CapacityView, index: SnapshotIndex): PlacedNode[] | undefined {
  const parts = shape.fractionParts ?? FRACTION_PARTS;
  const types = computeCandidateTypes(shape, index.readyGpuTypes);
  const memoryFor = (gpu: GpuDevice): number => shape.gpuMemoryMiB ?? Math.floor((gpu.memoryMiB * parts) / FRACTION_PARTS);
  const accepted = (gpu: GpuDevice): boolean => types.includes(gpu.type) && isGpuAccepted(shape, gpu);
  let roomiestShared: { node: IndexedNode; gpu: GpuDevice; left: number } | undefined;
  const emptiest = new BestFitPicker<{ node: IndexedNode; gpu: GpuDevice }>(1, 0);
  for (const node of index.readyNodes) {
    if (!fitsHost(view, node, shape)) continue;
    // First fit: this node's lowest-index GPU with room, shared or free, ends the search.
    let firstHere: GpuDevice | undefined;
    for (const [gpuIndex, use] of view.sharedUse(node)) {
      const gpu = node.gpuByIndex.get(gpuIndex);
      if (!gpu || !accepted(gpu) || !hasShareRoom(use, gpu, parts, memoryFor(gpu))) continue;
      const left = FRACTION_PARTS - use.parts - parts;
      if (!firstHere || gpu.index < firstHere.index) firstHere = gpu;
      if (!roomiestShared || left > roomiestShared.left) roomiestShared = { node, gpu, left };
    }
    let freeMatching = 0;
    let firstFree: GpuDevice | undefined;
    for (const type of types) {
      for (const gpu of view.freeGpusByType(node).get(type) ?? []) {
        if (!accepted(gpu) || memoryFor(gpu) > gpu.memoryMiB) continue;
        freeMatching++;
        if (!firstFree || gpu.index < firstFree.index) firstFree = gpu;
      }
      if (shape.gpuTypes.length > 0 && firstFree) break;
    }
    if (strategy === 'first-fit') {
      const gpu = firstHere && (!firstFree || firstHere.index < firstFree.index) ? firstHere : firstFree;
      if (gpu) return [placedShare(node, gpu, shape, parts, memoryFor(gpu))];
      continue;
    }
    if (firstFree) emptiest.add(Math.max(0, index.maxGpusPerReadyNode - freeMatching), { node, gpu: firstFree });
  }
  if (strategy === 'first-fit') return undefined;
  const chosen = emptiest.pick()?.[0]?.item ?? roomiestShared;
  if (!chosen) return undefined;
  return [placedShare(chosen.node, chosen.gpu, shape, parts, memoryFor(chosen.gpu))];
}

function placedShare(node: IndexedNode, gpu: GpuDevice, shape: ResourceShape, parts: number, memoryMiB: number): PlacedNode {
  return { node: node.name, gpuIndices: [gpu.index], gpuFraction: shape.fraction ?? parts / FRACTION_PARTS, gpuMemoryMiB: memoryMiB };
}
