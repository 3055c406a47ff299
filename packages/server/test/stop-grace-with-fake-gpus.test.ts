/**
 * The grace a stopped job gets is its own `preemption_grace` (else the server's --grace), at most the profile's
 * `maxGraceMs`, on every stop; and what its ranks are told (TUTTI_PREEMPT_GRACE_S, `preempt-deadline`) is what
 * they get. Real server, fake GPUs, real rank processes.
 */
import { readFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { EventView } from '@tutti/client';
import { pidOf, isEnded, startTestServer, waitForJob, type TestServer } from './harness.ts';

let t: TestServer | undefined;
afterEach(async () => {
  // A failed test may leave a rank that ignores SIGTERM: the server's close leaves ranks running, so kill them here.
  const running = t ? (await t.client.listJobs({ status: 'running' })).jobs : [];
  for (const { id } of running) {
    for (const task of (await t!.client.getJob(id)).tasks ?? []) {
      const pid = pidOf(task);
      if (pid === null) continue;
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  await t?.close();
  t = undefined;
});

const rankLog = (dataDir: string, id: string, attempt: number) => `${dataDir}/jobs/${id}/attempt-${attempt}/rank-0.log`;

/** Says what it was told at start, and on the stop signal what the deadline file says; `onStop` then runs. */
const tellsGraceAndDeadline = (onStop: string) =>
  `echo "grace=$TUTTI_PREEMPT_GRACE_S"; trap 'echo "deadline=$(cat "$TUTTI_CONTROL_DIR/preempt-deadline")"; ${onStop}' TERM; while :; do sleep 0.1; done`;

async function eventsOf(t: TestServer, id: string, type: string): Promise<EventView[]> {
  return (await t.client.listJobEvents(id)).events.filter((e) => e.type === type);
}

async function waitForLog(dataDir: string, id: string, pattern: RegExp): Promise<string> {
  for (;;) {
    const log = await readFile(rankLog(dataDir, id, 1), 'utf8').catch(() => '');
    if (pattern.test(log)) return log;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('stop grace: the job asks, the profile may cap', () => {
  it("a job preempted by the scheduler gets its own 5 s preemption_grace (not the profile's 60 s), and its rank is SIGKILLed then", async () => {
    // The server's default is 30 s: neither it nor the old profile grace (60 s) may win over the job's 5 s.
    t = await startTestServer({ stopGraceMs: 30_000 });
    // Attempt 1 ignores SIGTERM (it only prints the deadline file); attempt 2 ends at once.
    const low = await t.client.submitJob({
      name: 'low',
      priority: 0,
      resources: { gpus: 4 },
      preemption_grace: '5s',
      run: `if [ "$TUTTI_ATTEMPT" != 1 ]; then exit 0; fi; ${tellsGraceAndDeadline('')}`,
    });
    await waitForLog(t.dataDir, low.id, /grace=/);
    const high = await t.client.submitJob({ name: 'high', priority: 90, resources: { gpus: 4 }, run: 'sleep 0.2' });

    const done = await waitForJob(t.client, low.id, isEnded, 25_000);
    expect(done).toMatchObject({ status: 'succeeded', restarts: 0 });
    expect(done.attempts?.[0]?.reason).toMatch(/^preempted/);
    const [stop] = await eventsOf(t, low.id, 'stopping');
    expect(stop?.data).toMatchObject({ grace_ms: 5000, grace_source: 'job', signal: 'SIGTERM', cause: { kind: 'preempted', forJobId: high.id } });
    expect(stop?.message).toContain("SIGKILL after 5s: the job's preemption_grace");
    const log = await readFile(rankLog(t.dataDir, low.id, 1), 'utf8');
    expect(log).toContain('grace=5\n');
    // The deadline the rank read is the one the stop was recorded with.
    expect(log).toContain(`deadline=${Math.floor((stop?.data?.deadline as number) / 1000)}\n`);
    const exits = await eventsOf(t, low.id, 'rank_exited');
    expect(exits[0]?.data).toMatchObject({ signal: 'SIGKILL' });
    expect(await waitForJob(t.client, high.id, isEnded, 10_000)).toMatchObject({ status: 'succeeded' });
  }, 40_000);

  it("a job asking 10m under a profile's maxGraceMs of 60 s gets 60 s, and TUTTI_PREEMPT_GRACE_S and the deadline file say so", async () => {
    t = await startTestServer({ config: { nodes: [], teams: [], scheduler: { profile: 'tutti', args: { preemption: { maxGraceMs: 60_000 } } } } });
    const job = await t.client.submitJob({ name: 'slow-checkpoint', resources: { gpus: 1 }, preemption_grace: '10m', run: tellsGraceAndDeadline('exit 0') });
    await waitForLog(t.dataDir, job.id, /grace=/);
    await t.client.cancelJob(job.id);
    expect(await waitForJob(t.client, job.id, isEnded, 10_000)).toMatchObject({ status: 'cancelled' });
    const [stop] = await eventsOf(t, job.id, 'stopping');
    expect(stop?.data).toMatchObject({ grace_ms: 60_000, grace_source: 'max' });
    expect(stop?.message).toContain("SIGKILL after 1m: the scheduler profile's maxGraceMs");
    const log = await readFile(rankLog(t.dataDir, job.id, 1), 'utf8');
    expect(log).toContain('grace=60\n');
    expect(log).toContain(`deadline=${Math.floor((stop?.data?.deadline as number) / 1000)}\n`);
  }, 30_000);
});
