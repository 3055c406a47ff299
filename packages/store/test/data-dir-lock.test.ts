import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acquireDataDirLock, PID_FILE_NAME } from '../src/index.ts';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../../..');
const holder = join(here, 'fixtures', 'hold-data-dir-lock.ts');

/** Starts a child process that takes the lock on `dataDir`; resolves once it holds it. */
function startHolder(dataDir: string, sharedBy?: { id: string; name: string }): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', holder, dataDir, ...(sharedBy !== undefined ? [sharedBy.id, sharedBy.name] : [])], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolvePromise, reject) => {
    let out = '';
    let err = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('locked')) resolvePromise(child);
    });
    child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('exit', (code) => reject(new Error(`lock holder exited with ${code}: ${out}${err}`)));
    child.on('error', reject);
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolvePromise) => child.once('exit', () => resolvePromise()));
}

describe('acquireDataDirLock', () => {
  let dir: string;
  const children: ChildProcess[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tutti-lock-'));
  });
  afterEach(async () => {
    for (const child of children.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited(child);
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a second holder in the same process until the first releases', () => {
    const dataDir = join(dir, 'data');
    const first = acquireDataDirLock(dataDir);
    expect(first.ok).toBe(true);
    expect(readFileSync(join(dataDir, PID_FILE_NAME), 'utf8').trim()).toBe(String(process.pid));
    const second = acquireDataDirLock(dataDir);
    expect(second).toEqual({
      ok: false,
      message: `another tutti server (pid ${process.pid}) is using ${dataDir}; stop it first or pass a different --data-dir`,
    });
    if (first.ok) first.release();
    expect(existsSync(join(dataDir, PID_FILE_NAME))).toBe(false);
    const third = acquireDataDirLock(dataDir);
    expect(third.ok).toBe(true);
    if (third.ok) {
      third.release();
      third.release(); // idempotent
    }
  });

  it('is not blocked by a PID file left behind without a holder', () => {
    writeFileSync(join(dir, PID_FILE_NAME), '999999\n');
    const lock = acquireDataDirLock(dir);
    expect(lock.ok).toBe(true);
    expect(readFileSync(join(dir, PID_FILE_NAME), 'utf8').trim()).toBe(String(process.pid));
    if (lock.ok) lock.release();
  });

  it('refuses while another process holds it, and is free again once that process is killed with SIGKILL', async () => {
    const child = await startHolder(dir);
    children.push(child);

    const refused = acquireDataDirLock(dir);
    expect(refused.ok).toBe(false);
    if (!refused.ok) {
      expect(refused.message).toBe(`another tutti server (pid ${child.pid}) is using ${dir}; stop it first or pass a different --data-dir`);
    }

    child.kill('SIGKILL');
    await exited(child);

    const lock = acquireDataDirLock(dir);
    expect(lock.ok).toBe(true);
    if (lock.ok) lock.release();
  });

  it('makes a second process refuse while this one holds it', async () => {
    const lock = acquireDataDirLock(dir);
    expect(lock.ok).toBe(true);
    const child = spawn(process.execPath, ['--import', 'tsx', holder, dir], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    expect(code).toBe(2);
    expect(out).toContain(`another tutti server (pid ${process.pid}) is using ${dir}`);
    if (lock.ok) lock.release();
  });

  describe('shared by the replicas of one database', () => {
    const DATABASE = { id: '4711', name: 'postgres://tutti@db.example:5432/tutti' };
    const OTHER = { id: '815', name: 'postgres://tutti@db.example:5432/other' };
    const SAME_ELSEWHERE = { id: '4711', name: 'postgres://tutti@pgbouncer.example:6432/tutti' };

    it('lets every replica of the database hold it at once, also one that reaches it by another address, and no server alone on its store', async () => {
      children.push(await startHolder(dir, DATABASE));
      const replica = acquireDataDirLock(dir, { sharedBy: SAME_ELSEWHERE });
      expect(replica.ok).toBe(true);
      if (replica.ok) replica.release();
      const alone = acquireDataDirLock(dir);
      expect(alone).toEqual({ ok: false, message: `replicas of the database ${SAME_ELSEWHERE.name} are using ${dir}; stop them first or pass a different --data-dir` });
    });

    it('lets a third replica in while two hold it (the second\'s check whether it was first left nothing behind)', async () => {
      const first = await startHolder(dir, DATABASE);
      children.push(first, await startHolder(dir, DATABASE));
      first.kill('SIGKILL');
      await exited(first);
      const third = acquireDataDirLock(dir, { sharedBy: DATABASE });
      expect(third.ok).toBe(true);
      if (third.ok) third.release();
    });

    it('refuses a replica of another database while replicas hold it, and accepts it once they are gone', async () => {
      const child = await startHolder(dir, DATABASE);
      children.push(child);
      const other = acquireDataDirLock(dir, { sharedBy: OTHER });
      expect(other).toEqual({ ok: false, message: `replicas of another database (${DATABASE.name}) are using ${dir}, not of ${OTHER.name}; give each control plane its own --data-dir` });
      child.kill('SIGKILL');
      await exited(child);
      const later = acquireDataDirLock(dir, { sharedBy: OTHER });
      expect(later.ok).toBe(true);
      if (later.ok) later.release();
    });

    it('refuses replicas while a server alone on its store holds it', async () => {
      children.push(await startHolder(dir));
      const replica = acquireDataDirLock(dir, { sharedBy: DATABASE });
      expect(replica.ok).toBe(false);
      if (!replica.ok) expect(replica.message).toMatch(/^another tutti server \(pid \d+\) is using /);
    });
  });
});
