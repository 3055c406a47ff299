/**
 * Declares `tutti sim` (replay a job trace through the real scheduler on a simulated cluster and compare policies).
 * The run itself is in sim-run.ts, imported only when the command runs, so that other commands do not load the
 * simulator and the scheduler.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { parseInteger } from './arguments.ts';

export interface SimCommandOptions {
  trace: string;
  traceExtra?: string;
  cluster: string;
  policies?: string;
  from?: number;
  to?: number;
  report?: string;
  interval: number;
  restartOverhead: number;
  checkpointInterval: number;
  seed: number;
  partition: 'auto' | 'team-label' | 'none';
  exact: boolean;
}

function seconds(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${name} must be a number of seconds ≥ 0, got '${value}'`);
    return n;
  };
}

/** Adds `tutti sim` to the program. `json()` tells whether the global --json flag is set. */
export function registerSimCommand(program: Command, json: () => boolean): void {
  program
    .command('sim')
    .description('replay a job trace through the scheduler on a simulated cluster and compare policies')
    .requiredOption('--trace <file>', 'trace CSV (job_id,submit_time_s,duration_s,num_gpus,gpu_type,user,queue,status), plain or gzip')
    .option('--trace-extra <file>', 'side CSV joined by job_id with a gpu_milli column (fractional GPUs, e.g. alibaba_gpu2023.extra.csv.gz)')
    .requiredOption('--cluster <file>', 'cluster config YAML (nodes, teams, scheduler), as for `tutti up --config`')
    .option('--policies <names>', 'comma-separated scheduler profiles (fifo,fifo-backfill,greedy,sjf,srtf,tiresias,tutti,tutti-las); default: the config\'s profile')
    .option('--from <s>', 'only jobs submitted at or after this trace second', seconds('--from'))
    .option('--to <s>', 'only jobs submitted before this trace second', seconds('--to'))
    .option('--report <dir>', 'write report.md with SVG charts into this directory')
    .option('--interval <s>', 'also run a scheduling cycle every this many simulated seconds (0: only on events)', seconds('--interval'), 0)
    .option('--restart-overhead <s>', 'seconds a preempted job needs to restart', seconds('--restart-overhead'), 30)
    .option('--checkpoint-interval <s>', 'seconds of work between checkpoints (0: checkpoint on preemption)', seconds('--checkpoint-interval'), 1800)
    .option('--seed <n>', 'seed given to every cycle', parseInteger('--seed'), 1)
    .addOption(new Option('--partition <mode>', 'team-label: nodes labelled team: X serve only team X').choices(['auto', 'team-label', 'none']).default('auto'))
    .option('--exact', 'show every cycle the whole queue and cluster (slow; for checking the pruned fast path)', false)
    .action(async (options: SimCommandOptions) => {
      const { runSimCommand } = await import('./sim-run.ts');
      await runSimCommand(options, json());
    });
}

