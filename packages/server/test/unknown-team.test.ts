/**
 * A team the cluster config does not list: refused at submit (422 `unknown_team`, naming the configured teams), so no
 * job runs outside every quota — the answer `tutti sim` gives too (it counts such trace jobs as unplaceable). With no
 * team configured, every team is admitted.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ApiError } from '@tutti/client';
import type { ClusterConfig } from '@tutti/model';
import { closeLeavingNothingRunning, startTestServer, waitForFileThenExit } from './harness.ts';
import type { TestServer } from './harness.ts';

let t: TestServer | undefined;
afterEach(async () => {
  await closeLeavingNothingRunning(t);
  t = undefined;
});

const withTeams: ClusterConfig = {
  nodes: [],
  teams: [
    { name: 'vision', weight: 1, nominal: { '*': 2 } },
    { name: 'speech', weight: 1, nominal: { '*': 2 } },
  ],
  scheduler: { profile: 'tutti', fairShareHalfLifeMs: 24 * 3600_000, args: {} },
};

async function refusal(submit: Promise<unknown>): Promise<ApiError> {
  const error = await submit.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ApiError);
  return error as ApiError;
}

describe('a team that is not configured', () => {
  it('is refused at submit with 422 naming the configured teams, and no job is created', async () => {
    t = await startTestServer({ config: withTeams });
    const typo = await refusal(t.client.submitJob({ name: 'x', team: 'visoin', resources: { gpus: 1 }, run: waitForFileThenExit(`${t.scratch}/never`) }));
    expect(typo.status).toBe(422);
    expect(typo.code).toBe('unknown_team');
    expect(typo.message).toBe("team: team 'visoin' is not configured on this cluster; the configured teams are 'speech', 'vision': did you mean 'vision'?");
    expect(typo.body.error.fields).toEqual([{ path: 'team', message: expect.stringContaining("'speech', 'vision'") }]);

    // A spec without `team:` is in team 'default', which this config does not list either.
    const teamless = await refusal(t.client.submitJob({ name: 'y', resources: { gpus: 1 }, run: waitForFileThenExit(`${t.scratch}/never`) }));
    expect(teamless.status).toBe(422);
    expect(teamless.message).toContain("team 'default' is not configured on this cluster; the configured teams are 'speech', 'vision'");

    // Checking a spec gives the same answer as submitting it.
    const checked = await refusal(t.client.validateJob('name: z\nteam: research\nresources: {gpus: 1}\nrun: ["true"]\n'));
    expect(checked.code).toBe('unknown_team');
    expect(checked.message).toContain("team 'research' is not configured");

    expect((await t.client.listJobs()).jobs).toEqual([]);
    const accepted = await t.client.submitJob({ name: 'ok', team: 'speech', resources: { gpus: 1 }, run: ['true'] });
    expect(accepted.spec.team).toBe('speech');
  });

  it('is admitted when no team is configured at all', async () => {
    t = await startTestServer();
    const job = await t.client.submitJob({ name: 'anyone', team: 'anything', resources: { gpus: 1 }, run: ['true'] });
    expect(job.status).toBe('pending');
  });
});
