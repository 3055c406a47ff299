/**
 * `screenPlan`: what both drivers (the server's job controller and the simulator) carry out of a plan that fails
 * `verifyPlan` — the faulty part dropped and reported, the rest kept.
 */
import { describe, expect, it } from 'vitest';
import type { Plan } from '@tutti/model';
import { screenPlan, verifyPlan } from '../src/index.ts';
import { makeCluster, makeJob, makeNode } from './builders.ts';


describe('screenPlan', () => {
  it('keeps a valid plan as it is, with no violations', () => {
    const snapshot = makeCluster(makeNode('a').gpus(4)).build();
    const plan: Plan = { snapshotVersion: 1, preemptions: [], reservations: [], placements: [{ jobId: '1', nodes: [{ node: 'a', gpuIndices: [0, 1] }] }] };
    const screened = screenPlan(snapshot, plan, new Map([['1', makeJob(1).gpus(2).spec()]]));
    expect(screened).toEqual({ plan, violations: [] });
  });

  it('drops the placement at fault and the preemption made for it, and keeps the rest', () => {
    const snapshot = makeCluster(makeNode('a').gpus(4)).allocate('r', 'a', [3]).build();
    const jobs = new Map([
      ['1', makeJob(1).gpus(2).spec()],
      ['2', makeJob(2).gpus(2).priority(900).spec()],
    ]);
    const running = [{ id: 'r', spec: makeJob('r').gpus(1).priority(10).spec(), status: 'running' as const, createdAt: 0 }];
    const plan: Plan = {
      snapshotVersion: 1,
      reservations: [],
      placements: [
        { jobId: '1', nodes: [{ node: 'a', gpuIndices: [0, 1] }] },
        // GPU 1 is also job 1's: job 2 is at fault.
        { jobId: '2', nodes: [{ node: 'a', gpuIndices: [1, 2] }] },
      ],
      preemptions: [{ jobId: 'r', forJobId: '2', reason: 'priority', graceMs: 1000, graceSource: 'default', message: 'for job 2' }],
    };
    const screened = screenPlan(snapshot, plan, jobs, { running });
    expect(screened.violations.map((v) => [v.jobId, v.code])).toEqual([['2', 'GpuDoubleBooked']]);
    expect(screened.plan.placements.map((p) => p.jobId)).toEqual(['1']);
    expect(screened.plan.preemptions).toEqual([]);
    expect(verifyPlan(snapshot, screened.plan, jobs, { running })).toEqual([]);
  });

  it('verifies what is left again until it passes (a team over its quota is blamed on one placement at a time)', () => {
    const snapshot = makeCluster(makeNode('a').gpus(4, 'A100')).build();
    const teams = [{ name: 't', weight: 1, nominal: { A100: 1 }, borrowingLimit: { A100: 0 } }];
    const jobs = new Map(['1', '2', '3'].map((id) => [id, makeJob(id).gpus(1).team('t').spec()]));
    const plan: Plan = {
      snapshotVersion: 1,
      reservations: [],
      preemptions: [],
      placements: ['1', '2', '3'].map((id, i) => ({ jobId: id, nodes: [{ node: 'a', gpuIndices: [i] }] })),
    };
    const screened = screenPlan(snapshot, plan, jobs, { teams });
    expect(screened.violations.every((v) => v.code === 'QuotaExceeded')).toBe(true);
    expect(screened.plan.placements).toHaveLength(1);
    expect(verifyPlan(snapshot, screened.plan, jobs, { teams })).toEqual([]);
  });
});
