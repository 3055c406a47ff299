/**
 * The `gang` step: choose the nodes and GPUs for every node-rank of a job at once, or none (all-or-nothing).
 *
 * For a GPU job each of `numNodes` distinct ready nodes must have `gpuCount` free GPUs of one accepted type with
 * enough memory, and room for the job's CPUs and host memory. In order:
 *   1. Whole gang on one type. With a preference list, the first type that fits wins. Taking any type, the type
 *      whose choice leaves the fewest matching GPUs free on the chosen nodes wins (best fit; lower name on ties).
 *   2. Only when no single type fits a multi-node gang: each node uses its own type (the most preferred one that fits
 *      there; taking any type, the one with the fewest free), preferring nodes with more preferred types.
 * Within a type, nodes are chosen best-fit (`BestFitPicker`), and GPUs within a node by `chooseGpus`.
 * A CPU-only job takes the ready nodes with room for its CPUs and memory that have the fewest free GPUs.
 *
 * The search is complete: if some placement exists in `view`, one is returned. Since capacity only shrinks during a
 * cycle, a shape that found none will find none later in the same cycle.
 *
 * Cost: O(ready nodes × candidate types × GPUs per node) per call.
 */
import type { GpuDevice, PlacedNode } from '@tutti/model';
import { BestFitPicker } from '../score/best-fit.ts';
import type { IndexedCounts } from '../perf/capacity-index.ts';
import { chooseGpus } from '../score/gpu-choice.ts';
import { computeCandidateTypes, computeMatchingGpus } from '../filter/gpu-fit.ts';
import { fitsHost } from '../filter/host-fit.ts';
import { perfectNodeScore, scoreNodeForPacking, type PackingStrategy } from '../score/packing.ts';
import type { ResourceShape } from '../cycle/resource-shape.ts';
import { compareNames, type CapacityView, type IndexedNode, type SnapshotIndex } from '../cycle/snapshot-index.ts';

interface NodeChoice {
  node: IndexedNode;
  /** The matching free GPUs of the node's chosen type; empty for a CPU-only job. */
  gpus: readonly GpuDevice[];
}

/** Returns the placed nodes in node-name order (rank 0 on the first), or undefined when the gang does not fit. */
export function computeGangPlacement(shape: ResourceShape, view: CapacityView, index: SnapshotIndex, nodes: readonly IndexedNode[] = index.readyNodes, packing: PackingStrategy = 'best-fit'): PlacedNode[] | undefined {
  const domain = nodes === index.readyNodes ? index : { ...index, readyNodes: nodes };
  const choice = shape.gpuCount === 0 ? chooseCpuOnlyNodes(shape, view, domain) : chooseGpuNodes(shape, view, domain, packing);
  if (!choice) return undefined;
  return choice
    .sort((a, b) => compareNames(a.node.name, b.node.name))
    .map(({ node, gpus }) => ({ node: node.name, gpuIndices: shape.gpuCount === 0 ? [] : chooseGpus(gpus, shape.gpuCount, node.nvlink) }));
}

function chooseCpuOnlyNodes(shape: ResourceShape, view: CapacityView, index: SnapshotIndex): NodeChoice[] | undefined {
  const picker = new BestFitPicker<NodeChoice>(shape.numNodes, 0);
  for (const node of index.readyNodes) {
    if (!fitsHost(view, node, shape)) continue;
    if (picker.add(view.freeGpuCount(node), { node, gpus: [] })) break;
  }
  return picker.pick()?.map((c) => c.item);
}

function chooseGpuNodes(shape: ResourceShape, view: CapacityView, index: SnapshotIndex, packing: PackingStrategy): NodeChoice[] | undefined {
  const types = computeCandidateTypes(shape, index.readyGpuTypes);
  const takesAnyType = shape.gpuTypes.length === 0;

  let best: { nodes: NodeChoice[]; leftover: number } | undefined;
  for (const type of types) {
    const picked = chooseNodesOfType(shape, view, index, type, packing);
    if (!picked) continue;
    if (!takesAnyType) return picked.nodes;
    if (!best || picked.leftover < best.leftover) best = picked;
    if (best.leftover === 0) break;
  }
  if (best) return best.nodes;
  if (shape.numNodes > 1 && types.length > 1) return chooseNodesOfMixedTypes(shape, view, index, types, takesAnyType, packing);
  return undefined;
}

function chooseNodesOfType(shape: ResourceShape, view: CapacityView, index: SnapshotIndex, type: string, packing: PackingStrategy): { nodes: NodeChoice[]; leftover: number } | undefined {
  // The buckets cover all ready nodes: a search inside one rack or zone scans that domain's nodes instead. They
  // list nodes fewest free first, which is best fit's order only.
  const indexed = requiresNvlink(shape) || packing !== 'best-fit' ? undefined : view.indexedCounts?.();
  if (indexed && indexed.counts.index.readyNodes === index.readyNodes && indexed.counts.covers(type, shape.gpuMemoryMiB)) return chooseNodesOfTypeIndexed(shape, view, index, type, indexed);
  const picker = new BestFitPicker<NodeChoice>(shape.numNodes, perfectNodeScore(packing, shape.gpuCount));
  for (const node of index.readyNodes) {
    if (view.freeGpuCount(node) < shape.gpuCount || !fitsHost(view, node, shape)) continue;
    let gpus = computeMatchingGpus(view, node, shape, type);
    if (gpus.length < shape.gpuCount) continue;
    if (requiresNvlink(shape)) gpus = restrictToNvlinkDomain(node, gpus, shape.gpuCount);
    if (gpus.length < shape.gpuCount) continue;
    if (picker.add(scoreNodeForPacking(packing, gpus.length, index.maxGpusPerReadyNode), { node, gpus })) break;
  }
  const picked = picker.pick();
  if (!picked) return undefined;
  return { nodes: picked.map((p) => p.item), leftover: picked.reduce((sum, p) => sum + p.item.gpus.length - shape.gpuCount, 0) };
}

/**
 * `chooseNodesOfType` through the free-count buckets: the same nodes in the same order (fewest free matching GPUs,
 * then node name), visiting only nodes with enough free GPUs of the type. Only where every GPU of the type has the
 * memory the job asks (so free = matching) and without `require: nvlink`.
 */
function chooseNodesOfTypeIndexed(shape: ResourceShape, view: CapacityView, index: SnapshotIndex, type: string, indexed: IndexedCounts): { nodes: NodeChoice[]; leftover: number } | undefined {
  const { counts, differs } = indexed;
  const need = shape.numNodes;
  const k = shape.gpuCount;
  // Nodes whose free GPUs in this view are not what the buckets say: scored from the view, merged in below.
  const extras: { node: IndexedNode; gpus: readonly GpuDevice[] }[] = [];
  for (const ordinal of differs) {
    const node = index.nodes[ordinal];
    if (!node?.ready) continue;
    const gpus = view.freeGpusByType(node).get(type) ?? NO_GPUS;
    if (gpus.length >= k && fitsHost(view, node, shape)) extras.push({ node, gpus });
  }
  extras.sort((a, b) => a.gpus.length - b.gpus.length || a.node.ordinal - b.node.ordinal);
  const chosen: NodeChoice[] = [];
  let leftover = 0;
  let e = 0;
  const top = Math.max(counts.maxCount, extras.length > 0 ? (extras[extras.length - 1] as { gpus: readonly GpuDevice[] }).gpus.length : 0);
  for (let c = k; c <= top && chosen.length < need; c++) {
    counts.forEachWithCount(type, c, (ordinal) => {
      if (differs.has(ordinal)) return false;
      for (let x = extras[e]; x && x.gpus.length === c && x.node.ordinal < ordinal && chosen.length < need; x = extras[++e]) {
        chosen.push(x);
        leftover += c - k;
      }
      if (chosen.length >= need) return true;
      const node = index.nodes[ordinal] as IndexedNode;
      if (!fitsHost(view, node, shape)) return false;
      chosen.push({ node, gpus: view.freeGpusByType(node).get(type) ?? NO_GPUS });
      leftover += c - k;
      return chosen.length >= need;
    });
    for (let x = extras[e]; x && x.gpus.length === c && chosen.length < need; x = extras[++e]) {
      chosen.push(x);
      leftover += c - k;
    }
    while (extras[e] && (extras[e] as { gpus: readonly GpuDevice[] }).gpus.length <= c) e++;
  }
  return chosen.length < need ? undefined : { nodes: chosen, leftover };
}

const NO_GPUS: readonly GpuDevice[] = [];

function chooseNodesOfMixedTypes(shape: ResourceShape, view: CapacityView, index: SnapshotIndex, types: readonly string[], takesAnyType: boolean, packing: PackingStrategy): NodeChoice[] | undefined {
  // Score = preference rank first, then free matching count: rank × (more than any count) + count.
  const rankWeight = index.maxGpusPerReadyNode + 1;
  const picker = new BestFitPicker<NodeChoice>(shape.numNodes, perfectNodeScore(packing, shape.gpuCount));
  for (const node of index.readyNodes) {
    if (view.freeGpuCount(node) < shape.gpuCount || !fitsHost(view, node, shape)) continue;
    let chosen: { gpus: readonly GpuDevice[]; score: number } | undefined;
    for (const [rank, type] of types.entries()) {
      let gpus = computeMatchingGpus(view, node, shape, type);
      if (requiresNvlink(shape)) gpus = restrictToNvlinkDomain(node, gpus, shape.gpuCount);
      if (gpus.length < shape.gpuCount) continue;
      const score = (takesAnyType ? 0 : rank * rankWeight) + scoreNodeForPacking(packing, gpus.length, index.maxGpusPerReadyNode);
      if (!chosen || score < chosen.score) chosen = { gpus, score };
      if (!takesAnyType) break;
    }
    if (chosen && picker.add(chosen.score, { node, gpus: chosen.gpus })) break;
  }
  return picker.pick()?.map((p) => p.item);
}

function requiresNvlink(shape: ResourceShape): boolean {
  return shape.topology?.mode === 'require' && shape.topology.level === 'nvlink' && shape.gpuCount > 1;
}

/** NVLink domains of a node: connected components of its NVLink graph, as sets of GPU indices. Cached per node. */
const domainsOfNode = new WeakMap<IndexedNode, Map<number, number>>();

function nvlinkDomainOf(node: IndexedNode): Map<number, number> {
  let domains = domainsOfNode.get(node);
  if (domains) return domains;
  domains = new Map();
  const indices = [...node.gpuByIndex.keys()].sort((a, b) => a - b);
  for (const start of indices) {
    if (domains.has(start)) continue;
    const stack = [start];
    domains.set(start, start);
    while (stack.length > 0) {
      const at = stack.pop() as number;
      for (const peer of node.nvlink.get(at) ?? []) {
        if (domains.has(peer)) continue;
        domains.set(peer, start);
        stack.push(peer);
      }
    }
  }
  domainsOfNode.set(node, domains);
  return domains;
}

/**
 * For `topology: {require: nvlink}`: the free GPUs of the one NVLink domain of the node that fits `count` with the
 * fewest free (best fit), or an empty list when no domain has `count` free.
 */
function restrictToNvlinkDomain(node: IndexedNode, gpus: readonly GpuDevice[], count: number): readonly GpuDevice[] {
  const domainOf = nvlinkDomainOf(node);
  const byDomain = new Map<number, GpuDevice[]>();
  for (const gpu of gpus) {
    const d = domainOf.get(gpu.index) ?? gpu.index;
    const list = byDomain.get(d);
    if (list) list.push(gpu);
    else byDomain.set(d, [gpu]);
  }
  let best: GpuDevice[] | undefined;
  for (const list of byDomain.values()) if (list.length >= count && (!best || list.length < best.length)) best = list;
  return best ?? [];
}
