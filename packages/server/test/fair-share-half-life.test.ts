/**
 * One fair-share half-life: `fair_share_half_life` in `tutti up --config` is the half-life the scheduler's queue sort
 * decays and divides usage with, and the one `/v1/teams` (`tutti queues`) shows shares with. Before, the config's
 * value reached only the usage tracker and the views; the scheduler kept the profile's 24 h, so a team that had just
 * used many GPU-hours still went first. A clock the test moves makes the usage exact.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseClusterConfigYaml } from '@tutti/model';
import type { ClusterConfig } from '@tutti/model';
import { silentLogger, startTuttiServer } from '@tutti/server';
import { closeLeavingNothingRunning, isEnded, isRunningWithPids, startTestServer, touch, waitForFileThenExit, waitForJob } from './harness.ts';
import type { TestServer } from './harness.ts';

let t: TestServer | undefined;
afterEach(async () => {
  await closeLeavingNothingRunning(t);
  t = undefined;
});

function config(yaml: string): ClusterConfig {
  const parsed = parseClusterConfigYaml(yaml);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  return parsed.value;
}

const TEAMS = `teams:
  - {name: alpha}
  - {name: beta}
`;

describe('the fair-share half-life of tutti up --config', () => {
  it('is the one the scheduler orders teams by, and the one /v1/teams shows shares with', async () => {
    let clock = Date.UTC(2026, 0, 1);
    t = await startTestServer({ fakeGpus: '2', now: () => clock, config: config(`${TEAMS}scheduler:\n  fair_share_half_life: 1h\n`) });
    const release = (name: string) => touch(path.join(t?.scratch ?? '', `release-${name}`));
    const submit = (name: string, team: string, gpus: number) => t?.client.submitJob({ name, team, resources: { gpus }, run: waitForFileThenExit(path.join(t?.scratch ?? '', `release-${name}`)) }) as ReturnType<TestServer['client']['submitJob']>;

    // alpha holds both GPUs for two half-lives: 2 GPUs · (1 h / ln 2) · (1 − 1/4) ≈ 7,791 GPU-seconds of usage.
    const heavy = await submit('heavy', 'alpha', 2);
    await waitForJob(t.client, heavy.id, isRunningWithPids);
    clock += 2 * 3_600_000;
    // Three one-GPU jobs wait; a cycle has seen them (their diagnosis says so) while `heavy` still ran two hours later.
    const betaFirst = await submit('beta-first', 'beta', 1);
    const alphaNext = await submit('alpha-next', 'alpha', 1);
    const betaNext = await submit('beta-next', 'beta', 1);
    for (const job of [betaFirst, alphaNext, betaNext]) await waitForJob(t.client, job.id, (j) => j.status === 'pending' && j.pending_diagnosis !== null);

    await release('heavy');
    // Two GPUs free. beta (share 0) takes one; its share is then 1 GPU, below alpha's 7,791 / 3,600 ≈ 2.16 GPUs of
    // recent use, so beta's second job takes the other. (With the profile's 24 h the scheduler saw alpha at ≈ 0.09
    // and ran alpha-next instead.)
    await waitForJob(t.client, betaFirst.id, isRunningWithPids);
    await waitForJob(t.client, betaNext.id, isRunningWithPids);
    expect((await t.client.getJob(alphaNext.id)).status).toBe('pending');

    // What `tutti queues` shows is that same share: alpha's usage over the 1 h half-life, beta's two running GPUs.
    const { teams } = await t.client.listTeams();
    const alpha = teams.find((team) => team.name === 'alpha');
    const beta = teams.find((team) => team.name === 'beta');
    const expectedUsageGpuS = 2 * (3600 / Math.LN2) * (1 - 0.25);
    expect(alpha?.fair_share.decayed_gpu_hours).toBeCloseTo(expectedUsageGpuS / 3600, 6);
    expect(alpha?.fair_share.share).toBeCloseTo(expectedUsageGpuS / 3600, 6);
    expect(beta?.fair_share.share).toBeCloseTo(2, 6);
    expect(beta?.fair_share.position).toBe(1);
    expect(alpha?.fair_share.position).toBe(2);
    // alpha-next starts once a beta job ends: released beforehand and waited for, so no rank outlives the test.
    for (const name of ['alpha-next', 'beta-first', 'beta-next']) await release(name);
    await waitForJob(t.client, alphaNext.id, isEnded);
  });

  it('refuses a config that sets it twice, differently, naming both fields', async () => {
    const twice = config(`${TEAMS}scheduler:\n  fair_share_half_life: 1h\n  args:\n    fair-share: {halfLifeMs: 7200000}\n`);
    const root = await mkdtemp(path.join(tmpdir(), 'tutti-test-'));
    try {
      await expect(startTuttiServer({ dataDir: path.join(root, 'data'), port: 0, fakeGpus: '1', logger: silentLogger, config: twice })).rejects.toThrow(
        /scheduler\.fair_share_half_life \(3600000 ms\) and args\.fair-share\.halfLifeMs \(7200000\)/,
      );
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
