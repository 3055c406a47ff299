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
 */
import { RUN_AND_RECORD_EXIT, TRAP_STOP_SIGNALS } from '../rank-exit-script.ts';

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
    | { kind: 'pinned'; masterAddr: string; nodes: Readonly<Record<string, { nodeRank: number; ranks: number }>> }
    | { kind: 'slurm'; nodes: number; ranksPerNode: number };
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
  const { layout } = input;
  lines.push(
    ...(layout.kind === 'pinned'
      ? [
          'case "$SLURMD_NODENAME" in',
          ...Object.entries(layout.nodes).map(([node, { nodeRank, ranks }]) => `  ${quoteForShell(node)}) NODE_RANK=${nodeRank} LOCAL_WORLD_SIZE=${ranks} ;;`),
          '  *) echo "tutti: node $SLURMD_NODENAME is not one of this job\'s nodes" >&2; exit 70 ;;',
          'esac',
          `MASTER_ADDR=${quoteForShell(layout.masterAddr)}`,
        ]
      : [`NODE_RANK="$SLURM_NODEID" LOCAL_WORLD_SIZE=${layout.ranksPerNode}`, 'MASTER_ADDR="$SLURM_LAUNCH_NODE_IPADDR"']),
    // A port no other job's rendezvous on that node takes at the same time: the control plane cannot ask a node which
    // ports are free, but Slurm's job ids are unique, and the range lies below Linux's ephemeral ports.
    `export MASTER_ADDR MASTER_PORT=$((${SLURM_MASTER_PORT_BASE} + SLURM_JOB_ID % ${SLURM_MASTER_PORT_SPAN}))`,
    'export RANK="$SLURM_PROCID" ROLE_RANK="$SLURM_PROCID" LOCAL_RANK="$SLURM_LOCALID"',
    'export WORLD_SIZE="$SLURM_NTASKS" ROLE_WORLD_SIZE="$SLURM_NTASKS" LOCAL_WORLD_SIZE',
    `export NODE_RANK GROUP_RANK="$NODE_RANK" GROUP_WORLD_SIZE=${layout.kind === 'pinned' ? Object.keys(layout.nodes).length : layout.nodes}`,
    'export ROLE_NAME=default',
    // Slurm binds the GPUs (gres) and sets CUDA_VISIBLE_DEVICES; a CPU-only step sees none, as the local backend's.
    'export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES-}"',
    'export CUDA_DEVICE_ORDER=PCI_BUS_ID',
    `export TORCHELASTIC_RESTART_COUNT=${input.attempt - 1} TORCHELASTIC_MAX_RESTARTS=0 TORCHELASTIC_RUN_ID=${quoteForShell(input.jobId)}`,
    `export TUTTI_JOB_ID=${quoteForShell(input.jobId)} TUTTI_JOB_NAME=${quoteForShell(input.jobName)} TUTTI_ATTEMPT=${input.attempt}`,
    'export TUTTI_NODE="$SLURMD_NODENAME"',
    `export TUTTI_RANK_LOG=${perRank(input.rankLogPattern)}`,
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
