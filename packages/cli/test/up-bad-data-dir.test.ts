/**
 * `tutti up` on a data dir it cannot use — read-only, unwritable, uncreatable, a damaged or foreign tutti.db, a
 * directory where tutti.db belongs — says so in one line naming the file and what to do, and exits 1. Never a
 * stack trace. The real command, as a person runs it.
 */
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobSpec } from '@tutti/model';
import { silentLogger, startTuttiServer } from '@tutti/server';

const TUTTI = fileURLToPath(new URL('../bin/tutti.js', import.meta.url));

interface Run {
  code: number | null;
  stderr: string;
}

/** `tutti up` on `dataDir`; a server that does start is stopped after 30 s (and the test then fails on its code). */
function tuttiUp(dataDir: string, wrap: string[] = []): Promise<Run> {
  const [command, ...args] = [...wrap, process.execPath, TUTTI, 'up', '--data-dir', dataDir, '--port', '0', '--fake-gpus', '1'];
  return new Promise((resolve) => {
    execFile(command!, args, { env: { ...process.env, HOME: tmpdir() }, timeout: 30_000 }, (error, _stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stderr });
    });
  });
}

/** One line on stderr, naming `file`, no stack frames, exit code 1. */
function expectOneLineRefusal(run: Run, file: string): string {
  const lines = run.stderr.trimEnd().split('\n');
  expect(lines, run.stderr).toHaveLength(1);
  expect(run.stderr).not.toMatch(/^\s+at /m);
  expect(run.stderr).toContain(file);
  expect(run.code).toBe(1);
  return lines[0]!;
}

let root: string;
beforeAll(() => {
  root = mkdtempSync(path.join(tmpdir(), 'tutti-bad-data-dir-'));
  chmodSync(root, 0o755); // other users (the no-permission case) may look inside
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describe('tutti up on a data dir it cannot use', () => {
  it('a tutti.db that is not a database: one line with the sqlite3 .recover recipe', async () => {
    const dataDir = path.join(root, 'garbage');
    mkdirSync(dataDir);
    writeFileSync(path.join(dataDir, 'tutti.db'), 'these are not the bytes of a SQLite database\n'.repeat(200));
    const line = expectOneLineRefusal(await tuttiUp(dataDir), path.join(dataDir, 'tutti.db'));
    expect(line).toContain(`sqlite3 ${path.join(dataDir, 'tutti.db')} ".recover" | sqlite3 fixed.db`);
  }, 60_000);

  it('a truncated tutti.db: one line with the sqlite3 .recover recipe', async () => {
    const dataDir = path.join(root, 'truncated');
    // A real tutti database with some history, cut to a third of its size as a crashed copy would be.
    const server = await startTuttiServer({ dataDir, port: 0, fakeGpus: '1', logger: silentLogger });
    const spec = (i: number): JobSpec => ({ name: `job-${i}`, team: 'default', priority: 50, resources: { gpus: { count: 0, types: [] } }, numNodes: 1, run: { kind: 'shell', command: 'true' }, env: { NOTE: 'x'.repeat(200) } });
    await Promise.all(Array.from({ length: 300 }, (_, i) => server.store.createJob(spec(i), Date.now())));
    await server.close();
    const database = path.join(dataDir, 'tutti.db');
    truncateSync(database, Math.floor(statSync(database).size / 3));
    const line = expectOneLineRefusal(await tuttiUp(dataDir), database);
    expect(line).toContain('.recover');
  }, 60_000);

  it('a directory where tutti.db belongs', async () => {
    const dataDir = path.join(root, 'dir-as-db');
    mkdirSync(path.join(dataDir, 'tutti.db'), { recursive: true });
    const line = expectOneLineRefusal(await tuttiUp(dataDir), path.join(dataDir, 'tutti.db'));
    expect(line).toMatch(/is a directory/);
  }, 60_000);

  it('a data dir that cannot be created (a file is in the way)', async () => {
    const file = path.join(root, 'a-file');
    closeSync(openSync(file, 'w'));
    const dataDir = path.join(file, 'data');
    const line = expectOneLineRefusal(await tuttiUp(dataDir), file);
    expect(line).toMatch(/not a directory/);
  }, 60_000);

  const root0 = process.getuid?.() === 0;
  const hasSetpriv = spawnSync('setpriv', ['--version']).status === 0;
  it.skipIf(!root0 || !hasSetpriv)('a data dir this user may not write (run as nobody)', async () => {
    const dataDir = path.join(root, 'not-yours');
    mkdirSync(dataDir, { mode: 0o755 }); // owned by root: nobody may read it, not write it
    const line = expectOneLineRefusal(await tuttiUp(dataDir, ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups']), dataDir);
    expect(line).toMatch(/no permission to write/);
  }, 60_000);

  const mount = (args: string[]) => spawnSync('mount', args, { encoding: 'utf8' });
  describe('on a read-only file system', () => {
    let mountPoint: string;
    let mounted = false;
    beforeAll(() => {
      mountPoint = path.join(root, 'ro');
      mkdirSync(mountPoint);
      mounted = root0 && mount(['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', mountPoint]).status === 0;
      if (!mounted) console.warn('up-bad-data-dir.test: skipping the read-only tests (mounting a tmpfs is not permitted here)');
    });
    afterAll(() => {
      if (mounted) spawnSync('umount', [mountPoint]);
    });

    it('a data dir used before, now read-only', async (context) => {
      if (!mounted) context.skip();
      const dataDir = path.join(mountPoint, 'data');
      const server = await startTuttiServer({ dataDir, port: 0, fakeGpus: '1', logger: silentLogger });
      await server.close();
      expect(mount(['-o', 'remount,ro', mountPoint]).status).toBe(0);
      try {
        const line = expectOneLineRefusal(await tuttiUp(dataDir), dataDir);
        expect(line).toMatch(/read-only file system/);
      } finally {
        mount(['-o', 'remount,rw', mountPoint]);
      }
    }, 60_000);

    it('a new data dir on a read-only file system', async (context) => {
      if (!mounted) context.skip();
      expect(mount(['-o', 'remount,ro', mountPoint]).status).toBe(0);
      try {
        const dataDir = path.join(mountPoint, 'new');
        const line = expectOneLineRefusal(await tuttiUp(dataDir), dataDir);
        expect(line).toMatch(/read-only file system/);
      } finally {
        mount(['-o', 'remount,rw', mountPoint]);
      }
    }, 60_000);
  });
});
