/**
 * Hand-checked traces for each policy (the JCTs worked out in the comments), and conservation and determinism for the
 * policies that preempt.
 */
import { describe, expect, it } from 'vitest';
import { parseProfile } from '@tutti/scheduler';
import { computeNodeFragmentation, computePolicyMetrics, computeRequestMix, resolvePolicies, runSimulation, type SimPolicy, type SimOptions, type TraceJob } from '@tutti/sim';
import { cluster, mixedCluster, oneNode, randomTrace, trace } from './fixtures.ts';

function policy(name: string): SimPolicy {
  const { policies, unavailable } = resolvePolicies([name]);
  if (!policies[0]) throw new Error(JSON.stringify(unavailable));
  return policies[0];
}

function custom(raw: Record<string, unknown>): SimPolicy {
  const r = parseProfile(raw);
  if (!r.ok) throw new Error(r.error);
  return { name: r.profile.name, profile: r.profile, pruning: 'none' };
}


/** No checkpoint interval: a preempted job keeps all its work, so the arithmetic below stays small. */
const keepWork: SimOptions = { checkpointIntervalS: 0, restartOverheadS: 30 };

describe('hand-checked traces, one per policy', () => {
  it('fifo: strict submission order; a small job does not pass a blocked big one', () => {
    // A (3 GPUs) runs 0-100. B (4) waits for it: 100-110. C (1) fits at 2 but must not pass B: 110-120.
    const result = runSimulation(trace([[0, 100, 3], [1, 10, 4], [2, 10, 1]]), oneNode(4), policy('fifo'));
    expect([...result.jobs.firstStartS]).toEqual([0, 100, 110]);
    expect([...result.jobs.finishS]).toEqual([100, 110, 120]);
  });

  it('fifo-backfill: a job that would delay the reserved head waits; greedy would have delayed the head', () => {
    // B (4 GPUs) is blocked by A until 100 and gets a reservation; C (1 GPU, 200 s, no declared max_duration) could
    // start on the free GPU at 2, but would hold it past 100: it waits for B (100-110) and runs 110-310.
    const jobs = trace([[0, 100, 3], [1, 10, 4], [2, 200, 1]]);
    const backfill = runSimulation(jobs, oneNode(4), policy('fifo-backfill'));
    expect([...backfill.jobs.firstStartS]).toEqual([0, 100, 110]);
    // Greedy starts C at 2 and B waits until C ends at 202.
    const greedy = runSimulation(jobs, oneNode(4), policy('greedy'));
    expect([...greedy.jobs.firstStartS]).toEqual([0, 202, 2]);
  });

  it('sjf (oracle): the shortest waiting job next, never preempting', () => {
    // A runs 0-100 on the only GPU. B (500 s), C (50 s), D (200 s) wait; then C 100-150, D 150-350, B 350-850.
    const result = runSimulation(trace([[0, 100, 1], [1, 500, 1], [2, 50, 1], [3, 200, 1]]), oneNode(1), policy('sjf'));
    expect([...result.jobs.firstStartS]).toEqual([0, 350, 100, 150]);
    expect(result.preemptions).toBe(0);
  });

  it('srtf (oracle): a shorter arrival preempts; the victim keeps its checkpointed work and pays the restart', () => {
    // A (1000 s) starts at 0. B (100 s) arrives at 100: A has 900 s left, so B preempts it. A's grace ends at 160
    // (it has done 160 s), B runs 160-260, A restarts at 260: 30 s overhead + 840 s left = 1130.
    const result = runSimulation(trace([[0, 1000, 1], [100, 100, 1]]), oneNode(1), policy('srtf'), keepWork);
    expect([...result.jobs.firstStartS]).toEqual([0, 160]);
    expect([...result.jobs.finishS]).toEqual([1130, 260]);
    expect(result.preemptions).toBe(1);
    expect([...result.jobs.preemptions]).toEqual([1, 0]);
    // Lost: the restart's 30 GPU-s only (nothing since the last checkpoint: it checkpoints when signalled).
    expect(result.lostGpuS).toBeCloseTo(30);
    expect(result.usedGpuS).toBeCloseTo(1100 + 30);
    expect(computePolicyMetrics(result).gpuHoursLost).toBeCloseTo(30 / 3600);
  });

  it('srtf with checkpoints every 1800 s: the victim loses the work since its last checkpoint', () => {
    // Same, but A has no checkpoint yet at 160: it restarts from 0 at 260 and ends at 260 + 30 + 1000 = 1290.
    const result = runSimulation(trace([[0, 1000, 1], [100, 100, 1]]), oneNode(1), policy('srtf'), { checkpointIntervalS: 1800, restartOverheadS: 30 });
    expect([...result.jobs.finishS]).toEqual([1290, 260]);
    expect(result.lostGpuS).toBeCloseTo(160 + 30);
  });

  it('tiresias: a job is demoted when its attained service crosses a threshold, then a new job preempts it', () => {
    // One threshold at 100 GPU-s. A (1000 s) starts at 0. B (300 s) arrives at 50: both in the top queue, B waits.
    // At 100 A crosses 100 GPU-s and is demoted; B preempts it. A stops at 160, B runs 160-460 (it is demoted at
    // 260 too, but A waits in the same queue and does not preempt it). A restarts at 460: 30 + 840 s → 1330.
    const las = custom({ name: 'las-100', base: 'tiresias', args: { las: { queueThresholdsGpuS: [100] } } });
    const result = runSimulation(trace([[0, 1000, 1], [50, 300, 1]]), oneNode(1), las, keepWork);
    expect([...result.jobs.firstStartS]).toEqual([0, 160]);
    expect([...result.jobs.finishS]).toEqual([1330, 460]);
    expect(result.preemptions).toBe(1);
  });

  it('tiresias counts GPUs × time: a 2-GPU job is demoted twice as fast', () => {
    // A (2 GPUs, 1000 s) crosses 100 GPU-s at 50 and is demoted; B (1 GPU... on a 2-GPU node) arrives at 10 and
    // waits until then: preempts at 50, A stops at 110, B runs 110-410; A restarts at 410 → 410 + 30 + 890 = 1330.
    const las = custom({ name: 'las-100', base: 'tiresias', args: { las: { queueThresholdsGpuS: [100] } } });
    const result = runSimulation(trace([[0, 1000, 2], [10, 300, 2]]), oneNode(2), las, keepWork);
    expect([...result.jobs.firstStartS]).toEqual([0, 110]);
    expect([...result.jobs.finishS]).toEqual([1330, 410]);
  });

  it('fair-share with withinTeam least-attained: demotion at a threshold is an event, and order-preemption acts on it', () => {
    // The tiresias trace above within one team: the same decisions (A demoted at 100, B preempts it, A stops at
    // 160, B runs 160-460, A restarts at 460 → 1330).
    const fsLas = custom({
      name: 'fs-las-100',
      base: 'tutti',
      plugins: { preemption: ['preemption', 'order-preemption'] },
      args: { 'fair-share': { withinTeam: 'least-attained', lasThresholdsGpuS: [100] } },
    });
    const result = runSimulation(trace([[0, 1000, 1, 'q'], [50, 300, 1, 'q']]), oneNode(1), fsLas, keepWork);
    expect([...result.jobs.firstStartS]).toEqual([0, 160]);
    expect([...result.jobs.finishS]).toEqual([1330, 460]);
    expect(result.preemptions).toBe(1);
    // acrossTeams never: B of another team waits for A to finish.
    const never = custom({
      name: 'fs-las-100-never',
      base: 'tutti',
      plugins: { preemption: ['preemption', 'order-preemption'] },
      args: { 'fair-share': { withinTeam: 'least-attained', lasThresholdsGpuS: [100] }, 'order-preemption': { acrossTeams: 'never' } },
    });
    const apart = runSimulation(trace([[0, 1000, 1, 'q'], [50, 300, 1, 'r']]), oneNode(1), never, keepWork);
    expect([...apart.jobs.firstStartS]).toEqual([0, 1000]);
    expect(apart.preemptions).toBe(0);
  });

  it('tutti-las (built-in): a newcomer of another team preempts a demoted job only while that team keeps the larger share', () => {
    // Two 1-GPU jobs of team q (10,000 s each) fill a 2-GPU node at 0; B of team r (500 s) arrives at 100. Under
    // `tutti` B waits for a GPU: 10,000. Under `tutti-las` q's jobs cross the first queue threshold (3,600 GPU-s) at
    // 3,600; B, still in the top queue, preempts one of them — q keeps one GPU against r's one and q's decayed use is
    // larger, so q stays at or above r's share after the swap. The victim stops at 3,660 (60 s grace), B runs
    // 3,660-4,160, the victim restarts at 4,160 with its 3,660 s of work kept: 4,160 + 30 + 6,340 = 10,530.
    const rows: Array<[number, number, number, string]> = [[0, 10_000, 1, 'q'], [0, 10_000, 1, 'q'], [100, 500, 1, 'r']];
    const plain = runSimulation(trace(rows), oneNode(2), policy('tutti'), keepWork);
    expect(plain.jobs.firstStartS[2]).toBe(10_000);
    expect(plain.preemptions).toBe(0);
    const las = runSimulation(trace(rows), oneNode(2), policy('tutti-las'), keepWork);
    expect(las.jobs.firstStartS[2]).toBe(3_660);
    expect(las.jobs.finishS[2]).toBe(4_160);
    expect([...las.jobs.finishS].slice(0, 2).sort((a, b) => a - b)).toEqual([10_000, 10_530]);
    expect(las.preemptions).toBe(1);
    // One GPU: taking q's only GPU would leave q below r, so B waits for it (acrossTeams: over-share).
    const single = runSimulation(trace([[0, 10_000, 1, 'q'], [100, 500, 1, 'r']]), oneNode(1), policy('tutti-las'), keepWork);
    expect(single.jobs.firstStartS[1]).toBe(10_000);
    expect(single.preemptions).toBe(0);
  });

  it('tutti-las inside a partition: a team at its quota preempts its own demoted job (as tiresias does there)', () => {
    // A VC of 2 GPUs (quota 2, no borrowing), as in philly-vc.yaml: the same trace as above within team q alone.
    // The team is at its quota when B arrives, so B must take the place of one of q's own jobs: at 3,600 both are
    // demoted, B preempts one, runs 3,660-4,160, and the victim restarts: 4,160 + 30 + 6,340 = 10,530.
    const vc = cluster('nodes: [{name: box, gpus: {count: 2, type: A100}, labels: {team: q}}]\nteams: [{name: q, quota: {A100: 2}, borrowing_limit: {A100: 0}}]');
    const rows: Array<[number, number, number, string]> = [[0, 10_000, 1, 'q'], [0, 10_000, 1, 'q'], [100, 500, 1, 'q']];
    const las = runSimulation(trace(rows), vc, policy('tutti-las'), keepWork);
    expect(las.jobs.firstStartS[2]).toBe(3_660);
    expect([...las.jobs.finishS].sort((a, b) => a - b)).toEqual([4_160, 10_000, 10_530]);
    expect(las.preemptions).toBe(1);
    const tiresias = runSimulation(trace(rows), vc, policy('tiresias'), keepWork);
    expect([...tiresias.jobs.finishS]).toEqual([...las.jobs.finishS]);
  });

  it('tutti learns run times from finished jobs of the same team and size, never from the trace', () => {
    // Team q's 2-GPU jobs ran 1000 s, its 1-GPU jobs 10 s (the first six jobs, one after another on 2 GPUs).
    // Then X (2 GPUs, 1000 s) at 3100 and Y (1 GPU, 10 s) at 3101 wait behind a 2-GPU job: with estimates, Y first.
    const rows: Array<[number, number, number, string]> = [
      [0, 1000, 2, 'q'], [1000, 10, 1, 'q'], [1010, 1000, 2, 'q'], [2010, 10, 1, 'q'], [2020, 10, 1, 'q'], [2030, 1000, 2, 'q'],
      [3100, 1000, 2, 'q'], [3101, 10, 1, 'q'],
    ];
    const sef = custom({ name: 'tutti-sef', base: 'tutti', args: { 'fair-share': { withinTeam: 'shortest-estimated' } } });
    const learned = runSimulation(trace(rows), oneNode(2), sef);
    // The 2-GPU job started at 2030 ends at 3030: X and Y arrive after, so both start at once; make the node busy.
    expect(learned.jobs.finishS[5]).toBe(3030);
    const busy = trace([...rows.slice(0, 6), [3000, 500, 2, 'q'], [3100, 1000, 2, 'q'], [3101, 10, 1, 'q']]);
    const withEstimates = runSimulation(busy, oneNode(2), sef);
    // The 3000 job waits for the 2030 one (3030-3530); then Y (estimated 10 s) before X (estimated 1000 s).
    expect([...withEstimates.jobs.firstStartS].slice(6)).toEqual([3030, 3540, 3530]);
    // X and Y with their durations swapped: the same order (estimates come from finished jobs only); Y now runs
    // 3530-4530 and X waits for it.
    const swapped = trace([...rows.slice(0, 6), [3000, 500, 2, 'q'], [3100, 10, 2, 'q'], [3101, 1000, 1, 'q']]);
    expect([...runSimulation(swapped, oneNode(2), sef).jobs.firstStartS].slice(6)).toEqual([3030, 4530, 3530]);
    // Without estimates (priority order within the team) X goes first.
    expect([...runSimulation(busy, oneNode(2), policy('fifo')).jobs.firstStartS].slice(6)).toEqual([3030, 3530, 4530]);
  });
});

describe('preemptive policies: conservation and determinism', () => {
  const mixed = mixedCluster();

  it.each(['srtf', 'tiresias', 'sjf', 'fifo-backfill', 'tutti', 'tutti-las'])('%s: every job finishes or is reported; GPU-seconds used = work + lost; same seed, same result', (name) => {
    const jobs = randomTrace(5, 250, ['qa', 'qb', 'qc', ''], { heavyTail: true });
    const a = runSimulation(jobs, mixed, policy(name), { seed: 3, checkpointIntervalS: 300 });
    const m = computePolicyMetrics(a);
    expect(m.jobs + m.unplaceable).toBe(jobs.length);
    let work = 0;
    for (let i = 0; i < jobs.length; i++) if (!Number.isNaN(a.jobs.finishS[i] as number)) work += (a.jobs.durationS[i] as number) * (a.jobs.gpus[i] as number);
    expect(a.workGpuS).toBeCloseTo(work, 3);
    expect(a.usedGpuS).toBeCloseTo(a.workGpuS + a.lostGpuS, 3);
    expect(a.busyGpuSFromNodes).toBeCloseTo(a.usedGpuS, 3);
    // Per job: GPU-seconds held over all runs = its work + what it lost.
    let attained = 0;
    for (let i = 0; i < jobs.length; i++) attained += a.jobs.attainedGpuS[i] as number;
    expect(attained).toBeCloseTo(a.usedGpuS, 3);
    if (name === 'srtf' || name === 'tiresias') expect(a.preemptions).toBeGreaterThan(0);
    const b = runSimulation(jobs, mixed, policy(name), { seed: 3, checkpointIntervalS: 300 });
    expect([...b.jobs.firstStartS]).toEqual([...a.jobs.firstStartS]);
    expect([...b.jobs.finishS]).toEqual([...a.jobs.finishS]);
  });

  it.each(['tutti', 'fifo-backfill', 'fifo'])('%s: skipping cycles in which nothing fits changes no decision', (name) => {
    for (const seed of [21, 22]) {
      const jobs = randomTrace(seed, 250, ['qa', 'qb'], { heavyTail: true });
      const single = cluster('nodes: [{group: p, count: 3, gpus: {count: 8, type: A100}}, {group: q, count: 3, gpus: {count: 4, type: A100}}]');
      for (const config of [mixed, single]) {
        const skipping = runSimulation(jobs, config, policy(name));
        const every = runSimulation(jobs, config, policy(name), { skipIdleCycles: false });
        expect([...skipping.jobs.firstStartS]).toEqual([...every.jobs.firstStartS]);
        expect(skipping.cycles).toBeLessThan(every.cycles);
      }
    }
  });
});

describe('fractional GPUs and fragmentation', () => {
  function fractional(rows: Array<[number, number, number, number?]>): TraceJob[] {
    return rows.map(([submitS, durationS, numGpus, fraction], i) => ({ traceId: `p${i}`, submitS, durationS, numGpus, gpuType: '', user: '', queue: '', status: '', ...(fraction !== undefined ? { gpuFraction: fraction } : {}) }));
  }

  it('packs shares of one GPU together and accounts work in GPU shares', () => {
    // Two 0.5 shares fit one GPU together; the 1-GPU job takes the other GPU; the third share waits for a half.
    const jobs = fractional([[0, 100, 1, 0.5], [0, 100, 1, 0.5], [0, 50, 1], [10, 10, 1, 0.5]]);
    const result = runSimulation(jobs, oneNode(2), policy('tutti'));
    expect([...result.jobs.firstStartS]).toEqual([0, 0, 0, 50]);
    expect([...result.jobs.gpus]).toEqual([0.5, 0.5, 1, 0.5]);
    expect(result.usedGpuS).toBeCloseTo(0.5 * 100 * 2 + 50 + 0.5 * 10);
    expect(result.busyGpuSFromNodes).toBeCloseTo(result.usedGpuS);
    expect(result.fragmentedGpuS).toBeDefined();
  });

  it('counts as fragmented the free capacity a request of the mix cannot use (worked by hand)', () => {
    // Mix: half the requests want a whole GPU, half a 0.5 share. Node: GPU 0 has 0.75 held (0.25 free), GPU 1 free.
    const mix = computeRequestMix(new Map([[1, 2], [0.5, 2]]));
    const holder = Int32Array.from([-1, -1]);
    const share = Float64Array.from([0.75, 0]);
    // Whole GPU: fits on GPU 1; GPU 0's 0.25 is lost to it. Share 0.5: fits on GPU 1; GPU 0's 0.25 < 0.5 is lost.
    expect(computeNodeFragmentation(holder, share, mix)).toBeCloseTo(0.25);
    // With GPU 1 whole-held: a whole GPU does not fit (all 0.25 free lost), nor does 0.5 (0.25 lost).
    expect(computeNodeFragmentation(Int32Array.from([-1, 7]), share, mix)).toBeCloseTo(0.25);
    // An empty node loses nothing to this mix.
    expect(computeNodeFragmentation(holder, Float64Array.from([0, 0]), mix)).toBe(0);
  });
});
