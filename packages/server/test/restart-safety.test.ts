/**
 * The control plane dies (kill -9) while jobs run, and comes back: nothing is lost. The server runs as a real
 * `tutti up` process on 4 fake GPUs so it can be killed for real.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { TuttiClient } from '@tutti/client';
import { isEnded, isProcessAlive, isRunningWithPids, touch, waitForFileThenExit, waitForJob } from './harness.ts';

const TUTTI = fileURLToPath(new URL('../../cli/bin/tutti.js', import.meta.url));
const children: ChildProcess[] = [];
let root = '';

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  if (root) await rm(root, { recursive: true, force: true }).catch(() => undefined);
});

/** Starts `tutti up` and resolves with its URL once it says it is up (or rejects with what it printed). */
function startUp(dataDir: string): Promise<{ child: ChildProcess; url: string; output: () => string }> {
  const child = spawn(process.execPath, [TUTTI, 'up', '--port', '0', '--data-dir', dataDir, '--fake-gpus', '4', '--grace', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  return new Promise((resolve, reject) => {
    const onData = (data: Buffer) => {
      output += data.toString();
      const match = /tutti is up at (http:\/\/\S+)/.exec(output);
      if (match) resolve({ child, url: match[1]!, output: () => output });
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`tutti up exited with ${code}: ${output}`)));
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.on('exit', (code) => resolve(code))));
}

describe('kill -9 of the control plane', () => {
  it('re-adopts running ranks, reads back the exit codes of ranks that ended meanwhile, keeps the queue, and refuses a second server', async () => {
    root = await mkdtemp(path.join(tmpdir(), 'tutti-restart-'));
    const dataDir = path.join(root, 'data');
    const first = await startUp(dataDir);
    const client = new TuttiClient({ baseUrl: first.url });

    const survivor = await client.submitJob({ name: 'survivor', resources: { gpus: 1 }, run: waitForFileThenExit(path.join(root, 'release-survivor'), 0) });
    const diesMeanwhile = await client.submitJob({ name: 'dies-meanwhile', resources: { gpus: 1 }, run: waitForFileThenExit(path.join(root, 'release-dier'), 3) });
    const before = await waitForJob(client, survivor.id, isRunningWithPids);
    await waitForJob(client, diesMeanwhile.id, isRunningWithPids);
    const queued = await client.submitJob({ name: 'queued', resources: { gpus: 4 }, run: ['true'] });
    await waitForJob(client, queued.id, (j) => j.pending_diagnosis !== null);

    // A second server on the same data dir is refused while the first one lives.
    const second = spawn(process.execPath, [TUTTI, 'up', '--port', '0', '--data-dir', dataDir, '--fake-gpus', '4'], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(second);
    let secondOutput = '';
    second.stderr!.on('data', (d: Buffer) => (secondOutput += d.toString()));
    expect(await exited(second)).toBe(1);
    expect(secondOutput).toMatch(/another tutti server \(pid \d+\)/);

    first.child.kill('SIGKILL');
    await exited(first.child);
    const pid = before.tasks![0]!.pid!;
    expect(isProcessAlive(pid)).toBe(true);
    // While nobody watches, one job's rank exits with code 3.
    await touch(path.join(root, 'release-dier'));
    const dierPid = (await readFile(path.join(dataDir, 'jobs', diesMeanwhile.id, 'attempt-1', 'rank-0.pid'), 'utf8').catch(() => '')).trim();
    for (let i = 0; i < 100 && dierPid && isProcessAlive(Number(dierPid)); i++) await new Promise((r) => setTimeout(r, 50));

    const restarted = await startUp(dataDir);
    const after = new TuttiClient({ baseUrl: restarted.url });
    const dier = await waitForJob(after, diesMeanwhile.id, isEnded);
    expect(dier.status).toBe('failed');
    expect(dier.exit_code).toBe(3);

    const adopted = await after.getJob(survivor.id);
    expect(adopted.status).toBe('running');
    expect(adopted.tasks![0]!.pid).toBe(pid);
    expect((await after.getJob(queued.id)).status).toBe('pending');

    await touch(path.join(root, 'release-survivor'));
    const done = await waitForJob(after, survivor.id, isEnded);
    expect(done.status).toBe('succeeded');
    // The log kept growing across the restart: the line written after it is there.
    let log = '';
    for await (const chunk of after.logs(survivor.id)) log += chunk;
    expect(log).toContain('waiting for');
    expect(log).toContain('released');
    expect((await after.listJobEvents(survivor.id)).events.map((e) => e.type)).toContain('adopted');
    // The queued job runs once the GPUs are free.
    expect((await waitForJob(after, queued.id, isEnded)).status).toBe('succeeded');

    restarted.child.kill('SIGTERM');
    expect(await exited(restarted.child)).toBe(0);
  });
});
