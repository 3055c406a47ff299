import { describe, expect, it } from 'vitest';
import { RANK_ENVIRONMENT_VARIABLES, computeRankEnvironment, type RankLaunch } from '@tutti/backends';

/** Node-major ranks, like computeTasksForPlacement: `perNode` ranks on each of `nodes` nodes. */
function makeRanks(nodes: string[], perNode: number, gpusOf: (node: number) => number[]): RankLaunch[] {
  return nodes.flatMap((node, nodeRank) =>
    Array.from({ length: perNode }, (_, localRank) => ({ rank: nodeRank * perNode + localRank, localRank, nodeRank, node, gpus: gpusOf(nodeRank) })));
}

const base = { jobId: '42', jobName: 'train', masterAddr: '10.0.0.1', masterPort: 29500, logPath: '/data/jobs/42/rank-3.log' };

describe('computeRankEnvironment', () => {
  const ranks = makeRanks(['a', 'b'], 2, (n) => (n === 0 ? [2, 3] : [0, 1]));

  it('gives a rank of a 2-node × 2-GPU job what torchrun would', () => {
    const env = computeRankEnvironment({ ...base, ranks, rank: ranks[3]!, jobEnv: {} });
    expect(env).toEqual({
      RANK: '3', LOCAL_RANK: '1', WORLD_SIZE: '4', LOCAL_WORLD_SIZE: '2', NODE_RANK: '1', GROUP_RANK: '1',
      GROUP_WORLD_SIZE: '2', ROLE_RANK: '3', ROLE_WORLD_SIZE: '4', ROLE_NAME: 'default',
      MASTER_ADDR: '10.0.0.1', MASTER_PORT: '29500',
      CUDA_VISIBLE_DEVICES: '0,1', CUDA_DEVICE_ORDER: 'PCI_BUS_ID',
      TORCHELASTIC_RESTART_COUNT: '0', TORCHELASTIC_MAX_RESTARTS: '0', TORCHELASTIC_RUN_ID: '42',
      TUTTI_JOB_ID: '42', TUTTI_JOB_NAME: 'train', TUTTI_RANK_LOG: '/data/jobs/42/rank-3.log', TUTTI_NODE: 'b',
      TUTTI_ATTEMPT: '1',
    });
    expect(Object.keys(env).sort()).toEqual([...RANK_ENVIRONMENT_VARIABLES].sort());
  });

  it.each([
    ['rank 0', 0, { RANK: '0', LOCAL_RANK: '0', NODE_RANK: '0', CUDA_VISIBLE_DEVICES: '2,3' }],
    ['rank 1', 1, { RANK: '1', LOCAL_RANK: '1', NODE_RANK: '0', CUDA_VISIBLE_DEVICES: '2,3' }],
    ['rank 2', 2, { RANK: '2', LOCAL_RANK: '0', NODE_RANK: '1', CUDA_VISIBLE_DEVICES: '0,1' }],
  ])('numbers %s node-major and shows it its node\'s GPUs', (_name, index, expected) => {
    expect(computeRankEnvironment({ ...base, ranks, rank: ranks[index]!, jobEnv: {} })).toMatchObject(expected);
  });

  it('sets CUDA_VISIBLE_DEVICES to empty for a CPU-only rank, so it cannot see every GPU', () => {
    const cpu = makeRanks(['a'], 1, () => []);
    expect(computeRankEnvironment({ ...base, ranks: cpu, rank: cpu[0]!, jobEnv: {} })).toMatchObject({ CUDA_VISIBLE_DEVICES: '', WORLD_SIZE: '1', LOCAL_WORLD_SIZE: '1' });
  });

  it('layers inherited env < job env < tutti\'s variables and drops undefined inherited values', () => {
    const env = computeRankEnvironment({
      ...base, ranks, rank: ranks[0]!,
      inherited: { PATH: '/usr/bin', HOME: '/home/u', FOO: 'inherited', GONE: undefined, RANK: '77' },
      jobEnv: { FOO: 'job', RANK: '99', CUDA_VISIBLE_DEVICES: '0,1,2,3,4,5,6,7', NCCL_DEBUG: 'INFO' },
    });
    expect(env).toMatchObject({ PATH: '/usr/bin', HOME: '/home/u', FOO: 'job', RANK: '0', CUDA_VISIBLE_DEVICES: '2,3', NCCL_DEBUG: 'INFO' });
    expect('GONE' in env).toBe(false);
  });

  it('counts uneven nodes separately', () => {
    const uneven: RankLaunch[] = [
      { rank: 0, localRank: 0, nodeRank: 0, node: 'a', gpus: [0, 1, 2] },
      { rank: 1, localRank: 1, nodeRank: 0, node: 'a', gpus: [0, 1, 2] },
      { rank: 2, localRank: 2, nodeRank: 0, node: 'a', gpus: [0, 1, 2] },
      { rank: 3, localRank: 0, nodeRank: 1, node: 'b', gpus: [5] },
    ];
    expect(computeRankEnvironment({ ...base, ranks: uneven, rank: uneven[3]!, jobEnv: {} })).toMatchObject({ WORLD_SIZE: '4', LOCAL_WORLD_SIZE: '1', GROUP_WORLD_SIZE: '2' });
  });
});
