/**
 * Sharing GPUs live: the server runs the `tutti` scheduler profile every cycle, and carries out its preemptions —
 * for priority and to give a team its quota back — on real processes, with 4 fake GPUs.
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
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

  it('lets a team at its quota run an urgent job in place of its own low-priority one, leaving other teams\' GPUs alone', async () => {
    t = await startTestServer({
      config: teamsConfig([
        { name: 'vision', weight: 1, nominal: { '*': 2 }, borrowingLimit: { '*': 0 } },
        { name: 'speech', weight: 1, nominal: { '*': 2 }, borrowingLimit: { '*': 0 } },
      ]),
    });
    const low = await t.client.submitJob({ name: 'low', team: 'vision', priority: 10, resources: { gpus: 2 }, run: preemptibleUntil(path.join(t.scratch, 'release-low')) });
    await waitForJob(t.client, low.id, isRunningWithPids);
    for (let log = ''; !log.includes('running'); await new Promise((r) => setTimeout(r, 50))) {
      log = '';
      for await (const chunk of t.client.logs(low.id)) log += chunk;
    }
    const urgent = await t.client.submitJob({ name: 'urgent', team: 'vision', priority: 900, resources: { gpus: 2 }, run: waitForFileThenExit(path.join(t.scratch, 'release-urgent')) });
    await waitForJob(t.client, urgent.id, isRunningWithPids);
    const preempted = (await t.client.listJobEvents(low.id)).events.find((e) => e.type === 'preempted');
    expect(preempted?.message).toContain(`job ${urgent.id}`);
    expect(preempted?.message).toContain('team vision is at its quota');
    // The victim waits on its team's quota; speech's two GPUs were never touched and take speech's job at once.
    const waiting = await waitForJob(t.client, low.id, (j) => j.status === 'pending' && j.pending_diagnosis?.code === 'QuotaExceeded');
    expect(waiting.pending_diagnosis?.plugin).toBe('quota');
    const other = await t.client.submitJob({ name: 'other', team: 'speech', resources: { gpus: 2 }, run: ['true'] });
    expect((await waitForJob(t.client, other.id, isEnded)).status).toBe('succeeded');

    await touch(path.join(t.scratch, 'release-urgent'));
    const resumed = await waitForJob(t.client, low.id, isRunningWithPids);
    expect(resumed.attempt).toBe(2);
    await touch(path.join(t.scratch, 'release-low'));
    expect((await waitForJob(t.client, low.id, isEnded)).status).toBe('succeeded');
  });

  it('runs the tutti-las profile live inside a team at its quota: the job with more GPU time yields to its teammate', async () => {
    t = await startTestServer({
      fakeGpus: '1',
      config: {
        nodes: [],
        teams: [{ name: 'vc', weight: 1, nominal: { '*': 1 }, borrowingLimit: { '*': 0 } }],
        scheduler: { profile: 'tutti-las', fairShareHalfLifeMs: 24 * 3600_000, args: { 'fair-share': { lasThresholdsGpuS: [1] }, 'order-preemption': { maxGraceMs: 5000 } } },
      },
    });
    const veteran = await t.client.submitJob({ name: 'veteran', team: 'vc', resources: { gpus: 1 }, run: preemptibleUntil(path.join(t.scratch, 'release-veteran')) });
    await waitForJob(t.client, veteran.id, isRunningWithPids);
    // Past the 1 GPU-second threshold it drops to the second queue.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const newcomer = await t.client.submitJob({ name: 'newcomer', team: 'vc', resources: { gpus: 1 }, run: waitForFileThenExit(path.join(t.scratch, 'release-newcomer')) });
    await waitForJob(t.client, newcomer.id, isRunningWithPids, 20_000);
    const preempted = (await t.client.listJobEvents(veteran.id)).events.find((e) => e.type === 'preempted');
    expect(preempted).toBeDefined();
    expect((await t.client.getJob(veteran.id)).status).toBe('pending');
    await touch(path.join(t.scratch, 'release-newcomer'));
    await waitForJob(t.client, veteran.id, (j) => j.attempt === 2 && isRunningWithPids(j), 20_000);
    await touch(path.join(t.scratch, 'release-veteran'));
    expect((await waitForJob(t.client, veteran.id, isEnded)).status).toBe('succeeded');
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

  it('packs fractional jobs onto shared GPUs within memory, keeps whole-GPU jobs off them, and frees each share on its own', async () => {
    t = await startTestServer({ fakeGpus: '2:H100:80GB' });
    const release = (name: string) => path.join(t!.scratch, `release-${name}`);
    const share = (name: string, fraction: number, memory: string) =>
      t!.client.submitJob({ name, resources: { gpus: { count: 1, fraction, memory } }, run: waitForFileThenExit(release(name)) });
    const a = await share('a', 0.5, '30GB');
    const b = await share('b', 0.25, '30GB');
    const [ra, rb] = [await waitForJob(t.client, a.id, isRunningWithPids), await waitForJob(t.client, b.id, isRunningWithPids)];
    // Packed onto one GPU (best fit keeps the other GPU whole), and each rank sees that GPU.
    expect(ra.tasks?.[0]?.gpus).toEqual(rb.tasks?.[0]?.gpus);
    const shared = ra.tasks![0]!.gpus[0]!;

    // A whole-GPU job takes the other GPU; a second one must wait: a shared GPU is not free.
    const whole = await t.client.submitJob({ name: 'whole', resources: { gpus: 1 }, run: waitForFileThenExit(release('whole')) });
    const rw = await waitForJob(t.client, whole.id, isRunningWithPids);
    expect(rw.tasks?.[0]?.gpus).toEqual([1 - shared]);
    const whole2 = await t.client.submitJob({ name: 'whole2', resources: { gpus: 1 }, run: waitForFileThenExit(release('whole2')) });
    const waiting = await waitForJob(t.client, whole2.id, (j) => j.pending_diagnosis !== null);
    expect(waiting.status).toBe('pending');

    // 0.5 + 0.25 fit; a further 0.25 with 30GB does not fit the 80GB left after 60GB.
    const c = await share('c', 0.25, '30GB');
    expect((await waitForJob(t.client, c.id, (j) => j.pending_diagnosis !== null)).status).toBe('pending');

    const gpu = (await t.client.listNodes()).nodes[0]!.gpus.find((g) => g.index === shared)!;
    expect(gpu.shares.map((s) => [s.job_id, s.fraction, s.memory_mib]).sort()).toEqual([[a.id, 0.5, 30 * 1024], [b.id, 0.25, 30 * 1024]].sort());

    // When a's share ends, c fits beside b; whole2 still waits for a whole GPU.
    await touch(release('a'));
    await waitForJob(t.client, a.id, isEnded);
    const rc = await waitForJob(t.client, c.id, isRunningWithPids);
    expect(rc.tasks?.[0]?.gpus).toEqual([shared]);
    expect((await t.client.getJob(whole2.id)).status).toBe('pending');
    for (const name of ['b', 'c', 'whole', 'whole2']) await touch(release(name));
    for (const job of [b, c, whole, whole2]) expect((await waitForJob(t.client, job.id, isEnded)).status).toBe('succeeded');
  });

  it('remembers which team used the GPUs across a control-plane restart: fair share still puts the other team first', async () => {
    const config = teamsConfig([
      { name: 'alpha', weight: 1, nominal: {} },
      { name: 'zulu', weight: 1, nominal: {} },
      { name: 'ops', weight: 1, nominal: {} },
    ]);
    t = await startTestServer({ fakeGpus: '1', config });
    const used = await t.client.submitJob({ name: 'alpha-used', team: 'alpha', resources: { gpus: 1 }, run: nodeScript('setTimeout(() => {}, 1500)') });
    expect((await waitForJob(t.client, used.id, isEnded)).status).toBe('succeeded');
    await t.server.close();

    // Same data dir, new server: alpha's recent use must come back from the store, not start at zero.
    const { startTuttiServer, silentLogger } = await import('@tutti/server');
    const server = await startTuttiServer({ dataDir: t.dataDir, port: 0, fakeGpus: '1', logger: silentLogger, tickMs: 200, stopGraceMs: 5000, config });
    const restarted: TestServer = { ...t, server, client: new (await import('@tutti/client')).TuttiClient({ baseUrl: server.url }) };
    t = restarted;
    // The teams view shows the same: alpha's decayed use, and zulu ahead of it in the fair-share order.
    const teams = (await t.client.listTeams()).teams;
    const alphaView = teams.find((team) => team.name === 'alpha')!;
    const zuluView = teams.find((team) => team.name === 'zulu')!;
    expect(alphaView.fair_share.decayed_gpu_hours).toBeGreaterThan(1 / 3600);
    expect(zuluView.fair_share.position).toBeLessThan(alphaView.fair_share.position);
    const blocker = await t.client.submitJob({ name: 'blocker', team: 'ops', resources: { gpus: 1 }, run: waitForFileThenExit(path.join(t.scratch, 'release-blocker')) });
    await waitForJob(t.client, blocker.id, isRunningWithPids);
    // Alpha submits first and sorts first by name; only its remembered use can put zulu ahead.
    const alpha = await t.client.submitJob({ name: 'alpha-next', team: 'alpha', resources: { gpus: 1 }, run: waitForFileThenExit(path.join(t.scratch, 'release-alpha')) });
    const zulu = await t.client.submitJob({ name: 'zulu-next', team: 'zulu', resources: { gpus: 1 }, run: waitForFileThenExit(path.join(t.scratch, 'release-zulu')) });
    await waitForJob(t.client, alpha.id, (j) => j.pending_diagnosis !== null);
    await waitForJob(t.client, zulu.id, (j) => j.pending_diagnosis !== null);
    await touch(path.join(t.scratch, 'release-blocker'));
    await waitForJob(t.client, zulu.id, isRunningWithPids);
    expect((await t.client.getJob(alpha.id)).status).toBe('pending');
    await touch(path.join(t.scratch, 'release-zulu'));
    await waitForJob(t.client, alpha.id, isRunningWithPids);
    await touch(path.join(t.scratch, 'release-alpha'));
    await waitForJob(t.client, alpha.id, isEnded);
  });

  it('runs the tiresias profile live: a job that has used more GPU time is preempted for a newcomer, then resumes', async () => {
    t = await startTestServer({
      fakeGpus: '1',
      config: { nodes: [], teams: [], scheduler: { profile: 'tiresias', fairShareHalfLifeMs: 24 * 3600_000, args: { las: { queueThresholdsGpuS: [1] }, 'order-preemption': { maxGraceMs: 5000 } } } },
    });
    const veteran = await t.client.submitJob({ name: 'veteran', resources: { gpus: 1 }, run: preemptibleUntil(path.join(t.scratch, 'release-veteran')) });
    await waitForJob(t.client, veteran.id, isRunningWithPids);
    // Past the 1 GPU-second threshold it drops to the second queue.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const newcomer = await t.client.submitJob({ name: 'newcomer', resources: { gpus: 1 }, run: waitForFileThenExit(path.join(t.scratch, 'release-newcomer')) });
    await waitForJob(t.client, newcomer.id, isRunningWithPids, 20_000);
    const events = (await t.client.listJobEvents(veteran.id)).events;
    expect(events.map((e) => e.type)).toContain('preempted');
    expect((await t.client.getJob(veteran.id)).status).toBe('pending');
    await touch(path.join(t.scratch, 'release-newcomer'));
    await waitForJob(t.client, veteran.id, (j) => j.attempt === 2 && isRunningWithPids(j), 20_000);
    await touch(path.join(t.scratch, 'release-veteran'));
    expect((await waitForJob(t.client, veteran.id, isEnded)).status).toBe('succeeded');
  });
});
