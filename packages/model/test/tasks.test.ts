import { describe, expect, it } from 'vitest';
import { computeTasksForPlacement, type JobSpec } from '@tutti/model';

const spec = (gpus: number, numNodes = 1): JobSpec => ({
  name: 'x', team: 'default', priority: 50, numNodes, env: {},
  resources: { gpus: { count: gpus, types: [] } }, run: { kind: 'shell', command: 'true' },
});

describe('computeTasksForPlacement', () => {
  it('gives one rank per GPU, node-major, each seeing the node\'s whole GPU list', () => {
    const tasks = computeTasksForPlacement(spec(2, 2), { jobId: '7', nodes: [{ node: 'a', gpuIndices: [2, 3] }, { node: 'b', gpuIndices: [0, 1] }] });
    expect(tasks.map((t) => [t.rank, t.localRank, t.nodeRank, t.node, t.gpus.join(',')])).toEqual([
      [0, 0, 0, 'a', '2,3'], [1, 1, 0, 'a', '2,3'], [2, 0, 1, 'b', '0,1'], [3, 1, 1, 'b', '0,1'],
    ]);
  });
  it('runs a CPU-only job as one process per node', () => {
    expect(computeTasksForPlacement(spec(0), { jobId: '1', nodes: [{ node: 'a', gpuIndices: [] }] })).toHaveLength(1);
  });
});
