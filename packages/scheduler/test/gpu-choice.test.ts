import { describe, expect, it } from 'vitest';
import { chooseGpus, countLinks } from '../src/score/gpu-choice.ts';
import { computeSnapshotIndex } from '../src/cycle/snapshot-index.ts';
import { makeCluster, makeNode, type NodeBuilder } from './builders.ts';

/** Runs chooseGpus on the free GPUs of a one-node cluster, with `busy` GPUs allocated. */
function choose(node: NodeBuilder, count: number, busy: number[] = []): number[] {
  const index = computeSnapshotIndex(makeCluster(node).allocate('r', node.build().name, busy).build());
  const entry = index.nodes[0];
  if (!entry) throw new Error('test bug');
  const free = [...entry.initialFreeByType.values()].flat().sort((a, b) => a.index - b.index);
  return chooseGpus(free, count, entry.nvlink);
}

describe('chooseGpus', () => {
  it.each([
    { name: 'no NVLink: lowest indices', node: makeNode('n').gpus(8), count: 3, busy: [1], want: [0, 2, 3] },
    { name: 'all free GPUs when the count equals them', node: makeNode('n').gpus(4).nvlink([0, 1]), count: 3, busy: [2], want: [0, 1, 3] },
    { name: 'one GPU: the lowest index', node: makeNode('n').gpus(4).nvlink([2, 3]), count: 1, busy: [], want: [0] },
    { name: 'a linked pair over two lower unlinked GPUs', node: makeNode('n').gpus(4).nvlink([0, 1], [2, 3]), count: 2, busy: [1], want: [2, 3] },
    { name: 'the island that holds the whole set', node: makeNode('n').gpus(8).nvlink([0, 1, 2, 3], [4, 5, 6, 7]), count: 4, busy: [3], want: [4, 5, 6, 7] },
    { name: 'the lower of two equal islands', node: makeNode('n').gpus(8).nvlink([0, 1, 2, 3], [4, 5, 6, 7]), count: 2, busy: [], want: [0, 1] },
    { name: 'a fully connected node: lowest indices', node: makeNode('n').gpus(8).nvlinkAll(), count: 3, busy: [0, 2], want: [1, 3, 4] },
    { name: 'a ring: three consecutive GPUs (5, 0 and 4 wrap around)', node: makeNode('n').gpus(6).nvlink([0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 0]), count: 3, busy: [1], want: [0, 4, 5] },
  ])('$name', ({ node, count, busy, want }) => {
    expect(choose(node, count, busy)).toEqual(want);
  });

  it('treats a link listed on one end only as a link', () => {
    const node = makeNode('n').gpus(4);
    const built = node.build();
    const gpu3 = built.gpus[3];
    if (gpu3) gpu3.nvlinkPeers = [2];
    const index = computeSnapshotIndex({ version: 1, nodes: [built], allocations: [] });
    expect(countLinks([2, 3], index.nodes[0]?.nvlink ?? new Map())).toBe(1);
  });
});
