/**
 * A full disk under a running server: writes answer 507 `disk_full` naming the database file, reads keep working,
 * the server stays up, and everything resumes by itself once space is freed (a submission succeeds, a job whose
 * rank exited meanwhile is finished, the scheduler starts the next job).
 *
 * Two ways to run out of space, the same checks:
 * - a real full filesystem: the data dir on a small tmpfs, the server a real `tutti up` process (needs root and
 *   `mount`; skipped with a message where mounting is not permitted);
 * - SQLite's own SQLITE_FULL: the database limited by `max_page_count` and filled by a second connection, so that it
 *   runs everywhere.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TuttiClient } from '@tutti/client';
import type { Logger } from '@tutti/server';
import { pidOf, closeLeavingNothingRunning, expectApiError, isEnded, isProcessAlive, isRunningWithPids, nodeScript, startTestServer, touch, waitForJob } from './harness.ts';
import type { TestServer } from './harness.ts';

const TUTTI = fileURLToPath(new URL('../../cli/bin/tutti.js', import.meta.url));

/** A rank that waits for `file` and exits 0 without printing (printing on a full disk would fail the rank). */
function waitSilentlyFor(file: string): string[] {
  return nodeScript(`const fs=require('fs');console.log('waiting');(function w(){if(fs.existsSync(process.argv[1]))process.exit(0);setTimeout(w,25)})()`, file);
}

interface FullDiskWorld {
  client: TuttiClient;
  /** The database file the 507's message must name. */
  databasePath: string;
  scratch: string;
  /** Makes every further write of the server fail for lack of space. */
  fill(): Promise<void>;
  /** Gives the space back. */
  free(): Promise<void>;
  /** Whether the server (process) still lives. */
  alive(): boolean;
  /** What the server logged so far. */
  log(): string;
}

/** The checks both ways of filling the disk share. */
async function runFullDiskScenario(world: FullDiskWorld): Promise<void> {
  const { client } = world;
  // A job holding every GPU, so the jobs submitted below wait in the queue (the cycle writes nothing for them).
  const release = path.join(world.scratch, 'release');
  const holder = await client.submitJob({ name: 'holder', resources: { gpus: 4 }, run: waitSilentlyFor(release) });
  const running = await waitForJob(client, holder.id, isRunningWithPids);
  const pid = pidOf(running.tasks![0]!)!;

  await world.fill();
  const refused = await expectApiError(client.submitJob({ name: 'while-full', resources: { gpus: 1 }, run: ['true'], env: { PAD: 'x'.repeat(4000) } }));
  expect(refused.status).toBe(507);
  expect(refused.code).toBe('disk_full');
  expect(refused.message).toBe(`disk full at ${world.databasePath}: free space and retry`);
  for (let i = 0; i < 3; i++) expect((await expectApiError(client.submitJob({ name: `again-${i}`, resources: { gpus: 1 }, run: ['true'], env: { PAD: 'x'.repeat(4000) } }))).status).toBe(507);

  // Reads keep working, and health says what is wrong.
  const health = await client.health();
  expect(health.status).toBe('ok');
  expect(health.disk_full).toBe(`disk full at ${world.databasePath}: free space and retry`);
  const listed = await client.listJobs({ limit: 100 });
  expect(listed.jobs.map((j) => j.id)).toContain(holder.id);
  expect((await client.getJob(holder.id)).status).toBe('running');

  // The holder's rank exits while nothing can be written: its end is recorded once space is back.
  await touch(release);
  while (isProcessAlive(pid)) await sleep(25);
  await sleep(600); // a few ticks of the control loop while the disk is full
  expect(world.alive(), world.log()).toBe(true);

  await world.free();
  const after = await client.submitJob({ name: 'after', resources: { gpus: 1 }, run: ['true'] });
  expect(after.status).toBe('pending');
  expect((await client.health()).disk_full).toBeNull();
  expect((await waitForJob(client, holder.id, isEnded)).status).toBe('succeeded');
  // The scheduler resumed: the job submitted after the disk was freed ran.
  expect((await waitForJob(client, after.id, isEnded)).status).toBe('succeeded');
  expect(world.alive(), world.log()).toBe(true);

  // Told once per episode, not once per refused write or per tick: the four refused submissions above made one
  // line. (The holder's exit may make a second episode where a small write fits in a page that has room.) Every
  // episode is closed by a line saying writes succeed again. No stack traces.
  const log = world.log();
  const episodes = log.match(/disk full at .*: free space and retry/g)?.length ?? 0;
  expect(episodes).toBeGreaterThanOrEqual(1);
  expect(episodes).toBeLessThanOrEqual(2);
  expect(log.match(/writes succeed again/g)?.length).toBe(episodes);
  expect(log).not.toMatch(/^\s+at /m);
  expect(log).not.toMatch(/cannot rollback/);
}

function canMountTmpfs(): { ok: true } | { ok: false; why: string } {
  if (process.getuid?.() !== 0) return { ok: false, why: 'not root' };
  const probe = mkdtempSync(path.join(tmpdir(), 'tutti-mount-probe-'));
  try {
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe], { encoding: 'utf8' });
    if (mounted.status !== 0) return { ok: false, why: (mounted.stderr || mounted.error?.message || 'mount failed').trim() };
    spawnSync('umount', [probe]);
    return { ok: true };
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

const mountable = canMountTmpfs();
if (!mountable.ok) console.warn(`disk-full.test: skipping the tmpfs test (mounting a tmpfs is not permitted here: ${mountable.why}); the max_page_count test still runs`);

/** Fills the filesystem of `dir` up to the last page. */
function fillFilesystem(file: string): void {
  const fd = openSync(file, 'w');
  try {
    for (const size of [1024 * 1024, 4096, 1]) {
      const chunk = Buffer.alloc(size, 1);
      for (;;) {
        try {
          writeSync(fd, chunk);
        } catch {
          break;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
}

describe.skipIf(!mountable.ok)('a full filesystem under a running `tutti up`', () => {
  let root: string;
  let mountPoint: string;
  let server: ChildProcess | undefined;
  let stderr = '';

  beforeAll(() => {
    root = mkdtempSync(path.join(tmpdir(), 'tutti-diskfull-'));
    mountPoint = path.join(root, 'mnt');
    mkdirSync(mountPoint);
    mkdirSync(path.join(root, 'scratch'));
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', mountPoint], { encoding: 'utf8' });
    if (mounted.status !== 0) throw new Error(`mount failed: ${mounted.stderr}`);
  });

  afterAll(async () => {
    // Whatever happened, the holder's ranks are released (they keep files open on the mount) and the server stopped.
    writeFileSync(path.join(root, 'scratch', 'release'), 'go');
    if (server?.exitCode === null) {
      server.kill('SIGTERM');
      await new Promise((resolve) => server!.once('exit', resolve));
    }
    for (let i = 0; i < 50 && spawnSync('umount', [mountPoint]).status !== 0; i++) await sleep(100);
    spawnSync('umount', ['-l', mountPoint]);
    rmSync(root, { recursive: true, force: true });
  });

  it('refuses writes with 507 naming the file, keeps reads and the process up, and resumes when space is freed', async () => {
    const dataDir = path.join(mountPoint, 'data');
    const scratch = path.join(root, 'scratch');
    server = spawn(process.execPath, [TUTTI, 'up', '--data-dir', dataDir, '--port', '0', '--fake-gpus', '4', '--grace', '5'], { stdio: ['ignore', 'ignore', 'pipe'] });
    server.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const url = await new Promise<string>((resolve, reject) => {
      const check = () => {
        const match = /tutti is up at (\S+)/.exec(stderr);
        if (match) resolve(match[1]!);
      };
      server!.stderr!.on('data', check);
      server!.once('exit', (code) => reject(new Error(`tutti up exited with ${code}: ${stderr}`)));
    });
    const databasePath = path.join(dataDir, 'tutti.db');
    const filler = path.join(mountPoint, 'filler');
    await runFullDiskScenario({
      client: new TuttiClient({ baseUrl: url }),
      databasePath,
      scratch,
      async fill() {
        // Empty the WAL first (SQLite reuses a WAL's space after a checkpoint), so the very next commit must grow it.
        const db = new Database(databasePath);
        db.pragma('wal_checkpoint(TRUNCATE)');
        db.close();
        fillFilesystem(filler);
      },
      async free() {
        rmSync(filler);
      },
      alive: () => server!.exitCode === null && server!.signalCode === null,
      log: () => stderr,
    });
  }, 90_000);
});

describe('SQLITE_FULL from SQLite itself (the database at its max_page_count)', () => {
  let t: TestServer | undefined;
  let logged = '';
  const logger: Logger = {
    info: (message) => (logged += `info ${message}\n`),
    warn: (message) => (logged += `warn ${message}\n`),
    error: (message, error) => (logged += `error ${message}${error ? `: ${error instanceof Error ? error.stack : String(error)}` : ''}\n`),
  };

  afterAll(async () => {
    // The holder's ranks are released whatever happened, so none is left behind.
    if (t) writeFileSync(path.join(t.scratch, 'release'), 'go');
    await closeLeavingNothingRunning(t);
  });

  it('refuses writes with 507 naming the file, keeps reads and the server up, and resumes when pages are freed', async () => {
    const maxPages = 2000;
    t = await startTestServer({ logger, databaseMaxPages: maxPages });
    const databasePath = path.join(t.dataDir, 'tutti.db');
    // A second connection (no page limit of its own) fills the database to the server's limit, and later frees it.
    const other = new Database(databasePath);
    other.pragma('busy_timeout = 5000');
    try {
      await runFullDiskScenario({
        client: t.client,
        databasePath,
        scratch: t.scratch,
        async fill() {
          other.exec('CREATE TABLE filler (b BLOB)');
          const insert = other.prepare('INSERT INTO filler VALUES (randomblob(3500))');
          const pages = () => Number(other.pragma('page_count', { simple: true }));
          other.transaction(() => {
            while (pages() < maxPages) for (let i = 0; i < 100; i++) insert.run();
          })();
        },
        async free() {
          other.exec('DROP TABLE filler');
        },
        alive: () => true, // in this process: a crash would be an unhandled rejection, which fails the run
        log: () => logged,
      });
    } finally {
      other.close();
    }
  }, 60_000);
});

describe.skipIf(!mountable.ok)('a job whose files cannot be written (no space for its checkpoint dir)', () => {
  let t: TestServer | undefined;
  let mountPoint: string;
  beforeAll(() => {
    mountPoint = mkdtempSync(path.join(tmpdir(), 'tutti-ckpt-full-'));
    // Room for one entry only: with it taken, making the job's checkpoint dir fails with ENOSPC.
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,nr_inodes=2', 'tmpfs', mountPoint], { encoding: 'utf8' });
    if (mounted.status !== 0) throw new Error(`mount failed: ${mounted.stderr}`);
    writeFileSync(path.join(mountPoint, 'blocker'), '');
  });
  afterAll(async () => {
    await closeLeavingNothingRunning(t);
    for (let i = 0; i < 50 && spawnSync('umount', [mountPoint]).status !== 0; i++) await sleep(100);
    spawnSync('umount', ['-l', mountPoint]);
    rmSync(mountPoint, { recursive: true, force: true });
  });

  it('goes back to the queue saying the disk is full (not failed), and runs once space is freed', async () => {
    t = await startTestServer();
    const checkpointDir = path.join(mountPoint, 'job-ckpt');
    const job = await t.client.submitJob({ name: 'needs-space', resources: { gpus: 1 }, checkpoint_dir: checkpointDir, run: nodeScript('process.exit(0)') });
    const requeued = async () => (await t!.client.listJobEvents(job.id)).events.find((e) => e.type === 'requeued');
    while (!(await requeued())) await sleep(50);
    expect((await requeued())!.message).toBe(`could not start: disk full at ${checkpointDir}: free space and retry; tried again in 10s`);
    expect((await t.client.getJob(job.id)).status).toBe('pending');

    rmSync(path.join(mountPoint, 'blocker'));
    expect((await waitForJob(t.client, job.id, isEnded, 30_000)).status).toBe('succeeded');
  }, 60_000);
});
