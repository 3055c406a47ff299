/**
 * Replays a trace under scheduler profiles given as data, for trying profile variants (arguments, plugins) before
 * one becomes a built-in: `tutti sim --policies` takes built-in names only.
 *
 *   npx tsx packages/sim/scripts/compare-profiles.ts --trace T --cluster C [--trace-extra E] [--from S] [--to S] \
 *     --profile '{"name": "tutti-sje", "base": "tutti", "args": {"fair-share": {"withinTeam": "shortest-estimated"}}}' ...
 *
 * Each `--profile` is a JSON object as `parseProfile` reads it (a built-in name alone also works). Prints one JSON
 * object `{policies: {name: figures}}`, the shape of `tutti sim --json`.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { parseClusterConfigYaml } from '@tutti/model';
import { parseProfile } from '@tutti/scheduler';
import { computePolicyMetrics, readTraceFile, resolvePolicies, runSimulation, toPolicyJson, type PolicyJson, type SimPolicy, type SimResult, type TraceJob } from '../src/index.ts';

const { values } = parseArgs({
  options: {
    trace: { type: 'string' },
    'trace-extra': { type: 'string' },
    cluster: { type: 'string' },
    from: { type: 'string' },
    to: { type: 'string' },
    profile: { type: 'string', multiple: true },
    'time-scale': { type: 'string' },
  },
});
if (!values.trace || !values.cluster || !values.profile?.length) {
  process.stderr.write('usage: compare-profiles.ts --trace T --cluster C [--trace-extra E] [--from S] [--to S] [--time-scale X] --profile JSON|NAME ...\n');
  process.exit(2);
}

const parsedCluster = parseClusterConfigYaml(await readFile(values.cluster, 'utf8'));
if (!parsedCluster.ok) throw new Error(`${values.cluster}: ${JSON.stringify(parsedCluster.errors)}`);
const trace = await readTraceFile(values.trace, {
  ...(values.from !== undefined ? { fromS: Number(values.from) } : {}),
  ...(values.to !== undefined ? { toS: Number(values.to) } : {}),
  ...(values['trace-extra'] !== undefined ? { extraFile: values['trace-extra'] } : {}),
});
// A what-if of a busier cluster: submissions come `time-scale` times closer together, run times unchanged.
const timeScale = values['time-scale'] !== undefined ? Number(values['time-scale']) : 1;
const jobs = timeScale === 1 ? trace.jobs : trace.jobs.map((j) => ({ ...j, submitS: j.submitS / timeScale }));

/**
 * Time averages over the span in which jobs are submitted (first to last submission): with a long tail of a few
 * jobs that run for months after the last submission (Alibaba 2023), averages over the whole makespan say little
 * about the loaded part.
 */
function measureSubmissionSpan(result: SimResult, trace: readonly TraceJob[]): Record<string, number> {
  const from = trace.reduce((m, j) => Math.min(m, j.submitS), Infinity);
  const to = trace.reduce((m, j) => Math.max(m, j.submitS), -Infinity);
  const { t, busyGpus, pendingJobs, fragmentedGpus } = result.timeline;
  let busy = 0;
  let pending = 0;
  let fragmented = 0;
  let free = 0;
  for (let i = 0; i < t.length; i++) {
    const start = Math.max(from, t[i] as number);
    const end = Math.min(to, i + 1 < t.length ? (t[i + 1] as number) : to);
    if (end <= start) continue;
    const dt = end - start;
    busy += (busyGpus[i] as number) * dt;
    pending += (pendingJobs[i] as number) * dt;
    fragmented += (fragmentedGpus[i] as number) * dt;
    free += (result.totalGpus - (busyGpus[i] as number)) * dt;
  }
  const span = Math.max(1e-9, to - from);
  const round = (x: number): number => Math.round(x * 10_000) / 10_000;
  return {
    span_s: Math.round(span),
    span_utilization: round(busy / (span * result.totalGpus)),
    span_avg_pending_jobs: Math.round((pending / span) * 10) / 10,
    span_fragmentation_of_gpus: round(fragmented / (span * result.totalGpus)),
    span_fragmentation_of_free: round(free > 0 ? fragmented / free : 0),
  };
}

const out: Record<string, PolicyJson & Record<string, number>> = {};
for (const text of values.profile) {
  let policy: SimPolicy | undefined;
  if (text.trim().startsWith('{')) {
    const parsed = parseProfile(JSON.parse(text));
    if (!parsed.ok) throw new Error(parsed.error);
    policy = { name: parsed.profile.name, profile: parsed.profile, pruning: 'none' };
  } else {
    const resolved = resolvePolicies([text]);
    policy = resolved.policies[0];
    if (!policy) throw new Error(resolved.unavailable[0]?.reason ?? `unknown profile ${text}`);
  }
  const result = runSimulation(jobs, parsedCluster.value, policy, {});
  out[policy.name] = { ...toPolicyJson(computePolicyMetrics(result)), ...measureSubmissionSpan(result, jobs) };
  process.stderr.write(`${policy.name}: ${JSON.stringify(out[policy.name])}\n`);
}
process.stdout.write(`${JSON.stringify({ policies: out }, null, 2)}\n`);
