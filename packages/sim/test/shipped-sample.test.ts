/**
 * The sample trace shipped in examples/ is there to show what `tutti sim` is for: comparing policies. On the per-VC
 * cluster it is too light (every policy gives the same result); on examples/clusters/philly-256.yaml (256 GPUs in one
 * pool) jobs queue, and the policies come apart. Orderings and clear margins are asserted, not exact figures.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { computePolicyMetrics, readTraceFile, resolvePolicies, runSimulation, type PolicyMetrics } from '@tutti/sim';
import { cluster } from './fixtures.ts';

const repo = path.resolve(import.meta.dirname, '../../..');

async function replay(clusterFile: string, names: string[]): Promise<Map<string, PolicyMetrics>> {
  const { jobs } = await readTraceFile(path.join(repo, 'examples/traces/philly-oct2017-2000.csv'));
  const config = cluster(await readFile(path.join(repo, clusterFile), 'utf8'));
  const { policies } = resolvePolicies(names);
  return new Map(policies.map((policy) => [policy.name, computePolicyMetrics(runSimulation(jobs, config, policy))]));
}

describe('the shipped sample trace', () => {
  it('tells fifo, tutti and tiresias apart on examples/clusters/philly-256.yaml', async () => {
    const m = await replay('examples/clusters/philly-256.yaml', ['fifo', 'tutti', 'tiresias']);
    const fifo = m.get('fifo')!;
    const tutti = m.get('tutti')!;
    const tiresias = m.get('tiresias')!;
    for (const policy of [fifo, tutti, tiresias]) expect(policy.jobs).toBe(2000);
    // Jobs queue here: fifo's average wait is hours.
    expect(fifo.avgQueueS).toBeGreaterThan(3600);
    // Backfill and fair share (tutti) beat plain FIFO, and least attained service (tiresias) beats both on average
    // JCT, each by a clear margin.
    expect(fifo.avgJctS).toBeGreaterThan(1.5 * tutti.avgJctS);
    expect(tutti.avgJctS).toBeGreaterThan(1.3 * tiresias.avgJctS);
    expect(fifo.avgQueueS).toBeGreaterThan(2 * tutti.avgQueueS);
    // Tiresias pays for it with preemptions; the others preempt nothing on a trace of one priority.
    expect(tiresias.preemptions).toBeGreaterThan(0);
    expect(fifo.preemptions).toBe(0);
  });
});
