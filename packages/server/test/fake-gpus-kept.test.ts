/**
 * `tutti up --demo` (fake GPUs because the machine has none), then a plain `tutti up` on the same data dir: the
 * restarted server must come back with the same fake GPUs, since running jobs still hold some of them. Real servers,
 * a real SQLite file, real rank processes re-adopted across the restart.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TuttiClient } from '@tutti/client';
import { silentLogger, startTuttiServer } from '@tutti/server';
import type { TuttiServer, TuttiServerOptions } from '@tutti/server';
import { isEnded, isRunningWithPids, touch, waitForFileThenExit, waitForJob } from './harness.ts';

/** No nvidia-smi: this machine has no GPUs, whatever it really has. */
const NO_NVIDIA_SMI = '/nonexistent/nvidia-smi';

let root: string | undefined;
let server: TuttiServer | undefined;

afterEach(async () => {
  if (server && root) {
    await touch(path.join(root, 'release'));
    const client = new TuttiClient({ baseUrl: server.url });
    const { jobs } = await client.listJobs({ status: 'running', limit: 100 });
    for (const job of jobs) await waitForJob(client, job.id, isEnded).catch(() => undefined);
  }
  await server?.close();
  if (root) await rm(root, { recursive: true, force: true });
  server = undefined;
  root = undefined;
});

async function start(dataDir: string, options: Partial<TuttiServerOptions>): Promise<{ server: TuttiServer; client: TuttiClient }> {
  const started = await startTuttiServer({ dataDir, port: 0, logger: silentLogger, tickMs: 200, stopGraceMs: 5000, nvidiaSmi: NO_NVIDIA_SMI, ...options });
  server = started;
  return { server: started, client: new TuttiClient({ baseUrl: started.url }) };
}

const gpuCount = (s: TuttiServer) => s.inventory.reduce((n, node) => n + node.gpus.length, 0);

describe('fake GPUs across a restart', () => {
  it('a plain start after --demo keeps the demo’s fake GPUs, which running jobs still hold', async () => {
    root = await mkdtemp(path.join(tmpdir(), 'tutti-fake-kept-'));
    await mkdir(path.join(root, 'data'));
    const dataDir = path.join(root, 'data');

    const first = await start(dataDir, { fakeGpusIfNone: '4' });
    expect(gpuCount(first.server)).toBe(4);
    const jobs = [];
    for (const name of ['one', 'two']) jobs.push(await first.client.submitJob({ name, resources: { gpus: 1 }, run: waitForFileThenExit(path.join(root, 'release')) }));
    for (const job of jobs) await waitForJob(first.client, job.id, isRunningWithPids);
    await first.server.close();

    // Plain `tutti up`: no --fake-gpus, no --demo.
    const second = await start(dataDir, {});
    expect(gpuCount(second.server)).toBe(4);
    const { nodes } = await second.client.listNodes();
    expect(nodes.flatMap((n) => n.gpus).filter((g) => g.job_id !== null).map((g) => g.job_id).sort()).toEqual(jobs.map((j) => j.id).sort());
    for (const job of jobs) expect((await second.client.getJob(job.id)).status).toBe('running');
    // The two GPUs left are real capacity: a 2-GPU job starts beside the two that kept running.
    const more = await second.client.submitJob({ name: 'two-more', resources: { gpus: 2 }, run: waitForFileThenExit(path.join(root, 'release')) });
    await waitForJob(second.client, more.id, isRunningWithPids);
  });

  it('an explicit --fake-gpus wins over the remembered one', async () => {
    root = await mkdtemp(path.join(tmpdir(), 'tutti-fake-kept-'));
    const dataDir = path.join(root, 'data');
    const first = await start(dataDir, { fakeGpus: '2:H100' });
    await first.server.close();
    server = undefined;
    const second = await start(dataDir, { fakeGpus: '8:A100' });
    expect(gpuCount(second.server)).toBe(8);
    expect(second.server.inventory[0]!.gpus[0]!.type).toBe('A100');
    await second.server.close();
    server = undefined;
    // And it is what the next plain start brings back.
    const third = await start(dataDir, {});
    expect(gpuCount(third.server)).toBe(8);
  });
});
