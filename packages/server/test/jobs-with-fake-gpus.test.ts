/**
 * End to end through the real HTTP API, with real rank processes, on 4 fake GPUs (these machines have no GPU:
 * the GPUs are simulated; everything else — server, SQLite file, processes, sockets — is real).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { pidOf, closeLeavingNothingRunning, isEnded, isProcessAlive, isRunningWithPids, nodeScript, startTestServer, touch, waitForFileThenExit, waitForJob, expectApiError } from './harness.ts';
import type { TestServer } from './harness.ts';

const DDP_HELLO = fileURLToPath(new URL('../../../examples/ddp-hello/ddp_hello.mjs', import.meta.url));

let t: TestServer;
afterEach(() => closeLeavingNothingRunning(t));

describe('a 2-rank job on 4 fake GPUs', () => {
  it('gives each rank the torchrun environment, and the ranks reach each other at MASTER_ADDR:MASTER_PORT', async () => {
    t = await startTestServer();
    const envDump = `require('fs').writeFileSync(process.argv[1] + '/env-' + process.env.RANK + '.json', JSON.stringify(process.env)); import(require('url').pathToFileURL(process.argv[2]).href);`;
    const job = await t.client.submitJob({
      name: 'ddp',
      resources: { gpus: 2 },
      run: nodeScript(`${envDump}`, t.scratch, DDP_HELLO),
      env: { DEMO_STEPS: '1' },
    });
    expect(job.status).toBe('pending');
    const done = await waitForJob(t.client, job.id, isEnded);
    expect(done.status).toBe('succeeded');
    expect(done.exit_code).toBe(0);

    const envs = await Promise.all([0, 1].map(async (rank) => JSON.parse(await readFile(path.join(t.scratch, `env-${rank}.json`), 'utf8')) as Record<string, string>));
    const [rank0, rank1] = envs as [Record<string, string>, Record<string, string>];
    expect([rank0.RANK, rank1.RANK]).toEqual(['0', '1']);
    expect([rank0.LOCAL_RANK, rank1.LOCAL_RANK]).toEqual(['0', '1']);
    expect(rank0.WORLD_SIZE).toBe('2');
    expect(rank1.WORLD_SIZE).toBe('2');
    expect(rank0.LOCAL_WORLD_SIZE).toBe('2');
    expect(rank0.NODE_RANK).toBe('0');
    expect(rank0.CUDA_VISIBLE_DEVICES?.split(',')).toHaveLength(2);
    expect(rank1.CUDA_VISIBLE_DEVICES).toBe(rank0.CUDA_VISIBLE_DEVICES);
    expect(rank1.MASTER_ADDR).toBe(rank0.MASTER_ADDR);
    expect(Number(rank0.MASTER_PORT)).toBeGreaterThan(0);
    expect(rank1.MASTER_PORT).toBe(rank0.MASTER_PORT);
    expect(rank0.TUTTI_JOB_ID).toBe(job.id);
    expect(rank0.TUTTI_JOB_NAME).toBe('ddp');

    // The rendezvous in ddp_hello.mjs only completes if rank 1 reached rank 0's socket.
    let log = '';
    for await (const chunk of t.client.logs(job.id, { rank: 0 })) log += chunk;
    expect(log).toContain('all 2 ranks joined the rendezvous');
    // Each rank's GPUs were the same two fake devices, and the job held them while it ran.
    expect(done.tasks?.map((task) => task.gpus.join(','))).toEqual([rank0.CUDA_VISIBLE_DEVICES, rank0.CUDA_VISIBLE_DEVICES]);
  });
});

describe('scheduling on 4 fake GPUs', () => {
  it('starts the higher-priority job first when both wait for the same GPUs', async () => {
    t = await startTestServer();
    const release = path.join(t.scratch, 'release-blocker');
    const blocker = await t.client.submitJob({ name: 'blocker', resources: { gpus: 4 }, run: waitForFileThenExit(release) });
    await waitForJob(t.client, blocker.id, isRunningWithPids);
    const low = await t.client.submitJob({ name: 'low', priority: 10, resources: { gpus: 4 }, run: waitForFileThenExit(path.join(t.scratch, 'release-low')) });
    const high = await t.client.submitJob({ name: 'high', priority: 900, resources: { gpus: 4 }, run: waitForFileThenExit(path.join(t.scratch, 'release-high')) });
    const waiting = await waitForJob(t.client, low.id, (j) => j.pending_diagnosis !== null);
    expect(waiting.pending_reason).toMatch(/4 free GPUs/);

    await touch(release);
    await waitForJob(t.client, high.id, isRunningWithPids);
    expect((await t.client.getJob(low.id)).status).toBe('pending');
    await touch(path.join(t.scratch, 'release-high'));
    await waitForJob(t.client, low.id, isRunningWithPids);
    await touch(path.join(t.scratch, 'release-low'));
    expect((await waitForJob(t.client, low.id, isEnded)).status).toBe('succeeded');
  });

  it('never starts a 4-GPU job on 3 free GPUs, and says why it waits', async () => {
    t = await startTestServer();
    const holder = await t.client.submitJob({ name: 'holder', resources: { gpus: 1 }, run: waitForFileThenExit(path.join(t.scratch, 'release')) });
    await waitForJob(t.client, holder.id, isRunningWithPids);
    const big = await t.client.submitJob({ name: 'big', resources: { gpus: 4 }, run: ['true'] });
    const waiting = await waitForJob(t.client, big.id, (j) => j.pending_diagnosis !== null);
    expect(waiting.status).toBe('pending');
    expect(waiting.tasks).toEqual([]);
    expect(waiting.pending_reason).toContain('4 free GPUs');
    expect(waiting.pending_reason).toContain('3');
    const { nodes } = await t.client.listNodes();
    expect(nodes[0]!.gpus.filter((g) => g.job_id === big.id)).toHaveLength(0);
    expect(nodes[0]!.gpus.filter((g) => g.job_id === holder.id)).toHaveLength(1);

    await touch(path.join(t.scratch, 'release'));
    const done = await waitForJob(t.client, big.id, isEnded);
    expect(done.status).toBe('succeeded');
    expect(done.tasks).toHaveLength(4);
  });

  it('rejects a job that can never fit with 422 naming the largest node', async () => {
    t = await startTestServer();
    const error = await expectApiError(t.client.submitJob({ name: 'huge', resources: { gpus: 8 }, run: 'true' }));
    expect(error.status).toBe(422);
    expect(error.code).toBe('unschedulable');
    expect(error.message).toMatch(/largest node/);
    expect(error.message).toContain('4');
    const typed = await expectApiError(t.client.submitJob({ name: 'typed', resources: { gpus: 'B200:1' }, run: 'true' }));
    expect(typed.status).toBe(422);
    expect(typed.message).toContain('B200');
    expect((await t.client.listJobs()).jobs).toHaveLength(0);
  });
});

describe('stopping jobs', () => {
  it('cancel stops every rank of a running job', async () => {
    t = await startTestServer();
    const job = await t.client.submitJob({ name: 'to-cancel', resources: { gpus: 2 }, run: waitForFileThenExit(path.join(t.scratch, 'never')) });
    const running = await waitForJob(t.client, job.id, isRunningWithPids);
    const pids = running.tasks!.map((task) => pidOf(task)!);
    expect(pids.every(isProcessAlive)).toBe(true);

    const accepted = await t.client.cancelJob(job.id);
    expect(accepted.cancel_requested_at).not.toBeNull();
    const done = await waitForJob(t.client, job.id, isEnded);
    expect(done.status).toBe('cancelled');
    expect(pids.some(isProcessAlive)).toBe(false);
    const { nodes } = await t.client.listNodes();
    expect(nodes[0]!.gpus.every((g) => g.job_id === null)).toBe(true);
  });

  it('cancel of a pending job takes effect at once', async () => {
    t = await startTestServer();
    const holder = await t.client.submitJob({ name: 'holder', resources: { gpus: 4 }, run: waitForFileThenExit(path.join(t.scratch, 'release')) });
    await waitForJob(t.client, holder.id, isRunningWithPids);
    const queued = await t.client.submitJob({ name: 'queued', resources: { gpus: 4 }, run: 'true' });
    const cancelled = await t.client.cancelJob(queued.id);
    expect(cancelled.status).toBe('cancelled');
    await touch(path.join(t.scratch, 'release'));
    await waitForJob(t.client, holder.id, isEnded);
    expect((await t.client.getJob(queued.id)).status).toBe('cancelled');
  });

  it('SIGKILLs a rank that ignores SIGTERM once the grace period is over', async () => {
    t = await startTestServer({ stopGraceMs: 500 });
    const stubborn = nodeScript(`process.on('SIGTERM', () => console.log('ignoring SIGTERM')); console.log('up'); setInterval(() => {}, 1000);`);
    const job = await t.client.submitJob({ name: 'stubborn', resources: { gpus: 1 }, run: stubborn });
    const running = await waitForJob(t.client, job.id, isRunningWithPids);
    // Cancel only once the rank has installed its SIGTERM handler (it says 'up').
    for (let log = ''; !log.includes('up'); await new Promise((r) => setTimeout(r, 50))) {
      log = '';
      for await (const chunk of t.client.logs(job.id)) log += chunk;
    }
    await t.client.cancelJob(job.id);
    const done = await waitForJob(t.client, job.id, isEnded);
    expect(done.status).toBe('cancelled');
    expect(isProcessAlive(pidOf(running.tasks![0]!)!)).toBe(false);
    let log = '';
    for await (const chunk of t.client.logs(job.id)) log += chunk;
    expect(log).toContain('ignoring SIGTERM');
  });

  it('a failing rank fails the job with its exit code and stops the other ranks', async () => {
    t = await startTestServer();
    const script = `if (process.env.RANK === '1') { setTimeout(() => process.exit(7), 300); } else { setInterval(() => {}, 1000); }`;
    const job = await t.client.submitJob({ name: 'one-fails', resources: { gpus: 2 }, run: nodeScript(script) });
    const done = await waitForJob(t.client, job.id, isEnded);
    expect(done.status).toBe('failed');
    expect(done.exit_code).toBe(7);
    expect(done.end_reason).toContain('rank 1 exited with code 7');
    const rank0 = done.tasks!.find((task) => task.rank === 0)!;
    expect(rank0.status).toBe('exited');
    expect(isProcessAlive(pidOf(rank0)!)).toBe(false);
  });

  it('stops a job that runs past its max_duration', async () => {
    t = await startTestServer();
    const job = await t.client.submitJob({ name: 'too-long', resources: { gpus: 1 }, run: waitForFileThenExit(path.join(t.scratch, 'never')), max_duration: '1s' });
    const done = await waitForJob(t.client, job.id, isEnded);
    expect(done.status).toBe('failed');
    expect(done.end_reason).toContain('max_duration');
  });
});

describe('logs', () => {
  it('follow streams a running job\'s output until the job ends', async () => {
    t = await startTestServer();
    const script = `let i = 0; const timer = setInterval(() => { console.log('line ' + (++i)); if (i === 5) { clearInterval(timer); } }, 100);`;
    const job = await t.client.submitJob({ name: 'talker', resources: { gpus: 1 }, run: nodeScript(script) });
    let followed = '';
    for await (const chunk of t.client.logs(job.id, { follow: true })) followed += chunk;
    // The stream only ends when the job has ended, and by then every line is there.
    expect(followed.trim().split('\n')).toEqual(['line 1', 'line 2', 'line 3', 'line 4', 'line 5']);
    expect((await t.client.getJob(job.id)).status).toBe('succeeded');
  });

  it('rejects a rank the job does not have', async () => {
    t = await startTestServer();
    const job = await t.client.submitJob({ name: 'one-rank', run: 'true' });
    const gen = t.client.logs(job.id, { rank: 3 });
    const error = await expectApiError(gen.next());
    expect(error.status).toBe(400);
    expect(error.message).toContain('ranks 0..0');
  });
});

describe('bad input', () => {
  it('answers bad YAML with 400 naming the line', async () => {
    t = await startTestServer();
    const error = await expectApiError(t.client.submitJob('name: x\nrun: [unclosed\n'));
    expect(error.status).toBe(400);
    expect(error.code).toBe('invalid_spec');
    expect(error.body.error.fields?.[0]?.line).toBeGreaterThanOrEqual(2);
  });

  it('answers bad fields with 400 naming each path, line and column', async () => {
    t = await startTestServer();
    const yaml = ['name: resnet', 'team: vision', 'priority: 50', 'resources:', '  gpus: eight', 'run: python train.py', 'num_node: 2', ''].join('\n');
    const error = await expectApiError(t.client.submitJob(yaml));
    expect(error.status).toBe(400);
    const fields = error.body.error.fields ?? [];
    const gpus = fields.find((f) => f.path === 'resources.gpus');
    expect(gpus).toMatchObject({ line: 5, column: 9 });
    expect(gpus?.message).toContain("'eight'");
    const unknown = fields.find((f) => f.path === 'num_node');
    expect(unknown?.line).toBe(7);
    expect(unknown?.message).toContain('num_nodes');
  });

  it('answers a bad JSON body, bad query and unknown ids with clear errors', async () => {
    t = await startTestServer();
    const badJson = await fetch(`${t.server.url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name": ' });
    expect(badJson.status).toBe(400);
    expect(((await badJson.json()) as { error: { code: string } }).error.code).toBe('invalid_spec');
    const badQuery = await fetch(`${t.server.url}/v1/jobs?status=sleeping`);
    expect(badQuery.status).toBe(400);
    expect(((await badQuery.json()) as { error: { message: string } }).error.message).toContain('status');
    const missing = await expectApiError(t.client.getJob('424242'));
    expect(missing.status).toBe(404);
    expect(missing.code).toBe('job_not_found');
    const missingCancel = await expectApiError(t.client.cancelJob('424242'));
    expect(missingCancel.status).toBe(404);
  });
});

describe('observability', () => {
  it('streams job events over SSE, resumable from a sequence number', async () => {
    t = await startTestServer();
    const job = await t.client.submitJob({ name: 'evented', resources: { gpus: 1 }, run: 'echo hi' });
    const seen: string[] = [];
    for await (const event of t.client.events({ jobId: job.id, afterSeq: 0 })) {
      seen.push(event.type);
      if (event.type === 'succeeded' || event.type === 'failed') break;
    }
    expect(seen).toEqual(['submitted', 'scheduled', 'started', 'rank_exited', 'succeeded']);
  });

  it('serves Prometheus metrics, health, nodes and the OpenAPI document', async () => {
    t = await startTestServer();
    const job = await t.client.submitJob({ name: 'held', resources: { gpus: 3 }, run: waitForFileThenExit(path.join(t.scratch, 'release')) });
    await waitForJob(t.client, job.id, isRunningWithPids);
    const metrics = await (await fetch(`${t.server.url}/metrics`)).text();
    expect(metrics).toMatch(/^tutti_jobs\{status="running"\} 1$/m);
    expect(metrics).toMatch(/^tutti_gpus\{state="allocated"\} 3$/m);
    expect(metrics).toMatch(/^tutti_gpus\{state="free"\} 1$/m);
    expect(metrics).toMatch(/^tutti_scheduling_cycle_duration_seconds_count [1-9]/m);
    expect(await t.client.health()).toMatchObject({ status: 'ok', recovering: false, disk_full: null });
    const { nodes } = await t.client.listNodes();
    expect(nodes[0]!.gpus).toHaveLength(4);
    expect(nodes[0]!.gpus.filter((g) => g.job_id === job.id)).toHaveLength(3);
    const openapi = (await (await fetch(`${t.server.url}/docs/json`)).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(openapi.paths)).toEqual(expect.arrayContaining(['/v1/jobs', '/v1/jobs/{id}', '/v1/jobs/{id}/logs', '/v1/nodes', '/v1/events']));
    await touch(path.join(t.scratch, 'release'));
  });

  it('pages through jobs newest first with a cursor', async () => {
    t = await startTestServer();
    for (let i = 0; i < 7; i++) await t.client.submitJob({ name: `job-${i}`, run: 'true' });
    const first = await t.client.listJobs({ limit: 3 });
    expect(first.jobs.map((j) => j.name)).toEqual(['job-6', 'job-5', 'job-4']);
    const second = await t.client.listJobs({ limit: 3, cursor: first.next_cursor! });
    const third = await t.client.listJobs({ limit: 3, cursor: second.next_cursor! });
    expect([...second.jobs, ...third.jobs].map((j) => j.name)).toEqual(['job-3', 'job-2', 'job-1', 'job-0']);
    expect(third.next_cursor).toBeNull();
  });
});
