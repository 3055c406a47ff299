/**
 * The rank environment on Slurm. Slurm decides at run time which task runs where (`srun` numbers the tasks in the
 * order of the allocation's nodes), so a rank's torchrun variables cannot be written down before the launch as the
 * local backend does: each rank starts through a small shell shim that sets them from Slurm's own (`SLURM_PROCID`,
 * `SLURM_LOCALID`, `SLURM_NODEID`, ...) and then runs the job's command. The values are those of
 * `computeRankEnvironment` for the same layout (a test compares them), and the job's env and the control plane's
 * per-job variables come first, with tutti's over them, as for the local backend.
 *
 * MASTER_ADDR is the address of the step's first node (node 0, which runs rank 0) as the other nodes reach it: the
 * shim looks the node's name up in the addresses the inventory knows (Slurm's `NodeAddr`), written into it.
 */
import { RUN_AND_RECORD_EXIT, TRAP_STOP_SIGNALS } from '../rank-exit-script.ts';

export interface SlurmRankShimInput {
  jobId: string;
  jobName: string;
  /** The attempt (1, 2, ...). */
  attempt: number;
  /** The rendezvous port on node 0, the same for every rank. */
  masterPort: number;
  /** Each node's address as the others reach it (`NodeAddr`), by Slurm node name. */
  nodeAddresses: Readonly<Record<string, string>>;
  /** Where rank r's output goes: `{rank}` is replaced by the rank. */
  rankLogPattern: string;
  /**
   * Where rank r's exit status is written when its command ends (`{rank}` as above): `0`…`255`, 128+N for signal N,
   * written whole (a temporary file, then a rename). Slurm's accounting may be off, or misreport exit codes (22.05's
   * `sacct --json`): the rank says it itself, as the local backend's supervisor does.
   */
  rankExitPattern: string;
  /** The job's own environment; then the control plane's per-job variables over it. tutti's variables win over both. */
  jobEnv: Readonly<Record<string, string>>;
  runtimeEnv?: Readonly<Record<string, string>>;
}

/** `value` as one word of POSIX sh. */
export function quoteForShell(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The shim's text: `sh shim COMMAND [ARGS...]` runs the command as one rank, with the rank's environment, and
 * records its exit status.
 */
export function makeSlurmRankShim(input: SlurmRankShimInput): string {
  const lines = ['#!/bin/sh', `# tutti: the rank environment of job ${input.jobId}, attempt ${input.attempt}, from Slurm's (see slurm-rank-shim.ts).`];
  for (const [name, value] of Object.entries({ ...input.jobEnv, ...(input.runtimeEnv ?? {}) })) {
    // A name sh cannot export is refused by the spec parser already; skipping it here keeps the shim valid.
    if (NAME.test(name)) lines.push(`export ${name}=${quoteForShell(value)}`);
  }
  const perRank = (pattern: string): string => pattern.split('{rank}').map(quoteForShell).join('"$SLURM_PROCID"');
  lines.push(
    'first_node=$(scontrol show hostnames "${SLURM_STEP_NODELIST:-$SLURM_JOB_NODELIST}" | head -n 1)',
    'case "$first_node" in',
    ...Object.entries(input.nodeAddresses).map(([node, address]) => `  ${quoteForShell(node)}) MASTER_ADDR=${quoteForShell(address)} ;;`),
    '  *) MASTER_ADDR="$first_node" ;;',
    'esac',
    'export MASTER_ADDR',
    `export MASTER_PORT=${input.masterPort}`,
    'export RANK="$SLURM_PROCID" ROLE_RANK="$SLURM_PROCID" LOCAL_RANK="$SLURM_LOCALID"',
    'export WORLD_SIZE="$SLURM_NTASKS" ROLE_WORLD_SIZE="$SLURM_NTASKS"',
    // tutti's gangs have the same number of ranks on every node (--ntasks-per-node).
    'export LOCAL_WORLD_SIZE="${SLURM_NTASKS_PER_NODE:-$SLURM_NTASKS}"',
    'export NODE_RANK="$SLURM_NODEID" GROUP_RANK="$SLURM_NODEID" GROUP_WORLD_SIZE="${SLURM_STEP_NUM_NODES:-$SLURM_NNODES}"',
    'export ROLE_NAME=default',
    // Slurm binds the GPUs (gres) and sets CUDA_VISIBLE_DEVICES; a CPU-only step sees none, as the local backend's.
    'export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES-}"',
    'export CUDA_DEVICE_ORDER=PCI_BUS_ID',
    `export TORCHELASTIC_RESTART_COUNT=${input.attempt - 1} TORCHELASTIC_MAX_RESTARTS=0 TORCHELASTIC_RUN_ID=${quoteForShell(input.jobId)}`,
    `export TUTTI_JOB_ID=${quoteForShell(input.jobId)} TUTTI_JOB_NAME=${quoteForShell(input.jobName)} TUTTI_ATTEMPT=${input.attempt}`,
    'export TUTTI_NODE="$SLURMD_NODENAME"',
    `export TUTTI_RANK_LOG=${perRank(input.rankLogPattern)}`,
    `exit_file=${perRank(input.rankExitPattern)}`,
    // As the local supervisor: the shim outlives a stop signal (a handler, not an ignore, so the command still gets
    // it: `scancel --signal --full` signals every process of the step) and records how the command ended.
    TRAP_STOP_SIGNALS,
    ...RUN_AND_RECORD_EXIT,
  );
  return `${lines.join('\n')}\n`;
}
