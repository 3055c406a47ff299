/**
 * The `gang` extension point with the `topology` filter and score: where a whole job goes.
 *
 *   - A fractional job (`gpus: 0.25`) goes to one shared GPU: the one with the least room left that still fits it
 *     (never beyond the GPU's memory or a whole GPU), else a fresh free GPU chosen best-fit. Never onto a GPU that a
 *     whole-GPU job holds, and a whole-GPU job never gets a shared GPU (shared GPUs are not in the free lists).
 *   - A multi-node gang goes to the tightest domain that fits: one rack, else one zone, else anywhere (`prefer`,
 *     and the default when the `topology` score is on). Among domains that fit, the one with the fewest free GPUs
 *     wins (best fit: keeps emptier racks whole for the big gangs behind). `require: rack|zone` stops there.
 *   - `require: nvlink` keeps a node-rank's GPUs inside one NVLink domain (see `gang-placement.ts`).
 *
 * Capacity only shrinks during a cycle, and a domain-restricted search fits only if the unrestricted one does, so
 * "this shape no longer fits" stays true for the rest of the cycle.
 */
import type { GpuDevice, PlacedNode } from '@tutti/model';
import { BestFitPicker } from '../score/best-fit.ts';
import { computeGangPlacement } from './gang-placement.ts';
import { computeCandidateTypes } from '../filter/gpu-fit.ts';
import { fitsHost } from '../filter/host-fit.ts';
import { computeFractionalPlacementByPacking, type PackingStrategy } from '../score/packing.ts';
import { hasShareRoom } from '../cycle/plan-overlay.ts';
import { isGpuAccepted, type ResourceShape } from '../cycle/resource-shape.ts';
import { compareNames, FRACTION_PARTS, type CapacityView, type IndexedNode, type SnapshotIndex } from '../cycle/snapshot-index.ts';

export interface PlacementOptions {
  /** `require` constraints are enforced (the `topology` filter). */
  readonly enforceRequire: boolean;
  /** Multi-node gangs without a constraint try the tightest domain first (the `topology` score). */
  readonly preferTight: boolean;
  /** The tightest level tried by default. */
  readonly tightLevel: 'rack' | 'zone';
  /** How nodes (and shared GPUs) are chosen among those that fit (the `packing` score). @default 'best-fit' */
  readonly packing?: PackingStrategy;
}

export const DEFAULT_PLACEMENT_OPTIONS: PlacementOptions = { enforceRequire: true, preferTight: true, tightLevel: 'rack' };

export function computePlacement(shape: ResourceShape, view: CapacityView, index: SnapshotIndex, options: PlacementOptions = DEFAULT_PLACEMENT_OPTIONS): PlacedNode[] | undefined {
  const packing = options.packing ?? 'best-fit';
  if (shape.fractionParts !== undefined) return packing === 'best-fit' ? computeFractionalPlacement(shape, view, index) : computeFractionalPlacementByPacking(packing, shape, view, index);
  const topology = shape.topology;
  const effective = topology && (topology.mode === 'prefer' || options.enforceRequire) ? topology : undefined;
  if (effective?.mode === 'require' && (effective.level === 'rack' || effective.level === 'zone')) {
    return placeInOneDomain(shape, view, index, effective.level, packing);
  }
  if (effective?.level === 'nvlink' && effective.mode === 'require') return computeGangPlacement(shape, view, index, index.readyNodes, packing);
  const tight = shape.numNodes > 1 && (effective !== undefined || options.preferTight);
  if (tight) {
    const from: readonly ('rack' | 'zone')[] = (effective?.level ?? options.tightLevel) === 'zone' ? ['zone'] : ['rack', 'zone'];
    for (const level of from) {
      const placed = placeInOneDomain(shape, view, index, level, packing);
      if (placed) return placed;
    }
  }
  return computeGangPlacement(shape, view, index, index.readyNodes, packing);
}

interface Domain {
  readonly name: string;
  readonly nodes: readonly IndexedNode[];
}

const domainsCache = new WeakMap<SnapshotIndex, Map<string, readonly Domain[]>>();

/** Ready nodes grouped by their `rack` or `zone` label (nodes without the label belong to no domain), by name. */
export function computeDomains(index: SnapshotIndex, level: 'rack' | 'zone'): readonly Domain[] {
  let cache = domainsCache.get(index);
  if (!cache) domainsCache.set(index, (cache = new Map()));
  let domains = cache.get(level);
  if (!domains) {
    const groups = new Map<string, IndexedNode[]>();
    for (const node of index.readyNodes) {
      const name = level === 'rack' ? node.rack : node.zone;
      if (name === undefined) continue;
      const list = groups.get(name);
      if (list) list.push(node);
      else groups.set(name, [node]);
    }
    domains = [...groups].sort((a, b) => compareNames(a[0], b[0])).map(([name, nodes]) => ({ name, nodes }));
    cache.set(level, domains);
  }
  return domains;
}

/** The gang inside one domain of `level`: among domains with enough candidate nodes, fewest free GPUs first. */
function placeInOneDomain(shape: ResourceShape, view: CapacityView, index: SnapshotIndex, level: 'rack' | 'zone', packing: PackingStrategy): PlacedNode[] | undefined {
  const domains = computeDomains(index, level);
  const candidates: { domain: Domain; free: number }[] = [];
  for (let d = 0; d < domains.length; d++) {
    const domain = domains[d] as Domain;
    if (domain.nodes.length < shape.numNodes) continue;
    let free = 0;
    let roomy = 0;
    for (let i = 0; i < domain.nodes.length; i++) {
      const n = view.freeGpuCount(domain.nodes[i] as IndexedNode);
      free += n;
      if (n >= shape.gpuCount) roomy++;
    }
    if (roomy >= shape.numNodes) candidates.push({ domain, free });
  }
  candidates.sort((a, b) => a.free - b.free || compareNames(a.domain.name, b.domain.name));
  for (const { domain } of candidates) {
    const placed = computeGangPlacement(shape, view, index, domain.nodes, packing);
    if (placed) return placed;
  }
  return undefined;
}

/**
 * One share of one GPU. Candidates, best first: a shared GPU whose room after this job is the smallest (packing),
 * then a free GPU on the node with the fewest free matching GPUs (best fit). Ties: lower node name, lower index.
 */
function computeFractionalPlacement(shape: ResourceShape, view: CapacityView, index: SnapshotIndex): PlacedNode[] | undefined {
  const parts = shape.fractionParts ?? FRACTION_PARTS;
  const types = computeCandidateTypes(shape, index.readyGpuTypes);
  const memoryFor = (gpu: GpuDevice): number => shape.gpuMemoryMiB ?? Math.floor((gpu.memoryMiB * parts) / FRACTION_PARTS);
  let bestShared: { node: IndexedNode; gpu: GpuDevice; left: number } | undefined;
  const fresh = new BestFitPicker<{ node: IndexedNode; gpu: GpuDevice }>(1, 1);
  for (const node of index.readyNodes) {
    if (!fitsHost(view, node, shape)) continue;
    for (const [gpuIndex, use] of view.sharedUse(node)) {
      const gpu = node.gpuByIndex.get(gpuIndex);
      if (!gpu || !isGpuAcceptedForShare(shape, gpu, types) || !hasShareRoom(use, gpu, parts, memoryFor(gpu))) continue;
      const left = FRACTION_PARTS - use.parts - parts;
      if (!bestShared || left < bestShared.left || (left === bestShared.left && bestShared.node === node && gpu.index < bestShared.gpu.index)) bestShared = { node, gpu, left };
    }
    if (bestShared) continue;
    let matching = 0;
    let first: GpuDevice | undefined;
    for (const type of types) {
      for (const gpu of view.freeGpusByType(node).get(type) ?? []) {
        if (!isGpuAcceptedForShare(shape, gpu, types) || memoryFor(gpu) > gpu.memoryMiB) continue;
        matching++;
        if (!first || gpu.index < first.index) first = gpu;
      }
      if (shape.gpuTypes.length > 0 && first) break;
    }
    if (first) fresh.add(matching, { node, gpu: first });
  }
  const chosen = bestShared ?? fresh.pick()?.[0]?.item;
  if (!chosen) return undefined;
  return [{ node: chosen.node.name, gpuIndices: [chosen.gpu.index], gpuFraction: shape.fraction ?? parts / FRACTION_PARTS, gpuMemoryMiB: memoryFor(chosen.gpu) }];
}

/** Type accepted; for a share, `gpuMemoryMiB` is the share's memory, so a GPU only needs at least that much. */
function isGpuAcceptedForShare(shape: ResourceShape, gpu: GpuDevice, types: readonly string[]): boolean {
  return types.includes(gpu.type) && isGpuAccepted(shape, gpu);
}
