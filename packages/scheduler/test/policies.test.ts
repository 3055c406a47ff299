/** Scenario tests of the `tutti` profile: quotas, reclaim, fair share, topology, fractions, preemption, backfill, profiles. */
import { describe, expect, it } from 'vitest';
import type { Job, JobSpec, TeamConfig } from '@tutti/model';
import { DEFAULT_PROFILE, FIFO_BACKFILL_PROFILE, FIFO_PROFILE, getProfile, parseProfile, runCycle, TUTTI_PROFILE, verifyPlan } from '../src/index.ts';
import { cycle, makeCluster, makeJob, makeNode, placedOf, type JobBuilder } from './builders.ts';

const HOUR = 3_600_000;
const specs = (...jobs: Job[][]) => new Map<string, JobSpec>(jobs.flat().map((j) => [j.id, j.spec]));
const team = (name: string, nominal: Record<string, number>, extra: Partial<TeamConfig> = {}): TeamConfig => ({ name, weight: 1, nominal, ...extra });
const build = (...b: JobBuilder[]) => b.map((x) => x.build());

describe('profiles', () => {
  it('has the built-ins, and the default is tutti', () => {
    expect(DEFAULT_PROFILE).toBe(TUTTI_PROFILE);
    for (const name of ['tutti', 'fifo', 'fifo-backfill', 'greedy']) expect(getProfile(name).ok).toBe(true);
    const unknown = getProfile('fair');
    expect(unknown).toEqual({ ok: false, error: expect.stringContaining("unknown scheduler profile 'fair'") });
  });

  it.each([
    [{ name: 'x', plugins: { queueSort: 'random' } }, 'plugins.queueSort: expected one of queue-sort, fair-share'],
    [{ name: 'x', plugins: { sorting: 'fair-share' } }, 'plugins.sorting: unknown extension point'],
    [{ name: 'x', args: { preemption: { maxGraceMs: -1 } } }, 'args.preemption.maxGraceMs: expected a number ≥ 0'],
    [{ name: 'x', args: { preemption: { grace: 5 } } }, 'args.preemption.grace: unknown argument'],
    [{ name: 'x', weights: { 'best-fit': 1.5 } }, 'weights.best-fit: expected a whole number'],
    [{ name: 'x', weights: { quota: 1 } }, 'weights.quota: not a score plugin'],
    [{ name: 'x', base: 'nope' }, "unknown scheduler profile 'nope'"],
    [{ name: 'x', colour: 'red' }, "unknown profile field 'colour'"],
  ])('rejects %j', (raw, error) => {
    const result = parseProfile(raw);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error).toContain(error);
  });

  it('parses a YAML-like object on a base', () => {
    const result = parseProfile({ name: 'mine', base: 'fifo', plugins: { backfill: 'easy' }, args: { backfill: { estimatedRuntimeMs: 1000 } } });
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.profile.plugins?.backfill).toBe('easy');
  });

  it('lays arguments over the base\'s key by key: tutti-las with other thresholds is still least attained service', () => {
    const result = parseProfile({ name: 'las-fast', base: 'tutti-las', args: { 'fair-share': { lasThresholdsGpuS: [60] }, 'order-preemption': { maxGraceMs: 1000 } } });
    if (!result.ok) throw new Error(result.error);
    expect(result.profile.args).toEqual({ 'fair-share': { withinTeam: 'least-attained', lasThresholdsGpuS: [60] }, 'order-preemption': { acrossTeams: 'over-share', maxGraceMs: 1000 } });
    // On the default base the same thresholds are an error that says why.
    const plain = parseProfile({ name: 'x', args: { 'fair-share': { lasThresholdsGpuS: [60] } } });
    expect(plain).toEqual({ ok: false, error: expect.stringContaining('lasThresholdsGpuS: only with withinTeam: least-attained') });
  });
});

describe('quotas and reclaim', () => {
  const cluster = makeCluster(makeNode('a').gpus(8), makeNode('b').gpus(8));
  const teams = [team('red', { '*': 8 }), team('blue', { '*': 8 }, { borrowingLimit: { '*': 4 } })];

  it('admits within nominal + borrowing limit, and says why not beyond it', () => {
    const jobs = build(makeJob(1).gpus(8).team('blue'), makeJob(2).gpus(4).team('blue'), makeJob(3).gpus(4).team('blue'));
    const result = cycle(cluster, jobs, TUTTI_PROFILE, { teams });
    expect(Object.keys(placedOf(result)).sort()).toEqual(['1', '2']);
    expect(result.diagnoses.get('3')).toMatchObject({ plugin: 'quota', code: 'QuotaExceeded', position: { team: 'blue', index: 1, of: 1 } });
    expect(result.diagnoses.get('3')?.message).toContain('team blue would use 16 GPUs; its quota is 8 nominal + 4 borrowable');
    expect(verifyPlan(cluster.build(), result.plan, specs(jobs), { teams })).toEqual([]);
  });

  it('reclaims lent GPUs: the owner within its nominal preempts borrowed work, whatever its priority', () => {
    // blue borrows all of red's GPUs; red now wants its guarantee back.
    const snapshot = makeCluster(makeNode('a').gpus(8), makeNode('b').gpus(8)).allocate('10', 'a', [0, 1, 2, 3, 4, 5, 6, 7]).allocate('11', 'b', [0, 1, 2, 3]).allocate('12', 'b', [4, 5, 6, 7]);
    const running = build(makeJob(10).gpus(8).team('blue').priority(90).runningSince(0), makeJob(11).gpus(4).team('blue').priority(90).runningSince(10), makeJob(12).gpus(4).team('blue').priority(90).runningSince(20));
    const blueBorrows = [team('red', { '*': 8 }), team('blue', { '*': 8 })];
    const pending = build(makeJob(20).gpus(4).team('red').priority(10));
    const result = cycle(snapshot, pending, TUTTI_PROFILE, { teams: blueBorrows, running, now: 100 });
    expect(result.plan.placements).toEqual([]);
    // One victim, the most recently started of the borrowed 4-GPU jobs (least work lost).
    expect(result.plan.preemptions).toEqual([{ jobId: '12', forJobId: '20', reason: 'quota_reclaim', graceMs: 60_000, graceSource: 'default', message: expect.stringContaining('reclaims') }]);
    expect(result.plan.reservations).toEqual([{ jobId: '20', startAt: 60_100, nodes: [{ node: 'b', gpuIndices: [4, 5, 6, 7] }] }]);
    expect(result.diagnoses.get('20')).toMatchObject({ code: 'WaitingForReclaim', estimatedStartAt: 60_100 });
    expect(verifyPlan(snapshot.build(), result.plan, specs(pending, running), { running, teams: blueBorrows })).toEqual([]);
  });
});

describe('preemption inside a team at its quota', () => {
  // Two nodes of 4 GPUs; blue may use 4 (borrowing limit 0) and runs two 2-GPU jobs of priority 10 on node a. Node b is free.
  const snapshot = makeCluster(makeNode('a').gpus(4), makeNode('b').gpus(4)).allocate('1', 'a', [0, 1]).allocate('2', 'a', [2, 3]);
  const running = build(makeJob(1).gpus(2).team('blue').priority(10).runningSince(0), makeJob(2).gpus(2).team('blue').priority(10).runningSince(5));
  const teams = [team('blue', { '*': 4 }, { borrowingLimit: { '*': 0 } }), team('red', { '*': 4 }, { borrowingLimit: { '*': 0 } })];

  it('a higher-priority job of the team stops the fewest, most recent lower-priority jobs of its own team', () => {
    const pending = build(makeJob(9).gpus(2).team('blue').priority(90));
    const result = cycle(snapshot, pending, TUTTI_PROFILE, { teams, running, now: 50 });
    // GPUs are free on b, but the quota is full: one victim, the most recently started, frees quota for it.
    expect(result.plan.placements).toEqual([]);
    expect(result.plan.preemptions).toEqual([{ jobId: '2', forJobId: '9', reason: 'priority', graceMs: 60_000, graceSource: 'default', message: 'preempted for job 9 (priority 90 > 10): team blue is at its quota' }]);
    expect(result.plan.reservations).toEqual([{ jobId: '9', startAt: 60_050, nodes: [expect.objectContaining({ gpuIndices: expect.any(Array) })] }]);
    expect(result.diagnoses.get('9')).toMatchObject({ plugin: 'preemption', code: 'WaitingForReclaim', estimatedStartAt: 60_050 });
    expect(result.diagnoses.get('9')?.message).toContain("being stopped to make room in team blue's quota");
    expect(verifyPlan(snapshot.build(), result.plan, specs(pending, running), { running, teams })).toEqual([]);
  });

  it('takes as many as the quota needs: a 4-GPU job stops both', () => {
    const pending = build(makeJob(9).gpus(4).team('blue').priority(90));
    const result = cycle(snapshot, pending, TUTTI_PROFILE, { teams, running, now: 50 });
    expect(result.plan.preemptions.map((p) => p.jobId).sort()).toEqual(['1', '2']);
  });

  it('never for a job of equal or lower priority, never another team\'s job, and not when preemption is off', () => {
    const same = cycle(snapshot, build(makeJob(9).gpus(2).team('blue').priority(10)), TUTTI_PROFILE, { teams, running, now: 50 });
    expect(same.plan.preemptions).toEqual([]);
    expect(same.diagnoses.get('9')).toMatchObject({ plugin: 'quota', code: 'QuotaExceeded' });
    // red is at its quota too (its own jobs on b); blue's low-priority jobs give red no quota.
    const redSnapshot = makeCluster(makeNode('a').gpus(4), makeNode('b').gpus(4)).allocate('1', 'a', [0, 1]).allocate('2', 'a', [2, 3]).allocate('3', 'b', [0, 1, 2, 3]);
    const redRunning = [...running, ...build(makeJob(3).gpus(4).team('red').priority(95).runningSince(0))];
    const red = cycle(redSnapshot, build(makeJob(9).gpus(2).team('red').priority(90)), TUTTI_PROFILE, { teams, running: redRunning, now: 50 });
    expect(red.plan.preemptions).toEqual([]);
    expect(red.diagnoses.get('9')).toMatchObject({ code: 'QuotaExceeded' });
    const off = parseProfile({ name: 'no-priority', args: { preemption: { priority: false } } });
    if (!off.ok) throw new Error(off.error);
    expect(cycle(snapshot, build(makeJob(9).gpus(2).team('blue').priority(90)), off.profile, { teams, running, now: 50 }).plan.preemptions).toEqual([]);
  });

  it('the next cycle, with the victim stopping, admits the job and names no new victim', () => {
    const pending = build(makeJob(9).gpus(2).team('blue').priority(90));
    const first = cycle(snapshot, pending, TUTTI_PROFILE, { teams, running, now: 50 });
    const victim = first.plan.preemptions[0]?.jobId;
    const stoppingRunning = running.map((j) => (j.id === victim ? { ...j, stopping: { since: 50, forJobId: '9' } } : j));
    const next = cycle(snapshot, pending, TUTTI_PROFILE, { teams, running: stoppingRunning, now: 60 });
    expect(next.plan.preemptions).toEqual([]);
    expect(next.plan.placements.map((p) => p.jobId)).toEqual(['9']);
  });
});

describe('preemption by priority', () => {
  const snapshot = makeCluster(makeNode('a').gpus(4)).allocate('1', 'a', [0, 1]).allocate('2', 'a', [2]).allocate('3', 'a', [3]);
  const running = build(makeJob(1).gpus(2).priority(10).runningSince(0), makeJob(2).priority(10).runningSince(5), makeJob(3).priority(95).runningSince(1));

  it('takes the fewest, lowest-priority, most recent victims, never a higher-priority one', () => {
    const pending = build(makeJob(9).gpus(2).priority(90));
    const result = cycle(snapshot, pending, TUTTI_PROFILE, { running, now: 50 });
    expect(result.plan.preemptions.map((p) => [p.jobId, p.reason])).toEqual([['1', 'priority']]);
    expect(result.plan.preemptions[0]?.message).toBe('preempted for job 9 (priority 90 > 10)');
  });

  it('never preempts for a job that still would not fit', () => {
    const pending = build(makeJob(9).gpus(4).priority(90));
    const result = cycle(snapshot, pending, TUTTI_PROFILE, { running, now: 50 });
    expect(result.plan.preemptions).toEqual([]);
  });

  it("gives a victim its own preemption_grace, else the cycle's default, at most the profile's maxGraceMs, and says which applied", () => {
    const withGrace = (ms: number) => running.map((j) => (j.id === '2' ? { ...j, spec: { ...j.spec, preemptionGraceMs: ms } } : j));
    const capped = parseProfile({ name: 'capped', args: { preemption: { maxGraceMs: 60_000 } } });
    if (!capped.ok) throw new Error(capped.error);
    const victimOf = (profile: typeof TUTTI_PROFILE, runningJobs: readonly Job[], defaultGraceMs?: number) => {
      const result = cycle(snapshot, build(makeJob(9).gpus(1).priority(90)), profile, { running: runningJobs, now: 50, ...(defaultGraceMs !== undefined ? { defaultGraceMs } : {}) });
      return result.plan.preemptions.map((p) => [p.jobId, p.graceMs, p.graceSource]);
    };
    // A short own grace is not lengthened to the default (the profile's 60 s used to win).
    expect(victimOf(TUTTI_PROFILE, withGrace(5_000))).toEqual([['2', 5_000, 'job']]);
    // A long one is kept without a maximum, cut to it with one.
    expect(victimOf(TUTTI_PROFILE, withGrace(600_000))).toEqual([['2', 600_000, 'job']]);
    expect(victimOf(capped.profile, withGrace(600_000))).toEqual([['2', 60_000, 'max']]);
    expect(victimOf(capped.profile, withGrace(5_000))).toEqual([['2', 5_000, 'job']]);
    // Without its own: the server's --grace.
    expect(victimOf(TUTTI_PROFILE, running, 30_000)).toEqual([['2', 30_000, 'default']]);
  });

  it('refuses the old graceMs argument, naming maxGraceMs and what it now means', () => {
    for (const plugin of ['preemption', 'order-preemption']) {
      const result = parseProfile({ name: 'old', args: { [plugin]: { graceMs: 5_000 } } });
      expect(result).toEqual({ ok: false, error: expect.stringMatching(new RegExp(`^args\\.${plugin}\\.graceMs: renamed maxGraceMs, and now a maximum`)) });
    }
  });

  it('verifyPlan rejects a victim of higher priority and a victim that is not running', () => {
    const pending = build(makeJob(9).gpus(1).priority(50));
    const plan = { snapshotVersion: 1, placements: [], reservations: [], preemptions: [
      { jobId: '3', forJobId: '9', reason: 'priority' as const, graceMs: 0, graceSource: 'default' as const, message: '' },
      { jobId: '77', forJobId: '9', reason: 'priority' as const, graceMs: 0, graceSource: 'default' as const, message: '' },
    ] };
    expect(verifyPlan(snapshot.build(), plan, specs(pending, running), { running }).map((v) => v.code)).toEqual(['VictimNotPreemptible', 'VictimNotRunning']);
  });
});

describe('topology', () => {
  // Two racks of two 8-GPU nodes plus a lone node: a 16-GPU gang must stay inside one rack.
  const nodes = [
    makeNode('r1-a').gpus(8).rack('r1', 'z1'), makeNode('r1-b').gpus(8).rack('r1', 'z1'),
    makeNode('r2-a').gpus(8).rack('r2', 'z1'), makeNode('r2-b').gpus(8).rack('r2', 'z1'),
  ];

  it('places a 16-GPU gang inside one rack, the fullest that fits', () => {
    const snapshot = makeCluster(...nodes).allocate('5', 'r1-a', [0]);
    const result = cycle(snapshot, build(makeJob(1).gpus(8).nodes(2)), TUTTI_PROFILE);
    expect(placedOf(result)).toEqual({ '1': 'r2-a:0,1,2,3,4,5,6,7 r2-b:0,1,2,3,4,5,6,7' });
  });

  it('require: rack waits rather than span racks, with a topology reason', () => {
    const snapshot = makeCluster(...nodes).allocate('5', 'r1-a', [0]).allocate('6', 'r2-b', [0]);
    const result = cycle(snapshot, build(makeJob(2).gpus(8).nodes(2).topology({ require: 'rack' })), TUTTI_PROFILE);
    expect(result.plan.placements).toEqual([]);
    expect(result.diagnoses.get('2')?.code).toBe('TopologyUnavailable');
    // Preferred only: it spans the racks.
    expect(placedOf(cycle(snapshot, build(makeJob(3).gpus(8).nodes(2).topology({ prefer: 'rack' })), TUTTI_PROFILE))).toEqual({ '3': 'r1-b:0,1,2,3,4,5,6,7 r2-a:0,1,2,3,4,5,6,7' });
  });

  it('require: nvlink keeps GPUs in one NVLink domain', () => {
    const snapshot = makeCluster(makeNode('n').gpus(8).nvlink([0, 1, 2, 3], [4, 5, 6, 7])).allocate('5', 'n', [0, 4]);
    const result = cycle(snapshot, build(makeJob(1).gpus(4).topology({ require: 'nvlink' }), makeJob(2).gpus(3).topology({ require: 'nvlink' })), TUTTI_PROFILE);
    // Job 1 waits for domain 0-3 (and holds its free GPUs: backfill), so job 2 gets the other domain.
    expect(placedOf(result)).toEqual({ '2': 'n:5,6,7' });
    expect(result.diagnoses.get('1')?.code).toBe('TopologyUnavailable');
    expect(result.plan.reservations.map((r) => r.nodes)).toEqual([[{ node: 'n', gpuIndices: [0, 1, 2, 3] }]]);
  });

  it('fragmentation: many 1-GPU jobs pack so that a later 8-GPU job still fits', () => {
    const snapshot = makeCluster(makeNode('a').gpus(8), makeNode('b').gpus(8)).allocate('r', 'a', [0]);
    const small = Array.from({ length: 7 }, (_, i) => makeJob(i + 1).gpus(1));
    const result = cycle(snapshot, [...small, makeJob(8).gpus(8)], TUTTI_PROFILE);
    expect(Object.keys(placedOf(result)).sort((a, b) => Number(a) - Number(b))).toEqual(['1', '2', '3', '4', '5', '6', '7', '8']);
    expect(placedOf(result)['8']).toBe('b:0,1,2,3,4,5,6,7');
  });
});

describe('fractional GPUs', () => {
  it('packs shares onto one shared GPU, never beyond its memory, never with whole-GPU jobs', () => {
    const snapshot = makeCluster(makeNode('n').gpus(2, 'A100', 40)).share('9', 'n', 0, 0.5, 20);
    const jobs = build(makeJob(1).fraction(0.25, 10), makeJob(2).fraction(0.25, 15), makeJob(3).gpus(1), makeJob(4).fraction(0.5));
    const result = cycle(snapshot, jobs, TUTTI_PROFILE);
    const placements = Object.fromEntries(result.plan.placements.map((p) => [p.jobId, p.nodes[0]]));
    expect(placements['1']).toEqual({ node: 'n', gpuIndices: [0], gpuFraction: 0.25, gpuMemoryMiB: 10 * 1024 });
    // Job 2 would take GPU 0 beyond 40 GiB (20 + 10 + 15): it opens GPU 1, which job 4 then shares (memory 0.5 × 40 GiB).
    expect(placements['2']).toEqual({ node: 'n', gpuIndices: [1], gpuFraction: 0.25, gpuMemoryMiB: 15 * 1024 });
    expect(placements['4']).toEqual({ node: 'n', gpuIndices: [1], gpuFraction: 0.5, gpuMemoryMiB: 20 * 1024 });
    // The whole-GPU job never joins a shared GPU.
    expect(result.diagnoses.has('3')).toBe(true);
    expect(verifyPlan(snapshot.build(), result.plan, specs(jobs))).toEqual([]);
  });

  it('verifyPlan rejects a share beyond the GPU and a whole job on a shared GPU', () => {
    const snapshot = makeCluster(makeNode('n').gpus(1, 'A100', 40)).share('9', 'n', 0, 0.75, 20).build();
    const jobs = build(makeJob(1).fraction(0.5, 10), makeJob(2).gpus(1));
    const plan = { snapshotVersion: 1, preemptions: [], reservations: [], placements: [
      { jobId: '1', nodes: [{ node: 'n', gpuIndices: [0], gpuFraction: 0.5, gpuMemoryMiB: 10 * 1024 }] },
      { jobId: '2', nodes: [{ node: 'n', gpuIndices: [0] }] },
    ] };
    expect(verifyPlan(snapshot, plan, specs(jobs)).map((v) => v.code)).toEqual(['GpuShareExceeded', 'GpuShareMixed']);
  });

  it('verifyPlan rejects a share on a GPU that a whole-GPU job takes earlier in the same plan', () => {
    const snapshot = makeCluster(makeNode('n').gpus(1, 'A100', 40)).build();
    const jobs = build(makeJob(1).gpus(1), makeJob(2).fraction(0.5, 10));
    const plan = { snapshotVersion: 1, preemptions: [], reservations: [], placements: [
      { jobId: '1', nodes: [{ node: 'n', gpuIndices: [0] }] },
      { jobId: '2', nodes: [{ node: 'n', gpuIndices: [0], gpuFraction: 0.5, gpuMemoryMiB: 10 * 1024 }] },
    ] };
    expect(verifyPlan(snapshot, plan, specs(jobs)).map((v) => v.message)).toEqual(['job 2: GPU 0 on node n is held whole by job 1; shares cannot join it']);
  });
});

describe('fair share', () => {
  it('puts the team that used least lately first, and interleaves by weight', () => {
    const cluster = makeCluster(makeNode('a').gpus(4));
    const jobs = build(makeJob(1).team('heavy'), makeJob(2).team('heavy'), makeJob(3).team('light'), makeJob(4).team('light'), makeJob(5).team('heavy'), makeJob(6).team('light'));
    const usage = [{ team: 'heavy', decayedGpuSeconds: 10 * 86_400, asOf: 0 }];
    const result = cycle(cluster, jobs, TUTTI_PROFILE, { usage, teams: [team('heavy', {}), team('light', {})] });
    expect(result.plan.placements.map((p) => p.jobId)).toEqual(['3', '4', '6', '1']);
    expect(result.diagnoses.get('5')?.position).toEqual({ team: 'heavy', index: 2, of: 2 });
  });

  it('ages waiting jobs so that a low-priority job is not overtaken forever', () => {
    const cluster = makeCluster(makeNode('a').gpus(1));
    const old = makeJob(1).priority(10).createdAt(0);
    const fresh = makeJob(2).priority(50).createdAt(100 * HOUR);
    expect(cycle(cluster, [old, fresh], TUTTI_PROFILE, { now: 100 * HOUR }).plan.placements.map((p) => p.jobId)).toEqual(['1']);
    expect(cycle(cluster, [old, fresh], TUTTI_PROFILE, { now: 10 * HOUR }).plan.placements.map((p) => p.jobId)).toEqual(['2']);
  });
});

describe('backfill', () => {
  // Node a is busy until job 50 ends at 2 h; node b has 4 free of 8.
  const snapshot = makeCluster(makeNode('a').gpus(8), makeNode('b').gpus(8)).allocate('50', 'a', [0, 1, 2, 3, 4, 5, 6, 7]).allocate('51', 'b', [0, 1, 2, 3]);
  const running = build(makeJob(50).gpus(8).maxDurationMs(2 * HOUR).runningSince(0), makeJob(51).gpus(4).maxDurationMs(10 * HOUR).runningSince(0));

  it('reserves for the blocked head; a job that would delay it waits, one that ends in time backfills', () => {
    const pending = build(makeJob(1).gpus(8).nodes(2).priority(90), makeJob(2).gpus(2), makeJob(3).gpus(2).maxDurationMs(HOUR));
    const result = cycle(snapshot, pending, FIFO_BACKFILL_PROFILE, { running, now: 0 });
    // Job 1 needs both nodes: it starts when job 51 ends (10 h); the free half of b is held for it.
    expect(result.plan.reservations).toEqual([{ jobId: '1', startAt: 10 * HOUR, nodes: [{ node: 'a', gpuIndices: [0, 1, 2, 3, 4, 5, 6, 7] }, { node: 'b', gpuIndices: [0, 1, 2, 3, 4, 5, 6, 7] }] }]);
    expect(result.diagnoses.get('1')).toMatchObject({ estimatedStartAt: 10 * HOUR });
    expect(result.diagnoses.get('1')?.message).toContain('reserved: expected to start in about 10 h, when job 51 ends (if jobs 50 and 51 take their max_duration)');
    expect(placedOf(result)).toEqual({ '3': 'b:4,5' });
    expect(result.diagnoses.get('2')).toMatchObject({ code: 'WaitingForReservation', position: { team: 'default', index: 2, of: 2 } });
  });

  it('does not delay the reservation: backfilled jobs only use unheld GPUs or end before it starts', () => {
    const pending = build(makeJob(1).gpus(8).priority(90), makeJob(2).gpus(4), makeJob(3).gpus(4).maxDurationMs(3 * HOUR));
    const result = cycle(snapshot, pending, FIFO_BACKFILL_PROFILE, { running, now: 0 });
    expect(result.plan.reservations).toEqual([{ jobId: '1', startAt: 2 * HOUR, nodes: [{ node: 'a', gpuIndices: [0, 1, 2, 3, 4, 5, 6, 7] }] }]);
    // The reservation is on a (busy now), so both may use b's free half; only one fits.
    expect(placedOf(result)).toEqual({ '2': 'b:4,5,6,7' });
  });

  it('strict FIFO lets nothing pass a blocked job', () => {
    const result = cycle(snapshot, build(makeJob(1).gpus(8).priority(90), makeJob(2).gpus(1)), FIFO_PROFILE, { running });
    expect(result.plan.placements).toEqual([]);
    expect(result.diagnoses.get('2')?.code).toBe('BlockedByQueueHead');
  });
});

describe('a pending reason per blocking cause', () => {
  it.each([
    ['NeverFits', makeCluster(makeNode('a').gpus(4)), makeJob(1).gpus(8), {}],
    ['InsufficientGpus', makeCluster(makeNode('a').gpus(4)).allocate('r', 'a', [0, 1, 2]), makeJob(1).gpus(2), {}],
    ['InsufficientNodes', makeCluster(makeNode('a').gpus(4), makeNode('b').gpus(4)).allocate('r', 'a', [0]), makeJob(1).gpus(4).nodes(2), {}],
    ['GpuTypeUnavailable', makeCluster(makeNode('a').gpus(4, 'A100'), makeNode('b').gpus(4, 'H100')).allocate('r', 'b', [0]), makeJob(1).gpus(4).types('H100'), {}],
    ['InsufficientHostResources', makeCluster(makeNode('a').gpus(4).cpus(8)), makeJob(1).gpus(1).cpus(16), { noFeasibility: true }],
    ['QuotaExceeded', makeCluster(makeNode('a').gpus(4)), makeJob(1).gpus(4).team('t'), { teams: [team('t', { '*': 1 }, { borrowingLimit: { '*': 0 } })] }],
    ['TopologyUnavailable', makeCluster(makeNode('a').gpus(4).rack('x'), makeNode('b').gpus(4).rack('y')), makeJob(1).gpus(4).nodes(2).topology({ require: 'rack' }), {}],
  ] as const)('%s', (code, cluster, job, extra) => {
    const teams = 'teams' in extra ? extra.teams : undefined;
    const result = runCycle({ snapshot: cluster.build(), pending: [job.build()], now: 0, seed: 0, ...(teams ? { teams } : {}) }, TUTTI_PROFILE);
    const d = result.diagnoses.get('1');
    if (code === 'InsufficientHostResources') expect(d?.code).toBe('NeverFits');
    else expect(d?.code).toBe(code);
    expect(d?.position).toEqual({ team: job.build().spec.team, index: 1, of: 1 });
  });
});
