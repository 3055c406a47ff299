/**
 * Recovery always converges: a real server process is killed (SIGKILL, as `kill -9`) at chosen and at random
 * moments of its jobs' lives, started again once, and then every job must end exactly as it would have without the
 * crash, no GPU may stay held by a job that is not running, and no job may stay running without a live rank.
 *
 * The server runs in a child process (test/fixtures/server-that-crashes.ts) on fake GPUs. It can kill itself right
 * after a durable step of a job's life (`LifecyclePoint`): the windows a random kill rarely hits, such as between
 * recording a rank's exit and finishing the job.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { TuttiClient } from '@tutti/client';
import type { EventView, JobSummaryView, JobView } from '@tutti/client';
import type { LifecyclePoint } from '@tutti/server';
import { isEnded, pidOf, waitForJob } from './harness.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/server-that-crashes.ts', import.meta.url));
const GPUS = 4;
const children = new Set<ChildProcess>();
const roots: string[] = [];

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  for (const root of roots) {
    await killRanksLeftIn(root);
    await rm(root, { recursive: true, force: true }).catch(() => undefined);
  }
});

/** Whatever rank a failed test left running: every process group named by a supervisor's pid file. */
async function killRanksLeftIn(root: string): Promise<void> {
  const entries = await readdir(root, { recursive: true }).catch(() => [] as string[]);
  for (const entry of entries.filter((e) => /rank-\d+\.pid$/.test(e))) {
    const pid = Number((await readFile(path.join(root, entry), 'utf8').catch(() => '')).trim());
    if (Number.isSafeInteger(pid) && pid > 0) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

interface RunningServer {
  child: ChildProcess;
  client: TuttiClient;
  /** Resolves when the process has exited, however. */
  exited: Promise<void>;
}

/** Starts the fixture server; resolves once it says it is up (recovery done), rejects if it dies first. */
function startServer(dataDir: string, crash?: { point: LifecyclePoint; nth: number }): Promise<RunningServer> {
  const args = ['--import', 'tsx', FIXTURE, dataDir, String(GPUS), ...(crash ? [crash.point, String(crash.nth)] : [])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => children.delete(child));
  let output = '';
  return new Promise((resolve, reject) => {
    const onData = (data: Buffer) => {
      output += data.toString();
      const match = /tutti is up at (http:\/\/\S+)/.exec(output);
      if (match) resolve({ child, client: new TuttiClient({ baseUrl: match[1]! }), exited });
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    void exited.then(() => reject(new Error(`the server exited before it was up: ${output}`)));
  });
}

async function stopServer(server: RunningServer): Promise<void> {
  server.child.kill('SIGTERM');
  await server.exited;
}

async function newDataDir(): Promise<string> {
  const root = await mkdtemp(path.join(tmpdir(), 'tutti-crash-'));
  roots.push(root);
  return path.join(root, 'data');
}

/** The job's first event of `type`, once there is one. */
async function waitForEvent(client: TuttiClient, jobId: string, type: string, timeoutMs = 20_000): Promise<EventView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = (await client.listJobEvents(jobId)).events.find((e) => e.type === type);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`job ${jobId} had no ${type} event after ${timeoutMs} ms`);
    await sleep(50);
  }
}

async function allJobs(client: TuttiClient): Promise<JobSummaryView[]> {
  return (await client.listJobs({ limit: 1000 })).jobs;
}

/** GPUs held by a job that is not running: none may ever be. */
async function gpusHeldByJobsNotRunning(client: TuttiClient): Promise<string[]> {
  const holdersNow = async () => {
    const { nodes } = await client.listNodes();
    return new Set(nodes.flatMap((n) => n.gpus.flatMap((g) => [g.job_id, ...g.shares.map((s) => s.job_id)])).filter((id): id is string => id !== null));
  };
  const problems: string[] = [];
  for (const id of await holdersNow()) {
    const job = await client.getJob(id);
    // A job that ended between the two reads (a stop the restart resumed) freed its GPUs as it ended: it must not
    // hold them still once it is seen ended.
    if (job.status !== 'running' && (await holdersNow()).has(id)) problems.push(`job ${id} (${job.name}) is ${job.status} but holds GPUs`);
  }
  return problems;
}

async function gpusInUse(client: TuttiClient): Promise<number> {
  const { nodes } = await client.listNodes();
  return nodes.reduce((sum, n) => sum + n.gpus.filter((g) => g.job_id !== null || g.shares.length > 0).length, 0);
}

/** Running jobs none of whose ranks is alive (running, or just being launched). */
async function runningWithoutLiveRank(client: TuttiClient): Promise<string[]> {
  const running = (await client.listJobs({ status: 'running', limit: 1000 })).jobs;
  const stuck: string[] = [];
  for (const { id } of running) {
    const job = await client.getJob(id);
    const live = (job.tasks ?? []).some((t) => t.status === 'starting' || (t.status === 'running' && (pidOf(t) === null || isAlive(pidOf(t)!))));
    if (job.status === 'running' && !live) stuck.push(`job ${id} (${job.name}): ${JSON.stringify(job.tasks)}`);
  }
  return stuck;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * The invariants right after the one restart: no GPU held by a job that is not running, and no job running without
 * a live rank for longer than it takes to record an exit that happens just now.
 */
async function expectConsistentAfterRestart(client: TuttiClient): Promise<void> {
  expect(await gpusHeldByJobsNotRunning(client)).toEqual([]);
  const suspects = await runningWithoutLiveRank(client);
  if (suspects.length === 0) return;
  await sleep(1500);
  const still = await runningWithoutLiveRank(client);
  expect(still.filter((s) => suspects.some((x) => x.split(':')[0] === s.split(':')[0]))).toEqual([]);
}

async function waitUntilAllEnded(client: TuttiClient, timeoutMs = 30_000): Promise<JobSummaryView[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const jobs = await allJobs(client);
    if (jobs.every(isEnded)) return jobs;
    if (Date.now() > deadline) {
      const open = jobs.filter((j) => !isEnded(j));
      const details = await Promise.all(open.map((j) => client.getJob(j.id)));
      throw new Error(`jobs that never ended after the restart: ${JSON.stringify(details.map((j) => ({ id: j.id, name: j.name, status: j.status, tasks: j.tasks })))}`);
    }
    await sleep(100);
  }
}

// ---- the jobs of the property test: each kind's name says how it must end ----------------------------------------

const KINDS = ['ok', 'fail', 'gang_fail', 'flaky', 'exhausted', 'cancel'] as const;
type Kind = (typeof KINDS)[number];

function specOf(kind: Kind, index: number): Record<string, unknown> {
  const name = `${kind}-${index}`;
  switch (kind) {
    case 'ok':
      return { name, resources: { gpus: 1 }, run: 'sleep 0.2' };
    case 'fail':
      return { name, resources: { gpus: 1 }, run: 'sleep 0.1; exit 3' };
    case 'gang_fail':
      // Rank 1 fails; rank 0 would run on for 30 s: only the gang's stop ends it.
      return { name, resources: { gpus: 2 }, run: 'if [ "$RANK" = 1 ]; then sleep 0.2; exit 5; fi; exec sleep 30' };
    case 'flaky':
      return { name, resources: { gpus: 1 }, max_restarts: 2, restart_backoff: '300ms', run: 'sleep 0.1; [ "$TUTTI_ATTEMPT" -ge 2 ] || exit 7' };
    case 'exhausted':
      return { name, resources: { gpus: 1 }, max_restarts: 1, restart_backoff: '200ms', run: 'sleep 0.1; exit 9' };
    case 'cancel':
      return { name, resources: { gpus: 1 }, run: 'exec sleep 30' };
  }
}

const EXPECTED: Record<Kind, { status: JobView['status']; exitCode: number | null }> = {
  ok: { status: 'succeeded', exitCode: 0 },
  fail: { status: 'failed', exitCode: 3 },
  gang_fail: { status: 'failed', exitCode: 5 },
  flaky: { status: 'succeeded', exitCode: 0 },
  exhausted: { status: 'failed', exitCode: 9 },
  cancel: { status: 'cancelled', exitCode: null },
};

const kindOf = (job: JobSummaryView) => job.name.replace(/-\d+$/, '') as Kind;

const CRASH_POINTS: readonly LifecyclePoint[] = ['rank_exit_recorded', 'placed', 'launched', 'ranks_recorded', 'stop_recorded', 'cancel_recorded', 'requeued'];

interface Scenario {
  /** A lifecycle point to die at (its nth pass), or `timer`: killed from outside after `killAfterMs`. */
  crashAt: LifecyclePoint | 'timer';
  nth: number;
  killAfterMs: number;
  jobs: Array<{ kind: Kind; gapMs: number; cancelAfterMs: number }>;
}

const scenarioArbitrary: fc.Arbitrary<Scenario> = fc.record({
  crashAt: fc.constantFrom<LifecyclePoint | 'timer'>(...CRASH_POINTS, 'timer'),
  nth: fc.integer({ min: 1, max: 4 }),
  killAfterMs: fc.integer({ min: 100, max: 2500 }),
  jobs: fc.array(fc.record({ kind: fc.constantFrom(...KINDS), gapMs: fc.integer({ min: 0, max: 150 }), cancelAfterMs: fc.integer({ min: 20, max: 900 }) }), { minLength: 6, maxLength: 12 }),
});

/** One of each kind, so that every crash point is tried on a whole lifecycle at least once. */
const EVERY_KIND: Scenario['jobs'] = KINDS.map((kind, i) => ({ kind, gapMs: 20 * i, cancelAfterMs: 300 }));

/**
 * Submits the jobs and cancels the `cancel` ones while the server lives. It dies at its crash point, or is killed
 * after `killAfterMs` (`timer`), or 3 s after the last request when its crash point was never reached. Resolves
 * with whether it died at its crash point.
 */
async function runUntilKilled(server: RunningServer, scenario: Scenario): Promise<boolean> {
  let dead = false;
  void server.exited.then(() => (dead = true));
  const cancels: Promise<unknown>[] = [];
  const timer = scenario.crashAt === 'timer' ? setTimeout(() => server.child.kill('SIGKILL'), scenario.killAfterMs) : undefined;
  try {
    for (const [index, job] of scenario.jobs.entries()) {
      if (dead) break;
      const submitted = await server.client.submitJob(specOf(job.kind, index)).catch(() => undefined);
      if (submitted && job.kind === 'cancel') cancels.push(sleep(job.cancelAfterMs).then(async () => (dead ? undefined : server.client.cancelJob(submitted.id))).catch(() => undefined));
      await sleep(job.gapMs);
    }
    await Promise.all(cancels);
    await Promise.race([server.exited, sleep(3000)]);
    const diedAtItsPoint = dead && scenario.crashAt !== 'timer';
    server.child.kill('SIGKILL');
    await server.exited;
    return diedAtItsPoint;
  } finally {
    clearTimeout(timer);
  }
}

describe('recovery after a kill -9 converges', () => {
  it('finishes a job whose rank exit was recorded just before the crash, and frees its GPU (one restart)', async () => {
    const dataDir = await newDataDir();
    const first = await startServer(dataDir, { point: 'rank_exit_recorded', nth: 1 });
    const done = await first.client.submitJob({ name: 'exits-0', resources: { gpus: 1 }, run: 'exit 0' });
    await first.exited;

    const second = await startServer(dataDir);
    try {
      const job = await waitForJob(second.client, done.id, isEnded, 10_000);
      expect(job).toMatchObject({ status: 'succeeded', exit_code: 0 });
      expect(await gpusInUse(second.client)).toBe(0);
      // All four GPUs are free for the next job.
      const whole = await second.client.submitJob({ name: 'needs-every-gpu', resources: { gpus: GPUS }, run: 'exit 0' });
      expect(await waitForJob(second.client, whole.id, isEnded, 10_000)).toMatchObject({ status: 'succeeded' });
    } finally {
      await stopServer(second);
    }
  });

  it('restarts a failed job after the crash when restarts remain, then fails it with the rank\'s exit code', async () => {
    const dataDir = await newDataDir();
    const first = await startServer(dataDir, { point: 'rank_exit_recorded', nth: 1 });
    const flaky = await first.client.submitJob({ name: 'exits-3', resources: { gpus: 1 }, max_restarts: 1, restart_backoff: '0s', run: 'exit 3' });
    await first.exited;

    const second = await startServer(dataDir);
    try {
      const job = await waitForJob(second.client, flaky.id, isEnded, 10_000);
      expect(job).toMatchObject({ status: 'failed', exit_code: 3, restarts: 1, attempt: 2 });
      expect(await gpusInUse(second.client)).toBe(0);
    } finally {
      await stopServer(second);
    }
  });

  it('requeues a job preempted just before the crash (not a failure, not a restart), and runs both jobs', async () => {
    const dataDir = await newDataDir();
    const first = await startServer(dataDir, { point: 'rank_exit_recorded', nth: 1 });
    // The first attempt holds every GPU until it is stopped; a later one ends at once.
    const low = await first.client.submitJob({ name: 'low', priority: 0, resources: { gpus: GPUS }, run: 'if [ "$TUTTI_ATTEMPT" = 1 ]; then exec sleep 30; fi; exit 0' });
    await waitForJob(first.client, low.id, (j) => j.status === 'running' && (j.tasks ?? []).every((t) => pidOf(t) !== null));
    const high = await first.client.submitJob({ name: 'high', priority: 10, resources: { gpus: GPUS }, run: 'sleep 0.2' });
    // The first rank the preemption's SIGTERM kills is recorded, then the server dies.
    await first.exited;

    const second = await startServer(dataDir);
    try {
      const lowEnd = await waitForJob(second.client, low.id, isEnded, 15_000);
      expect(lowEnd).toMatchObject({ status: 'succeeded', restarts: 0 });
      expect((await second.client.listJobEvents(low.id)).events.map((e) => e.type)).toContain('preempted');
      expect(await waitForJob(second.client, high.id, isEnded, 10_000)).toMatchObject({ status: 'succeeded' });
    } finally {
      await stopServer(second);
    }
  });

  it('a cancel whose server dies during the grace: the restarted server SIGKILLs the rank that ignores SIGTERM at the committed deadline, and the job ends cancelled', async () => {
    const dataDir = await newDataDir();
    const first = await startServer(dataDir);
    const job = await first.client.submitJob({ name: 'ignores-term', resources: { gpus: 1 }, preemption_grace: '2s', run: "trap '' TERM; exec sleep 600" });
    await waitForJob(first.client, job.id, (j) => j.status === 'running' && (j.tasks ?? []).every((t) => pidOf(t) !== null));
    await first.client.cancelJob(job.id);
    const stop = await waitForEvent(first.client, job.id, 'stopping');
    first.child.kill('SIGKILL');
    await first.exited;
    const deadline = stop.data!.deadline as number;
    // Restarted only once the deadline has passed, when no server was left to send the SIGKILL.
    await sleep(Math.max(0, deadline - Date.now()) + 300);

    const second = await startServer(dataDir);
    try {
      expect(await waitForJob(second.client, job.id, isEnded, 10_000)).toMatchObject({ status: 'cancelled', restarts: 0 });
      const events = (await second.client.listJobEvents(job.id)).events;
      // The stop the first server committed is the one carried out: no second stop with a fresh grace.
      expect(events.filter((e) => e.type === 'stopping').map((e) => e.data?.deadline)).toEqual([deadline]);
      expect(events.find((e) => e.type === 'rank_exited')?.data).toMatchObject({ signal: 'SIGKILL' });
      expect(await readFile(path.join(dataDir, 'jobs', job.id, 'control', 'preempt-deadline'), 'utf8')).toBe(`${Math.floor(deadline / 1000)}\n`);
    } finally {
      await stopServer(second);
    }
  });

  it('a preemption whose server dies during the grace: the victim that ignores SIGTERM is SIGKILLed at its deadline by the restarted server and goes back to pending as preempted, no restart used', async () => {
    const dataDir = await newDataDir();
    const first = await startServer(dataDir);
    // Attempt 1 holds every GPU and ignores SIGTERM; a later attempt ends at once.
    const low = await first.client.submitJob({
      name: 'low',
      priority: 0,
      resources: { gpus: GPUS },
      preemption_grace: '3s',
      run: `if [ "$TUTTI_ATTEMPT" != 1 ]; then exit 0; fi; trap '' TERM; exec sleep 600`,
    });
    await waitForJob(first.client, low.id, (j) => j.status === 'running' && (j.tasks ?? []).every((t) => pidOf(t) !== null));
    const high = await first.client.submitJob({ name: 'high', priority: 10, resources: { gpus: GPUS }, run: 'sleep 0.2' });
    const stop = await waitForEvent(first.client, low.id, 'stopping');
    first.child.kill('SIGKILL');
    await first.exited;

    const second = await startServer(dataDir);
    try {
      const lowEnd = await waitForJob(second.client, low.id, isEnded, 15_000);
      expect(lowEnd).toMatchObject({ status: 'succeeded', restarts: 0 });
      expect(lowEnd.attempts?.[0]?.reason).toMatch(/^preempted: preempted for job/);
      const events = (await second.client.listJobEvents(low.id)).events;
      expect(events.filter((e) => e.type === 'stopping').map((e) => e.data)).toEqual([expect.objectContaining({ deadline: stop.data!.deadline, grace_ms: 3000, cause: expect.objectContaining({ kind: 'preempted', forJobId: high.id }) })]);
      expect(events.find((e) => e.type === 'rank_exited')?.data).toMatchObject({ signal: 'SIGKILL' });
      expect(await waitForJob(second.client, high.id, isEnded, 10_000)).toMatchObject({ status: 'succeeded' });
    } finally {
      await stopServer(second);
    }
  });

  it('adopts ranks that were started but not recorded when the server died, instead of running the job twice', async () => {
    const dataDir = await newDataDir();
    const runs = path.join(path.dirname(dataDir), 'runs');
    const first = await startServer(dataDir, { point: 'launched', nth: 1 });
    const job = await first.client.submitJob({ name: 'counts-its-runs', resources: { gpus: 2 }, run: `echo "rank $RANK" >> ${runs}; sleep 0.5` });
    await first.exited;

    const second = await startServer(dataDir);
    try {
      expect(await waitForJob(second.client, job.id, isEnded, 10_000)).toMatchObject({ status: 'succeeded', attempt: 1 });
      expect((await readFile(runs, 'utf8')).trim().split('\n').sort()).toEqual(['rank 0', 'rank 1']);
    } finally {
      await stopServer(second);
    }
  });

  it("reports a job whose env PATH is empty as succeeded after a restart (the supervisor's exit file does not need the job's PATH)", async () => {
    const dataDir = await newDataDir();
    const first = await startServer(dataDir, { point: 'ranks_recorded', nth: 1 });
    const job = await first.client.submitJob({ name: 'empty-path', resources: { gpus: 1 }, env: { PATH: '' }, run: ['/bin/sleep', '0.5'] });
    await first.exited;
    // The rank exits 0 while no server watches.
    const pid = Number((await readFile(path.join(dataDir, 'jobs', job.id, 'attempt-1', 'rank-0.pid'), 'utf8')).trim());
    while (isAlive(pid)) await sleep(50);

    const second = await startServer(dataDir);
    try {
      expect(await waitForJob(second.client, job.id, isEnded, 10_000)).toMatchObject({ status: 'succeeded', exit_code: 0 });
    } finally {
      await stopServer(second);
    }
  });

  it('property: killed at any step of any job, one restart ends every job as it would have ended, GPUs freed', async () => {
    const examples: Array<[Scenario]> = [...CRASH_POINTS, 'rank_exit_recorded' as const].map((point, i) => [{ crashAt: point, nth: i < CRASH_POINTS.length ? 1 : 2, killAfterMs: 0, jobs: EVERY_KIND }]);
    const crashedAt = new Set<string>();
    await fc.assert(
      fc.asyncProperty(scenarioArbitrary, async (scenario) => {
        const dataDir = await newDataDir();
        const first = await startServer(dataDir, scenario.crashAt === 'timer' ? undefined : { point: scenario.crashAt, nth: scenario.nth });
        if (await runUntilKilled(first, scenario)) crashedAt.add(scenario.crashAt);

        const second = await startServer(dataDir);
        try {
          await expectConsistentAfterRestart(second.client);
          // A cancel the dead server may not have acknowledged is asked again, as its client would.
          for (const job of await allJobs(second.client)) if (kindOf(job) === 'cancel' && !isEnded(job)) await second.client.cancelJob(job.id);
          const jobs = await waitUntilAllEnded(second.client);
          const wrong = jobs
            .filter((job) => job.status !== EXPECTED[kindOf(job)].status || job.exit_code !== EXPECTED[kindOf(job)].exitCode)
            .map((job) => `${job.name}: ${job.status} (exit ${job.exit_code}, ${job.end_reason}), expected ${JSON.stringify(EXPECTED[kindOf(job)])}`);
          expect(wrong).toEqual([]);
          expect(await gpusInUse(second.client)).toBe(0);
        } finally {
          await stopServer(second);
        }
      }),
      { seed: 13, numRuns: examples.length + 3, examples, endOnFailure: true },
    );
    // The property held with the server killed at every one of the points, not only at random moments.
    expect([...crashedAt].sort()).toEqual([...CRASH_POINTS].sort());
  }, 240_000);
});
