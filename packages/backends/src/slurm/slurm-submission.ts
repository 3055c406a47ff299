/**
 * One tutti attempt as one Slurm job: the `sbatch` arguments, the batch script and the host file that make Slurm run
 * rank r on the node tutti placed it on. Pure: the backend writes the files and runs `sbatch`.
 *
 *   sbatch --nodes=N --nodelist=… --ntasks-per-node=K --gres=gpu[:type]:G --time=… batch.sh
 *     batch.sh:  SLURM_HOSTFILE=hostfile exec srun --distribution=arbitrary --ntasks=R … sh rank-shim.sh COMMAND…
 *       task r (= rank r, on line r+1 of the host file): rank-shim.sh sets the rank's environment, runs COMMAND and
 *       records its exit status; its output goes to rank-r.log (appended, so that a log can be trimmed to its cap).
 *
 * The batch script `exec`s srun, so the job's only processes besides the ranks are srun's: a stop signals the step
 * (`scancel --signal`, not `--full`), the ranks' handlers decide how they end, and the job ends when they have.
 *
 * `launcher: mpi`: the same srun with `--mpi=<plugin>` (pmix, else pmi2: what the site's Slurm offers, see
 * `chooseSlurmMpiPlugin`), so that Slurm's MPI plugin serves the ranks' `MPI_Init` as mpirun would (Open MPI finds it
 * by the PMIX_* variables the shim keeps); task r is MPI's rank r as it is tutti's.
 */
import type { LaunchRequest, RankLaunch } from '../execution-backend.ts';
import { quoteForShell } from './slurm-rank-shim.ts';

/** The files of one attempt, in its directory on the shared file system. */
export const SLURM_ATTEMPT_FILES = {
  batchScript: 'slurm-batch.sh',
  batchLog: 'slurm-batch.log',
  hostFile: 'slurm-hostfile',
  shim: 'rank-shim.sh',
  /** The Slurm job id, written once `sbatch` answers it. */
  slurmJobId: 'slurm-job-id',
  /** Stop requests for the ranks' shims, where Slurm cannot signal their step (slurm-rank-shim.ts). */
  stopRequest: 'stop-request',
} as const;

/** Per-rank files: `{rank}` stands for the rank (SLURM_PROCID in the shim, `%t` in srun's `--output`). */
export const SLURM_RANK_FILES = { log: 'rank-{rank}.log', exit: 'rank-{rank}.exit', started: 'rank-{rank}.started', error: 'rank-{rank}.error.json' } as const;

export function slurmRankFile(attemptDir: string, pattern: string, rank: number): string {
  return `${attemptDir}/${pattern.replace('{rank}', String(rank))}`;
}

/**
 * The Slurm job's name: `tutti.<instance>.<jobId>.<attempt>`, where `instance` tells control planes that share a
 * cluster apart (a digest of the data dir), so that one never finds another's job for the same tutti job id.
 */
export function slurmJobName(instance: string, jobId: string, attempt: number): string {
  return `${slurmJobNamePrefix(instance)}${jobId}.${attempt}`;
}

/** What the names of every Slurm job of one instance start with: a job named otherwise is not this instance's. */
export function slurmJobNamePrefix(instance: string): string {
  return `tutti.${instance}.`;
}

/** The nodes of a launch in node-rank order, with how many ranks each runs and the GPUs they use there. */
export interface SlurmJobLayout {
  nodes: Array<{ node: string; nodeRank: number; ranks: number; gpus: number }>;
  /** Rank r's node, r = 0, 1, …: the host file's lines. */
  nodeOfRank: string[];
}

/** The layout of a (checked) launch request. A node that appears under two node ranks is refused. */
export function slurmJobLayout(ranks: readonly RankLaunch[]): SlurmJobLayout | { error: string } {
  const byNode = new Map<string, { node: string; nodeRank: number; ranks: number; gpus: Set<number> }>();
  for (const rank of ranks) {
    const entry = byNode.get(rank.node);
    if (entry && entry.nodeRank !== rank.nodeRank) return { error: `node ${rank.node} has ranks of node ranks ${entry.nodeRank} and ${rank.nodeRank}` };
    const e = entry ?? { node: rank.node, nodeRank: rank.nodeRank, ranks: 0, gpus: new Set<number>() };
    e.ranks++;
    for (const gpu of rank.gpus) e.gpus.add(gpu);
    byNode.set(rank.node, e);
  }
  const nodes = [...byNode.values()].sort((a, b) => a.nodeRank - b.nodeRank).map((e) => ({ node: e.node, nodeRank: e.nodeRank, ranks: e.ranks, gpus: e.gpus.size }));
  const nodeOfRank = [...ranks].sort((a, b) => a.rank - b.rank).map((r) => r.node);
  return { nodes, nodeOfRank };
}

export interface SlurmSubmissionInput {
  request: LaunchRequest;
  layout: SlurmJobLayout;
  jobName: string;
  attemptDir: string;
  /** The directory the ranks start in (the job's workdir, else its job directory). */
  workdir: string;
  /** The gres type to ask for (the placed GPUs' Slurm type), or undefined for any GPU. */
  gpuType?: string;
  partition?: string;
  account?: string;
  /** Slurm's `--time`: rounded up to whole minutes. */
  timeLimitMs?: number;
  /**
   * Leave the nodes to Slurm (`SlurmBackendOptions.placement: 'slurm'`): no `--nodelist`, and the step's ranks in
   * block distribution, rank r on the (r / ranks per node)-th node of Slurm's allocation. Only for a layout of the
   * same ranks on every node, ranks of node rank i numbered i × K … i × K + K − 1 (`isBlockLayout`).
   */
  placedBySlurm?: boolean;
  /** Slurm's MPI plugin for a `launcher: mpi` request (`srun --mpi=<plugin>`); required for one. */
  mpiPlugin?: string;
}

/** Whether a layout is what Slurm's block distribution makes: K ranks on every node, numbered node by node. */
export function isBlockLayout(layout: SlurmJobLayout, ranks: readonly RankLaunch[]): boolean {
  const perNode = layout.nodes[0]?.ranks ?? 0;
  if (perNode === 0 || layout.nodes.some((n) => n.ranks !== perNode)) return false;
  return ranks.every((r) => Math.floor(r.rank / perNode) === r.nodeRank && r.rank % perNode === r.localRank);
}

/**
 * The Slurm job of one attempt, as `sbatch` options or slurmrestd's job fields say it (slurm-control.ts,
 * slurm-rest.ts). It is never requeued by Slurm: tutti restarts gangs itself, from their checkpoints, and Slurm must
 * not run the same attempt twice.
 */
export interface SlurmJobRequest {
  name: string;
  nodes: number;
  /** The nodes tutti placed the ranks on (`--nodelist`). */
  nodeList?: string[];
  tasksPerNode: number;
  /** `gpu[:type]:N` per node, when the ranks use GPUs. */
  gres?: string;
  /** `--time`, whole minutes. */
  timeLimitMinutes?: number;
  partition?: string;
  account?: string;
  /** Where the batch script starts (`--chdir`). */
  workdir: string;
  /** The batch script's own output (`--output`, appended). */
  outputFile: string;
  batchScriptFile: string;
  batchScript: string;
}

export interface SlurmSubmission {
  job: SlurmJobRequest;
  hostFile: string;
}

export function makeSlurmSubmission(input: SlurmSubmissionInput): SlurmSubmission {
  const { request, layout, attemptDir } = input;
  const tasksPerNode = Math.max(...layout.nodes.map((n) => n.ranks));
  const gpusPerNode = Math.max(...layout.nodes.map((n) => n.gpus));
  const file = (name: string) => `${attemptDir}/${name}`;
  const gres = gpusPerNode > 0 ? `gpu:${input.gpuType ? `${input.gpuType}:` : ''}${gpusPerNode}` : undefined;
  const run = request.run;
  const command = run.kind === 'shell' ? ['/bin/sh', '-c', run.command] : run.argv;
  const placedBySlurm = input.placedBySlurm === true;
  const srun = [
    'srun', ...(placedBySlurm ? ['--distribution=block', `--ntasks-per-node=${tasksPerNode}`] : ['--distribution=arbitrary']),
    `--ntasks=${layout.nodeOfRank.length}`, '--kill-on-bad-exit=0', '--input=none',
    ...(request.launcher === 'mpi' && input.mpiPlugin !== undefined ? [`--mpi=${input.mpiPlugin}`] : []),
    '--open-mode=append', `--output=${file(SLURM_RANK_FILES.log.replace('{rank}', '%t'))}`,
    ...(gres !== undefined ? [`--gres=${gres}`] : []),
    '/bin/sh', file(SLURM_ATTEMPT_FILES.shim), ...command,
  ];
  const batchScript = [
    '#!/bin/sh',
    `# tutti: job ${request.jobId}, attempt ${request.attempt ?? 1}, as one Slurm job (written by the Slurm backend; see slurm-submission.ts)`,
    ...(placedBySlurm ? [] : [`SLURM_HOSTFILE=${quoteForShell(file(SLURM_ATTEMPT_FILES.hostFile))}`, 'export SLURM_HOSTFILE']),
    `exec ${srun.map(quoteForShell).join(' ')}`,
    '',
  ].join('\n');
  const job: SlurmJobRequest = {
    name: input.jobName,
    nodes: layout.nodes.length,
    ...(placedBySlurm ? {} : { nodeList: layout.nodes.map((n) => n.node) }),
    tasksPerNode,
    ...(gres !== undefined ? { gres } : {}),
    ...(input.timeLimitMs !== undefined ? { timeLimitMinutes: Math.max(1, Math.ceil(input.timeLimitMs / 60_000)) } : {}),
    ...(input.partition !== undefined ? { partition: input.partition } : {}),
    ...(input.account !== undefined ? { account: input.account } : {}),
    workdir: input.workdir,
    outputFile: file(SLURM_ATTEMPT_FILES.batchLog),
    batchScriptFile: file(SLURM_ATTEMPT_FILES.batchScript),
    batchScript,
  };
  return { job, hostFile: `${layout.nodeOfRank.join('\n')}\n` };
}

/** The MPI plugins `srun --mpi=list` names: the indented lines under "MPI plugin types are...". */
export function parseSrunMpiList(output: string): string[] {
  const lines = output.split('\n');
  const start = lines.findIndex((line) => /MPI plugin types are/i.test(line));
  if (start < 0) return [];
  const plugins: string[] = [];
  for (const line of lines.slice(start + 1)) {
    const match = /^\s+(\S+)\s*$/.exec(line);
    if (!match) break;
    plugins.push(match[1] as string);
  }
  return plugins;
}

/**
 * The plugin a `launcher: mpi` job's srun uses, of those Slurm offers: pmix (what Open MPI 4 and later, MPICH and
 * Intel MPI take), else pmi2; undefined when it offers neither (`none`, `cray_shasta` do not start an MPI job here).
 */
export function chooseSlurmMpiPlugin(plugins: readonly string[]): string | undefined {
  if (plugins.includes('pmix')) return 'pmix';
  const versioned = plugins.find((p) => /^pmix_v\d+$/.test(p));
  if (versioned !== undefined) return versioned;
  return plugins.includes('pmi2') ? 'pmi2' : undefined;
}
