import { describe, expect, it } from 'vitest';
import { DEFAULT_PROFILE, PLUGIN, runCycle } from '../src/index.ts';
import { cycle, diagnosedOf, makeCluster, makeJob, makeNode, placedIds, placedOf, type ClusterBuilder, type JobBuilder } from './builders.ts';

interface Case {
  name: string;
  cluster: ClusterBuilder;
  jobs: JobBuilder[];
  /** Every placement of the plan, in `placedOf` form. */
  placed: Record<string, string>;
  /** Every diagnosis, as `Code: message` (a string ending in `*` matches by prefix). */
  diagnosed?: Record<string, string>;
  /** Plan order, when it matters. */
  order?: string[];
}

const h100 = (name: string, n = 8) => makeNode(name).gpus(n, 'H100');

const cases: Case[] = [
  // --- queue order ---
  {
    name: 'higher priority goes first even when submitted later',
    cluster: makeCluster(h100('n1', 4)),
    jobs: [makeJob(1).gpus(4).priority(50), makeJob(2).gpus(4).priority(90)],
    placed: { '2': 'n1:0,1,2,3' },
    diagnosed: { '1': 'QueuedBehindHigherPriority: 4 GPUs it could use were given to higher-priority job 2 this cycle' },
  },
  {
    name: 'same priority: submission order compares ids as numbers (9 before 10)',
    cluster: makeCluster(h100('n1', 4)),
    jobs: [makeJob(10).gpus(4), makeJob(9).gpus(4)],
    placed: { '9': 'n1:0,1,2,3' },
    diagnosed: { '10': 'QueuedBehindHigherPriority: 4 GPUs it could use were given to job 9 ahead of it in the queue this cycle' },
  },
  {
    name: 'places as many as fit, in queue order',
    cluster: makeCluster(h100('n1', 8)),
    jobs: [makeJob(1).gpus(2), makeJob(2).gpus(2).priority(60), makeJob(3).gpus(2), makeJob(4).gpus(2), makeJob(5).gpus(2)],
    placed: { '2': 'n1:0,1', '1': 'n1:2,3', '3': 'n1:4,5', '4': 'n1:6,7' },
    order: ['2', '1', '3', '4'],
    diagnosed: { '5': 'QueuedBehindHigherPriority: 8 GPUs it could use were given to jobs 2, 1, 3 and 1 more ahead of it in the queue this cycle' },
  },
  {
    name: 'a big job that does not fit does not block a smaller one behind it',
    cluster: makeCluster(h100('n1', 8)).allocate('r1', 'n1', [0, 1, 2, 3]),
    jobs: [makeJob(1).gpus(8).priority(90), makeJob(2).gpus(2).priority(10)],
    placed: { '2': 'n1:4,5' },
    // "now" is after this cycle's placements: job 2 took 2 of the 4.
    diagnosed: { '1': 'InsufficientGpus: waiting for 8 free GPUs on one node; at most 2 free on any node now' },
  },
  // --- all or nothing ---
  {
    name: 'a 4-GPU job never gets 3',
    cluster: makeCluster(h100('n1', 4)).allocate('r1', 'n1', [2]),
    jobs: [makeJob(1).gpus(4)],
    placed: {},
    diagnosed: { '1': 'InsufficientGpus: waiting for 4 free GPUs on one node; at most 3 free on any node now' },
  },
  {
    name: 'a 4-GPU job is not split over two nodes with 2 free each',
    cluster: makeCluster(h100('a', 4), h100('b', 4)).allocate('r1', 'a', [0, 1]).allocate('r2', 'b', [0, 1]),
    jobs: [makeJob(1).gpus(4)],
    placed: {},
    diagnosed: { '1': 'InsufficientGpus: waiting for 4 free GPUs on one node; at most 2 free on any node now' },
  },
  // --- gangs ---
  {
    name: 'a 2-node gang gets 8 GPUs on each of two nodes',
    cluster: makeCluster(h100('a'), h100('b'), h100('c')).allocate('r1', 'b', [0]),
    jobs: [makeJob(1).gpus(8).nodes(2)],
    placed: { '1': 'a:0,1,2,3,4,5,6,7 c:0,1,2,3,4,5,6,7' },
  },
  {
    name: 'a gang waits whole when only one node is free',
    cluster: makeCluster(h100('a'), h100('b')).allocate('r1', 'b', [3]),
    jobs: [makeJob(1).gpus(8).nodes(2).types('H100')],
    placed: {},
    diagnosed: { '1': 'InsufficientNodes: waiting for 2 nodes with 8 free H100 GPUs each; 1 such node now' },
  },
  {
    name: 'a gang needs distinct nodes: one 16-GPU node does not hold 2 × 8',
    cluster: makeCluster(h100('big', 16)),
    jobs: [makeJob(1).gpus(8).nodes(2)],
    placed: {},
    diagnosed: { '1': 'NeverFits: needs 2 nodes with 8 GPUs each; only 1 node has that many (largest: big, 16 × H100 80 GiB)' },
  },
  {
    name: 'a later gang still fits after an earlier one took some nodes',
    cluster: makeCluster(h100('a', 4), h100('b', 4), h100('c', 4), h100('d', 4)),
    jobs: [makeJob(1).gpus(4).nodes(2), makeJob(2).gpus(4).nodes(2), makeJob(3).gpus(1)],
    placed: { '1': 'a:0,1,2,3 b:0,1,2,3', '2': 'c:0,1,2,3 d:0,1,2,3' },
    diagnosed: { '3': 'QueuedBehindHigherPriority: 16 GPUs it could use were given to jobs 1 and 2 ahead of it in the queue this cycle' },
  },
  // --- GPU type and memory ---
  {
    name: 'the first preferred type that fits wins',
    cluster: makeCluster(makeNode('a').gpus(4, 'A100'), makeNode('b').gpus(4, 'H100')),
    jobs: [makeJob(1).gpus(4).types('H100', 'A100'), makeJob(2).gpus(4).types('H100', 'A100')],
    placed: { '1': 'b:0,1,2,3', '2': 'a:0,1,2,3' },
  },
  {
    name: 'a preference list is followed in its own order',
    cluster: makeCluster(makeNode('a').gpus(4, 'A100'), makeNode('b').gpus(4, 'H100')),
    jobs: [makeJob(1).gpus(2).types('A100', 'H100')],
    placed: { '1': 'a:0,1' },
  },
  {
    name: 'a job that takes any type goes to the best-fitting type',
    cluster: makeCluster(makeNode('a').gpus(8, 'H100'), makeNode('b').gpus(2, 'T4', 16)),
    jobs: [makeJob(1).gpus(2)],
    placed: { '1': 'b:0,1' },
  },
  {
    name: 'one node-rank never mixes types even when the node has enough GPUs in total',
    cluster: makeCluster(makeNode('a').gpus(2, 'H100').gpus(2, 'A100')),
    jobs: [makeJob(1).gpus(3), makeJob(2).gpus(2).types('A100')],
    placed: { '2': 'a:2,3' },
    diagnosed: { '1': 'NeverFits: needs 3 GPUs per node but the largest node (a, 2 × H100 80 GiB + 2 × A100 80 GiB) has 2' },
  },
  {
    name: 'a gang prefers one type on every node',
    cluster: makeCluster(makeNode('a').gpus(4, 'A100'), makeNode('b').gpus(4, 'H100'), makeNode('c').gpus(4, 'A100')),
    jobs: [makeJob(1).gpus(4).nodes(2).types('H100', 'A100')],
    placed: { '1': 'a:0,1,2,3 c:0,1,2,3' },
  },
  {
    name: 'a gang mixes types across nodes only when no single type fits, most preferred first',
    cluster: makeCluster(makeNode('a').gpus(4, 'A100'), makeNode('b').gpus(4, 'H100'), makeNode('c').gpus(4, 'T4', 16)),
    jobs: [makeJob(1).gpus(4).nodes(2).types('H100', 'A100', 'T4')],
    placed: { '1': 'a:0,1,2,3 b:0,1,2,3' },
  },
  {
    name: 'GPU memory minimum: only GPUs with enough memory count',
    cluster: makeCluster(makeNode('a').gpus(4, 'A100', 40), makeNode('b').gpus(4, 'A100', 80)),
    jobs: [makeJob(1).gpus(2).types('A100').gpuMemoryGiB(80), makeJob(2).gpus(2).gpuMemoryGiB(80), makeJob(3).gpus(2).gpuMemoryGiB(80)],
    placed: { '1': 'b:0,1', '2': 'b:2,3' },
    diagnosed: { '3': 'QueuedBehindHigherPriority: 4 GPUs it could use were given to jobs 1 and 2 ahead of it in the queue this cycle' },
  },
  {
    name: 'free GPUs of the wrong type: GpuTypeUnavailable names what is free',
    cluster: makeCluster(h100('h', 4), makeNode('a').gpus(4, 'A100')).allocate('r1', 'h', [0, 1, 2, 3]),
    jobs: [makeJob(1).gpus(4).types('H100')],
    placed: {},
    diagnosed: { '1': 'GpuTypeUnavailable: needs 4 H100 GPUs on one node; none free now (4 A100 free)' },
  },
  {
    name: 'free GPUs with too little memory: GpuTypeUnavailable says so',
    cluster: makeCluster(makeNode('a').gpus(4, 'H100', 40), makeNode('b').gpus(4, 'H100', 80)).allocate('r1', 'b', [0, 1, 2]),
    jobs: [makeJob(1).gpus(2).types('H100').gpuMemoryGiB(80)],
    placed: {},
    diagnosed: { '1': 'GpuTypeUnavailable: needs 2 H100 GPUs with at least 80 GiB on one node; at most 1 free on any node now (4 H100 with less than 80 GiB free)' },
  },
  // --- best fit ---
  {
    name: 'best fit: the node with the fewest free GPUs that still fit',
    cluster: makeCluster(h100('a'), h100('b')).allocate('r1', 'b', [0, 1, 2, 3, 4, 5]),
    jobs: [makeJob(1).gpus(2)],
    placed: { '1': 'b:6,7' },
  },
  {
    name: 'best fit keeps a whole node free for the big gang behind',
    cluster: makeCluster(h100('a'), h100('b')).allocate('r1', 'b', [0, 1, 2, 3]),
    jobs: [makeJob(1).gpus(2).priority(90), makeJob(2).gpus(8)],
    placed: { '1': 'b:4,5', '2': 'a:0,1,2,3,4,5,6,7' },
  },
  {
    name: 'best-fit ties go to the lower node name',
    cluster: makeCluster(h100('c', 4), h100('b', 4), h100('a', 8)),
    jobs: [makeJob(1).gpus(2).nodes(2)],
    placed: { '1': 'b:0,1 c:0,1' },
  },
  // --- NVLink ---
  {
    name: 'prefers a pair of NVLink peers over the lowest free indices',
    cluster: makeCluster(makeNode('n').gpus(4).nvlink([0, 1], [2, 3])).allocate('r1', 'n', [1]),
    jobs: [makeJob(1).gpus(2)],
    placed: { '1': 'n:2,3' },
  },
  {
    name: 'on a fully connected node takes the lowest indices',
    cluster: makeCluster(makeNode('n').gpus(8).nvlinkAll()).allocate('r1', 'n', [0, 2]),
    jobs: [makeJob(1).gpus(3)],
    placed: { '1': 'n:1,3,4' },
  },
  {
    name: 'prefers the NVLink island that holds the whole set',
    cluster: makeCluster(makeNode('n').gpus(8).nvlink([0, 1, 2, 3], [4, 5, 6, 7])).allocate('r1', 'n', [0]),
    jobs: [makeJob(1).gpus(4)],
    placed: { '1': 'n:4,5,6,7' },
  },
  // --- CPU-only and host resources ---
  {
    name: 'a CPU-only job goes to the node with the fewest free GPUs',
    cluster: makeCluster(h100('a'), makeNode('cpu').cpus(32)),
    jobs: [makeJob(1).gpus(0).cpus(4)],
    placed: { '1': 'cpu:-' },
  },
  {
    name: 'a CPU-only gang spans distinct nodes',
    cluster: makeCluster(makeNode('x'), makeNode('y'), makeNode('z')),
    jobs: [makeJob(1).gpus(0).nodes(3)],
    placed: { '1': 'x:- y:- z:-' },
  },
  {
    name: 'CPUs taken by jobs placed this cycle count',
    cluster: makeCluster(makeNode('c').cpus(64)),
    jobs: [makeJob(1).gpus(0).cpus(40), makeJob(2).gpus(0).cpus(40)],
    placed: { '1': 'c:-' },
    diagnosed: { '2': 'QueuedBehindHigherPriority: the CPUs it could use were given to job 1 ahead of it in the queue this cycle' },
  },
  {
    name: 'host memory of a GPU node limits GPU jobs too',
    cluster: makeCluster(h100('a', 8).memoryGiB(256)),
    jobs: [makeJob(1).gpus(2).memoryGiB(200).priority(90), makeJob(2).gpus(2).memoryGiB(100)],
    placed: { '1': 'a:0,1' },
    diagnosed: { '2': 'QueuedBehindHigherPriority: the memory it could use was given to higher-priority job 1 this cycle' },
  },
  {
    name: 'both GPUs and CPUs taken: both are named',
    cluster: makeCluster(h100('a', 2).cpus(32)),
    jobs: [makeJob(1).gpus(2).cpus(32).priority(90), makeJob(2).gpus(1).cpus(16)],
    placed: { '1': 'a:0,1' },
    diagnosed: { '2': 'QueuedBehindHigherPriority: 2 GPUs and the CPUs it could use were given to higher-priority job 1 this cycle' },
  },
  {
    name: 'GPUs free but CPUs short for the whole gang: InsufficientHostResources',
    cluster: makeCluster(h100('a', 8).cpus(16), h100('b', 8).cpus(64)),
    jobs: [makeJob(1).gpus(0).cpus(60).priority(90), makeJob(2).gpus(4).cpus(32).nodes(2)],
    placed: { '1': 'b:-' },
    diagnosed: { '2': 'NeverFits: needs 2 nodes with 4 GPUs and 32 CPUs each; only 1 node has all of that (largest: b, 8 × H100 80 GiB)' },
  },
  {
    name: 'a CPU-only job waits for free CPUs',
    cluster: makeCluster(makeNode('c').cpus(64), makeNode('d').cpus(64)),
    jobs: [makeJob(1).gpus(0).cpus(60).nodes(2).priority(90), makeJob(2).gpus(0).cpus(8).memoryGiB(16)],
    placed: { '1': 'c:- d:-' },
    diagnosed: { '2': 'QueuedBehindHigherPriority: the CPUs it could use were given to higher-priority job 1 this cycle' },
  },
  {
    name: 'the node with free GPUs has too few CPUs: InsufficientHostResources',
    cluster: makeCluster(h100('a', 8).cpus(16), h100('b', 8).cpus(64)).allocate('r1', 'b', [0, 1, 2, 3, 4, 5, 6, 7]),
    jobs: [makeJob(1).gpus(4).cpus(32)],
    placed: {},
    diagnosed: { '1': 'InsufficientHostResources: waiting for a node with 4 free GPUs and 32 free CPUs; no such node now (the node with the free GPUs has at most 16 free CPUs)' },
  },
  {
    name: 'a CPU-only job too big for every ready node: InsufficientHostResources',
    cluster: makeCluster(makeNode('c').cpus(64), makeNode('d').cpus(128).state('draining')),
    jobs: [makeJob(1).gpus(0).cpus(100).memoryGiB(64)],
    placed: {},
    diagnosed: { '1': 'InsufficientHostResources: waiting for a node with 100 free CPUs and 64 GiB free memory; no such node now (at most 64 free CPUs and 512 GiB free memory on any ready node); not ready: d (draining)' },
  },
  {
    name: 'no node has the CPUs free: InsufficientHostResources',
    cluster: makeCluster(h100('a', 8).cpus(32), h100('b', 8).cpus(32)).allocate('r1', 'b', [0, 1, 2, 3, 4, 5, 6, 7]),
    jobs: [makeJob(1).gpus(2).cpus(20).priority(90), makeJob(2).gpus(2).cpus(20), makeJob(3).gpus(2).cpus(20).nodes(2)],
    placed: { '1': 'a:0,1' },
    diagnosed: {
      '2': 'QueuedBehindHigherPriority: the CPUs it could use were given to higher-priority job 1 this cycle',
      '3': 'InsufficientNodes: waiting for 2 nodes with 2 free GPUs each; 1 such node now',
    },
  },
  {
    name: 'CPUs busy on the nodes with free GPUs: host resources are named',
    cluster: makeCluster(h100('a', 4).cpus(32), h100('b', 4).cpus(32)).allocate('r1', 'b', [0, 1, 2, 3]),
    jobs: [makeJob(1).gpus(1).cpus(24).priority(90), makeJob(2).gpus(2).cpus(24).nodes(2), makeJob(3).gpus(1).cpus(16)],
    placed: { '1': 'a:0' },
    diagnosed: {
      '2': 'InsufficientNodes: waiting for 2 nodes with 2 free GPUs each; 1 such node now',
      '3': 'QueuedBehindHigherPriority: the CPUs it could use were given to higher-priority job 1 this cycle',
    },
  },
  // --- node state ---
  {
    name: 'draining and down nodes take no new work',
    cluster: makeCluster(h100('a').state('draining'), h100('b').state('down'), h100('c', 2)),
    jobs: [makeJob(1).gpus(4), makeJob(2).gpus(2)],
    placed: { '2': 'c:0,1' },
    diagnosed: { '1': 'InsufficientGpus: waiting for 4 free GPUs on one node; none free now; not ready: a (draining) and b (down)' },
  },
  {
    name: 'no ready node at all',
    cluster: makeCluster(h100('a').state('draining')),
    jobs: [makeJob(1).gpus(1), makeJob(2).gpus(0)],
    placed: {},
    diagnosed: {
      '1': 'InsufficientNodes: waiting for a node with 1 free GPU; no node is ready now; not ready: a (draining)',
      '2': 'InsufficientNodes: waiting for a ready node; no node is ready now; not ready: a (draining)',
    },
  },
  {
    name: 'a job that only fits on down nodes never fits',
    cluster: makeCluster(h100('a', 4), h100('b', 8).state('down')),
    jobs: [makeJob(1).gpus(8)],
    placed: {},
    diagnosed: { '1': 'NeverFits: needs 8 GPUs per node but the largest node (a, 4 × H100 80 GiB) has 4' },
  },
];

describe('runCycle', () => {
  it.each(cases)('$name', ({ cluster, jobs, placed, diagnosed = {}, order }) => {
    const result = cycle(cluster, jobs);
    expect(placedOf(result)).toEqual(placed);
    expect(diagnosedOf(result)).toEqual(diagnosed);
    if (order) expect(placedIds(result)).toEqual(order);
  });

  it('records the snapshot version in the plan and accepts a profile', () => {
    const snapshot = makeCluster(h100('a')).version(42).build();
    const result = runCycle({ snapshot, pending: [makeJob(1).build()], now: 123, seed: 7 }, DEFAULT_PROFILE);
    expect(result.plan.snapshotVersion).toBe(42);
  });

  it('never mutates the snapshot or the jobs', () => {
    const snapshot = makeCluster(h100('a'), h100('b')).allocate('r1', 'a', [0]).build();
    const pending = [makeJob(1).gpus(4).build(), makeJob(2).gpus(8).nodes(2).build(), makeJob(3).gpus(7).build()];
    const before = structuredClone({ snapshot, pending });
    deepFreeze(snapshot);
    deepFreeze(pending);
    runCycle({ snapshot, pending, now: 0, seed: 0 });
    expect({ snapshot, pending }).toEqual(before);
  });

  it('names the plugin that stopped each job', () => {
    const result = cycle(makeCluster(h100('a', 4)).allocate('r1', 'a', [0]), [
      makeJob(1).gpus(2).priority(90),
      makeJob(2).gpus(2),
      makeJob(3).gpus(16),
      makeJob(4).gpus(1).nodes(2).cpus(1),
      makeJob(5).gpus(4),
    ]);
    expect(Object.fromEntries([...result.diagnoses].map(([id, d]) => [id, d.plugin]))).toEqual({
      '2': PLUGIN.queueSort,
      '3': PLUGIN.feasibility,
      '4': PLUGIN.feasibility,
      '5': PLUGIN.gpuFit,
    });
  });

  it('diagnoses every job of a long queue of one shape without placing any after capacity runs out', () => {
    const jobs = Array.from({ length: 50 }, (_, i) => makeJob(i + 1).gpus(2));
    const result = cycle(makeCluster(h100('a'), h100('b')), jobs);
    expect(result.plan.placements).toHaveLength(8);
    expect(result.diagnoses.size).toBe(42);
    expect(new Set([...result.diagnoses.values()].map((d) => d.code))).toEqual(new Set(['QueuedBehindHigherPriority']));
  });

  it('ignores a job id listed twice', () => {
    const job = makeJob(1).gpus(2);
    expect(placedOf(cycle(makeCluster(h100('a')), [job, job]))).toEqual({ '1': 'a:0,1' });
  });

  it('diagnoses a malformed request as NeverFits instead of throwing', () => {
    const result = cycle(makeCluster(h100('a')), [makeJob(1).nodes(0), makeJob(2).gpus(-1)]);
    expect(diagnosedOf(result)).toEqual({
      '1': 'NeverFits: invalid request: numNodes must be a whole number ≥ 1 (got 0)',
      '2': 'NeverFits: invalid request: gpus must be a whole number ≥ 0 (got -1)',
    });
  });
});

function deepFreeze(value: unknown): void {
  if (value === null || typeof value !== 'object' || Object.isFrozen(value)) return;
  Object.freeze(value);
  for (const child of Object.values(value)) deepFreeze(child);
}
