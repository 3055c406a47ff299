/**
 * `tutti sim`: replay a job trace through the real scheduler on a simulated cluster, in-process, and compare
 * policies. The simulation itself lives in @tutti/sim; this file runs it, prints and writes the report. It is loaded
 * only when `tutti sim` runs (sim-command.ts declares the command), so other commands start without the simulator.
 */
import { readFile } from 'node:fs/promises';
import { formatFieldErrors, parseClusterConfigYaml } from '@tutti/model';
import { computePolicyMetrics, readTraceFile, resolvePolicies, runSimulation, toPolicyJson, writeReport, type PolicyJson, type PolicyMetrics, type SimResult } from '@tutti/sim';
import { CliFailure, EXIT } from './cli-failure.ts';
import type { SimCommandOptions } from './sim-command.ts';

export async function runSimCommand(options: SimCommandOptions, json: boolean): Promise<void> {
  const fail = (message: string): never => {
    throw new CliFailure(`sim: ${message}`, EXIT.usage, 'sim_error');
  };
  let clusterText: string;
  try {
    clusterText = await readFile(options.cluster, 'utf8');
  } catch (error) {
    return fail(`cannot read ${options.cluster}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`);
  }
  const parsed = parseClusterConfigYaml(clusterText);
  if (!parsed.ok) return fail(`${options.cluster} is not a valid cluster config:\n${formatFieldErrors(parsed.errors).replace(/^/gm, '  ')}`);
  const cluster = parsed.value;

  const names = (options.policies ?? cluster.scheduler.profile).split(',');
  const { policies, unavailable } = resolvePolicies(names, { exact: options.exact });
  for (const u of unavailable) process.stderr.write(`tutti sim: skipping ${u.name}: ${u.reason}\n`);
  if (policies.length === 0) return fail('none of the asked policies is available');

  const tty = process.stderr.isTTY === true && !json;
  const readStart = performance.now();
  let trace;
  try {
    trace = await readTraceFile(options.trace, { fromS: options.from, toS: options.to, ...(options.traceExtra !== undefined ? { extraFile: options.traceExtra } : {}) });
  } catch (error) {
    return fail(`cannot read trace ${options.trace}: ${(error as Error).message}`);
  }
  if (trace.skipped.count > 0) process.stderr.write(`tutti sim: skipped ${trace.skipped.count} unreadable rows (${trace.skipped.examples.join('; ')})\n`);
  if (tty) process.stderr.write(`read ${trace.jobs.length} jobs in ${((performance.now() - readStart) / 1000).toFixed(1)} s\n`);

  const results: Array<{ result: SimResult; metrics: PolicyMetrics }> = [];
  for (const policy of policies) {
    const onProgress = tty
      ? (done: number, total: number) => {
          const width = 30;
          const filled = total === 0 ? width : Math.round((done / total) * width);
          process.stderr.write(`\r${policy.name.padEnd(14)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`);
        }
      : undefined;
    let result: SimResult;
    try {
      result = runSimulation(trace.jobs, cluster, policy, {
        cycleIntervalS: options.interval,
        restartOverheadS: options.restartOverhead,
        checkpointIntervalS: options.checkpointInterval,
        seed: options.seed,
        partition: options.partition,
        onProgress,
      });
    } finally {
      if (tty) process.stderr.write('\n');
    }
    results.push({ result, metrics: computePolicyMetrics(result) });
  }

  if (json) {
    const out: { policies: Record<string, PolicyJson>; unavailable: typeof unavailable } = { policies: {}, unavailable };
    for (const { metrics } of results) out.policies[metrics.policy] = toPolicyJson(metrics);
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } else {
    const h = (s: number): string => (Number.isFinite(s) ? `${(s / 3600).toFixed(2)}h` : '-');
    const fragmentation = results.some(({ metrics: m }) => m.fragmentationOfGpus !== undefined);
    const pct = (x: number | undefined): string => (x === undefined ? '-' : `${(x * 100).toFixed(1)}%`);
    const rows = results.map(({ metrics: m }) => [
      m.policy, String(m.jobs), String(m.unplaceable), h(m.avgJctS), h(m.p50JctS), h(m.p99JctS), h(m.avgQueueS), h(m.p99QueueS), pct(m.utilization), String(m.preemptions), m.gpuHoursLost.toFixed(1),
      ...(fragmentation ? [pct(m.fragmentationOfGpus), pct(m.fragmentationOfFree)] : []),
      `${m.wallS.toFixed(1)}s`,
    ]);
    const header = ['POLICY', 'FINISHED', 'UNPLACEABLE', 'AVG JCT', 'P50 JCT', 'P99 JCT', 'AVG QUEUE', 'P99 QUEUE', 'UTIL', 'PREEMPT', 'GPU-H LOST', ...(fragmentation ? ['FRAG/GPUS', 'FRAG/FREE'] : []), 'WALL'];
    const widths = header.map((title, i) => Math.max(title.length, ...rows.map((r) => (r[i] ?? '').length)));
    const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
    process.stdout.write(`${[line(header), ...rows.map(line)].join('\n')}\n`);
    const first = results[0]?.metrics;
    if (first && first.unplaceable > 0) {
      process.stdout.write(`unplaceable by reason: ${Object.entries(first.unplaceableByReason).filter(([, n]) => n > 0).map(([r, n]) => `${r} ${n}`).join(', ')}\n`);
    }
  }
  // A profile whose plans fail verifyPlan (dropped, as the live server drops them): said on stderr, whatever the format.
  for (const { result } of results) {
    const first = result.planViolations[0];
    if (first) process.stderr.write(`policy ${result.policy}: ${result.planViolations.length} invalid placements or preemptions were dropped (as live); the first, at t=${first.timeS} s: ${first.message}\n`);
  }

  if (options.report) {
    const written = await writeReport(options.report, {
      title: `tutti sim: ${options.trace}`,
      conditions: [
        `trace: ${options.trace}${options.from !== undefined || options.to !== undefined ? `, submissions in [${options.from ?? '-∞'}, ${options.to ?? '∞'}) s` : ''}, ${trace.jobs.length} jobs`,
        `cluster: ${options.cluster}: ${cluster.nodes.length} nodes, ${cluster.nodes.reduce((s, n) => s + n.gpus.length, 0)} GPUs, ${cluster.teams.length} teams${results[0]?.result.partitioned ? ', partitioned by the nodes\' team label' : ''}`,
        `cycles on events${options.interval > 0 ? ` and every ${options.interval} s` : ''}; restart overhead ${options.restartOverhead} s; checkpoint every ${options.checkpointInterval} s of work; seed ${options.seed}`,
        `jobs larger than a node became gangs of whole nodes (${results[0]?.result.roundedUpJobs ?? 0} rounded up to equal GPUs per node)`,
      ],
      results,
      unavailable,
    });
    process.stderr.write(`wrote ${written.map((w) => `${options.report}/${w}`).join(', ')}\n`);
  }
}
