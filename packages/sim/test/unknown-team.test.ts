/**
 * A team the cluster config does not list gets one answer, live and simulated (model's `isTeamAdmitted`): the server
 * refuses its jobs at submit (422 unknown_team), and `runSimulation` counts its trace jobs as unplaceable
 * (`team_without_capacity`) — they never run in either. With no team configured, every team runs in both.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ApiError } from '@tutti/client';
import { computePolicyMetrics, resolvePolicies, runSimulation, type SimPolicy } from '@tutti/sim';
import { closeLeavingNothingRunning, startTestServer, type TestServer } from '../../server/test/harness.ts';
import { cluster, trace } from './fixtures.ts';

const withTeams = cluster(`
nodes: [{name: box, gpus: {count: 4, type: A100}}]
teams:
  - {name: vision}
  - {name: speech}
`);

function tutti(): SimPolicy {
  const found = resolvePolicies(['tutti'], {}).policies[0];
  if (!found) throw new Error('no tutti policy');
  return found;
}

let t: TestServer | undefined;
afterEach(async () => {
  await closeLeavingNothingRunning(t);
  t = undefined;
});

describe('a team that is not configured', () => {
  it('never runs in simulation (one pool): its jobs and team-less ones are unplaceable, the configured teams run', () => {
    const result = runSimulation(trace([[0, 10, 1, 'vision'], [0, 10, 1, 'zz'], [0, 10, 1, ''], [0, 10, 1, 'speech']]), withTeams, tutti());
    expect(result.partitioned).toBe(false);
    expect([...result.jobs.firstStartS].map((s) => (Number.isNaN(s) ? 'never' : s))).toEqual([0, 'never', 'never', 0]);
    const m = computePolicyMetrics(result);
    expect(m.jobs).toBe(2);
    expect(m.unplaceableByReason).toEqual({ no_team: 0, team_without_capacity: 2, larger_than_team: 0, never_fits: 0 });
  });

  it('runs in simulation when no team is configured at all', () => {
    const result = runSimulation(trace([[0, 10, 1, 'zz'], [0, 10, 1, '']]), cluster('nodes: [{name: box, gpus: {count: 4, type: A100}}]'), tutti());
    expect(computePolicyMetrics(result).unplaceable).toBe(0);
  });

  it('is refused by the live server with the same config, so it runs in neither', async () => {
    t = await startTestServer({ config: withTeams });
    const refused = await t.client.submitJob({ name: 'x', team: 'zz', resources: { gpus: 1 }, run: ['true'] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(ApiError);
    expect((refused as ApiError).status).toBe(422);
    expect((refused as ApiError).message).toContain("the configured teams are 'speech', 'vision'");
  });
});
