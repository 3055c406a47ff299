/**
 * The environment of one rank: what torchrun would give it, plus tutti's own variables. Pure, shared by every
 * backend that starts processes (local, Slurm).
 */
import type { RankLaunch } from './execution-backend.ts';

export interface RankEnvironmentInput {
  jobId: string;
  jobName: string;
  /** Every rank of the job: world sizes are counted from it. */
  ranks: readonly RankLaunch[];
  /** The rank whose environment this is. */
  rank: RankLaunch;
  /** Address of the node that runs rank 0. */
  masterAddr: string;
  /** A TCP port free on `masterAddr`, the same for every rank of the job. */
  masterPort: number;
  /** Where the rank's stdout and stderr go. */
  logPath: string;
  /** The job's own environment (from its spec): tutti's variables win on conflict. */
  jobEnv: Readonly<Record<string, string>>;
  /** The control plane's per-job variables: over the job env, under the per-rank ones. */
  runtimeEnv?: Readonly<Record<string, string>>;
  /** The attempt (1, 2, ...). @default 1 */
  attempt?: number;
  /** The bottom layer, usually the control plane's own environment (PATH, HOME, ...). Undefined values are dropped. */
  inherited?: Readonly<Record<string, string | undefined>>;
}

/**
 * The names tutti sets on every rank. Every one of them overrides the job's env and the inherited env.
 * (Listed so that docs and tests can check they are all there.)
 */
export const RANK_ENVIRONMENT_VARIABLES = [
  'RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE', 'NODE_RANK', 'GROUP_RANK', 'GROUP_WORLD_SIZE',
  'ROLE_RANK', 'ROLE_WORLD_SIZE', 'ROLE_NAME', 'MASTER_ADDR', 'MASTER_PORT',
  'CUDA_VISIBLE_DEVICES', 'CUDA_DEVICE_ORDER',
  'TORCHELASTIC_RESTART_COUNT', 'TORCHELASTIC_MAX_RESTARTS', 'TORCHELASTIC_RUN_ID',
  'TUTTI_JOB_ID', 'TUTTI_JOB_NAME', 'TUTTI_RANK_LOG', 'TUTTI_NODE', 'TUTTI_ATTEMPT',
] as const;

export type RankEnvironmentVariable = (typeof RANK_ENVIRONMENT_VARIABLES)[number];

/**
 * Layers inherited env < job env < tutti's variables.
 *
 * - World sizes count the ranks of the request: WORLD_SIZE all of them, LOCAL_WORLD_SIZE those with the same
 *   node rank, GROUP_WORLD_SIZE the distinct node ranks.
 * - CUDA_VISIBLE_DEVICES is the rank's GPU list joined by ',' (every local rank sees the node's whole list, as
 *   with torchrun; the program picks its device by LOCAL_RANK). It is set to '' for a CPU-only job so that a
 *   process cannot see every GPU of the machine by accident.
 * - CUDA_DEVICE_ORDER=PCI_BUS_ID makes CUDA number devices as nvidia-smi does; without it CUDA orders "fastest
 *   first" and index 3 in CUDA_VISIBLE_DEVICES might not be the GPU the scheduler gave.
 * - ROLE_* and TORCHELASTIC_* are what torch.distributed.elastic sets for a single-role job; tutti restarts whole
 *   gangs as new attempts, so TORCHELASTIC_RESTART_COUNT is the attempt - 1 and TUTTI_ATTEMPT the attempt.
 */
export function computeRankEnvironment(input: RankEnvironmentInput): Record<string, string> {
  const { rank, ranks } = input;
  const worldSize = ranks.length;
  const localWorldSize = ranks.filter((r) => r.nodeRank === rank.nodeRank).length;
  const groupWorldSize = new Set(ranks.map((r) => r.nodeRank)).size;
  const tutti: Record<RankEnvironmentVariable, string> = {
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
    CUDA_VISIBLE_DEVICES: rank.gpus.join(','),
    CUDA_DEVICE_ORDER: 'PCI_BUS_ID',
    TORCHELASTIC_RESTART_COUNT: String((input.attempt ?? 1) - 1),
    TORCHELASTIC_MAX_RESTARTS: '0',
    TORCHELASTIC_RUN_ID: input.jobId,
    TUTTI_JOB_ID: input.jobId,
    TUTTI_JOB_NAME: input.jobName,
    TUTTI_RANK_LOG: input.logPath,
    TUTTI_NODE: rank.node,
    TUTTI_ATTEMPT: String(input.attempt ?? 1),
  };
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(input.inherited ?? {})) {
    if (value !== undefined) env[name] = value;
  }
  return Object.assign(env, input.jobEnv, input.runtimeEnv ?? {}, tutti);
}
