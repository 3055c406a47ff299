/** fast-check generators of small random clusters and queues, and an independent brute-force fit oracle. */
import fc from 'fast-check';
import type { ClusterSnapshot, Job, JobSpec, NodeInfo, NodeState, Placement } from '@tutti/model';
import { makeCluster, makeJob, makeNode } from './builders.ts';

const TYPES = ['H100', 'A100', 'T4'] as const;

const gpuGroupArb = fc.record({ count: fc.constantFrom(1, 2, 4, 4, 8, 8), type: fc.constantFrom(...TYPES), memoryGiB: fc.constantFrom(16, 40, 80, 80) });

const nodeArb = fc.record({
  // Mostly one kind of GPU per node, sometimes none or two kinds.
  groups: fc.oneof(
    { arbitrary: fc.array(gpuGroupArb, { minLength: 1, maxLength: 1 }), weight: 6 },
    { arbitrary: fc.array(gpuGroupArb, { maxLength: 2 }), weight: 2 },
  ),
  nvlink: fc.constantFrom('none', 'pairs', 'all'),
  cpus: fc.constantFrom(16, 64, 96),
  memoryGiB: fc.constantFrom(128, 256, 512),
  state: fc.constantFrom<NodeState>('ready', 'ready', 'ready', 'draining', 'down'),
  /** GPU i is held by a running job when busy[i] < 3 (about 30%). */
  busy: fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 16, maxLength: 16 }),
});

export const clusterArb: fc.Arbitrary<ClusterSnapshot> = fc.array(nodeArb, { minLength: 1, maxLength: 8, size: 'medium' }).map((nodes) => {
  const builders = nodes.map((n, i) => {
    const b = makeNode(`n${i}`).cpus(n.cpus).memoryGiB(n.memoryGiB).state(n.state);
    for (const g of n.groups) b.gpus(g.count, g.type, g.memoryGiB);
    const total = n.groups.reduce((sum, g) => sum + g.count, 0);
    if (n.nvlink === 'all') b.nvlinkAll();
    if (n.nvlink === 'pairs') for (let g = 0; g + 1 < total; g += 2) b.nvlink([g, g + 1]);
    return b;
  });
  const cluster = makeCluster(...builders);
  nodes.forEach((n, i) => {
    const total = n.groups.reduce((sum, g) => sum + g.count, 0);
    const busy = n.busy.slice(0, total).flatMap((v, gpu) => (v < 3 ? [gpu] : []));
    if (busy.length > 0) cluster.allocate(`r${i}`, `n${i}`, busy);
  });
  return cluster.build();
});

const specArb = fc.record({
  count: fc.oneof({ arbitrary: fc.constant(0), weight: 1 }, { arbitrary: fc.integer({ min: 1, max: 4 }), weight: 6 }, { arbitrary: fc.integer({ min: 5, max: 9 }), weight: 1 }),
  types: fc.oneof(fc.constant([]), fc.shuffledSubarray([...TYPES], { minLength: 1, maxLength: 2 })),
  gpuMemoryGiB: fc.option(fc.constantFrom(16, 40, 80), { nil: undefined, freq: 3 }),
  numNodes: fc.oneof({ arbitrary: fc.constant(1), weight: 3 }, { arbitrary: fc.integer({ min: 2, max: 3 }), weight: 1 }),
  cpus: fc.option(fc.constantFrom(4, 16, 48), { nil: undefined, freq: 3 }),
  memoryGiB: fc.option(fc.constantFrom(32, 200), { nil: undefined, freq: 4 }),
  priority: fc.constantFrom(10, 50, 90),
});

/** Jobs with ids 1..n (so queue order is well defined), in a shuffled order. */
export const pendingArb: fc.Arbitrary<Job[]> = fc
  .array(specArb, { maxLength: 16 })
  .chain((specs) => {
    const jobs = specs.map((s, i) => {
      const b = makeJob(i + 1).gpus(s.count).types(...s.types).nodes(s.numNodes).priority(s.priority);
      if (s.gpuMemoryGiB !== undefined) b.gpuMemoryGiB(s.gpuMemoryGiB);
      if (s.cpus !== undefined) b.cpus(s.cpus);
      if (s.memoryGiB !== undefined) b.memoryGiB(s.memoryGiB);
      return b.build();
    });
    return fc.shuffledSubarray(jobs, { minLength: jobs.length, maxLength: jobs.length });
  });

/** Shuffles with a seeded LCG, so that fast-check can replay a failure. */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let state = seed >>> 0;
  for (let i = out.length - 1; i > 0; i--) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

/**
 * Does `spec` fit the snapshot once `taken` placements are also subtracted? Written without any scheduler code:
 * a node qualifies when it is ready, has room for the CPUs and memory (counting only `taken`), and has `count` free
 * GPUs of one accepted type with enough memory; the job fits when `numNodes` nodes qualify.
 */
export function fitsBruteForce(snapshot: ClusterSnapshot, spec: JobSpec, taken: readonly { spec: JobSpec; placement: Placement }[]): boolean {
  const free = new Map<string, Set<number>>();
  const host = new Map<string, { cpus: number; memoryMiB: number }>();
  for (const node of snapshot.nodes) {
    free.set(node.name, new Set(node.gpus.map((g) => g.index)));
    host.set(node.name, { cpus: node.cpus, memoryMiB: node.memoryMiB });
  }
  for (const a of snapshot.allocations) free.get(a.node)?.delete(a.gpuIndex);
  for (const t of taken) {
    for (const placed of t.placement.nodes) {
      for (const gpu of placed.gpuIndices) free.get(placed.node)?.delete(gpu);
      const h = host.get(placed.node);
      if (h) {
        h.cpus -= t.spec.resources.cpus ?? 0;
        h.memoryMiB -= t.spec.resources.memoryMiB ?? 0;
      }
    }
  }
  const { count, types, memoryMiB } = spec.resources.gpus;
  let qualifying = 0;
  for (const node of snapshot.nodes) {
    if (node.state !== 'ready') continue;
    const h = host.get(node.name) as { cpus: number; memoryMiB: number };
    if ((spec.resources.cpus ?? 0) > h.cpus || (spec.resources.memoryMiB ?? 0) > h.memoryMiB) continue;
    const perType = new Map<string, number>();
    for (const gpu of node.gpus) {
      if (!free.get(node.name)?.has(gpu.index)) continue;
      if (types.length > 0 && !types.includes(gpu.type)) continue;
      if (memoryMiB !== undefined && gpu.memoryMiB < memoryMiB) continue;
      perType.set(gpu.type, (perType.get(gpu.type) ?? 0) + 1);
    }
    if (count === 0 || Math.max(0, ...perType.values()) >= count) qualifying++;
  }
  return qualifying >= spec.numNodes;
}

/** The same nodes with every GPU free and every node that is not down made ready: "the cluster, were it empty". */
export function emptied(nodes: readonly NodeInfo[]): ClusterSnapshot {
  return { version: 1, nodes: nodes.filter((n) => n.state !== 'down').map((n) => ({ ...n, state: 'ready' as const })), allocations: [] };
}
