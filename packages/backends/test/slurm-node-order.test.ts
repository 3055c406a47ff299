/**
 * Rank 0 on the node Slurm lists first (slurm-node-order.ts): the renumbering itself, pure, and on the real dev
 * cluster (scripts/slurm-dev-cluster.sh, partition `two`: n2, n3; needs root, as CI has) what it is for: a step in
 * arbitrary distribution runs task 0 on the host file's first node, while SLURM_STEP_NODELIST lists the nodes sorted,
 * and JAX's own Slurm detection takes that list's first host for process 0's.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RankLaunch } from '../src/execution-backend.ts';
import { expandHostlist } from '../src/slurm/slurm-hostlist.ts';
import { compareSlurmHostNames, renumberForSlurmNodeOrder, slurmNodeListOrder, type SlurmNodeOrderRenumbering } from '../src/slurm/slurm-node-order.ts';
import { slurmJobLayout } from '../src/slurm/slurm-submission.ts';
import { useSlurmDevCluster } from './slurm-cluster.ts';

const run = promisify(execFile);

/** 2 nodes × 2 ranks, node rank 0 on n3: the reverse of Slurm's order (as in slurm-submission.test.ts). */
const GANG: RankLaunch[] = [
  { rank: 0, localRank: 0, nodeRank: 0, node: 'n3', gpus: [2, 3] },
  { rank: 1, localRank: 1, nodeRank: 0, node: 'n3', gpus: [2, 3] },
  { rank: 2, localRank: 0, nodeRank: 1, node: 'n2', gpus: [0, 1] },
  { rank: 3, localRank: 1, nodeRank: 1, node: 'n2', gpus: [0, 1] },
];

function renumbered(ranks: readonly RankLaunch[], order = slurmNodeListOrder(ranks.map((r) => r.node))): SlurmNodeOrderRenumbering {
  const result = renumberForSlurmNodeOrder(ranks, order);
  if ('error' in result) throw new Error(result.error);
  return result;
}

describe('slurmNodeListOrder', () => {
  it('sorts host names as Slurm\'s node lists do: by prefix, then by number, not as text', () => {
    expect(slurmNodeListOrder(['n10', 'n2', 'n1', 'n2'])).toEqual(['n1', 'n2', 'n10']);
    expect(slurmNodeListOrder(['gpu-b1', 'gpu-a9', 'gpu-a10'])).toEqual(['gpu-a9', 'gpu-a10', 'gpu-b1']);
    expect(slurmNodeListOrder(['login1', 'login'])).toEqual(['login', 'login1']);
    expect(slurmNodeListOrder(['rack10-n1', 'rack1-n2'])).toEqual(['rack1-n2', 'rack10-n1']);
    expect(compareSlurmHostNames('n1', 'n01')).toBeLessThan(0);
  });
});

describe('renumberForSlurmNodeOrder', () => {
  it('makes the node Slurm lists first node rank 0, with rank 0 on it, keeping every rank\'s node and GPUs', () => {
    const result = renumbered(GANG);
    expect(result.ranks).toEqual([
      { rank: 0, localRank: 0, nodeRank: 0, node: 'n2', gpus: [0, 1] },
      { rank: 1, localRank: 1, nodeRank: 0, node: 'n2', gpus: [0, 1] },
      { rank: 2, localRank: 0, nodeRank: 1, node: 'n3', gpus: [2, 3] },
      { rank: 3, localRank: 1, nodeRank: 1, node: 'n3', gpus: [2, 3] },
    ]);
    expect([...result.rankOf.entries()].sort(([a], [b]) => a - b)).toEqual([[0, 2], [1, 3], [2, 0], [3, 1]]);
    expect(result.changed).toBe(true);
    // What the backend writes from it: the host file's first line is now Slurm's first node.
    const layout = slurmJobLayout(result.ranks);
    expect('error' in layout ? layout.error : layout.nodeOfRank).toEqual(['n2', 'n2', 'n3', 'n3']);
  });

  it('leaves a launch whose rank 0 already runs on Slurm\'s first node as it was placed', () => {
    const placed = renumbered(GANG).ranks;
    const again = renumbered(placed);
    expect(again.changed).toBe(false);
    expect(again.ranks).toEqual(placed);
    expect([...again.rankOf.entries()]).toEqual([[0, 0], [1, 1], [2, 2], [3, 3]]);
  });

  it('moves only that node to the front: the others keep tutti\'s order, however many ranks each node runs', () => {
    const ranks: RankLaunch[] = [
      { rank: 0, localRank: 0, nodeRank: 0, node: 'n6', gpus: [0] },
      { rank: 1, localRank: 1, nodeRank: 0, node: 'n6', gpus: [1] },
      { rank: 2, localRank: 0, nodeRank: 1, node: 'n5', gpus: [3] },
      { rank: 3, localRank: 0, nodeRank: 2, node: 'n4', gpus: [0] },
    ];
    expect(renumbered(ranks).ranks).toEqual([
      { rank: 0, localRank: 0, nodeRank: 0, node: 'n4', gpus: [0] },
      { rank: 1, localRank: 0, nodeRank: 1, node: 'n6', gpus: [0] },
      { rank: 2, localRank: 1, nodeRank: 1, node: 'n6', gpus: [1] },
      { rank: 3, localRank: 0, nodeRank: 2, node: 'n5', gpus: [3] },
    ]);
  });

  it('with allNodes, puts every node in Slurm\'s order, so that NODE_RANK is SLURM_NODEID', () => {
    const ranks: RankLaunch[] = [
      { rank: 0, localRank: 0, nodeRank: 0, node: 'n6', gpus: [0] },
      { rank: 1, localRank: 0, nodeRank: 1, node: 'n5', gpus: [3] },
      { rank: 2, localRank: 0, nodeRank: 2, node: 'n4', gpus: [0] },
    ];
    const result = renumberForSlurmNodeOrder(ranks, slurmNodeListOrder(ranks.map((r) => r.node)), { allNodes: true });
    expect('error' in result ? result.error : result.ranks.map((r) => `${r.rank}:${r.node}:${r.nodeRank}`)).toEqual(['0:n4:0', '1:n5:1', '2:n6:2']);
  });

  it('takes Slurm\'s order as given (a node list Slurm printed), and leaves a one-node launch alone', () => {
    expect(renumbered(GANG, expandHostlist('n[2-3]')).ranks[0]?.node).toBe('n2');
    const single = renumbered(GANG.filter((r) => r.node === 'n3'));
    expect(single.changed).toBe(false);
    expect(renumberForSlurmNodeOrder([], [])).toEqual({ ranks: [], rankOf: new Map(), changed: false });
  });

  it('refuses, naming it, a node Slurm\'s order lacks, a node under two node ranks and a rank given twice', () => {
    expect(renumberForSlurmNodeOrder(GANG, ['n2'])).toEqual({ error: 'node n3 of the launch is not in Slurm\'s node order (n2)' });
    const split = [...GANG.slice(0, 3), { ...GANG[3]!, node: 'n3' }];
    expect(renumberForSlurmNodeOrder(split, ['n2', 'n3'])).toEqual({ error: 'node n3 has ranks of node ranks 0 and 1' });
    expect(renumberForSlurmNodeOrder([GANG[0]!, GANG[0]!], ['n3'])).toEqual({ error: 'rank 0 is given twice' });
  });
});

describe('on the Slurm dev cluster: task 0 and the first node of SLURM_STEP_NODELIST', () => {
  let slurmEnv: Record<string, string>;
  let dir: string;
  beforeAll(async () => {
    slurmEnv = await useSlurmDevCluster();
    dir = await mkdtemp(path.join(tmpdir(), 'tutti-slurm-node-order-'));
  }, 300_000);
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Runs one step as the Slurm backend pins ranks (arbitrary distribution, a host file line per rank); per task: its node, and the first host of its step's node list. */
  async function stepOf(ranks: readonly RankLaunch[]): Promise<Array<{ task: number; node: string; firstListed: string }>> {
    const layout = slurmJobLayout(ranks);
    if ('error' in layout) throw new Error(layout.error);
    const hostFile = path.join(dir, `hostfile-${layout.nodeOfRank.join('-')}`);
    await writeFile(hostFile, `${layout.nodeOfRank.join('\n')}\n`);
    const { stdout } = await run('srun', [
      '--partition=two', `--nodes=${layout.nodes.length}`, '--distribution=arbitrary', `--ntasks=${layout.nodeOfRank.length}`, '--time=1', '--input=none',
      '/bin/sh', '-c', 'echo "$SLURM_PROCID $SLURMD_NODENAME $SLURM_STEP_NODELIST"',
    ], { env: { ...process.env, ...slurmEnv, SLURM_HOSTFILE: hostFile }, timeout: 120_000 });
    return stdout.trim().split('\n').map((line) => {
      const [task, node, list] = line.split(' ');
      // JAX's SlurmCluster: the coordinator is the first host of SLURM_STEP_NODELIST.
      return { task: Number(task), node: node as string, firstListed: expandHostlist(list as string)[0] as string };
    }).sort((a, b) => a.task - b.task);
  }

  it('as tutti pins ranks today, task 0 runs on node rank 0\'s node, which Slurm need not list first', async () => {
    const tasks = await stepOf(GANG);
    expect(tasks.map((t) => t.node)).toEqual(['n3', 'n3', 'n2', 'n2']);
    expect(tasks[0]?.firstListed).toBe('n2');
  }, 120_000);

  it('renumbered, task 0 runs on the node Slurm lists first, where JAX\'s own Slurm detection looks for process 0', async () => {
    const tasks = await stepOf(renumbered(GANG).ranks);
    expect(tasks.map((t) => t.node)).toEqual(['n2', 'n2', 'n3', 'n3']);
    expect(tasks[0]?.firstListed).toBe('n2');
    expect(tasks.every((t) => t.firstListed === tasks[0]?.node)).toBe(true);
  }, 120_000);
});
