/**
 * A plan that fails `verifyPlan` (a scheduler bug) is handled by the simulator as by the live server, through the
 * scheduler's one `screenPlan`: the faulty placements are dropped and recorded with the reason, the rest of the plan
 * is carried out, and the cycle goes on. Before, the simulator threw where the server dropped.
 *
 * A real such plan: `fifo` has no quota plugin, so with teams whose borrowing is capped it places a team beyond its
 * quota, which `verifyPlan` refuses. Team t may use 2 of 4 GPUs; `a` (1 GPU, 100 s) and `b` (2 GPUs, 10 s) arrive
 * together and fifo places both (3 GPUs). The quota violation is blamed on the team's first placement, `a`: it is
 * dropped, `b` runs at 0, and `a` starts when `b` has ended (its next try would be 3 GPUs again while `b` runs).
 * Live, the same config and jobs: `b` runs while `a` waits, its violation logged, and `a` runs once `b` is done.
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ClusterConfig } from '@tutti/model';
import { silentLogger } from '@tutti/server';
import { resolvePolicies, runSimulation } from '@tutti/sim';
import { closeLeavingNothingRunning, isEnded, isRunningWithPids, startTestServer, touch, waitForFileThenExit, waitForJob, type TestServer } from '../../server/test/harness.ts';
import { cluster, trace } from './fixtures.ts';

const TEAMS = `
teams:
  - {name: t, quota: {'*': 2}, borrowing_limit: {'*': 0}}
scheduler: {profile: fifo}
`;

let t: TestServer | undefined;
afterEach(async () => {
  await closeLeavingNothingRunning(t);
  t = undefined;
});

describe('an invalid plan', () => {
  it('is screened in simulation: the faulty placement dropped and recorded, the rest run, the cycle goes on', () => {
    const fifo = resolvePolicies(['fifo'], {}).policies[0];
    if (!fifo) throw new Error('no fifo policy');
    const result = runSimulation(trace([[0, 100, 1, 't'], [0, 10, 2, 't']]), cluster(`nodes: [{name: box, gpus: {count: 4, type: A100}}]${TEAMS}`), fifo);
    expect([...result.jobs.firstStartS]).toEqual([10, 0]);
    expect(result.planViolations[0]).toMatchObject({ timeS: 0, code: 'QuotaExceeded', message: expect.stringContaining('team t would use 3') });
    expect(new Set(result.planViolations.map((v) => v.traceId))).toEqual(new Set([result.planViolations[0]?.traceId]));
  });

  it('is screened live the same way: the faulty placement dropped and logged, the rest run', async () => {
    const errors: string[] = [];
    const config: ClusterConfig = { nodes: [], teams: [{ name: 't', weight: 1, nominal: { '*': 2 }, borrowingLimit: { '*': 0 } }], scheduler: { profile: 'fifo', args: {} } };
    t = await startTestServer({ config, logger: { ...silentLogger, error: (message) => errors.push(message) } });
    const b = await t.client.submitJob({ name: 'b', team: 't', resources: { gpus: 2 }, run: waitForFileThenExit(path.join(t.scratch, 'release-b')) });
    await waitForJob(t.client, b.id, isRunningWithPids);
    const a = await t.client.submitJob({ name: 'a', team: 't', resources: { gpus: 1 }, run: ['true'] });
    for (let i = 0; i < 100 && !errors.some((e) => e.includes(`job ${a.id}`)); i++) await new Promise((r) => setTimeout(r, 50));
    expect(errors.find((e) => e.includes(`job ${a.id}`))).toContain(`scheduler produced an invalid plan for job ${a.id}: job ${a.id}: team t would use 3 GPUs, above nominal + borrowing limit 2`);
    expect((await t.client.getJob(a.id)).status).toBe('pending');
    await touch(path.join(t.scratch, 'release-b'));
    expect((await waitForJob(t.client, b.id, isEnded)).status).toBe('succeeded');
    expect((await waitForJob(t.client, a.id, isEnded)).status).toBe('succeeded');
  });
});
