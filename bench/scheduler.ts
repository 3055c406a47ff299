/**
 * `npm run bench:scheduler -- --nodes 1250 --gpus-per-node 8 --pending 50000 --teams 100 [--profile tutti] [--rounds 15] [--json]`
 *
 * The same benchmark as `tutti bench scheduler` (packages/sim/src/scheduler-bench.ts describes the world and the
 * figures): full scheduling cycles on a busy synthetic cluster, placements per second, the cost of one arrival, and
 * how the cycle grows with nodes and with pending jobs.
 */
import { checkSchedulerBenchOptions, formatSchedulerBench, runSchedulerBench, type SchedulerBenchOptions } from '@tutti/sim';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
const profileAt = process.argv.indexOf('--profile');
const options: SchedulerBenchOptions = {
  nodes: arg('nodes', 1250),
  gpusPerNode: arg('gpus-per-node', 8),
  pending: arg('pending', 50_000),
  teams: arg('teams', 100),
  rounds: arg('rounds', 15),
  profile: profileAt >= 0 ? (process.argv[profileAt + 1] ?? 'tutti') : 'tutti',
  growth: !process.argv.includes('--no-growth'),
};
const problem = checkSchedulerBenchOptions(options);
if (problem) {
  process.stderr.write(`bench:scheduler: ${problem}\n`);
  process.exit(2);
}
const result = runSchedulerBench(options);
process.stdout.write(`${process.argv.includes('--json') ? JSON.stringify(result) : formatSchedulerBench(result)}\n`);
