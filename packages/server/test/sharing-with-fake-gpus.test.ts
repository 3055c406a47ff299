/**
 * Sharing GPUs live: the server runs the `tutti` scheduler profile every cycle, and carries out its preemptions —
 * for priority and to give a team its quota back — on real processes, with 4 fake GPUs.
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiError } from '@tutti/client';
import type { ClusterConfig } from '@tutti/model';
import { closeLeavingNothingRunning, isEnded, isRunningWithPids, nodeScript, startTestServer, touch, waitForFileThenExit, waitForJob } from './harness.ts';
import type { TestServer } from './harness.ts';

let t: TestServer | undefined;
afterEach(async () => {
  await closeLeavingNothingRunning(t);
  t = undefined;
});

/** A rank that runs until `file` exists; on SIGTERM it says it checkpoints and exits 0. */
function preemptibleUntil(file: string): string[] {
  return nodeScript(
    `const fs=require('fs');process.on('SIGTERM',()=>{console.log('checkpointing before preemption');process.exit(0)});` +
      `console.log('attempt '+process.env.TUTTI_ATTEMPT+' running');(function w(){if(fs.existsSync(process.argv[1]))process.exit(0);setTimeout(w,25)})()`,
    file,
  );
}

const teamsConfig = (teams: ClusterConfig['teams']): ClusterConfig => ({
  nodes: [],
  teams,
  scheduler: { profile: 'tutti', fairShareHalfLifeMs: 24 * 3600_000, args: {} },
});

describe('sharing GPUs with fake GPUs', () => {
  it('preempts a lower-priority gang for a higher-priority one, which then runs; the victim comes back and finishes', async () => {
    t = await startTestServer();
    const low = await t.client.submitJob({ name: 'low', priority: 10, resources: { gpus: 4 }, run: preemptibleUntil(path.join(t.scratch, 'release-low')) });
    await waitForJob(t.client, low.id, isRunningWithPids);
    // Preempt only once the rank has installed its SIGTERM handler (it says so).
    for (let log = ''; !log.includes('running'); await new Promise((r) => setTimeout(r, 50))) {
      log = '';
      for await (const chunk of t.client.logs(low.id)) log += chunk;
    }
    const high = await t.client.submitJob({ name: 'high', priority: 900, resources: { gpus: 4 }, run: waitForFileThenExit(path.join(t.scratch, 'release-high')) });

    await waitForJob(t.client, high.id, isRunningWithPids);
    const victim = await t.client.getJob(low.id);
    expect(victim.status).toBe('pending');
    const events = (await t.client.listJobEvents(low.id)).events;
    const preempted = events.find((e) => e.type === 'preempted');
    expect(preempted?.message).toContain(`job ${high.id}`);
    let log = '';
    for await (const chunk of t.client.logs(low.id, { attempt: 1 })) log += chunk;

    await touch(path.join(t.scratch, 'release-high'));
    expect((await waitForJob(t.client, high.id, isEnded)).status).toBe('succeeded');
    const resumed = await waitForJob(t.client, low.id, isRunningWithPids);
    expect(resumed.attempt).toBe(2);
    expect(resumed.restarts).toBe(0);
    await touch(path.join(t.scratch, 'release-low'));
    expect((await waitForJob(t.client, low.id, isEnded)).status).toBe('succeeded');
    expect(log).toContain('checkpointing before preemption');
  });

  it('gives a team its quota back by preempting the borrower, and shows quota, use and borrowing per team', async () => {
    t = await startTestServer({
      config: teamsConfig([
        { name: 'vision', weight: 1, nominal: { '*': 2 } },
        { name: 'speech', weight: 1, nominal: { '*': 2 } },
      ]),
    });
    const borrower = await t.client.submitJob({ name: 'borrower', team: 'speech', resources: { gpus: 4 }, run: preemptibleUntil(path.join(t.scratch, 'release-borrower')) });
    await waitForJob(t.client, borrower.id, isRunningWithPids);
    const before = (await t.client.listTeams()).teams.find((team) => team.name === 'speech');
    expect(before).toMatchObject({ quota: { '*': 2 }, used: { FAKE: 4 }, borrowed: { '*': 2 }, running_jobs: 1 });

    const owner = await t.client.submitJob({ name: 'owner', team: 'vision', resources: { gpus: 2 }, run: waitForFileThenExit(path.join(t.scratch, 'release-owner')) });
    await waitForJob(t.client, owner.id, isRunningWithPids);
    const reclaimed = (await t.client.listJobEvents(borrower.id)).events.find((e) => e.type === 'preempted');
    expect(reclaimed).toBeDefined();
    expect((await t.client.getJob(borrower.id)).status).toBe('pending');
    const vision = (await t.client.listTeams()).teams.find((team) => team.name === 'vision');
    expect(vision).toMatchObject({ used: { FAKE: 2 }, borrowed: {}, running_jobs: 1 });

    await touch(path.join(t.scratch, 'release-owner'));
    await touch(path.join(t.scratch, 'release-borrower'));
    expect((await waitForJob(t.client, borrower.id, isEnded)).status).toBe('succeeded');
  });

  it('tells where a pending job stands in its team\'s queue', async () => {
    t = await startTestServer();
    const holder = await t.client.submitJob({ name: 'holder', team: 'ml', resources: { gpus: 4 }, run: waitForFileThenExit(path.join(t.scratch, 'release')) });
    await waitForJob(t.client, holder.id, isRunningWithPids);
    const first = await t.client.submitJob({ name: 'first', team: 'ml', resources: { gpus: 2 }, run: ['true'] });
    const second = await t.client.submitJob({ name: 'second', team: 'ml', resources: { gpus: 2 }, run: ['true'] });
    const waiting = await waitForJob(t.client, second.id, (j) => j.pending_diagnosis?.position != null);
    expect(waiting.pending_diagnosis?.position).toEqual({ team: 'ml', index: 2, of: 2 });
    expect((await t.client.getJob(first.id)).pending_diagnosis?.position).toEqual({ team: 'ml', index: 1, of: 2 });
    await touch(path.join(t.scratch, 'release'));
    await waitForJob(t.client, second.id, isEnded);
  });

  it('refuses fractional GPUs on the local backend with a clear 422', async () => {
    t = await startTestServer();
    const error = await t.client
      .submitJob({ name: 'half', resources: { gpus: { count: 1, fraction: 0.5 } }, run: ['true'] })
      .then(() => undefined, (e: unknown) => e);
    // The spec is valid (the scheduler and the simulator pack fractions); the local backend cannot share a GPU yet.
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).status).toBe(422);
    expect((error as ApiError).message).toContain('fractional GPUs (0.5) are not supported by the local backend yet');
  });
});
