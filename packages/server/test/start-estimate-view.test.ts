/**
 * A waiting job's expected start through the API, on a real server: an estimate with what it rests on when the job
 * it waits for declared a max_duration, and none when it did not (the 1-hour default is no ground for a time).
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { closeLeavingNothingRunning, isEnded, isRunningWithPids, startTestServer, waitForFileThenExit, waitForJob } from './harness.ts';
import type { TestServer } from './harness.ts';

let t: TestServer | undefined;
afterEach(async () => {
  await closeLeavingNothingRunning(t);
  t = undefined;
});

describe('expected start of a waiting job', () => {
  it('is an estimate resting on the running job’s max_duration, and absent when it has none', async () => {
    t = await startTestServer();
    const client = t.client;
    const release = path.join(t.scratch, 'release');
    const bounded = await client.submitJob({ name: 'bounded', resources: { gpus: 4 }, max_duration: '2h', run: waitForFileThenExit(release) });
    const running = await waitForJob(client, bounded.id, isRunningWithPids);
    const waiting = await client.submitJob({ name: 'waits', resources: { gpus: 2 }, run: 'true' });
    const estimated = await waitForJob(client, waiting.id, (j) => j.pending_diagnosis?.estimated_start_at != null);
    const diagnosis = estimated.pending_diagnosis!;
    expect(diagnosis.estimated_start_basis).toBe(`if job ${bounded.id} takes its max_duration`);
    expect(Date.parse(diagnosis.estimated_start_at!)).toBe(Date.parse(running.started_at!) + 2 * 3600_000);
    expect(estimated.pending_reason).toMatch(/expected to start in about (2|1\.5) h/);
    expect(estimated.pending_reason).not.toMatch(/\d+ms/);

    await client.cancelJob(bounded.id);
    await waitForJob(client, bounded.id, isEnded);
    await waitForJob(client, waiting.id, isEnded);
    const unbounded = await client.submitJob({ name: 'unbounded', resources: { gpus: 4 }, run: waitForFileThenExit(release) });
    await waitForJob(client, unbounded.id, isRunningWithPids);
    const next = await client.submitJob({ name: 'waits-again', resources: { gpus: 2 }, run: 'true' });
    const unestimated = await waitForJob(client, next.id, (j) => (j.pending_reason ?? '').includes('reserved'));
    expect(unestimated.pending_diagnosis).toMatchObject({ estimated_start_at: null, estimated_start_basis: null });
    expect(unestimated.pending_reason).toContain(`reserved: starts when job ${unbounded.id} ends (no max_duration to estimate when)`);
  });
});
