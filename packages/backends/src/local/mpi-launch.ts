/**
 * `launcher: mpi` on the local backend, the pure part: the files and the command line with which Open MPI's `mpirun`
 * starts a job's ranks on this machine (mpi-run.ts writes them, starts mpirun and waits for the ranks).
 *
 *   control plane (node)
 *     └─ /bin/sh rank-supervisor.sh mpirun.pid mpirun.exit mpirun …     the launcher: session + process group leader;
 *          │                                                            its output (mpirun's own) goes to mpirun.log
 *          └─ mpirun --hostfile mpi-hostfile -np N … /bin/sh mpi-rank.sh COMMAND…
 *               └─ /bin/sh mpi-rank.sh COMMAND…                          once per rank; Open MPI makes it the leader
 *                    │                                                   of a process group of its own
 *                    │  picks its rank's variables by OMPI_COMM_WORLD_RANK, sends its output to rank-<r>.log, then
 *                    └─ exec /bin/sh rank-supervisor.sh rank-<r>.pid rank-<r>.exit COMMAND…
 *                         └─ ( COMMAND )                                the rank: as under the per-gpu launcher
 *
 * Each rank ends up as the very process a per-gpu rank is — the rank supervisor, leader of its process group, with
 * the same argv and the same pid, exit and log files — only started by mpirun instead of by the backend. So a rank's
 * handle names its own supervisor, and stop, adopt, findStarted, readLog and the clean-up after an exit work on it
 * unchanged; what is MPI's alone is the launcher, which the backend ends once the ranks are over.
 *
 * - Variables equal on every rank go into mpirun's own environment, which mpirun passes to the ranks it starts on
 *   this machine; those that differ (RANK, LOCAL_RANK, the rank's log and error file, …) are exported by the rank
 *   script for its OMPI_COMM_WORLD_RANK. tutti's rank r is MPI's rank r (one node, ranks in order).
 * - `--mca orte_abort_on_non_zero_status 0`: when a rank fails, mpirun does not kill the others itself (its own way
 *   signals only each rank's first process, and SIGKILLs it a second later); tutti stops them, as for any gang, with
 *   the job's stop signal and grace, and reports each rank's own exit code.
 * - `--bind-to none`: mpirun would pin each rank to a core (or a socket), which CPU-hungry ranks (data loaders,
 *   OMP_NUM_THREADS threads) do not expect from tutti's other launchers.
 * - `--stdin none`: ranks read /dev/null, as under the other launchers (mpirun would forward its stdin to rank 0).
 * - `--allow-run-as-root` when the backend runs as root: mpirun refuses to start otherwise.
 */
import { quoteForShell } from '../slurm/slurm-rank-shim.ts';
import type { RankFiles } from './rank-files.ts';

/** The launcher's files, in the attempt's directory beside the ranks' own. */
export const MPI_ATTEMPT_FILES = {
  /** `localhost slots=N`: where mpirun may start ranks. */
  hostFile: 'mpi-hostfile',
  /** The script mpirun starts once per rank (`makeMpiRankScript`). */
  rankScript: 'mpi-rank.sh',
  /** mpirun's own output: its errors ("not enough slots"), warnings and abort messages. The ranks' go to their logs. */
  launcherLog: 'mpirun.log',
  /** The launcher's supervisor's pid (= its process group and session): written by the supervisor. */
  launcherPid: 'mpirun.pid',
  /** mpirun's exit status, written by the launcher's supervisor when mpirun has exited. */
  launcherExit: 'mpirun.exit',
} as const;

/** The host file of a launch of `ranks` ranks on this machine: one slot per rank. */
export function mpiHostFile(ranks: number): string {
  return `localhost slots=${ranks}\n`;
}

/** Open MPI's version, from `mpirun --version` ("mpirun (Open MPI) 4.1.4"); undefined for another MPI's mpirun. */
export function parseOpenMpiVersion(text: string): { major: number; minor: number; text: string } | undefined {
  const match = /\(Open MPI\)\s+(\d+)\.(\d+)(\S*)/.exec(text);
  if (!match) return undefined;
  return { major: Number(match[1]), minor: Number(match[2]), text: `${match[1]}.${match[2]}${match[3] ?? ''}` };
}

export interface MpirunArgsInput {
  /** The host file (`mpiHostFile`). */
  hostFile: string;
  /** How many ranks. */
  ranks: number;
  /** The rank script (`makeMpiRankScript`), run with /bin/sh. */
  rankScript: string;
  /** The job's command: the argv, or `/bin/sh -c COMMAND`. */
  command: readonly string[];
  /** The backend runs as root: mpirun needs to be told that this is meant. */
  asRoot: boolean;
  /** Open MPI's major version: ORTE's settings are given to 4 and older only (5 runs on PRRTE, which has none). */
  openMpiMajor: number;
}

/** mpirun's arguments (without the program itself). Why each one: see the file's comment. */
export function mpirunArgs(input: MpirunArgsInput): string[] {
  // Open MPI 5 runs on PRRTE, which has no ORTE settings: there mpirun's own abort on a failed rank stays (untested
  // here: this machine has Open MPI 4.1).
  const keepOthersRunning = input.openMpiMajor <= 4 ? ['--mca', 'orte_abort_on_non_zero_status', '0'] : [];
  return [
    ...(input.asRoot ? ['--allow-run-as-root'] : []),
    '--hostfile', input.hostFile,
    '-np', String(input.ranks),
    '--bind-to', 'none',
    '--stdin', 'none',
    ...keepOthersRunning,
    '/bin/sh', input.rankScript,
    ...input.command,
  ];
}

/**
 * Splits the ranks' environments (index r: rank r's) into what every rank has alike — mpirun's environment — and,
 * per rank, what is its own: a variable that differs between ranks, or that some rank lacks.
 */
export function splitRankEnvironments(environments: ReadonlyArray<Readonly<Record<string, string>>>): {
  common: Record<string, string>;
  perRank: Array<Record<string, string>>;
} {
  const [first, ...rest] = environments;
  const common: Record<string, string> = {};
  for (const [name, value] of Object.entries(first ?? {})) {
    if (rest.every((env) => Object.hasOwn(env, name) && env[name] === value)) common[name] = value;
  }
  const perRank = environments.map((env) => Object.fromEntries(Object.entries(env).filter(([name]) => !Object.hasOwn(common, name))));
  return { common, perRank };
}

export interface MpiRankScriptInput {
  jobId: string;
  attempt?: number;
  /** The rank supervisor (rank-files.ts' RANK_SUPERVISOR_SCRIPT), which each rank becomes. */
  supervisor: string;
  /** Per rank, in rank order: its own variables (`splitRankEnvironments`) and its files. */
  ranks: ReadonlyArray<{ rank: number; env: Readonly<Record<string, string>>; files: Pick<RankFiles, 'log' | 'pid' | 'exit'> }>;
}

/** Names sh can export: others are left out (the spec parser refuses them already). */
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The script mpirun starts once per rank: `/bin/sh mpi-rank.sh COMMAND [ARG...]`. It finds its rank by
 * OMPI_COMM_WORLD_RANK (refusing, with exit 70, a rank the job does not have), exports that rank's own variables,
 * sends its output to the rank's log (appended, like every rank log) and becomes the rank supervisor, which writes the
 * rank's pid and exit files and runs the command. stdout and stderr before the redirection are mpirun's (its log).
 */
export function makeMpiRankScript(input: MpiRankScriptInput): string {
  const lines = [
    '#!/bin/sh',
    `# tutti: the ranks of job ${input.jobId}, attempt ${input.attempt ?? 1}, started by Open MPI's mpirun (written by the local backend; see mpi-launch.ts).`,
    '# Usage (by mpirun, once per rank): /bin/sh mpi-rank.sh COMMAND [ARG...]',
    'case "${OMPI_COMM_WORLD_RANK-}" in',
  ];
  for (const { rank, env, files } of input.ranks) {
    const exports = Object.entries(env).filter(([name]) => NAME.test(name)).map(([name, value]) => `${name}=${quoteForShell(value)}`);
    lines.push(
      `  ${rank})`,
      ...(exports.length > 0 ? [`    export ${exports.join(' ')}`] : []),
      `    tutti_log=${quoteForShell(files.log)} tutti_pid=${quoteForShell(files.pid)} tutti_exit=${quoteForShell(files.exit)} ;;`,
    );
  }
  const known = input.ranks.length === 0 ? 'none' : `0-${input.ranks.length - 1}`;
  lines.push(
    `  *) echo "tutti: mpirun started rank '\${OMPI_COMM_WORLD_RANK-}', which job "${quoteForShell(input.jobId)}" does not have (ranks ${known}): is this Open MPI's mpirun?" >&2; exit 70 ;;`,
    'esac',
    'exec >>"$tutti_log" 2>&1',
    `exec /bin/sh ${quoteForShell(input.supervisor)} "$tutti_pid" "$tutti_exit" "$@"`,
    '',
  );
  return lines.join('\n');
}

/**
 * What went wrong, in one line, from mpirun's output: the first paragraph of its first boxed message (Open MPI frames
 * each between lines of dashes: "There are not enough slots available in the system to satisfy the 5 slots …"), else
 * its last non-empty lines. At most `maxLength` characters; undefined when it said nothing.
 */
export function summarizeMpirunOutput(text: string, maxLength = 400): string | undefined {
  const lines = text.split('\n').map((line) => line.trim());
  const boxStart = lines.findIndex((line) => /^-{10,}$/.test(line));
  let picked: string[];
  if (boxStart >= 0) {
    picked = [];
    for (const line of lines.slice(boxStart + 1)) {
      if (/^-{10,}$/.test(line)) break;
      if (line === '') {
        if (picked.length > 0) break;
        continue;
      }
      picked.push(line);
    }
  } else {
    picked = lines.filter((line) => line !== '').slice(-3);
  }
  const summary = picked.join(' ').replace(/\s+/g, ' ').trim();
  if (summary === '') return undefined;
  return summary.length > maxLength ? `${summary.slice(0, maxLength - 3)}...` : summary;
}
