/**
 * The rank environment on Slurm. `srun` starts the tasks and numbers them; each rank starts through a small shell
 * shim that sets torchrun's and tutti's variables from Slurm's own and then runs the job's command. The values are
 * those of `computeRankEnvironment` for the same layout (a test compares them), and the job's env and the control
 * plane's per-job variables come first, with tutti's over them, as for the local backend.
 *
 * - RANK is `SLURM_PROCID` and LOCAL_RANK `SLURM_LOCALID`: the backend starts the step with an arbitrary
 *   distribution (`SLURM_HOSTFILE`, one line per rank), so task r runs on the node tutti placed rank r on.
 * - NODE_RANK (GROUP_RANK) and LOCAL_WORLD_SIZE are tutti's node rank of the node the task runs on
 *   (`SLURMD_NODENAME`), looked up in the layout written into the shim. Slurm's own `SLURM_NODEID` numbers the
 *   allocation's nodes in Slurm's node order, which need not be the placement's.
 * - MASTER_ADDR is the address of the node of rank 0 as the other nodes reach it (Slurm's `NodeAddr`).
 * - The task's environment is cleaned first, as `baseRankEnvironment` cleans the local backend's: what Slurm passed
 *   down from the control plane (sbatch exports its caller's environment) is dropped but for the allow-list and
 *   `passEnv`; what Slurm and the MPI runtime set for the task (SLURM_*, PMIX_*, PMI_*, OMPI_*, the GPUs' binding)
 *   stays.
 */
import type { Launcher } from '@tutti/model';
import { RUN_AND_RECORD_EXIT, TRAP_STOP_SIGNALS } from '../rank-exit-script.ts';
import { RANK_BASE_ALLOW_LIST, SANE_PATH } from '../rank-environment.ts';

export interface SlurmRankShimInput {
  jobId: string;
  jobName: string;
  /** The attempt (1, 2, ...). */
  attempt: number;
  /**
   * Where the ranks run. `pinned`: on the nodes tutti placed them, each by Slurm node name with tutti's node rank and
   * how many ranks run there, and rank 0's node's address as the other nodes reach it (its `NodeAddr`). `slurm`: on
   * the nodes Slurm chose, in block distribution: the node rank is Slurm's `SLURM_NODEID` and MASTER_ADDR the address
   * `srun` was started from (`SLURM_LAUNCH_NODE_IPADDR`: the batch script runs on the allocation's first node, which
   * holds rank 0).
   */
  layout:
    | { kind: 'pinned'; masterAddr: string; nodes: Readonly<Record<string, { nodeRank: number; ranks: number; gpus: number }>> }
    | { kind: 'slurm'; nodes: number; ranksPerNode: number; gpusPerNode: number };
  /** @default 'per-gpu' */
  launcher?: Launcher;
  /** Restarts so far and max_restarts. @default {count: 0, max: 0} */
  restarts?: { count: number; max: number };
  /** @default 0 */
  preemptions?: number;
  /** The job's CPUs per node; absent: the CPUs the task may use (`nproc`, which Slurm's binding limits). */
  cpus?: number;
  /** The job's python_env directory. */
  pythonEnv?: string;
  /** The directory of tutti's Python helpers, as every node sees it: first on PYTHONPATH. */
  pythonHelpersDir?: string;
  /** Variables of the task's environment kept besides the allow-list (`tutti up --pass-env`). */
  passEnv?: readonly string[];
  /** Where rank r's structured error goes (TORCHELASTIC_ERROR_FILE; `{rank}` as above). */
  rankErrorPattern: string;
  /** Where rank r's output goes: `{rank}` is replaced by the rank. */
  rankLogPattern: string;
  /**
   * Where rank r's exit status is written when its command ends (`{rank}` as above): `0`…`255`, 128+N for signal N,
   * written whole (a temporary file, then a rename). Slurm's accounting may be off, or misreport exit codes (22.05's
   * `sacct --json`): the rank says it itself, as the local backend's supervisor does.
   */
  rankExitPattern: string;
  /** Made when rank r starts its command, holding its node's name (`{rank}` as above): how the backend knows every rank started, and where. */
  rankStartedPattern: string;
  /** The job's own environment; then the control plane's per-job variables over it. tutti's variables win over both. */
  jobEnv: Readonly<Record<string, string>>;
  runtimeEnv?: Readonly<Record<string, string>>;
  /**
   * Where stop requests come when Slurm cannot signal the ranks' step alone (slurmrestd, see
   * `SlurmControl.signalsSteps`): a line `<request id> <SIGNAL>`, checked once a second; each new request's signal
   * goes to every task of the step on each node, once, as `scancel --signal=SIG <job>.<step>` does (see
   * `stopRequestWatcher`).
   */
  stopRequestFile?: string;
}

/**
 * The watcher of stop requests. Every task starts one (its shim's child, ignoring the stop signals itself); on each
 * node the first to see a request takes the node's lock (a directory: `mkdir` is atomic, on NFS too) and from then on
 * carries out each new request once, with `kill -s SIG 0`: the task's process group, which holds every task of the
 * step on that node. The request it carried out last is kept beside the lock, so that another task's watcher that takes
 * the lock over (its holder's rank ended first) does not signal it again.
 *
 * When its rank ends, the shim asks its watcher to end (SIGVTALRM, which no stop uses): it kills and reaps its sleep,
 * and the shim reaps it. Nothing of it may be left in the task's group, not even a zombie: Slurm waits for the group to
 * be empty before it ends the step (1 s, then 2 s more). Killing the watcher from outside left its sleep's zombie
 * behind one run in two, as did a sleep in the group: each sleep runs in a session of its own.
 */
function stopRequestWatcher(file: string): string[] {
  return [
    `tutti_stop_request=${quoteForShell(file)}`,
    'tutti_stop_lock="$tutti_stop_request.lock.$SLURMD_NODENAME" tutti_stop_done="$tutti_stop_request.done.$SLURMD_NODENAME"',
    // Its own PATH: the job's may lack sleep, cat or mkdir.
    "( trap '' HUP INT QUIT TERM USR1 USR2 ALRM; PATH=/usr/bin:/bin; tick=",
    '  trap \'[ -z "$tick" ] || { kill -KILL "$tick"; wait "$tick"; } 2>/dev/null; exit 0\' VTALRM',
    '  while :; do',
    '    { setsid sleep 1 2>/dev/null || sleep 1; } & tick=$!',
    '    wait "$tick"; tick=',
    '    request=$(cat "$tutti_stop_request" 2>/dev/null) || continue',
    '    [ -n "$request" ] || continue',
    '    mkdir "$tutti_stop_lock" 2>/dev/null && echo $$ > "$tutti_stop_lock/shim"',
    '    [ "$(cat "$tutti_stop_lock/shim" 2>/dev/null)" = "$$" ] || continue',
    '    [ "$request" != "$(cat "$tutti_stop_done" 2>/dev/null)" ] || continue',
    '    echo "$request" > "$tutti_stop_done"',
    '    kill -s "${request#* }" 0',
    '  done ) </dev/null >/dev/null 2>&1 &',
    'tutti_stop_watcher=$!',
    'tutti_stop_watch_end() {',
    '  kill -s VTALRM "$tutti_stop_watcher" 2>/dev/null; wait "$tutti_stop_watcher" 2>/dev/null',
    '  [ "$(cat "$tutti_stop_lock/shim" 2>/dev/null)" != "$$" ] || rm -rf "$tutti_stop_lock"',
    '}',
    'trap tutti_stop_watch_end EXIT',
  ];
}

/** `value` as one word of POSIX sh. */
export function quoteForShell(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** MASTER_PORT is SLURM_MASTER_PORT_BASE + (Slurm job id mod SLURM_MASTER_PORT_SPAN). */
export const SLURM_MASTER_PORT_BASE = 15_000;
export const SLURM_MASTER_PORT_SPAN = 10_000;
/** JAX's coordinator port: SLURM_COORDINATOR_PORT_BASE + (Slurm job id mod SLURM_COORDINATOR_PORT_SPAN), below Linux's ephemeral ports. */
export const SLURM_COORDINATOR_PORT_BASE = 25_000;
export const SLURM_COORDINATOR_PORT_SPAN = 7_000;

/** What Slurm and the MPI runtime set for a task: kept when the shim cleans its environment. */
const SLURM_TASK_VARIABLES = ['SLURM_*', 'SLURMD_*', 'PMI_*', 'PMIX_*', 'OMPI_*', 'CUDA_VISIBLE_DEVICES', 'GPU_DEVICE_ORDINAL', 'ROCR_VISIBLE_DEVICES'];

/**
 * sh lines that unset every exported variable but those `keep` names (exact, or a prefix ending in `*`). The names
 * come from `env`; a value holding a newline may make up a name or two, which are then unset too: harmless.
 */
function cleanEnvironment(keep: readonly string[]): string[] {
  const patterns = [...keep, 'tutti_name'].map((name) => (name.endsWith('*') ? `${quoteForShell(name.slice(0, -1))}*` : quoteForShell(name)));
  return [
    "for tutti_name in $(PATH=/usr/bin:/bin; env | sed -n 's/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/\\1/p'); do",
    `  case "$tutti_name" in ${patterns.join('|')}) ;; *) unset "$tutti_name" 2>/dev/null ;; esac`,
    'done',
    'unset tutti_name',
  ];
}

/**
 * The shim's text: `sh shim COMMAND [ARGS...]` runs the command as one rank, with the rank's environment, and
 * records its exit status.
 */
export function makeSlurmRankShim(input: SlurmRankShimInput): string {
  const lines = ['#!/bin/sh', `# tutti: the rank environment of job ${input.jobId}, attempt ${input.attempt}, from Slurm's (see slurm-rank-shim.ts).`];
  const passEnv = input.passEnv ?? [];
  lines.push(...cleanEnvironment([...RANK_BASE_ALLOW_LIST, ...passEnv, ...SLURM_TASK_VARIABLES]));
  if (!passEnv.includes('PATH')) lines.push(`export PATH=${quoteForShell(SANE_PATH)}`);
  const launcher = input.launcher ?? 'per-gpu';
  const perNode = launcher === 'per-node';
  const { layout } = input;
  lines.push(
    ...(layout.kind === 'pinned'
      ? [
          'case "$SLURMD_NODENAME" in',
          ...Object.entries(layout.nodes).map(([node, { nodeRank, ranks, gpus }]) => `  ${quoteForShell(node)}) NODE_RANK=${nodeRank} LOCAL_WORLD_SIZE=${ranks} tutti_node_gpus=${gpus} ;;`),
          '  *) echo "tutti: node $SLURMD_NODENAME is not one of this job\'s nodes" >&2; exit 70 ;;',
          'esac',
          `MASTER_ADDR=${quoteForShell(layout.masterAddr)}`,
        ]
      : [`NODE_RANK="$SLURM_NODEID" LOCAL_WORLD_SIZE=${layout.ranksPerNode} tutti_node_gpus=${layout.gpusPerNode}`, 'MASTER_ADDR="$SLURM_LAUNCH_NODE_IPADDR"']),
  );
  // Framework defaults, under the job's env: set only when the job does not set them (see rank-environment.ts).
  const ranksOnNode = perNode ? '$(( tutti_node_gpus > 0 ? tutti_node_gpus : 1 ))' : '$LOCAL_WORLD_SIZE';
  const cpus = input.cpus !== undefined ? String(Math.floor(input.cpus)) : '$(/usr/bin/nproc 2>/dev/null || echo 1)';
  lines.push(
    `tutti_omp=$(( ${cpus} / ${ranksOnNode} )); [ "$tutti_omp" -ge 1 ] || tutti_omp=1`,
    'export OMP_NUM_THREADS="$tutti_omp" TORCH_NCCL_ASYNC_ERROR_HANDLING=1 NCCL_ASYNC_ERROR_HANDLING=1',
  );
  for (const [name, value] of Object.entries(input.jobEnv)) {
    // A name sh cannot export is refused by the spec parser already; skipping it here keeps the shim valid.
    if (NAME.test(name)) lines.push(`export ${name}=${quoteForShell(value)}`);
  }
  if (input.pythonEnv !== undefined) {
    const dir = quoteForShell(input.pythonEnv);
    lines.push(`export PATH=${dir}/bin:"\${PATH:-${SANE_PATH}}"`, `if [ -d ${dir}/conda-meta ]; then export CONDA_PREFIX=${dir}; else export VIRTUAL_ENV=${dir}; fi`);
  }
  if (input.pythonHelpersDir !== undefined) {
    const dir = quoteForShell(input.pythonHelpersDir);
    lines.push(`export PYTHONPATH=${dir}"\${PYTHONPATH:+:$PYTHONPATH}"`);
  }
  for (const [name, value] of Object.entries(input.runtimeEnv ?? {})) {
    if (NAME.test(name)) lines.push(`export ${name}=${quoteForShell(value)}`);
  }
  const perRank = (pattern: string): string => pattern.split('{rank}').map(quoteForShell).join('"$SLURM_PROCID"');
  const restarts = input.restarts ?? { count: 0, max: 0 };
  const groupWorldSize = layout.kind === 'pinned' ? Object.keys(layout.nodes).length : layout.nodes;
  lines.push(
    // A port no other job's rendezvous on that node takes at the same time: the control plane cannot ask a node which
    // ports are free, but Slurm's job ids are unique, and the range lies below Linux's ephemeral ports.
    `export MASTER_ADDR MASTER_PORT=$((${SLURM_MASTER_PORT_BASE} + SLURM_JOB_ID % ${SLURM_MASTER_PORT_SPAN}))`,
    // Slurm binds the GPUs (gres) and sets CUDA_VISIBLE_DEVICES; a CPU-only step sees none, as the local backend's.
    'export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES-}"',
    'export CUDA_DEVICE_ORDER=PCI_BUS_ID',
    `export TORCHELASTIC_ERROR_FILE=${perRank(input.rankErrorPattern)}`,
    `export JAX_COORDINATOR_ADDRESS="$MASTER_ADDR:$((${SLURM_COORDINATOR_PORT_BASE} + SLURM_JOB_ID % ${SLURM_COORDINATOR_PORT_SPAN}))"`,
    `export JAX_NUM_PROCESSES="$SLURM_NTASKS" JAX_PROCESS_ID="$SLURM_PROCID"`,
    ...(perNode
      ? [
          'export NODE_RANK',
          `export PET_NNODES=${groupWorldSize} PET_NODE_RANK="$NODE_RANK" PET_NPROC_PER_NODE=${ranksOnNode}`,
          `export PET_MASTER_ADDR="$MASTER_ADDR" PET_MASTER_PORT="$MASTER_PORT" PET_MAX_RESTARTS=0 PET_RDZV_BACKEND=static PET_RDZV_ID=${quoteForShell(input.jobId)}`,
          // Every GPU of the node, when it has any.
          'if [ "$tutti_node_gpus" -gt 0 ]; then tutti_i=0 JAX_LOCAL_DEVICE_IDS=0; while [ $((tutti_i += 1)) -lt "$tutti_node_gpus" ]; do JAX_LOCAL_DEVICE_IDS="$JAX_LOCAL_DEVICE_IDS,$tutti_i"; done; export JAX_LOCAL_DEVICE_IDS; fi',
        ]
      : [
          'export RANK="$SLURM_PROCID" ROLE_RANK="$SLURM_PROCID" LOCAL_RANK="$SLURM_LOCALID"',
          'export WORLD_SIZE="$SLURM_NTASKS" ROLE_WORLD_SIZE="$SLURM_NTASKS" LOCAL_WORLD_SIZE',
          `export NODE_RANK GROUP_RANK="$NODE_RANK" GROUP_WORLD_SIZE=${groupWorldSize}`,
          `export LOCAL_SIZE="$LOCAL_WORLD_SIZE" CROSS_RANK="$NODE_RANK" CROSS_SIZE=${groupWorldSize}`,
          'export ROLE_NAME=default',
          `export TORCHELASTIC_RESTART_COUNT=${restarts.count} TORCHELASTIC_MAX_RESTARTS=${restarts.max} TORCHELASTIC_RUN_ID=${quoteForShell(input.jobId)}`,
          // Its own GPU when each local rank has one of the node's, else every one (see jaxLocalDeviceIds).
          'if [ "$tutti_node_gpus" -gt 0 ]; then',
          '  if [ "$tutti_node_gpus" -eq "$LOCAL_WORLD_SIZE" ]; then JAX_LOCAL_DEVICE_IDS="$SLURM_LOCALID"',
          '  else tutti_i=0 JAX_LOCAL_DEVICE_IDS=0; while [ $((tutti_i += 1)) -lt "$tutti_node_gpus" ]; do JAX_LOCAL_DEVICE_IDS="$JAX_LOCAL_DEVICE_IDS,$tutti_i"; done; fi',
          '  export JAX_LOCAL_DEVICE_IDS',
          'fi',
        ]),
    `export TUTTI_JOB_ID=${quoteForShell(input.jobId)} TUTTI_JOB_NAME=${quoteForShell(input.jobName)} TUTTI_ATTEMPT=${input.attempt} TUTTI_LAUNCHER=${launcher}`,
    `export TUTTI_RESTARTS=${restarts.count} TUTTI_MAX_RESTARTS=${restarts.max} TUTTI_PREEMPTIONS=${input.preemptions ?? 0}`,
    'export TUTTI_NODE="$SLURMD_NODENAME"',
    `export TUTTI_RANK_LOG=${perRank(input.rankLogPattern)}`,
    'unset tutti_node_gpus tutti_omp tutti_i',
    `exit_file=${perRank(input.rankExitPattern)}`,
    // The node it runs on, for the backend (with Slurm's placement, not known before), written whole: the backend
    // takes the file's existence for the start. The job's PATH may lack mv.
    `started_file=${perRank(input.rankStartedPattern)}`,
    `(umask 077 && printf '%s\\n' "$SLURMD_NODENAME" > "$started_file.tmp" && PATH=/usr/bin:/bin mv -f "$started_file.tmp" "$started_file")`,
    ...(input.stopRequestFile !== undefined ? stopRequestWatcher(input.stopRequestFile) : []),
    // As the local supervisor: the shim outlives a stop signal (a handler, not an ignore, so the command still gets
    // it: `scancel --signal` signals every process of the step) and records how the command ended.
    TRAP_STOP_SIGNALS,
    ...RUN_AND_RECORD_EXIT,
  );
  return `${lines.join('\n')}\n`;
}
