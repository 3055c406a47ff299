/**
 * The environment of one rank: what torchrun (or, for a per-node rank, what torchrun's own launcher settings) would
 * give it, plus tutti's own variables, over a clean base. Pure, shared by every backend that starts processes (local,
 * Slurm: its rank shim computes the same values from Slurm's variables, and a test compares them).
 *
 * Layers, each over the one before:
 *   1. framework defaults: OMP_NUM_THREADS (the CPUs ÷ the node's ranks), TORCH_NCCL_ASYNC_ERROR_HANDLING=1 and
 *      NCCL_ASYNC_ERROR_HANDLING=1 (a dead NCCL peer fails the survivors' collectives instead of blocking them),
 *      as torchrun sets them;
 *   2. the base: a few variables of the server's own environment named by an allow-list (locale, HOME, USER, TMPDIR,
 *      and what the operator passes with `tutti up --pass-env`) and a sane PATH — never the rest of it (its PATH,
 *      npm_*, SLURM_*, OMPI_*, secrets);
 *   3. the job's `env` (where the CLI puts the submitter's PATH and active virtualenv);
 *   4. the job's `python_env`: its `bin` first on PATH, VIRTUAL_ENV (or CONDA_PREFIX) naming it;
 *   5. the control plane's per-job variables (TUTTI_CHECKPOINT_DIR, TUTTI_JOB_TOKEN, …);
 *   6. the per-rank variables of the job's launcher (see `LAUNCHER_VARIABLES`).
 */
import type { Launcher } from '@tutti/model';
import type { RankLaunch } from './execution-backend.ts';

/** PATH when neither the job nor the operator gives one: the system's programs, as a login shell has them. */
export const SANE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * What ranks take of the server's own environment, by name (a trailing `*` matches a prefix). Everything else is
 * left out: ranks run the job's programs, not the server's.
 */
export const RANK_BASE_ALLOW_LIST: readonly string[] = ['HOME', 'USER', 'LOGNAME', 'SHELL', 'LANG', 'LANGUAGE', 'LC_*', 'TZ', 'TMPDIR'];

/** Whether `name` matches one of `patterns` (exact names, or prefixes ending in `*`). */
export function matchesNamePattern(name: string, patterns: readonly string[]): boolean {
  return patterns.some((pattern) => (pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern));
}

/**
 * The base every rank starts from: the server environment's variables named by `RANK_BASE_ALLOW_LIST` or by
 * `passEnv` (the operator's `--pass-env`: e.g. `NCCL_SOCKET_IFNAME`, `LD_LIBRARY_PATH`, `HF_*`), and PATH = SANE_PATH
 * unless `passEnv` names PATH.
 */
export function baseRankEnvironment(serverEnv: Readonly<Record<string, string | undefined>>, passEnv: readonly string[] = []): Record<string, string> {
  const base: Record<string, string> = { PATH: SANE_PATH };
  for (const [name, value] of Object.entries(serverEnv)) {
    if (value === undefined) continue;
    if (matchesNamePattern(name, RANK_BASE_ALLOW_LIST) || matchesNamePattern(name, passEnv)) base[name] = value;
  }
  return base;
}

/** A `python_env` directory and what kind it is (a conda environment has `conda-meta/`). */
export interface PythonEnvironment {
  dir: string;
  kind: 'venv' | 'conda';
}

export interface RankEnvironmentInput {
  jobId: string;
  jobName: string;
  /** Every rank of the job: world sizes are counted from it. */
  ranks: readonly RankLaunch[];
  /** The rank whose environment this is. */
  rank: RankLaunch;
  /** @default 'per-gpu' */
  launcher?: Launcher;
  /** Address of the node that runs rank 0. */
  masterAddr: string;
  /** A TCP port free on `masterAddr`, the same for every rank of the job: torch's rendezvous (or torchrun's agent store). */
  masterPort: number;
  /** Another port free on `masterAddr`, for JAX's coordinator service (JAX_COORDINATOR_ADDRESS). */
  coordinatorPort: number;
  /** Where the rank's stdout and stderr go. */
  logPath: string;
  /** Where the rank's structured error goes (TORCHELASTIC_ERROR_FILE; see rank-error-file.ts). */
  errorFile: string;
  /** The base (see `baseRankEnvironment`). */
  base: Readonly<Record<string, string>>;
  /** The job's own environment (from its spec). */
  jobEnv: Readonly<Record<string, string>>;
  pythonEnv?: PythonEnvironment;
  /** The control plane's per-job variables: over the job env, under the per-rank ones. */
  runtimeEnv?: Readonly<Record<string, string>>;
  /** The attempt (1, 2, ...). @default 1 */
  attempt?: number;
  /** Restarts counted so far and max_restarts. @default {count: 0, max: 0} */
  restarts?: { count: number; max: number };
  /** Preemptions before this attempt. @default 0 */
  preemptions?: number;
  /** The CPUs the job has on the rank's node: OMP_NUM_THREADS is them ÷ the node's ranks (at least 1). */
  cpus: number;
  /** The directory of tutti's Python helpers (JAX's cluster detection) put first on PYTHONPATH; none when absent. */
  pythonHelpersDir?: string;
}

/**
 * The names tutti sets on a rank, by launcher. Every one of them overrides the job's env and the base.
 * (Listed so that docs and tests can check they are all there.)
 */
const PER_GPU_VARIABLES = [
  'RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE', 'NODE_RANK', 'GROUP_RANK', 'GROUP_WORLD_SIZE',
  'ROLE_RANK', 'ROLE_WORLD_SIZE', 'ROLE_NAME', 'MASTER_ADDR', 'MASTER_PORT',
  'LOCAL_SIZE', 'CROSS_RANK', 'CROSS_SIZE',
  'CUDA_VISIBLE_DEVICES', 'CUDA_DEVICE_ORDER',
  'TORCHELASTIC_RESTART_COUNT', 'TORCHELASTIC_MAX_RESTARTS', 'TORCHELASTIC_RUN_ID', 'TORCHELASTIC_ERROR_FILE',
  'JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID',
] as const;
export const LAUNCHER_VARIABLES: Readonly<Record<Launcher, readonly string[]>> = {
  'per-gpu': PER_GPU_VARIABLES,
  'per-node': [
    'NODE_RANK', 'MASTER_ADDR', 'MASTER_PORT', 'CUDA_VISIBLE_DEVICES', 'CUDA_DEVICE_ORDER', 'TORCHELASTIC_ERROR_FILE',
    'PET_NNODES', 'PET_NODE_RANK', 'PET_NPROC_PER_NODE', 'PET_MASTER_ADDR', 'PET_MASTER_PORT', 'PET_MAX_RESTARTS',
    'PET_RDZV_BACKEND', 'PET_RDZV_ID',
    'JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID',
  ],
  // As per-gpu: the MPI runtime adds its own (OMPI_*, PMIX_*) on top.
  mpi: PER_GPU_VARIABLES,
};

/** tutti's own variables, on every rank whatever its launcher. */
export const TUTTI_RANK_VARIABLES = [
  'TUTTI_JOB_ID', 'TUTTI_JOB_NAME', 'TUTTI_RANK_LOG', 'TUTTI_NODE', 'TUTTI_ATTEMPT', 'TUTTI_LAUNCHER',
  'TUTTI_RESTARTS', 'TUTTI_MAX_RESTARTS', 'TUTTI_PREEMPTIONS',
] as const;

/** Set only when neither the base nor the job sets them. */
export const FRAMEWORK_DEFAULT_VARIABLES = ['OMP_NUM_THREADS', 'TORCH_NCCL_ASYNC_ERROR_HANDLING', 'NCCL_ASYNC_ERROR_HANDLING'] as const;

/**
 * The rank's whole environment (see the layers above).
 *
 * - World sizes count the ranks of the request: WORLD_SIZE all of them, LOCAL_WORLD_SIZE those with the same node
 *   rank, GROUP_WORLD_SIZE the distinct node ranks. LOCAL_SIZE, CROSS_RANK and CROSS_SIZE are DeepSpeed's (and
 *   Horovod's) names for LOCAL_WORLD_SIZE, NODE_RANK and the number of nodes.
 * - CUDA_VISIBLE_DEVICES is the rank's GPU list joined by ',' (every local rank sees the node's whole list, as with
 *   torchrun; the program picks its device by LOCAL_RANK). It is '' for a CPU-only job, so that a process cannot see
 *   every GPU of the machine by accident. CUDA_DEVICE_ORDER=PCI_BUS_ID makes CUDA number devices as nvidia-smi does.
 * - TORCHELASTIC_RESTART_COUNT counts the restarts that max_restarts counts (failures, lost nodes, hangs), as
 *   torchrun's does; a preemption is not a restart: TUTTI_PREEMPTIONS counts those. TORCHELASTIC_MAX_RESTARTS is
 *   max_restarts. TUTTI_ATTEMPT numbers every start.
 * - per-node: one process per node that starts its own workers. torchrun reads its settings from `PET_*` (so
 *   `torchrun train.py` needs no flags): PET_NPROC_PER_NODE is the node's GPUs (1 without), the rendezvous is
 *   static at MASTER_ADDR:MASTER_PORT, and PET_MAX_RESTARTS is 0 because tutti restarts the whole gang, on every
 *   node at once. RANK and LOCAL_RANK are not set (the workers get them from their launcher; a program that sees
 *   them takes itself for a worker), nor TORCHELASTIC_RUN_ID (torch takes it to mean "launched by torchrun").
 * - JAX: JAX_COORDINATOR_ADDRESS is rank 0's node on its own port, JAX_NUM_PROCESSES the ranks, JAX_PROCESS_ID this
 *   rank, JAX_LOCAL_DEVICE_IDS the rank's own GPU among CUDA_VISIBLE_DEVICES (its local rank, when each local rank
 *   has one GPU; all of them for a per-node rank). `pythonHelpersDir` on PYTHONPATH makes `jax.distributed
 *   .initialize()` find them with no arguments.
 */
export function computeRankEnvironment(input: RankEnvironmentInput): Record<string, string> {
  const { rank, ranks } = input;
  const launcher = input.launcher ?? 'per-gpu';
  const worldSize = ranks.length;
  const localWorldSize = ranks.filter((r) => r.nodeRank === rank.nodeRank).length;
  const groupWorldSize = new Set(ranks.map((r) => r.nodeRank)).size;
  const attempt = input.attempt ?? 1;
  const restarts = input.restarts ?? { count: 0, max: 0 };

  const env: Record<string, string> = {
    OMP_NUM_THREADS: String(Math.max(1, Math.floor(input.cpus / (launcher === 'per-node' ? Math.max(1, rank.gpus.length) : localWorldSize)))),
    TORCH_NCCL_ASYNC_ERROR_HANDLING: '1',
    NCCL_ASYNC_ERROR_HANDLING: '1',
  };
  Object.assign(env, input.base, input.jobEnv);
  if (input.pythonEnv) {
    env.PATH = `${input.pythonEnv.dir}/bin:${env.PATH ?? SANE_PATH}`;
    env[input.pythonEnv.kind === 'conda' ? 'CONDA_PREFIX' : 'VIRTUAL_ENV'] = input.pythonEnv.dir;
  }
  if (input.pythonHelpersDir !== undefined) {
    env.PYTHONPATH = env.PYTHONPATH ? `${input.pythonHelpersDir}:${env.PYTHONPATH}` : input.pythonHelpersDir;
  }
  Object.assign(env, input.runtimeEnv ?? {});

  const localDeviceIds = jaxLocalDeviceIds(rank, launcher, localWorldSize);
  const jax = {
    JAX_COORDINATOR_ADDRESS: `${input.masterAddr}:${input.coordinatorPort}`,
    JAX_NUM_PROCESSES: String(worldSize),
    JAX_PROCESS_ID: String(rank.rank),
    ...(localDeviceIds !== undefined ? { JAX_LOCAL_DEVICE_IDS: localDeviceIds } : {}),
  };
  const devices = { CUDA_VISIBLE_DEVICES: rank.gpus.join(','), CUDA_DEVICE_ORDER: 'PCI_BUS_ID' };
  if (launcher === 'per-node') {
    Object.assign(env, {
      NODE_RANK: String(rank.nodeRank),
      MASTER_ADDR: input.masterAddr,
      MASTER_PORT: String(input.masterPort),
      ...devices,
      TORCHELASTIC_ERROR_FILE: input.errorFile,
      PET_NNODES: String(groupWorldSize),
      PET_NODE_RANK: String(rank.nodeRank),
      PET_NPROC_PER_NODE: String(Math.max(1, rank.gpus.length)),
      PET_MASTER_ADDR: input.masterAddr,
      PET_MASTER_PORT: String(input.masterPort),
      PET_MAX_RESTARTS: '0',
      PET_RDZV_BACKEND: 'static',
      PET_RDZV_ID: input.jobId,
      ...jax,
    });
  } else {
    Object.assign(env, {
      RANK: String(rank.rank),
      LOCAL_RANK: String(rank.localRank),
      WORLD_SIZE: String(worldSize),
      LOCAL_WORLD_SIZE: String(localWorldSize),
      NODE_RANK: String(rank.nodeRank),
      GROUP_RANK: String(rank.nodeRank),
      GROUP_WORLD_SIZE: String(groupWorldSize),
      ROLE_RANK: String(rank.rank),
      ROLE_WORLD_SIZE: String(worldSize),
      ROLE_NAME: 'default',
      MASTER_ADDR: input.masterAddr,
      MASTER_PORT: String(input.masterPort),
      LOCAL_SIZE: String(localWorldSize),
      CROSS_RANK: String(rank.nodeRank),
      CROSS_SIZE: String(groupWorldSize),
      ...devices,
      TORCHELASTIC_RESTART_COUNT: String(restarts.count),
      TORCHELASTIC_MAX_RESTARTS: String(restarts.max),
      TORCHELASTIC_RUN_ID: input.jobId,
      TORCHELASTIC_ERROR_FILE: input.errorFile,
      ...jax,
    });
  }
  Object.assign(env, {
    TUTTI_JOB_ID: input.jobId,
    TUTTI_JOB_NAME: input.jobName,
    TUTTI_RANK_LOG: input.logPath,
    TUTTI_NODE: rank.node,
    TUTTI_ATTEMPT: String(attempt),
    TUTTI_LAUNCHER: launcher,
    TUTTI_RESTARTS: String(restarts.count),
    TUTTI_MAX_RESTARTS: String(restarts.max),
    TUTTI_PREEMPTIONS: String(input.preemptions ?? 0),
  });
  return env;
}

/**
 * The GPUs JAX should use in this process, as indices into its CUDA_VISIBLE_DEVICES: its own one when each local
 * rank has one GPU of the node's list (one process per GPU), else every one of them; undefined without GPUs.
 */
export function jaxLocalDeviceIds(rank: RankLaunch, launcher: Launcher, localWorldSize: number): string | undefined {
  if (rank.gpus.length === 0) return undefined;
  if (launcher !== 'per-node' && rank.gpus.length === localWorldSize && rank.localRank < rank.gpus.length) return String(rank.localRank);
  return rank.gpus.map((_, i) => i).join(',');
}
