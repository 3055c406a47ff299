/**
 * The ranked queue sorts and their preemption: `sjf` / `srtf` (oracle references), `tiresias` (least attained
 * service), and the run-time estimates the `tutti` profile may order by.
 */
import { describe, expect, it } from 'vitest';
import type { Job, JobSpec } from '@tutti/model';
import { compileProfile, createDurationEstimator, DEFAULT_LAS_ARGS, getProfile, parseProfile, recordFinishedDuration, runCycle, SJF_PROFILE, SRTF_PROFILE, TIRESIAS_PROFILE, TUTTI_PROFILE, verifyPlan, type SchedulerProfile } from '../src/index.ts';
import { cycle, makeCluster, makeJob, makeNode, placedIds } from './builders.ts';

const S = 1000;
const HOUR = 3_600_000;
const specs = (...jobs: Job[][]) => new Map<string, JobSpec>(jobs.flat().map((j) => [j.id, j.spec]));
const profile = (raw: Record<string, unknown>): SchedulerProfile => {
  const r = parseProfile(raw);
  if (!r.ok) throw new Error(r.error);
  return r.profile;
};

describe('profiles sjf, srtf, tiresias', () => {
  it('are built in, labelled by what they read', () => {
    for (const name of ['sjf', 'srtf', 'tiresias']) expect(getProfile(name).ok).toBe(true);
    expect(SJF_PROFILE.plugins).toMatchObject({ queueSort: 'oracle-shortest', preemption: [], backfill: 'greedy' });
    expect(SRTF_PROFILE.plugins).toMatchObject({ queueSort: 'oracle-shortest', preemption: ['order-preemption'] });
    expect(TIRESIAS_PROFILE.plugins).toMatchObject({ queueSort: 'las', preemption: ['order-preemption'] });
  });

  it.each([
    [{ name: 'x', base: 'tiresias', args: { las: { queueThresholdsGpuS: [100, 50] } } }, 'args.las.queueThresholdsGpuS: expected a list of GPU-seconds > 0 in increasing order'],
    [{ name: 'x', base: 'tiresias', args: { las: { queueThresholdsGpuS: 100 } } }, 'args.las.queueThresholdsGpuS: expected a list'],
    [{ name: 'x', base: 'tiresias', args: { las: { queues: 3 } } }, 'args.las.queues: unknown argument; known: queueThresholdsGpuS'],
    [{ name: 'x', base: 'srtf', args: { 'order-preemption': { maxGraceMs: -5 } } }, 'args.order-preemption.maxGraceMs: expected a number ≥ 0'],
    [{ name: 'x', base: 'srtf', args: { 'order-preemption': { victims: 1 } } }, 'args.order-preemption.victims: unknown argument'],
    [{ name: 'x', base: 'tutti', plugins: { preemption: ['order-preemption'] } }, 'order-preemption needs a queue sort that ranks jobs'],
    [{ name: 'x', base: 'tutti', args: { 'fair-share': { withinTeam: 'shortest' } } }, 'args.fair-share.withinTeam: expected one of priority, shortest-estimated, response-ratio'],
    [{ name: 'x', base: 'tutti', args: { 'fair-share': { estimateWindow: 0 } } }, 'args.fair-share.estimateWindow: expected a number ≥ 1'],
    [{ name: 'x', base: 'tutti', plugins: { preemption: ['order-preemption'] }, args: { 'fair-share': { withinTeam: 'response-ratio' } } }, 'order-preemption needs a queue sort that ranks jobs (oracle-shortest, las, or fair-share with withinTeam: least-attained), got fair-share with withinTeam: response-ratio'],
    [{ name: 'x', base: 'tutti', args: { 'fair-share': { withinTeam: 'least-attained', lasThresholdsGpuS: [100, 50] } } }, 'args.fair-share.lasThresholdsGpuS: expected a non-empty list of GPU-seconds > 0 in increasing order'],
    [{ name: 'x', base: 'tutti', args: { 'fair-share': { withinTeam: 'least-attained', lasThresholdsGpuS: [] } } }, 'args.fair-share.lasThresholdsGpuS: expected a non-empty list'],
    [{ name: 'x', base: 'tutti', args: { 'fair-share': { withinTeam: 'least-attained', lasThresholdsGpuS: 3600 } } }, 'args.fair-share.lasThresholdsGpuS: expected a non-empty list'],
    [{ name: 'x', base: 'tutti', args: { 'fair-share': { lasThresholdsGpuS: [3600] } } }, 'args.fair-share.lasThresholdsGpuS: only with withinTeam: least-attained, got withinTeam: priority'],
    [{ name: 'x', base: 'tutti', args: { 'fair-share': { lasThresholds: [3600] } } }, 'args.fair-share.lasThresholds: unknown argument; known: halfLifeMs, agingPerHour, withinTeam, estimateWindow, estimateMinSamples, lasThresholdsGpuS'],
    [{ name: 'x', base: 'tutti', plugins: { preemption: ['order-preemption'] }, args: { 'fair-share': { withinTeam: 'least-attained' }, 'order-preemption': { acrossTeams: 'always' } } }, 'args.order-preemption.acrossTeams: expected one of never, over-share, got "always"'],
    [{ name: 'x', base: 'tiresias', args: { 'order-preemption': { acrossTeams: 'never' } } }, 'args.order-preemption.acrossTeams: only with the fair-share queue sort and withinTeam: least-attained'],
  ])('rejects %j', (raw, error) => {
    const result = parseProfile(raw);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error).toContain(error);
  });
});

describe('oracle-shortest (sjf, srtf)', () => {
  const oneGpu = makeCluster(makeNode('a').gpus(1));

  it.each([
    ['the true remaining time, shortest first', new Map([['1', 300 * S], ['2', 100 * S], ['3', 200 * S]]), ['2', '3', '1']],
    ['live (no oracle): the declared max_duration, jobs without one last', undefined, ['3', '2', '1']],
  ])('orders by %s', (_label, oracle, order) => {
    const pending = [makeJob(1), makeJob(2).maxDurationMs(HOUR), makeJob(3).maxDurationMs(HOUR / 2)].map((b) => b.build());
    const result = runCycle({ snapshot: makeCluster(makeNode('a').gpus(3)).build(), pending, now: 0, seed: 0, ...(oracle ? { oracleRemainingMs: oracle } : {}) }, SJF_PROFILE);
    expect(placedIds(result)).toEqual(order);
    const first = runCycle({ snapshot: oneGpu.build(), pending, now: 0, seed: 0, ...(oracle ? { oracleRemainingMs: oracle } : {}) }, SJF_PROFILE);
    expect(placedIds(first)).toEqual([order[0]]);
  });

  it('keeps priority above the remaining time', () => {
    const pending = [makeJob(1).priority(90).build(), makeJob(2).build()];
    const result = cycle(oneGpu, pending, SJF_PROFILE, { oracleRemainingMs: new Map([['1', 900 * S], ['2', 1 * S]]) });
    expect(placedIds(result)).toEqual(['1']);
  });

  describe('preemption (srtf only)', () => {
    const snapshot = makeCluster(makeNode('a').gpus(2)).allocate('10', 'a', [0]).allocate('11', 'a', [1]);
    const running = [makeJob(10).runningSince(0).build(), makeJob(11).runningSince(5 * S).build()];

    it.each([
      ['shorter than both: the one with the most remaining time', 100, SRTF_PROFILE, [['10', 'queue_order', 'preempted for job 20 (remaining 1m40s < 16m40s)']]],
      ['shorter than one of them: that one', 700, SRTF_PROFILE, [['10', 'queue_order', 'preempted for job 20 (remaining 11m40s < 16m40s)']]],
      ['longer than both: nobody', 2000, SRTF_PROFILE, []],
      ['sjf never preempts', 100, SJF_PROFILE, []],
    ])('a waiting job %s', (_label, remainingS, policy, expected) => {
      const pending = [makeJob(20).build()];
      const oracle = new Map([['10', 1000 * S], ['11', 800 * S], ['20', remainingS * S]]);
      const result = cycle(snapshot, pending, policy, { running, now: 10 * S, oracleRemainingMs: oracle });
      expect(result.plan.preemptions.map((p) => [p.jobId, p.reason, p.message])).toEqual(expected);
      expect(verifyPlan(snapshot.build(), result.plan, specs(pending, running), { running })).toEqual([]);
      if (expected.length > 0) {
        expect(result.plan.reservations).toEqual([{ jobId: '20', startAt: 70 * S, nodes: [{ node: 'a', gpuIndices: [0] }] }]);
        expect(result.diagnoses.get('20')).toMatchObject({ plugin: 'preemption', code: 'WaitingForReclaim', estimatedStartAt: 70 * S });
        expect(result.diagnoses.get('20')?.message).toContain('later in the queue order');
      }
    });

    it('never preempts a job of higher priority, and preempts whole gangs', () => {
      const gang = makeCluster(makeNode('a').gpus(1), makeNode('b').gpus(1)).allocate('10', 'a', [0]).allocate('10', 'b', [0]);
      const high = [makeJob(10).nodes(2).priority(90).runningSince(0).build()];
      const pending = [makeJob(20).build()];
      const oracle = new Map([['10', 1000 * S], ['20', 1 * S]]);
      expect(cycle(gang, pending, SRTF_PROFILE, { running: high, now: 0, oracleRemainingMs: oracle }).plan.preemptions).toEqual([]);
      const low = [makeJob(10).nodes(2).runningSince(0).build()];
      const result = cycle(gang, pending, SRTF_PROFILE, { running: low, now: 0, oracleRemainingMs: oracle });
      expect(result.plan.preemptions.map((p) => p.jobId)).toEqual(['10']);
      expect(verifyPlan(gang.build(), result.plan, specs(pending, low), { running: low })).toEqual([]);
    });
  });
});

describe('las (tiresias)', () => {
  const thresholds = profile({ name: 'las-test', base: 'tiresias', args: { las: { queueThresholdsGpuS: [100, 1000] } } });

  it('orders by attained-service queue, first come first served within a queue', () => {
    // 1 and 2 are in queue 1 (≥ 100 GPU-s), 3 and 4 in queue 0; 5 has reached queue 2.
    const attained = new Map([['1', 150 * S], ['2', 999 * S], ['3', 99 * S], ['5', 5000 * S]]);
    const pending = [1, 2, 3, 4, 5].map((id) => makeJob(id).build());
    const result = cycle(makeCluster(makeNode('a').gpus(8)), pending, thresholds, { attainedServiceGpuMs: attained });
    expect(placedIds(result)).toEqual(['3', '4', '1', '2', '5']);
  });

  it('counts GPUs × time: a 4-GPU job that ran 30 s has 120 GPU-s (queue 1) without any attained-service input', () => {
    const snapshot = makeCluster(makeNode('a').gpus(4)).allocate('10', 'a', [0, 1, 2, 3]);
    const running = [makeJob(10).gpus(4).runningSince(0).build()];
    const result = cycle(snapshot, [makeJob(20).build()], thresholds, { running, now: 30 * S });
    expect(result.plan.preemptions.map((p) => [p.jobId, p.reason, p.message])).toEqual([['10', 'queue_order', 'preempted for job 20 (least attained service: queue 0 is ahead of this job\'s queue 1)']]);
    // After 20 s it has 80 GPU-s: the same queue as the waiting job, so nothing is preempted (no thrashing within a queue).
    expect(cycle(snapshot, [makeJob(20).build()], thresholds, { running, now: 20 * S }).plan.preemptions).toEqual([]);
  });

  it('a waiting job that has had more service than a running one does not preempt it', () => {
    const snapshot = makeCluster(makeNode('a').gpus(1)).allocate('10', 'a', [0]);
    const running = [makeJob(10).runningSince(0).build()];
    const attained = new Map([['10', 200 * S], ['20', 2000 * S]]);
    expect(cycle(snapshot, [makeJob(20).build()], thresholds, { running, now: 200 * S, attainedServiceGpuMs: attained }).plan.preemptions).toEqual([]);
  });
});

describe('fair-share with withinTeam: least-attained (LAS within fair share)', () => {
  const las = { withinTeam: 'least-attained', lasThresholdsGpuS: [100, 1000] };
  const sortOnly = profile({ name: 'fs-las', base: 'tutti', args: { 'fair-share': las } });
  const preempting = (acrossTeams?: string): SchedulerProfile =>
    profile({ name: `fs-las-${acrossTeams ?? 'default'}`, base: 'tutti', plugins: { preemption: ['preemption', 'order-preemption'] }, args: { 'fair-share': las, ...(acrossTeams ? { 'order-preemption': { acrossTeams } } : {}) } });
  const teams = [{ name: 'heavy', weight: 1, nominal: {} }, { name: 'light', weight: 1, nominal: {} }];

  it('parses with defaults: the las thresholds, order-preemption over-share', () => {
    const compiled = compileProfile(profile({ name: 'x', base: 'tutti', plugins: { preemption: ['order-preemption'] }, args: { 'fair-share': { withinTeam: 'least-attained' } } }));
    expect(compiled.fairShare).toMatchObject({ withinTeam: 'least-attained', lasThresholdsGpuS: [3_600, 36_000] });
    expect(compiled.orderPreemption).toMatchObject({ acrossTeams: 'over-share' });
    expect(compileProfile(TUTTI_PROFILE).fairShare?.lasThresholdsGpuS).toEqual(DEFAULT_LAS_ARGS.queueThresholdsGpuS);
  });

  it('orders a team by attained-service queue, first come first served within a queue', () => {
    // 1 and 2 in queue 1 (≥ 100 GPU-s), 3 and 4 in queue 0, 5 in queue 2.
    const attained = new Map([['1', 150 * S], ['2', 999 * S], ['3', 99 * S], ['5', 5000 * S]]);
    const pending = [1, 2, 3, 4, 5].map((id) => makeJob(id).build());
    expect(placedIds(cycle(makeCluster(makeNode('a').gpus(8)), pending, sortOnly, { attainedServiceGpuMs: attained }))).toEqual(['3', '4', '1', '2', '5']);
    // The default tutti order is submission order.
    expect(placedIds(cycle(makeCluster(makeNode('a').gpus(8)), pending, TUTTI_PROFILE, { attainedServiceGpuMs: attained }))).toEqual(['1', '2', '3', '4', '5']);
  });

  it('keeps the priority band first, a lower priority ageing up to the band', () => {
    // 1: priority 40, queue 0, waiting since 0. 2: priority 50, queue 1. One GPU.
    const pending = [makeJob(1).priority(40).createdAt(0).build(), makeJob(2).createdAt(0).build()];
    const attained = new Map([['2', 500 * S]]);
    const oneGpu = makeCluster(makeNode('a').gpus(1));
    expect(placedIds(cycle(oneGpu, pending, sortOnly, { attainedServiceGpuMs: attained, now: HOUR }))).toEqual(['2']);
    // After 10 h job 1 has aged into priority 50's band: there the queue decides.
    expect(placedIds(cycle(oneGpu, pending, sortOnly, { attainedServiceGpuMs: attained, now: 10 * HOUR }))).toEqual(['1']);
  });

  it('still lets the team that used least go first, whatever its jobs attained', () => {
    // heavy's jobs are all in the top queue, light's in lower ones: light still goes first, in its LAS order.
    const cluster = makeCluster(makeNode('a').gpus(4));
    const pending = [makeJob(1).team('heavy'), makeJob(2).team('heavy'), makeJob(3).team('light'), makeJob(4).team('light'), makeJob(5).team('heavy'), makeJob(6).team('light')].map((b) => b.build());
    const attained = new Map([['3', 5000 * S], ['4', 500 * S], ['6', 200 * S]]);
    const usage = [{ team: 'heavy', decayedGpuSeconds: 10 * 86_400, asOf: 0 }];
    const result = cycle(cluster, pending, sortOnly, { usage, teams, attainedServiceGpuMs: attained });
    expect(placedIds(result)).toEqual(['4', '6', '3', '1']);
  });

  describe('with order-preemption', () => {
    // 10 (team heavy) has run 1 GPU for 200 s: queue 1. 11 (team heavy, priority 90) too. No quotas (no teams
    // listed: each weighs 1), so that admission lets every job through to preemption.
    const snapshot = makeCluster(makeNode('a').gpus(2)).allocate('10', 'a', [0]).allocate('11', 'a', [1]);
    const running = [makeJob(10).team('heavy').runningSince(0).build(), makeJob(11).team('heavy').priority(90).runningSince(0).build()];
    const now = 200 * S;

    it('a job of a higher queue preempts one of a lower queue, never one of higher priority', () => {
      const pending = [makeJob(20).team('heavy').build()];
      const result = cycle(snapshot, pending, preempting(), { running, now });
      expect(result.plan.preemptions.map((p) => [p.jobId, p.reason, p.message])).toEqual([['10', 'queue_order', 'preempted for job 20 of team heavy (least attained service within fair share: queue 0 is ahead of this job\'s queue 1)']]);
      expect(verifyPlan(snapshot.build(), result.plan, specs(pending, running), { running })).toEqual([]);
      // Only the priority-90 job in its way: nothing.
      const high = [running[1] as Job];
      expect(cycle(makeCluster(makeNode('a').gpus(1)).allocate('11', 'a', [0]), pending, preempting(), { running: high, now }).plan.preemptions).toEqual([]);
    });

    it('jobs of one queue do not preempt each other, nor does a job of a lower queue', () => {
      expect(cycle(snapshot, [makeJob(20).team('heavy').build()], preempting(), { running, now: 50 * S }).plan.preemptions).toEqual([]);
      const attained = new Map([['20', 2000 * S]]);
      expect(cycle(snapshot, [makeJob(20).team('heavy').build()], preempting(), { running, now, attainedServiceGpuMs: attained }).plan.preemptions).toEqual([]);
    });

    it('without order-preemption nothing is preempted by queue order', () => {
      expect(cycle(snapshot, [makeJob(20).team('heavy').build()], sortOnly, { running, now }).plan.preemptions).toEqual([]);
    });

    it.each([
      // heavy holds 2 GPUs and used 10 GPU-days lately: its share (2 + 10·86,400 / 86,400 = 12) less the victim's
      // GPU stays above light's (0) plus the preemptor's.
      ['never', 'heavy', []],
      ['over-share', 'heavy', ['10']],
      // Light used the 10 GPU-days: heavy (share 2) is below it, so over-share keeps light's job from taking heavy's GPUs.
      ['never', 'light', []],
      ['over-share', 'light', []],
    ])('acrossTeams %s, the team with the usage %s: preempts %j of the other team', (acrossTeams, usedMost, expected) => {
      const usage = [{ team: usedMost, decayedGpuSeconds: 10 * 86_400, asOf: 0 }];
      const pending = [makeJob(20).team('light').build()];
      const result = cycle(snapshot, pending, preempting(acrossTeams), { running, now, usage });
      expect(result.plan.preemptions.map((p) => p.jobId)).toEqual(expected);
      expect(verifyPlan(snapshot.build(), result.plan, specs(pending, running), { running })).toEqual([]);
    });
  });
});

describe('run-time estimates from history', () => {
  it('takes the median of the most specific key with enough samples, capped by max_duration', () => {
    const history = new Map<string, number[]>();
    for (const ms of [10, 20, 30, 1_000_000]) recordFinishedDuration(history, 'red', 1, ms * S, 3);
    recordFinishedDuration(history, 'blue', 4, 5 * S, 3);
    const estimate = createDurationEstimator(history, { window: 3, minSamples: 2 });
    // red|1 keeps the last 3 (20, 30, 1e6 s): median 30 s; a long outlier does not move it.
    expect(estimate(makeJob(1).team('red').build())).toEqual({ ms: 30 * S, basis: 'red|1' });
    // blue|4 has one sample (< 2): falls back to *|4, then blue|*; none has 2; red|* would not be asked.
    expect(estimate(makeJob(2).team('blue').gpus(4).build())).toBeUndefined();
    // green|1 is unknown: *|1 (20, 30, 1e6 s) answers.
    expect(estimate(makeJob(3).team('green').build())).toEqual({ ms: 30 * S, basis: '*|1' });
    expect(estimate(makeJob(4).team('red').maxDurationMs(5 * S).build())).toEqual({ ms: 5 * S, basis: 'max_duration' });
    expect(createDurationEstimator(undefined)(makeJob(5).maxDurationMs(HOUR).build())).toEqual({ ms: HOUR, basis: 'max_duration' });
  });

  const shortestEstimated = profile({ name: 'sef', base: 'tutti', args: { 'fair-share': { withinTeam: 'shortest-estimated', estimateMinSamples: 1 } } });
  const responseRatio = profile({ name: 'rr', base: 'tutti', args: { 'fair-share': { withinTeam: 'response-ratio', estimateMinSamples: 1 } } });
  const history = new Map<string, number[]>();
  recordFinishedDuration(history, 'default', 2, 10 * HOUR);
  recordFinishedDuration(history, 'default', 1, 60 * S);
  // 1 (2 GPUs, of a kind that ran 10 h) came at 0; 2 (1 GPU, of a kind that ran 1 min) a minute before `now`. One 2-GPU slot.
  const pendingAt = (now: number): Job[] => [makeJob(1).gpus(2).createdAt(0).build(), makeJob(2).createdAt(now - 60 * S).build()];
  const oneSlot = makeCluster(makeNode('a').gpus(2));

  it.each([
    ['tutti (priority within the team): submission order', TUTTI_PROFILE, 2 * 60 * S, ['1']],
    ['shortest-estimated: the short kind first', shortestEstimated, 2 * 60 * S, ['2']],
    ['response-ratio, soon after: the short kind first', responseRatio, 2 * 60 * S, ['2']],
    ['response-ratio, once the long one has waited 2 × its estimate: the long one', responseRatio, 20 * HOUR + S, ['1']],
  ])('%s', (_label, policy, now, placed) => {
    const result = cycle(oneSlot, pendingAt(now), policy, { now, durationHistory: history });
    expect(placedIds(result)).toEqual(placed);
  });

  it('without any estimate keeps the priority order', () => {
    const result = cycle(oneSlot, pendingAt(120 * S), shortestEstimated, { now: 120 * S });
    expect(placedIds(result)).toEqual(['1']);
  });

  it('backfills a job whose estimate ends before the reservation, and not one whose estimate does not', () => {
    // 10 (priority 60, not preemptible by 1) holds 2 of 4 GPUs, expected to end at 1 h (its kind ran 1 h); 1 (4 GPUs,
    // priority 60) gets a reservation
    // at 1 h. 2's kind (team t, 1 GPU) ran 10 min: it backfills. 3's kind (team u, 1 GPU) ran 5 h: it would delay 1.
    const snapshot = makeCluster(makeNode('a').gpus(4)).allocate('10', 'a', [0, 1]);
    const running = [makeJob(10).gpus(2).team('t').priority(60).runningSince(0).build()];
    const h = new Map<string, number[]>();
    recordFinishedDuration(h, 't', 2, HOUR);
    recordFinishedDuration(h, 't', 1, 10 * 60 * S);
    recordFinishedDuration(h, 'u', 1, 5 * HOUR);
    const waiting = [makeJob(1).gpus(4).team('t').priority(60).createdAt(0).build(), makeJob(2).team('t').createdAt(1).build(), makeJob(3).team('u').createdAt(2).build()];
    // u used a lot lately, so fair share puts it after t.
    const usage = [{ team: 'u', decayedGpuSeconds: 1e9, asOf: 0 }];
    const result = cycle(snapshot, waiting, shortestEstimated, { running, now: 0, durationHistory: h, usage });
    expect(result.plan.reservations.map((r) => [r.jobId, r.startAt])).toEqual([['1', HOUR]]);
    expect(placedIds(result)).toEqual(['2']);
    expect(result.diagnoses.get('3')?.code).toBe('WaitingForReservation');
  });
});
