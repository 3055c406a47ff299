/**
 * The `feasibility` step: could a job ever run on this inventory, were every GPU free? The API asks this at submit
 * (and rejects the job with the message); a cycle asks it again for every job it cannot place, because the
 * inventory may have shrunk since.
 *
 * Every node that is not `down` counts: a draining node comes back, a down one may not. So does every GPU of a node,
 * those that work tutti does not run holds now (`NodeInfo.gpusHeldElsewhere`) included: they are freed in time.
 */
import type { GpuDevice, JobSpec, NodeInfo } from '@tutti/model';
import { countOf, describeGpus, describeNodeGpus, formatAnd, formatMemoryMiB, formatOr } from '../cycle/format.ts';
import { hostCapacityFits } from './host-fit.ts';
import { computeResourceShape, computeShapeProblem, hasEnoughMemory, isTypeAccepted, type ResourceShape } from '../cycle/resource-shape.ts';
import { compareNames } from '../cycle/snapshot-index.ts';

export type FeasibilityResult = { ok: true } | { ok: false; code: 'NeverFits'; message: string };

/**
 * The inventory grouped into classes of identical nodes (same GPUs, CPUs and memory), so that checking a shape
 * costs O(classes) rather than O(nodes × GPUs): a thousand-node cluster usually has a handful of classes.
 */
export interface Inventory {
  /** Classes of nodes that are not down, in order of their first node by name. */
  readonly classes: readonly NodeClass[];
  /** Nodes that are not down. */
  readonly upCount: number;
  readonly downCount: number;
}

export interface NodeClass {
  /** The class's node with the lowest name: the one messages name. */
  readonly node: NodeInfo;
  /** How many nodes are in the class. */
  readonly count: number;
}

export function computeInventory(nodes: readonly NodeInfo[]): Inventory {
  const up = nodes.filter((n) => n.state !== 'down').map(withEveryGpu).sort((a, b) => compareNames(a.name, b.name));
  const classes = new Map<string, { node: NodeInfo; count: number }>();
  for (const node of up) {
    const key = nodeClassKey(node);
    const found = classes.get(key);
    if (found) found.count++;
    else classes.set(key, { node, count: 1 });
  }
  return { classes: [...classes.values()], upCount: up.length, downCount: nodes.length - up.length };
}

/** The node with the GPUs others hold now among its GPUs, in index order. */
function withEveryGpu(node: NodeInfo): NodeInfo {
  const held = node.gpusHeldElsewhere;
  if (held === undefined || held.length === 0) return node;
  return { ...node, gpus: [...node.gpus, ...held].sort((a, b) => a.index - b.index) };
}

/**
 * Nodes with equal keys have the same CPUs, memory and multiset of GPU (type, memory). Most nodes have GPUs of one
 * kind: their key is built without listing and sorting every GPU. A key of one kind (a count in the third part)
 * never equals a mixed one (GPU kinds joined by U+0001 there).
 */
function nodeClassKey(node: NodeInfo): string {
  const { gpus } = node;
  const first = gpus[0];
  let oneKind = true;
  for (let i = 1; i < gpus.length && oneKind; i++) oneKind = (gpus[i] as NodeInfo['gpus'][number]).type === first?.type && (gpus[i] as NodeInfo['gpus'][number]).memoryMiB === first.memoryMiB;
  const kinds = first === undefined ? '0' : oneKind ? `${gpus.length}\u0000${first.type}/${first.memoryMiB}` : gpus.map((g) => `${g.type}/${g.memoryMiB}`).sort().join('\u0001');
  return `${node.cpus}\u0000${node.memoryMiB}\u0000${kinds}`;
}

export function checkFeasibility(nodes: readonly NodeInfo[], spec: JobSpec): FeasibilityResult {
  return checkShapeFeasibility(computeInventory(nodes), computeResourceShape(spec));
}

const OK: FeasibilityResult = { ok: true };
const never = (message: string): FeasibilityResult => ({ ok: false, code: 'NeverFits', message });

/** Checks in an order that gives the most specific message first: types, GPU memory, GPUs per node, host, node count. */
export function checkShapeFeasibility(inventory: Inventory, shape: ResourceShape): FeasibilityResult {
  const problem = computeShapeProblem(shape);
  if (problem) return never(problem);

  const { classes } = inventory;
  if (inventory.upCount === 0) return never(inventory.downCount === 0 ? 'the cluster has no nodes' : `no node is up (${countOf(inventory.downCount, 'node')} down)`);

  const gpuCount = shape.gpuCount;
  const wanted = { count: gpuCount, types: shape.gpuTypes, minMemoryMiB: shape.gpuMemoryMiB };
  const matching = new Map(classes.map((c) => [c, countMatchingOfOneType(c.node, shape)]));
  const matchingOf = (c: NodeClass): number => matching.get(c) ?? 0;
  if (gpuCount > 0) {
    const allGpus = classes.flatMap((c) => c.node.gpus.map((gpu) => ({ gpu, count: c.count })));
    if (allGpus.length === 0) return never(`needs ${describeGpus(wanted, false)} but the cluster has no GPUs`);
    const accepted = allGpus.filter(({ gpu }) => isTypeAccepted(shape, gpu.type));
    if (accepted.length === 0) {
      const biggest = maxBy(classes, (c) => c.node.gpus.length).node;
      return never(`no GPU of type ${formatOr(shape.gpuTypes)} in the cluster (types: ${listTypes(allGpus).join(', ')}; largest node: ${biggest.name}, ${describeNodeGpus(biggest)})`);
    }
    if (shape.gpuMemoryMiB !== undefined) {
      const largest = Math.max(...accepted.map(({ gpu }) => gpu.memoryMiB));
      if (largest < shape.gpuMemoryMiB) {
        const kind = shape.gpuTypes.length > 0 ? formatOr(shape.gpuTypes) : 'GPU';
        const kindPlural = shape.gpuTypes.length > 0 ? `${formatOr(shape.gpuTypes)} GPUs` : 'GPUs';
        return never(`needs ${kindPlural} with at least ${formatMemoryMiB(shape.gpuMemoryMiB)} memory; the largest ${kind} has ${formatMemoryMiB(largest)}`);
      }
    }
    const largest = maxBy(classes, matchingOf);
    if (matchingOf(largest) < gpuCount) {
      return never(`needs ${describeGpus(wanted, false)} per node but the largest node (${largest.node.name}, ${describeNodeGpus(largest.node)}) has ${matchingOf(largest)}`);
    }
  }

  if (shape.cpus !== undefined) {
    const most = maxBy(classes, (c) => c.node.cpus).node;
    if (most.cpus < shape.cpus) return never(`needs ${shape.cpus} CPUs per node but the largest node (${most.name}) has ${most.cpus}`);
  }
  if (shape.memoryMiB !== undefined) {
    const most = maxBy(classes, (c) => c.node.memoryMiB).node;
    if (most.memoryMiB < shape.memoryMiB) {
      return never(`needs ${formatMemoryMiB(shape.memoryMiB)} memory per node but the largest node (${most.name}) has ${formatMemoryMiB(most.memoryMiB)}`);
    }
  }

  const qualifying = classes.filter((c) => matchingOf(c) >= gpuCount && hostCapacityFits(c.node, shape));
  const q = qualifying.reduce((sum, c) => sum + c.count, 0);
  if (q >= shape.numNodes) return OK;

  const parts = [
    ...(gpuCount > 0 ? [describeGpus(wanted, false)] : []),
    ...(shape.cpus !== undefined ? [`${shape.cpus} CPUs`] : []),
    ...(shape.memoryMiB !== undefined ? [`${formatMemoryMiB(shape.memoryMiB)} memory`] : []),
  ];
  if (parts.length === 0) return never(`needs ${shape.numNodes} nodes; only ${inventory.upCount} ${inventory.upCount === 1 ? 'is' : 'are'} up`);
  const need = shape.numNodes === 1 ? `a node with ${formatAnd(parts)}` : `${shape.numNodes} nodes with ${formatAnd(parts)} each`;
  const have = q === 0 ? 'no node has' : q === 1 ? 'only 1 node has' : `only ${q} nodes have`;
  const what = parts.length > 1 ? 'all of that' : shape.memoryMiB !== undefined && gpuCount === 0 && shape.cpus === undefined ? 'that much' : 'that many';
  let example = '';
  if (q > 0) {
    const best = maxBy(qualifying, gpuCount > 0 ? matchingOf : (c) => (shape.cpus !== undefined ? c.node.cpus : c.node.memoryMiB)).node;
    example = ` (largest: ${best.name}, ${gpuCount > 0 ? describeNodeGpus(best) : `${best.cpus} CPUs, ${formatMemoryMiB(best.memoryMiB)}`})`;
  }
  return never(`needs ${need}; ${have} ${what}${example}`);
}

/** The most GPUs of one accepted type with enough memory on a node, counting busy ones too. */
export function countMatchingOfOneType(node: NodeInfo, shape: ResourceShape): number {
  const perType = new Map<string, number>();
  let best = 0;
  for (const gpu of node.gpus) {
    if (!isTypeAccepted(shape, gpu.type) || !hasEnoughMemory(shape, gpu)) continue;
    const n = (perType.get(gpu.type) ?? 0) + 1;
    perType.set(gpu.type, n);
    best = Math.max(best, n);
  }
  return best;
}

/** The first class (in the given order, so the lowest node name on ties) with the largest value; `classes` is not empty. */
function maxBy(classes: readonly NodeClass[], value: (c: NodeClass) => number): NodeClass {
  let best = classes[0] as NodeClass;
  let bestValue = value(best);
  for (const c of classes) {
    const v = value(c);
    if (v > bestValue) {
      best = c;
      bestValue = v;
    }
  }
  return best;
}

/** GPU types by how many GPUs have them (most first), then by name. */
function listTypes(gpus: readonly { gpu: GpuDevice; count: number }[]): string[] {
  const counts = new Map<string, number>();
  for (const { gpu, count } of gpus) counts.set(gpu.type, (counts.get(gpu.type) ?? 0) + count);
  return [...counts].sort((a, b) => b[1] - a[1] || compareNames(a[0], b[0])).map(([type]) => type);
}
