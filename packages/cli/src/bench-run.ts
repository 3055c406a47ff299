/**
 * `tutti bench scheduler`: times full scheduling cycles on a synthetic busy cluster (@tutti/sim does the work).
 * Loaded only when the command runs, so that other commands do not load the simulator and the scheduler.
 */
import { checkSchedulerBenchOptions, formatSchedulerBench, runSchedulerBench } from '@tutti/sim';
import type { SchedulerBenchOptions, SchedulerBenchResult } from '@tutti/sim';
import { CliFailure, EXIT } from './cli-failure.ts';

export type { SchedulerBenchOptions };

/** The figures (printed as JSON under --json) and their text for people. */
export function runSchedulerBenchCommand(options: SchedulerBenchOptions, json: boolean): { figures: SchedulerBenchResult; text: string } {
  const problem = checkSchedulerBenchOptions(options);
  if (problem) throw new CliFailure(problem, EXIT.usage);
  if (!json) process.stderr.write(`timing full cycles at ${options.nodes} nodes × ${options.gpusPerNode} GPUs, ${options.pending} pending jobs (and at other sizes for the growth tables)...\n`);
  const figures = runSchedulerBench(options);
  return { figures, text: formatSchedulerBench(figures) };
}
