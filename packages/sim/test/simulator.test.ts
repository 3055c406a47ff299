import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { computeGangShape, computePolicyMetrics, readTraceFile, resolvePolicies, runSimulation, writeReport, type SimPolicy } from '@tutti/sim';
import { cluster, mixedCluster, oneNode, randomTrace, trace } from './fixtures.ts';

const repo = path.resolve(import.meta.dirname, '../../..');


/**
 * The greedy profile: priority-FIFO where a job that does not fit is skipped, best fit. Named `greedy` once the
 * scheduler has a profile registry; before that it was the only behaviour, under the default profile's name.
 */
function policy(options: { exact?: boolean } = {}): SimPolicy {
  const { policies } = resolvePolicies(['greedy', 'tutti'], options);
  const found = policies[0];
  if (!found) throw new Error('no greedy policy');
  return found;
}



describe('hand-checked traces', () => {
  it('runs jobs in submission order on a full node (FIFO), with the JCTs worked out by hand', () => {
    // A holds both GPUs 0-100; B (2 GPUs) waits for it and runs 100-150; C (1 GPU) waits behind B's GPUs: 150-160.
    const result = runSimulation(trace([[0, 100, 2], [10, 50, 2], [20, 10, 1]]), oneNode(2), policy());
    expect([...result.jobs.firstStartS]).toEqual([0, 100, 150]);
    expect([...result.jobs.finishS]).toEqual([100, 150, 160]);
    const m = computePolicyMetrics(result);
    expect(m.jobs).toBe(3);
    expect(m.avgJctS).toBeCloseTo((100 + 140 + 140) / 3);
    expect(m.avgQueueS).toBeCloseTo((0 + 90 + 130) / 3);
    expect(m.makespanS).toBe(160);
    // 2 GPUs × 100 s + 2 × 50 + 1 × 10 over 2 GPUs × 160 s.
    expect(m.utilization).toBeCloseTo(310 / 320);
  });

  it('lets a small job start past one that does not fit (the greedy default), never delaying what fits', () => {
    // A takes 3 of 4 GPUs; B (2) does not fit until 100; C (1) fits at once.
    const result = runSimulation(trace([[0, 100, 3], [1, 10, 2], [2, 10, 1]]), oneNode(4), policy());
    expect([...result.jobs.firstStartS]).toEqual([0, 100, 2]);
    expect([...result.jobs.finishS]).toEqual([100, 110, 12]);
  });

  it('coalesces events at the same time: a completion and an arrival at t=100 share one cycle', () => {
    const result = runSimulation(trace([[0, 100, 2], [100, 5, 2]]), oneNode(2), policy());
    expect([...result.jobs.firstStartS]).toEqual([0, 100]);
    expect(result.cycles).toBe(2);
  });

  it('turns jobs larger than a node into gangs of whole nodes', () => {
    expect(computeGangShape(16, 8)).toEqual({ numNodes: 2, gpusPerNode: 8 });
    expect(computeGangShape(12, 8)).toEqual({ numNodes: 2, gpusPerNode: 6 });
    expect(computeGangShape(20, 8)).toEqual({ numNodes: 3, gpusPerNode: 7 });
    expect(computeGangShape(8, 8)).toEqual({ numNodes: 1, gpusPerNode: 8 });
    const twoNodes = cluster('nodes: [{group: n, count: 2, gpus: {count: 8, type: A100}}]');
    const result = runSimulation(trace([[0, 10, 16], [0, 10, 1]]), twoNodes, policy());
    expect([...result.jobs.firstStartS]).toEqual([0, 10]);
    expect(result.jobs.gpus[0]).toBe(16);
  });
});

describe('partitions and unplaceable jobs', () => {
  const vcs = cluster(`
nodes:
  - {group: a, count: 1, gpus: {count: 8, type: P40}, labels: {team: va}}
  - {group: b, count: 2, gpus: {count: 8, type: P40}, labels: {team: vb}}
teams:
  - {name: va, quota: {P40: 8}, borrowing_limit: {P40: 0}}
  - {name: vb, quota: {P40: 16}, borrowing_limit: {P40: 0}}
  - {name: vc}
`);

  it('keeps each team on its own nodes and reports every job that cannot be placed, by reason', () => {
    const result = runSimulation(
      trace([[0, 100, 8, 'va'], [0, 10, 8, 'va'], [0, 10, 8, 'vb'], [0, 10, 8, 'vb'], [0, 10, 1, ''], [0, 10, 1, 'vc'], [0, 10, 1, 'zz'], [0, 10, 16, 'va']]),
      vcs,
      policy(),
    );
    expect(result.partitioned).toBe(true);
    // va's second job waits for va's only node although vb has room: no borrowing.
    expect([...result.jobs.firstStartS].slice(0, 4)).toEqual([0, 100, 0, 0]);
    const m = computePolicyMetrics(result);
    expect(m.jobs).toBe(4);
    expect(m.unplaceableByReason).toEqual({ no_team: 1, team_without_capacity: 2, larger_than_team: 1, never_fits: 0 });
    expect(m.jobs + m.unplaceable).toBe(8);
    expect(m.teams.map((t) => t.team)).toEqual(['(none)', 'va', 'vb', 'vc', 'zz']);
  });

  it('treats the cluster as one pool without team labels', () => {
    const result = runSimulation(trace([[0, 10, 1, 'anything'], [0, 10, 64, '']]), oneNode(8), policy());
    const m = computePolicyMetrics(result);
    expect(result.partitioned).toBe(false);
    expect(m.jobs).toBe(1);
    expect(m.unplaceableByReason.never_fits).toBe(1);
  });
});

describe('determinism, conservation and exact pruning', () => {
  const mixed = mixedCluster();

  it('gives the same result for the same inputs', () => {
    const jobs = randomTrace(7, 400, ['qa', 'qb', '']);
    const a = runSimulation(jobs, mixed, policy(), { seed: 3 });
    const b = runSimulation(jobs, mixed, policy(), { seed: 3 });
    expect([...a.jobs.firstStartS]).toEqual([...b.jobs.firstStartS]);
    expect([...a.jobs.finishS]).toEqual([...b.jobs.finishS]);
    expect(a.cycles).toBe(b.cycles);
  });

  it('finishes or reports every job, and GPU-seconds used = job work + lost work, counted from both sides', () => {
    for (const seed of [1, 2, 3]) {
      const jobs = randomTrace(seed, 300, ['qa', 'qb', 'qc', '']);
      const result = runSimulation(jobs, mixed, policy(), { cycleIntervalS: 60 });
      const m = computePolicyMetrics(result);
      expect(m.jobs + m.unplaceable).toBe(jobs.length);
      let work = 0;
      for (let i = 0; i < jobs.length; i++) if (!Number.isNaN(result.jobs.finishS[i] as number)) work += (result.jobs.durationS[i] as number) * (result.jobs.gpus[i] as number);
      expect(result.workGpuS).toBeCloseTo(work, 3);
      expect(result.usedGpuS).toBeCloseTo(result.workGpuS + result.lostGpuS, 3);
      expect(result.busyGpuSFromNodes).toBeCloseTo(result.usedGpuS, 3);
    }
  });

  it('decides exactly as the unpruned cycle does (pruning shows the scheduler less, never something else)', () => {
    const pruned = policy();
    const exact = policy({ exact: true });
    expect(pruned.pruning).toBe('greedy-best-fit');
    expect(exact.pruning).toBe('none');
    for (const seed of [11, 12, 13, 14]) {
      const jobs = randomTrace(seed, 250, ['qa', 'qb']);
      const single = cluster('nodes: [{group: p, count: 3, gpus: {count: 8, type: A100}}, {group: q, count: 3, gpus: {count: 4, type: A100}}]');
      for (const config of [mixed, single]) {
        const a = runSimulation(jobs, config, pruned);
        const b = runSimulation(jobs, config, exact);
        expect([...a.jobs.firstStartS]).toEqual([...b.jobs.firstStartS]);
      }
    }
  });
});

describe('trace reader', () => {
  const text = 'job_id,submit_time_s,duration_s,num_gpus,gpu_type,user,queue,status\nb,20,5,2,,u,vc1,\na,10,7,1,a100,,,Pass\nbad,x,1,1,,,,\n\nc,30,9,16,,,vc2,\n';

  it('reads plain and gzip files alike, sorts by submission, keeps the window and counts bad rows', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'tutti-trace-'));
    await writeFile(path.join(dir, 't.csv'), text);
    await writeFile(path.join(dir, 't.csv.gz'), gzipSync(text));
    for (const file of ['t.csv', 't.csv.gz']) {
      const { jobs, skipped } = await readTraceFile(path.join(dir, file));
      expect(jobs.map((j) => j.traceId)).toEqual(['a', 'b', 'c']);
      expect(jobs[0]).toEqual({ traceId: 'a', submitS: 10, durationS: 7, numGpus: 1, gpuType: 'A100', user: '', queue: '', status: 'Pass' });
      expect(skipped.count).toBe(1);
      const window = await readTraceFile(path.join(dir, file), { fromS: 15, toS: 30 });
      expect(window.jobs.map((j) => j.traceId)).toEqual(['b']);
    }
  });

  it('refuses a file without the schema header', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'tutti-trace-'));
    await writeFile(path.join(dir, 'x.csv'), 'id,when\n1,2\n');
    await expect(readTraceFile(path.join(dir, 'x.csv'))).rejects.toThrow(/missing job_id, submit_time_s, duration_s, num_gpus/);
  });

  it('reads the shipped Philly sample and replays it on the per-VC cluster', async () => {
    const { jobs } = await readTraceFile(path.join(repo, 'examples/traces/philly-oct2017-2000.csv'));
    expect(jobs.length).toBe(2000);
    const config = cluster(await readFile(path.join(repo, 'examples/clusters/philly-vc.yaml'), 'utf8'));
    expect(config.nodes.length).toBe(352);
    expect(config.teams.length).toBe(11);
    const m = computePolicyMetrics(runSimulation(jobs, config, policy()));
    expect(m.jobs + m.unplaceable).toBe(2000);
    expect(m.unplaceableByReason.no_team).toBeGreaterThan(0);
  });
});

describe('report', () => {
  it('writes a Markdown report with SVG charts: JCT CDF, utilization and queue over time, per-team JCT, one colour per policy', async () => {
    const jobs = trace([[0, 100, 2, 'qa'], [10, 50, 2, 'qb'], [20, 10, 1, 'qa']]);
    const { policies } = resolvePolicies(['fifo', 'tutti']);
    const results = policies.map((p) => {
      const result = runSimulation(jobs, oneNode(2), p);
      return { result, metrics: computePolicyMetrics(result) };
    });
    const dir = await mkdtemp(path.join(tmpdir(), 'tutti-report-'));
    const written = await writeReport(dir, { title: 'tiny', conditions: ['3 jobs on 2 GPUs'], results, unavailable: [] });
    expect(written.sort()).toEqual(['jct-cdf.svg', 'queue.svg', 'report.md', 'teams.svg', 'utilization.svg']);
    for (const svg of written.filter((f) => f.endsWith('.svg'))) {
      const text = await readFile(path.join(dir, svg), 'utf8');
      expect(text.startsWith('<svg')).toBe(true);
      // The legend names both policies.
      expect(text).toContain('fifo');
      expect(text).toContain('tutti');
    }
    const markdown = await readFile(path.join(dir, 'report.md'), 'utf8');
    expect(markdown).toContain('# tiny');
    expect(markdown).toMatch(/\| fifo \| 3 \| 0 \|/);
  });
});
