/**
 * Training that survives, with real processes on fake GPUs: whole-gang restarts from checkpoints, max_restarts,
 * graceful cancel, preemption, hang detection, attempts and progress records through the API.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobView } from '@tutti/client';
import { pidOf, isEnded, isRunningWithPids, nodeScript, startTestServer, waitForJob } from './harness.ts';
import type { TestServer } from './harness.ts';

const TRAIN = fileURLToPath(new URL('../../../examples/ddp-node/train.mjs', import.meta.url));

let t: TestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

function ddpJob(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    resources: { gpus: 4 },
    run: [process.execPath, TRAIN],
    env: { STEPS: '150', STEP_MS: '15', CHECKPOINT_EVERY: '25' },
    max_restarts: 2,
    restart_backoff: '0s',
    ...extra,
  };
}

async function lastLine(file: string): Promise<string> {
  return (await readFile(file, 'utf8')).trim().split('\n').at(-1) ?? '';
}

/** rank 0's log of the given attempt. */
const rankLog = (dataDir: string, jobId: string, attempt: number, rank = 0) => `${dataDir}/jobs/${jobId}/attempt-${attempt}/rank-${rank}.log`;

async function waitForStep(job: JobView, atLeast: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const { records } = await t!.client.getJobMetrics(job.id, { last: 1 });
    if ((records[0]?.step ?? 0) >= atLeast) return;
    if (Date.now() > deadline) throw new Error(`job ${job.id} never reached step ${atLeast}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe('training that survives, with fake GPUs', () => {
  // A dead worker: rank 0 still gets the stop signal and checkpoints where it is, so nothing is redone. A dead rank 0
  // (the one that checkpoints): the next attempt resumes from the last periodic checkpoint, at most one interval back.
  it.each([
    [2, 'a worker'],
    [0, 'rank 0, which checkpoints'],
  ])('restarts the whole gang from the last checkpoint when rank %i (%s) of a 4-rank ddp-node job is killed, and ends with the same weights', async (killedRank) => {
    t = await startTestServer();
    const clean = await t.client.submitJob(ddpJob('ddp-clean'));
    const cleanDone = await waitForJob(t.client, clean.id, isEnded, 30_000);
    expect(cleanDone.status).toBe('succeeded');
    const expected = await lastLine(rankLog(t.dataDir, clean.id, 1));
    expect(expected).toMatch(/^final weights digest: [0-9a-f]{16}$/);

    const job = await t.client.submitJob(ddpJob('ddp-killed'));
    await waitForJob(t.client, job.id, isRunningWithPids, 20_000);
    await waitForStep(job, 60);
    const running = await t.client.getJob(job.id);
    const victimTask = running.tasks?.find((task) => task.rank === killedRank);
    const victim = victimTask && pidOf(victimTask);
    expect(victim).toBeTypeOf('number');
    const killedAt = Date.now();
    process.kill(-victim!, 'SIGKILL');

    const second = await waitForJob(t.client, job.id, (j) => j.attempt === 2 && isRunningWithPids(j), 20_000);
    const restartMs = Date.now() - killedAt;
    const done = await waitForJob(t.client, job.id, isEnded, 30_000);
    expect(done.status).toBe('succeeded');
    expect(done.restarts).toBe(1);
    expect(await lastLine(rankLog(t.dataDir, job.id, 2))).toBe(expected);
    for (const rank of [1, 2, 3]) expect(await lastLine(rankLog(t.dataDir, job.id, 2, rank))).toBe(expected);

    // Attempts through the API: the first ended by the killed rank, the second succeeded.
    expect(done.attempts?.map((a) => [a.attempt, a.exit_code])).toEqual([[1, 137], [2, 0]]);
    expect(done.attempts?.[0]?.reason).toMatch(/rank \d was killed by SIGKILL|rank \d exited with code 1/);
    expect(done.attempts?.[0]?.tasks).toHaveLength(4);
    const events = (await t.client.listJobEvents(job.id)).events;
    const started = events.filter((e) => e.type === 'started');
    expect(started[1]?.message).toMatch(/attempt 2.*resuming from .*step-\d+\.json/);
    const resumedFrom = Number(/step-(\d+)\.json/.exec(started[1]?.message ?? '')?.[1]);
    const log2 = await readFile(rankLog(t.dataDir, job.id, 2), 'utf8');
    expect(log2).toContain(`resuming from`);
    // Steps redone: the steps of attempt 1 after its last checkpoint.
    const metrics = (await t.client.getJobMetrics(job.id)).records;
    const reachedInFirst = Math.max(...metrics.filter((r) => r.attempt === 1 && r.step !== null).map((r) => r.step!));
    const redone = reachedInFirst - resumedFrom;
    expect(redone).toBeLessThanOrEqual(25);
    expect(second.attempt).toBe(2);
    console.log(`[figures] rank ${killedRank} death → gang running again: ${restartMs} ms; steps redone: ${redone} (checkpoint every 25)`);
  }, 90_000);

  it('fails the job with the reason once max_restarts is exhausted', async () => {
    t = await startTestServer();
    const job = await t.client.submitJob({
      name: 'always-fails',
      resources: { gpus: 2 },
      run: nodeScript('console.log("attempt", process.env.TUTTI_ATTEMPT); process.exit(process.env.RANK === "1" ? 3 : 0)'),
      max_restarts: 2,
      restart_backoff: '0s',
    });
    const done = await waitForJob(t.client, job.id, isEnded, 20_000);
    expect(done.status).toBe('failed');
    expect(done.exit_code).toBe(3);
    expect(done.end_reason).toBe('rank 1 exited with code 3 (max_restarts 2 exhausted after 3 attempts)');
    expect(done.attempts?.map((a) => a.attempt)).toEqual([1, 2, 3]);
    expect(done.restarts).toBe(2);
    const log3 = await readFile(rankLog(t.dataDir, job.id, 3, 1), 'utf8');
    expect(log3).toContain('attempt 3');
  }, 30_000);

  it('a cancelled ddp-node job checkpoints within its grace period, and its log shows it', async () => {
    t = await startTestServer();
    const job = await t.client.submitJob(ddpJob('ddp-cancel', { preemption_grace: '10s', env: { STEPS: '100000', STEP_MS: '10', CHECKPOINT_EVERY: '1000' } }));
    await waitForJob(t.client, job.id, isRunningWithPids, 20_000);
    await waitForStep(job, 20);
    const asked = Date.now();
    await t.client.cancelJob(job.id);
    const done = await waitForJob(t.client, job.id, isEnded, 20_000);
    expect(done.status).toBe('cancelled');
    expect(Date.now() - asked).toBeLessThan(10_000);
    const log = await readFile(rankLog(t.dataDir, job.id, 1), 'utf8');
    expect(log).toMatch(/received SIGTERM \(deadline \d+, now \d+\): checkpointing step \d+ before exiting/);
    expect(log).toMatch(/checkpoint .*step-\d+\.json \(stop signal SIGTERM\)/);
    expect(done.last_checkpoint).toMatch(/step-\d+\.json$/);
  }, 40_000);

  it('preempt() sends the job back to pending without counting a restart, and it later resumes where it stopped', async () => {
    t = await startTestServer();
    const job = await t.client.submitJob(ddpJob('ddp-preempt', { stop_signal: 'SIGUSR1', max_restarts: 0 }));
    await waitForJob(t.client, job.id, isRunningWithPids, 20_000);
    await waitForStep(job, 40);
    expect(await t.server.controller.preempt(job.id, { message: 'a higher-priority job needs the GPUs' })).toBe('preempting');
    const done = await waitForJob(t.client, job.id, isEnded, 40_000);
    expect(done.status).toBe('succeeded');
    expect(done.restarts).toBe(0);
    expect(done.attempts?.map((a) => a.attempt)).toEqual([1, 2]);
    expect(done.attempts?.[0]?.reason).toBe('preempted: a higher-priority job needs the GPUs');
    const events = (await t.client.listJobEvents(job.id)).events.map((e) => e.type);
    expect(events).toEqual(expect.arrayContaining(['stopping', 'preempted']));
    expect(events.indexOf('preempted')).toBeLessThan(events.lastIndexOf('started'));
    expect(await readFile(rankLog(t.dataDir, job.id, 1), 'utf8')).toMatch(/received SIGUSR1.*checkpointing step/);
    expect(await readFile(rankLog(t.dataDir, job.id, 2), 'utf8')).toMatch(/resuming from .*step-\d+\.json at step [1-9]\d*/);
  }, 60_000);

  it('declares a job that stops reporting hung, and restarts it per its policy', async () => {
    t = await startTestServer();
    const job = await t.client.submitJob({
      name: 'hangs-once',
      resources: { gpus: 1 },
      run: nodeScript(
        'console.log(JSON.stringify({tutti: {step: 1, loss: 0.9}}));' +
          'if (process.env.TUTTI_ATTEMPT === "1") setInterval(() => {}, 1000); else console.log(JSON.stringify({tutti: {step: 2}}));',
      ),
      max_restarts: 1,
      restart_on: ['hang'],
      restart_backoff: '0s',
      hang_timeout: '1s',
    });
    const done = await waitForJob(t.client, job.id, isEnded, 20_000);
    expect(done.status).toBe('succeeded');
    expect(done.attempts?.[0]?.reason).toMatch(/^hung: no progress record for 1s \(hang_timeout\); last progress \{"step":1,"loss":0.9\}/);
    const events = (await t.client.listJobEvents(job.id)).events;
    expect(events.find((e) => e.type === 'hung')?.message).toContain('"step":1');
    expect((await t.client.getJobMetrics(job.id)).records.map((r) => [r.attempt, r.step])).toEqual([[1, 1], [2, 1], [2, 2]]);
  }, 30_000);
});
