/**
 * The control plane dies (kill -9) while jobs run, and comes back: nothing is lost. The server runs as a real
 * `tutti up` process on 4 fake GPUs so it can be killed for real.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { createLocalBackend, readLocalRankRef } from '@tutti/backends';
import { TuttiClient } from '@tutti/client';
import { parseJobSpecObject } from '@tutti/model';
import { MIGRATIONS, runMigrations, sqliteStoreDialect } from '@tutti/store';
import { pidOf, isEnded, isProcessAlive, isRunningWithPids, touch, waitForFileThenExit, waitForJob } from './harness.ts';

const TUTTI = fileURLToPath(new URL('../../cli/bin/tutti.js', import.meta.url));
const children: ChildProcess[] = [];
/** Process groups of ranks a test started itself, until they have ended: a failed test must not leave them running. */
const rankGroups = new Set<number>();
let root = '';

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  for (const pgid of rankGroups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
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
    const pid = pidOf(before.tasks![0]!)!;
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
    expect(pidOf(adopted.tasks![0]!)).toBe(pid);
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

describe('a data dir from the version that kept local pids in the tasks table (schema 6)', () => {
  it('is migrated by tutti up, whose server adopts the rank still running there and shows its pid as a backend detail', async () => {
    root = await mkdtemp(path.join(tmpdir(), 'tutti-upgrade-'));
    const dataDir = path.join(root, 'data');
    const release = path.join(root, 'release-old');
    // What that version left behind when it stopped: its schema, and job 1 running on GPU 0, its rank a real process
    // (the supervisor and files are the local backend's own, unchanged), recorded by pid, start time and log path.
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const backend = createLocalBackend({ dataDir, fakeGpus: '4' });
    const [node] = await backend.inventory();
    const parsed = parseJobSpecObject({ name: 'old', resources: { gpus: 1 }, run: waitForFileThenExit(release, 0) });
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
    const spec = parsed.value;
    const [handle] = await backend.launch({ jobId: '1', jobName: spec.name, run: spec.run, env: {}, attempt: 1, ranks: [{ rank: 0, localRank: 0, nodeRank: 0, node: node!.name, gpus: [0] }] });
    await backend.close();
    const { pid, pidStartTime, logPath } = readLocalRankRef(handle!);
    rankGroups.add(pid);
    const database = new Database(path.join(dataDir, 'tutti.db'));
    const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database }) });
    await runMigrations(db, sqliteStoreDialect, { migrations: MIGRATIONS.slice(0, 6) });
    const now = Date.now();
    database
      .prepare("insert into jobs (id, name, team, priority, status, spec_json, created_at, started_at, attempt, resources_json, num_nodes) values (1, 'old', 'default', 50, 'running', ?, ?, ?, 1, ?, 1)")
      .run(JSON.stringify(spec), now - 2_000, now - 1_000, JSON.stringify(spec.resources));
    database.prepare("insert into gpu_allocations (node, gpu_index, job_id) values (?, 0, 1)").run(node!.name);
    database
      .prepare("insert into tasks (job_id, rank, local_rank, node_rank, node, gpus_json, status, pid, pid_start_time, log_path, started_at) values (1, 0, 0, 0, ?, '[0]', 'running', ?, ?, ?, ?)")
      .run(node!.name, pid, pidStartTime, logPath, handle!.startedAt);
    await db.destroy();

    const upgraded = await startUp(dataDir);
    const client = new TuttiClient({ baseUrl: upgraded.url });
    const adopted = await waitForJob(client, '1', (j) => j.status === 'running' && (j.tasks ?? []).length === 1);
    // The old columns did not say on which machine the pid lives, so the upgraded handle does not either.
    expect(adopted.tasks![0]!.backend).toEqual({ kind: 'local', details: { pid } });
    expect(isProcessAlive(pid)).toBe(true);
    expect((await client.listJobEvents('1')).events.map((e) => e.type)).toContain('adopted');

    // Watched again: its exit ends the job, and its log (written before and after the upgrade) is served.
    await touch(release);
    expect((await waitForJob(client, '1', isEnded)).status).toBe('succeeded');
    rankGroups.delete(pid);
    let log = '';
    for await (const chunk of client.logs('1')) log += chunk;
    expect(log).toContain('waiting for');
    expect(log).toContain('released');
    upgraded.child.kill('SIGTERM');
    expect(await exited(upgraded.child)).toBe(0);
  });
});
