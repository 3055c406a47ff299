import { describe, expect, it } from 'vitest';
import type { NodeInfo } from '@tutti/model';
import { checkFeasibility } from '../src/index.ts';
import { makeJob, makeNode, type JobBuilder, type NodeBuilder } from './builders.ts';

const build = (nodes: NodeBuilder[]): NodeInfo[] => nodes.map((n) => n.build());

const cases: { name: string; nodes: NodeBuilder[]; job: JobBuilder; message?: string }[] = [
  { name: 'fits', nodes: [makeNode('a').gpus(8)], job: makeJob(1).gpus(8) },
  {
    name: 'more GPUs per node than any node has',
    nodes: [makeNode('gpu-box').gpus(8, 'H100'), makeNode('small').gpus(2, 'H100')],
    job: makeJob(1).gpus(16),
    message: 'needs 16 GPUs per node but the largest node (gpu-box, 8 × H100 80 GiB) has 8',
  },
  {
    name: 'a gang with too few big-enough nodes',
    nodes: [makeNode('local').gpus(4, 'FAKE'), makeNode('tiny').gpus(1, 'FAKE')],
    job: makeJob(1).gpus(4).nodes(2),
    message: 'needs 2 nodes with 4 GPUs each; only 1 node has that many (largest: local, 4 × FAKE 80 GiB)',
  },
  {
    name: 'a type the cluster does not have',
    nodes: [makeNode('a').gpus(8, 'H100'), makeNode('b').gpus(4, 'A100'), makeNode('c').gpus(2, 'H100')],
    job: makeJob(1).gpus(1).types('B200'),
    message: 'no GPU of type B200 in the cluster (types: H100, A100; largest node: a, 8 × H100 80 GiB)',
  },
  {
    name: 'none of several types',
    nodes: [makeNode('a').gpus(2, 'T4', 16)],
    job: makeJob(1).gpus(1).types('B200', 'H200'),
    message: 'no GPU of type B200 or H200 in the cluster (types: T4; largest node: a, 2 × T4 16 GiB)',
  },
  {
    name: 'more GPU memory than any GPU has',
    nodes: [makeNode('a').gpus(8, 'H100', 80), makeNode('b').gpus(8, 'A100', 40)],
    job: makeJob(1).gpus(1).gpuMemoryGiB(100),
    message: 'needs GPUs with at least 100 GiB memory; the largest GPU has 80 GiB',
  },
  {
    name: 'more GPU memory than any GPU of the accepted type has',
    nodes: [makeNode('a').gpus(8, 'H100', 80), makeNode('b').gpus(8, 'A100', 40)],
    job: makeJob(1).gpus(1).types('A100').gpuMemoryGiB(80),
    message: 'needs A100 GPUs with at least 80 GiB memory; the largest A100 has 40 GiB',
  },
  {
    name: 'counts only GPUs of one type with enough memory per node',
    nodes: [makeNode('a').gpus(4, 'A100', 40).gpus(4, 'A100', 80)],
    job: makeJob(1).gpus(6).types('A100').gpuMemoryGiB(80),
    message: 'needs 6 A100 GPUs with at least 80 GiB per node but the largest node (a, 4 × A100 40 GiB + 4 × A100 80 GiB) has 4',
  },
  {
    name: 'a GPU job on a cluster without GPUs',
    nodes: [makeNode('cpu')],
    job: makeJob(1).gpus(2),
    message: 'needs 2 GPUs but the cluster has no GPUs',
  },
  {
    name: 'more CPUs per node than any node has',
    nodes: [makeNode('a').cpus(32), makeNode('b').cpus(16)],
    job: makeJob(1).gpus(0).cpus(64),
    message: 'needs 64 CPUs per node but the largest node (a) has 32',
  },
  {
    name: 'more host memory per node than any node has',
    nodes: [makeNode('a').memoryGiB(256)],
    job: makeJob(1).gpus(0).memoryGiB(1024),
    message: 'needs 1 TiB memory per node but the largest node (a) has 256 GiB',
  },
  {
    name: 'GPUs and CPUs exist, but not on the same node',
    nodes: [makeNode('gpu').gpus(8).cpus(16), makeNode('cpu').cpus(128)],
    job: makeJob(1).gpus(8).cpus(64),
    message: 'needs a node with 8 GPUs and 64 CPUs; no node has all of that',
  },
  {
    name: 'a CPU-only gang larger than the cluster',
    nodes: [makeNode('a'), makeNode('b'), makeNode('c').state('down')],
    job: makeJob(1).gpus(0).nodes(3),
    message: 'needs 3 nodes; only 2 are up',
  },
  {
    name: 'down nodes do not count',
    nodes: [makeNode('a').gpus(8).state('down'), makeNode('b').gpus(4)],
    job: makeJob(1).gpus(8),
    message: 'needs 8 GPUs per node but the largest node (b, 4 × H100 80 GiB) has 4',
  },
  { name: 'draining nodes count', nodes: [makeNode('a').gpus(8).state('draining')], job: makeJob(1).gpus(8) },
  { name: 'no node is up', nodes: [makeNode('a').state('down')], job: makeJob(1).gpus(0), message: 'no node is up (1 node down)' },
  { name: 'an empty cluster', nodes: [], job: makeJob(1).gpus(0), message: 'the cluster has no nodes' },
  { name: 'a mixed-type gang is feasible', nodes: [makeNode('a').gpus(4, 'A100'), makeNode('b').gpus(4, 'H100')], job: makeJob(1).gpus(4).nodes(2).types('H100', 'A100') },
  {
    name: 'a malformed request',
    nodes: [makeNode('a').gpus(1)],
    job: makeJob(1).gpus(1.5),
    message: 'invalid request: gpus must be a whole number ≥ 0 (got 1.5)',
  },
];

describe('checkFeasibility', () => {
  it.each(cases)('$name', ({ nodes, job, message }) => {
    const result = checkFeasibility(build(nodes), job.spec());
    expect(result).toEqual(message === undefined ? { ok: true } : { ok: false, code: 'NeverFits', message });
  });
});

describe('GPUs that work tutti does not run holds now (another user\'s Slurm job)', () => {
  // A 4-GPU node whose GPUs 1-3 another user's job holds: tutti may place on GPU 0 only, for now.
  const busy = (): NodeInfo => {
    const node = makeNode('n2').gpus(4, 'H100').build();
    return { ...node, gpus: node.gpus.slice(0, 1), gpusHeldElsewhere: node.gpus.slice(1) };
  };

  it('count as what the node has: a job that needs them waits rather than being refused as one that never fits', () => {
    expect(checkFeasibility([busy()], makeJob(1).gpus(4).build().spec)).toEqual({ ok: true });
  });

  it('do not make a node larger than it is', () => {
    expect(checkFeasibility([busy()], makeJob(1).gpus(5).build().spec)).toEqual({
      ok: false, code: 'NeverFits', message: 'needs 5 GPUs per node but the largest node (n2, 4 × H100 80 GiB) has 4',
    });
  });
});
