/**
 * What the Slurm backend asks of Slurm, whichever way it reaches it: Slurm's command-line tools on a login node
 * (`createSlurmCliControl`, the default) or slurmrestd, Slurm's REST API, with JSON Web Tokens (slurm-rest.ts).
 * The backend itself never names a tool or a route: it reads nodes and jobs, submits, signals and cancels here.
 */
import { SQUEUE_FORMAT, parseSqueue, scancelSignalName, type SlurmCli, type SlurmJobState } from './slurm-cli.ts';
import { parseGpusHeldByOthers, type HeldGpus } from './slurm-held-gpus.ts';
import { parseSlurmNodes, type SlurmNode } from './slurm-nodes.ts';
import { NO_SLURM_TOPOLOGY, parseSlurmTopology } from './slurm-topology.ts';
import type { SlurmJobRequest } from './slurm-submission.ts';

export interface SlurmControl {
  /** How this control plane reaches Slurm, for messages: "Slurm's tools" or "slurmrestd at http://…". */
  readonly via: string;
  /**
   * Whether a stop signal can be sent to the ranks' step alone (`scancel --signal=SIG <job>.<step>`). slurmrestd's
   * API cannot: its only signal cancels the whole job (srun, the batch script, answers TERM by killing the step).
   * Without it the backend asks the ranks' shims to signal themselves (slurm-rank-shim.ts, `stopRequestFile`).
   */
  readonly signalsSteps: boolean;
  /** Every node Slurm has. */
  nodes(): Promise<SlurmNode[]>;
  /** Each node's rack (its leaf switch in Slurm's topology); empty when Slurm has none or this way cannot say. */
  racks(): Promise<Map<string, string>>;
  /** Per node, the GPUs that jobs whose name does not start with `ownJobNamePrefix` hold. */
  gpusHeldByOthers(ownJobNamePrefix: string): Promise<HeldGpus>;
  /** The state of these jobs, ended ones included while slurmctld keeps them (MinJobAge); unknown ids are left out. */
  jobs(ids: readonly string[]): Promise<Map<string, SlurmJobState>>;
  /** The jobs of this name, oldest first. */
  jobsNamed(name: string): Promise<Map<string, SlurmJobState>>;
  /** Submits a batch job; resolves with its Slurm job id. */
  submit(job: SlurmJobRequest): Promise<string>;
  /** Sends `signal` to every process of one step of a job (only where `signalsSteps`). */
  signalStep(slurmJobId: string, step: number, signal: NodeJS.Signals): Promise<void>;
  /** Cancels a job outright: every process of it killed, its nodes released. */
  cancel(slurmJobId: string): Promise<void>;
}

/** Slurm reached through its command-line tools (`sbatch`, `squeue`, `scontrol`, `scancel`) on a login node. */
export function createSlurmCliControl(cli: SlurmCli): SlurmControl {
  return {
    via: "Slurm's tools",
    signalsSteps: true,
    async nodes() {
      return parseSlurmNodes(await cli.run('scontrol', ['-o', 'show', 'node']));
    },
    async racks() {
      try {
        return parseSlurmTopology(await cli.run('scontrol', ['show', 'topology']));
      } catch (error) {
        if (error instanceof Error && NO_SLURM_TOPOLOGY.test(error.message)) return new Map();
        throw error;
      }
    },
    async gpusHeldByOthers(ownJobNamePrefix) {
      return parseGpusHeldByOthers(await cli.run('squeue', ['--json']), ownJobNamePrefix);
    },
    async jobs(ids) {
      const list = [...new Set(ids)];
      if (list.length === 0) return new Map();
      return parseSqueue(await cli.run('squeue', ['-h', '--states=all', `--jobs=${list.join(',')}`, '-o', SQUEUE_FORMAT]).catch((error: unknown) => {
        // squeue refuses the whole list when none of its ids is known any more: then none of them runs.
        if (error instanceof Error && /Invalid job id/i.test(error.message)) return '';
        throw error;
      }));
    },
    async jobsNamed(name) {
      return parseSqueue(await cli.run('squeue', ['-h', '--states=all', `--name=${name}`, '-o', SQUEUE_FORMAT]));
    },
    async submit(job) {
      const answer = (await cli.run('sbatch', sbatchArguments(job))).trim().split(';')[0] ?? '';
      if (!/^\d+$/.test(answer)) throw new Error(`sbatch answered ${JSON.stringify(answer)}, not a job id`);
      return answer;
    },
    async signalStep(slurmJobId, step, signal) {
      await cli.run('scancel', [`--signal=${scancelSignalName(signal)}`, `${slurmJobId}.${step}`]);
    },
    async cancel(slurmJobId) {
      await cli.run('scancel', [slurmJobId]);
    },
  };
}

/** `sbatch`'s arguments for a job request, the batch script's path last. */
export function sbatchArguments(job: SlurmJobRequest): string[] {
  return [
    '--parsable',
    `--job-name=${job.name}`,
    `--nodes=${job.nodes}`,
    ...(job.nodeList !== undefined ? [`--nodelist=${job.nodeList.join(',')}`] : []),
    `--ntasks-per-node=${job.tasksPerNode}`,
    ...(job.gres !== undefined ? [`--gres=${job.gres}`] : []),
    ...(job.timeLimitMinutes !== undefined ? [`--time=${job.timeLimitMinutes}`] : []),
    ...(job.partition !== undefined ? [`--partition=${job.partition}`] : []),
    ...(job.account !== undefined ? [`--account=${job.account}`] : []),
    '--no-requeue',
    `--chdir=${job.workdir}`,
    `--output=${job.outputFile}`,
    '--open-mode=append',
    '--export=ALL',
    job.batchScriptFile,
  ];
}
