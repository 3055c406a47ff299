import { describe, expect, it } from 'vitest';
import {
  FRAMEWORK_DEFAULT_VARIABLES, LAUNCHER_VARIABLES, SANE_PATH, TUTTI_RANK_VARIABLES, baseRankEnvironment, computeRankEnvironment,
  type RankEnvironmentInput, type RankLaunch,
} from '@tutti/backends';

/** Node-major ranks, like computeTasksForPlacement: `perNode` ranks on each of `nodes` nodes. */
function makeRanks(nodes: string[], perNode: number, gpusOf: (node: number) => number[]): RankLaunch[] {
  return nodes.flatMap((node, nodeRank) =>
    Array.from({ length: perNode }, (_, localRank) => ({ rank: nodeRank * perNode + localRank, localRank, nodeRank, node, gpus: gpusOf(nodeRank) })));
}

const common = {
  jobId: '42', jobName: 'train', masterAddr: '10.0.0.1', masterPort: 29500, coordinatorPort: 29501,
  logPath: '/data/jobs/42/rank-3.log', errorFile: '/data/jobs/42/rank-3.error.json', base: { PATH: SANE_PATH, HOME: '/home/u' }, cpus: 16,
} satisfies Partial<RankEnvironmentInput>;

describe('computeRankEnvironment', () => {
  const ranks = makeRanks(['a', 'b'], 2, (n) => (n === 0 ? [2, 3] : [0, 1]));

  it('gives a rank of a 2-node × 2-GPU job what torchrun would, DeepSpeed\'s names, JAX\'s, and tutti\'s own', () => {
    const env = computeRankEnvironment({ ...common, ranks, rank: ranks[3]!, jobEnv: {}, attempt: 3, restarts: { count: 1, max: 3 }, preemptions: 1 });
    expect(env).toEqual({
      PATH: SANE_PATH, HOME: '/home/u',
      OMP_NUM_THREADS: '8', TORCH_NCCL_ASYNC_ERROR_HANDLING: '1', NCCL_ASYNC_ERROR_HANDLING: '1',
      RANK: '3', LOCAL_RANK: '1', WORLD_SIZE: '4', LOCAL_WORLD_SIZE: '2', NODE_RANK: '1', GROUP_RANK: '1',
      GROUP_WORLD_SIZE: '2', ROLE_RANK: '3', ROLE_WORLD_SIZE: '4', ROLE_NAME: 'default',
      MASTER_ADDR: '10.0.0.1', MASTER_PORT: '29500',
      LOCAL_SIZE: '2', CROSS_RANK: '1', CROSS_SIZE: '2',
      CUDA_VISIBLE_DEVICES: '0,1', CUDA_DEVICE_ORDER: 'PCI_BUS_ID',
      TORCHELASTIC_RESTART_COUNT: '1', TORCHELASTIC_MAX_RESTARTS: '3', TORCHELASTIC_RUN_ID: '42',
      TORCHELASTIC_ERROR_FILE: '/data/jobs/42/rank-3.error.json',
      JAX_COORDINATOR_ADDRESS: '10.0.0.1:29501', JAX_NUM_PROCESSES: '4', JAX_PROCESS_ID: '3', JAX_LOCAL_DEVICE_IDS: '1',
      TUTTI_JOB_ID: '42', TUTTI_JOB_NAME: 'train', TUTTI_RANK_LOG: '/data/jobs/42/rank-3.log', TUTTI_NODE: 'b',
      TUTTI_ATTEMPT: '3', TUTTI_LAUNCHER: 'per-gpu', TUTTI_RESTARTS: '1', TUTTI_MAX_RESTARTS: '3', TUTTI_PREEMPTIONS: '1',
    });
    expect(Object.keys(env).sort()).toEqual(
      ['PATH', 'HOME', 'JAX_LOCAL_DEVICE_IDS', ...FRAMEWORK_DEFAULT_VARIABLES, ...LAUNCHER_VARIABLES['per-gpu'], ...TUTTI_RANK_VARIABLES].sort());
  });

  it.each([
    ['rank 0', 0, { RANK: '0', LOCAL_RANK: '0', NODE_RANK: '0', CUDA_VISIBLE_DEVICES: '2,3', JAX_LOCAL_DEVICE_IDS: '0' }],
    ['rank 1', 1, { RANK: '1', LOCAL_RANK: '1', NODE_RANK: '0', CUDA_VISIBLE_DEVICES: '2,3', JAX_LOCAL_DEVICE_IDS: '1' }],
    ['rank 2', 2, { RANK: '2', LOCAL_RANK: '0', NODE_RANK: '1', CUDA_VISIBLE_DEVICES: '0,1', JAX_LOCAL_DEVICE_IDS: '0' }],
  ])('numbers %s node-major and shows it its node\'s GPUs', (_name, index, expected) => {
    expect(computeRankEnvironment({ ...common, ranks, rank: ranks[index]!, jobEnv: {} })).toMatchObject(expected);
  });

  it('sets CUDA_VISIBLE_DEVICES to empty for a CPU-only rank, so it cannot see every GPU, and gives JAX no device ids', () => {
    const cpu = makeRanks(['a'], 1, () => []);
    const env = computeRankEnvironment({ ...common, ranks: cpu, rank: cpu[0]!, jobEnv: {} });
    expect(env).toMatchObject({ CUDA_VISIBLE_DEVICES: '', WORLD_SIZE: '1', LOCAL_WORLD_SIZE: '1', OMP_NUM_THREADS: '16' });
    expect('JAX_LOCAL_DEVICE_IDS' in env).toBe(false);
  });

  it('layers framework defaults < base < job env < python_env < runtime env < tutti\'s variables', () => {
    const env = computeRankEnvironment({
      ...common, ranks, rank: ranks[0]!,
      base: { PATH: '/usr/bin', HOME: '/home/u', FOO: 'base', OMP_NUM_THREADS: '3' },
      jobEnv: { FOO: 'job', RANK: '99', CUDA_VISIBLE_DEVICES: '0,1,2,3,4,5,6,7', NCCL_DEBUG: 'INFO', NCCL_ASYNC_ERROR_HANDLING: '0', TUTTI_CHECKPOINT_DIR: '/mine' },
      pythonEnv: { dir: '/opt/venvs/train', kind: 'venv' },
      runtimeEnv: { TUTTI_CHECKPOINT_DIR: '/data/checkpoints/42' },
    });
    expect(env).toMatchObject({
      PATH: '/opt/venvs/train/bin:/usr/bin', VIRTUAL_ENV: '/opt/venvs/train', HOME: '/home/u', FOO: 'job', RANK: '0', CUDA_VISIBLE_DEVICES: '2,3',
      NCCL_DEBUG: 'INFO', NCCL_ASYNC_ERROR_HANDLING: '0', TORCH_NCCL_ASYNC_ERROR_HANDLING: '1', OMP_NUM_THREADS: '3', TUTTI_CHECKPOINT_DIR: '/data/checkpoints/42',
    });
  });

  it('names a conda python_env by CONDA_PREFIX, and puts tutti\'s Python helpers before the job\'s PYTHONPATH', () => {
    const env = computeRankEnvironment({
      ...common, ranks, rank: ranks[0]!, jobEnv: { PYTHONPATH: '/work/src' },
      pythonEnv: { dir: '/opt/conda/envs/jax', kind: 'conda' }, pythonHelpersDir: '/opt/tutti/python',
    });
    expect(env).toMatchObject({ PATH: `/opt/conda/envs/jax/bin:${SANE_PATH}`, CONDA_PREFIX: '/opt/conda/envs/jax', PYTHONPATH: '/opt/tutti/python:/work/src' });
    expect('VIRTUAL_ENV' in env).toBe(false);
  });

  it('counts uneven nodes separately', () => {
    const uneven: RankLaunch[] = [
      { rank: 0, localRank: 0, nodeRank: 0, node: 'a', gpus: [0, 1, 2] },
      { rank: 1, localRank: 1, nodeRank: 0, node: 'a', gpus: [0, 1, 2] },
      { rank: 2, localRank: 2, nodeRank: 0, node: 'a', gpus: [0, 1, 2] },
      { rank: 3, localRank: 0, nodeRank: 1, node: 'b', gpus: [5] },
    ];
    expect(computeRankEnvironment({ ...common, ranks: uneven, rank: uneven[3]!, jobEnv: {} })).toMatchObject({ WORLD_SIZE: '4', LOCAL_WORLD_SIZE: '1', GROUP_WORLD_SIZE: '2', OMP_NUM_THREADS: '16' });
    expect(computeRankEnvironment({ ...common, ranks: uneven, rank: uneven[1]!, jobEnv: {} })).toMatchObject({ OMP_NUM_THREADS: '5' });
  });

  it('gives a per-node rank torchrun\'s launcher settings (PET_*), its node\'s GPUs, and no worker variables', () => {
    const nodes = makeRanks(['a', 'b'], 1, () => [0, 1, 2, 3]);
    const env = computeRankEnvironment({ ...common, ranks: nodes, rank: nodes[1]!, launcher: 'per-node', jobEnv: {}, restarts: { count: 2, max: 5 } });
    expect(env).toMatchObject({
      NODE_RANK: '1', MASTER_ADDR: '10.0.0.1', MASTER_PORT: '29500', CUDA_VISIBLE_DEVICES: '0,1,2,3', OMP_NUM_THREADS: '4',
      PET_NNODES: '2', PET_NODE_RANK: '1', PET_NPROC_PER_NODE: '4', PET_MASTER_ADDR: '10.0.0.1', PET_MASTER_PORT: '29500',
      PET_MAX_RESTARTS: '0', PET_RDZV_BACKEND: 'static', PET_RDZV_ID: '42',
      JAX_NUM_PROCESSES: '2', JAX_PROCESS_ID: '1', JAX_LOCAL_DEVICE_IDS: '0,1,2,3',
      TUTTI_LAUNCHER: 'per-node', TUTTI_RESTARTS: '2', TUTTI_MAX_RESTARTS: '5',
    });
    // A process that sees RANK or TORCHELASTIC_RUN_ID takes itself for a worker torchrun started.
    for (const name of ['RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE', 'TORCHELASTIC_RUN_ID', 'TORCHELASTIC_RESTART_COUNT']) expect(name in env, name).toBe(false);
  });
});

describe('baseRankEnvironment', () => {
  it('keeps the allow-list and what the operator passes, never the rest of the server\'s environment', () => {
    const server = {
      PATH: '/root/.pyenv/shims:/usr/bin', HOME: '/root', USER: 'root', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', TMPDIR: '/scratch',
      npm_config_cache: '/root/.npm', npm_lifecycle_event: 'start', SLURM_JOB_ID: '7', OMPI_COMM_WORLD_RANK: '0', AWS_SECRET_ACCESS_KEY: 'x',
      NCCL_SOCKET_IFNAME: 'ib0', HF_HOME: '/models', HF_TOKEN: 't', GONE: undefined,
    };
    expect(baseRankEnvironment(server)).toEqual({ PATH: SANE_PATH, HOME: '/root', USER: 'root', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', TMPDIR: '/scratch' });
    expect(baseRankEnvironment(server, ['NCCL_SOCKET_IFNAME', 'HF_*', 'PATH'])).toEqual({
      PATH: '/root/.pyenv/shims:/usr/bin', HOME: '/root', USER: 'root', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', TMPDIR: '/scratch',
      NCCL_SOCKET_IFNAME: 'ib0', HF_HOME: '/models', HF_TOKEN: 't',
    });
  });
});
