/** Scenario tests (fake GPUs): borrowing, lending and reclaim per GPU type; victims already being stopped. */
import { describe, expect, it } from 'vitest';
import type { Job, JobSpec, TeamConfig } from '@tutti/model';
import { runCycle, TUTTI_PROFILE, verifyPlan, type RunningJobInput } from '../src/index.ts';
import { cycle, makeCluster, makeJob, makeNode, placedOf, type JobBuilder } from './builders.ts';

const team = (name: string, nominal: Record<string, number>, extra: Partial<TeamConfig> = {}): TeamConfig => ({ name, weight: 1, nominal, ...extra });
const build = (...b: JobBuilder[]) => b.map((x) => x.build());
const specs = (...jobs: Job[][]) => new Map<string, JobSpec>(jobs.flat().map((j) => [j.id, j.spec]));

describe('quota per GPU type (fake GPUs)', () => {
  // 8 A100 all guaranteed to red, which lends none of them; 8 H100, 2 guaranteed to blue, the rest unclaimed.
  const cluster = makeCluster(makeNode('a').gpus(8, 'A100'), makeNode('h').gpus(8, 'H100'));
  const teams = [team('red', { A100: 8 }, { lendingLimit: { A100: 0 } }), team('blue', { H100: 2 })];

  it('a team cannot borrow A100s because H100s are idle', () => {
    const jobs = build(makeJob(1).gpus(4).types('A100').team('blue'));
    const result = cycle(cluster, jobs, TUTTI_PROFILE, { teams });
    expect(result.plan.placements).toEqual([]);
    expect(result.diagnoses.get('1')).toMatchObject({ plugin: 'quota', code: 'QuotaExceeded' });
    expect(result.diagnoses.get('1')?.message).toContain('other teams lend 0 A100 GPUs in all');
  });

  it('borrows idle GPUs of the type that is lent: H100 beyond its nominal, not A100', () => {
    const jobs = build(makeJob(1).gpus(6).team('blue'));
    const result = cycle(cluster, jobs, TUTTI_PROFILE, { teams });
    // Any type accepted: admission leaves only H100 (6 = 2 nominal + 4 borrowed of the 6 unclaimed H100).
    expect(placedOf(result)).toEqual({ '1': 'h:0,1,2,3,4,5' });
  });

  it('counts each type against its own pool: what one team borrows of a type is gone for the next', () => {
    // red now lends 4 of its 8 A100; green and blue borrow A100 against that pool only.
    const lending = [team('red', { A100: 8 }, { lendingLimit: { A100: 4 } }), team('blue', { H100: 2 }), team('green', { H100: 0 })];
    // Fair share takes blue first (equal shares, then by name): it borrows 3 A100; green's 4 do not fit the pool any
    // more although 5 A100 are free (idle H100 do not help either); blue's next 1 does.
    const jobs = build(makeJob(1).gpus(4).types('A100').team('green'), makeJob(2).gpus(3).types('A100').team('blue'), makeJob(3).gpus(1).types('A100').team('blue'));
    const result = cycle(cluster, jobs, TUTTI_PROFILE, { teams: lending });
    expect(Object.keys(placedOf(result)).sort()).toEqual(['2', '3']);
    expect(result.diagnoses.get('1')).toMatchObject({ code: 'QuotaExceeded' });
    expect(result.diagnoses.get('1')?.message).toContain('other teams lend 4 A100 GPUs in all and 3 are borrowed');
  });

  it('a pool as large as the cluster is not what a job waits for: teams listed for their weight only wait for GPUs', () => {
    // Fair-share weights and no quotas: every GPU is borrowed and the pool is the whole cluster. When it is full, the
    // wait is for GPUs — with an EASY reservation for the big job, which the small one behind it must not delay.
    const snapshot = makeCluster(makeNode('a').gpus(4)).allocate('10', 'a', [0, 1]).allocate('11', 'a', [2, 3]);
    const running = build(makeJob(10).gpus(2).team('vision').runningSince(0).maxDurationMs(3_600_000), makeJob(11).gpus(2).team('vision').runningSince(0).maxDurationMs(7_200_000));
    const weightsOnly = [team('vision', {}, { weight: 2 }), team('speech', {})];
    const pending = build(makeJob(20).gpus(4).team('speech'), makeJob(21).gpus(2).team('vision'));
    const result = cycle(snapshot, pending, TUTTI_PROFILE, { teams: weightsOnly, running, now: 10 });
    expect(result.diagnoses.get('20')).toMatchObject({ plugin: 'gpu-fit', code: 'InsufficientGpus', estimatedStartAt: 7_200_000 });
    // The first job to end frees 2 GPUs at 1 h: held for job 20, not taken by job 21 (no max_duration).
    const later = runCycle({ snapshot: makeCluster(makeNode('a').gpus(4)).allocate('11', 'a', [2, 3]).build(), pending, running: running.slice(1), teams: weightsOnly, now: 3_600_000, seed: 0 }, TUTTI_PROFILE);
    expect(later.plan.placements).toEqual([]);
    expect(later.diagnoses.get('21')).toMatchObject({ code: 'WaitingForReservation' });
  });

  it('reclaims per type: a team within its A100 guarantee reclaims borrowed A100s, never borrowed H100 work', () => {
    // red is guaranteed 4 A100 and uses 2; blue (no quota) borrows 2 A100 on node a and 4 H100 on node b; node c's
    // H100 are busy with work nobody may preempt. red's 2-GPU job of any type fits only by taking borrowed GPUs.
    const snapshot = makeCluster(makeNode('a').gpus(4, 'A100'), makeNode('b').gpus(4, 'H100'), makeNode('c').gpus(4, 'H100'))
      .allocate('10', 'a', [0, 1])
      .allocate('11', 'a', [2, 3])
      .allocate('12', 'b', [0, 1, 2, 3])
      .allocate('99', 'c', [0, 1, 2, 3]);
    const running = build(makeJob(10).gpus(2).team('red').runningSince(0), makeJob(11).gpus(2).team('blue').runningSince(10), makeJob(12).gpus(4).team('blue').runningSince(20));
    const quotas = [team('red', { A100: 4 })];
    const pending = build(makeJob(20).gpus(2).team('red').priority(10));
    const result = cycle(snapshot, pending, TUTTI_PROFILE, { teams: quotas, running, now: 100 });
    // Job 12 started last (the cheapest victim were H100 reclaimable), but red's guarantee is A100: job 11 goes.
    expect(result.plan.preemptions.map((p) => [p.jobId, p.reason])).toEqual([['11', 'quota_reclaim']]);
    expect(result.plan.reservations).toEqual([{ jobId: '20', startAt: 60_100, nodes: [{ node: 'a', gpuIndices: [2, 3] }] }]);
    expect(verifyPlan(snapshot.build(), result.plan, specs(pending, running), { running, teams: quotas })).toEqual([]);
  });
});

describe('victims already being stopped (fake GPUs)', () => {
  // One node of 4 GPUs, all held by low-priority jobs; job 9 (high priority) needs 2.
  const snapshot = makeCluster(makeNode('a').gpus(4)).allocate('1', 'a', [0, 1]).allocate('2', 'a', [2]).allocate('3', 'a', [3]);
  const running = build(makeJob(1).gpus(2).priority(10).runningSince(0), makeJob(2).priority(10).runningSince(5), makeJob(3).priority(10).runningSince(6));
  const pending = build(makeJob(9).gpus(2).priority(90));
  const stopping = (jobs: Job[], ids: string[], forJobId: string, since: number): RunningJobInput[] => jobs.map((j) => (ids.includes(j.id) ? { ...j, stopping: { since, forJobId } } : j));

  it('first cycle: chooses victims; the next cycles name them again no more and preempt nothing else', () => {
    const first = cycle(snapshot, pending, TUTTI_PROFILE, { running, now: 100 });
    expect(first.plan.preemptions.map((p) => p.jobId)).toEqual(['3', '2']);
    // The server marks the victims as stopping; 20 s later they are still in their 60 s grace.
    const next = cycle(snapshot, pending, TUTTI_PROFILE, { running: stopping(running, ['2', '3'], '9', 100), now: 20_100 });
    expect(next.plan.preemptions).toEqual([]);
    expect(next.plan.placements).toEqual([]);
    // It waits for their GPUs, expected free when the grace runs out.
    expect(next.plan.reservations).toEqual([{ jobId: '9', startAt: 60_100, nodes: [{ node: 'a', gpuIndices: [2, 3] }] }]);
    expect(next.diagnoses.get('9')).toMatchObject({ code: 'WaitingForReclaim', estimatedStartAt: 60_100 });
    expect(next.diagnoses.get('9')?.message).toContain('jobs 2 and 3 are being stopped to make room');
  });

  it('a job that stopping victims do not make room for enough may not preempt more in their grace', () => {
    // Only job 3 (1 GPU) is being stopped for job 9, which needs 2: it waits, and job 2 is left alone.
    const result = cycle(snapshot, pending, TUTTI_PROFILE, { running: stopping(running, ['3'], '9', 100), now: 1_000 });
    expect(result.plan.preemptions).toEqual([]);
    expect(result.diagnoses.get('9')?.code).not.toBe('WaitingForReclaim');
  });

  it('never chooses a stopping job as a victim for another job', () => {
    // Job 1's GPUs are being stopped for a job that is gone; job 9 must pick other victims.
    const result = cycle(snapshot, pending, TUTTI_PROFILE, { running: stopping(running, ['1'], '8', 100), now: 1_000 });
    expect(result.plan.preemptions.map((p) => p.jobId)).toEqual(['3', '2']);
  });

  it('counts a stopping job as leaving its team\'s quota, like the cycle that chose it did', () => {
    const quotas = [team('default', { '*': 2 }, { borrowingLimit: { '*': 0 } })];
    const cluster = makeCluster(makeNode('a').gpus(4)).allocate('1', 'a', [0, 1]);
    const holder = build(makeJob(1).gpus(2).runningSince(0));
    const next = build(makeJob(9).gpus(2));
    const before = runCycle({ snapshot: cluster.build(), pending: next, running: holder, teams: quotas, now: 10, seed: 0 }, TUTTI_PROFILE);
    expect(before.diagnoses.get('9')?.code).toBe('QuotaExceeded');
    const after = runCycle({ snapshot: cluster.build(), pending: next, running: stopping(holder, ['1'], '7', 0), teams: quotas, now: 10, seed: 0 }, TUTTI_PROFILE);
    expect(placedOf(after)).toEqual({ '9': 'a:2,3' });
    expect(verifyPlan(cluster.build(), after.plan, specs(next, holder), { running: stopping(holder, ['1'], '7', 0), teams: quotas })).toEqual([]);
  });
});
