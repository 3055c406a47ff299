/**
 * The data dir holds job specs with their env values, the job-token key and every rank's output: the directory is
 * 0700 and the files tutti writes there 0600, also for a data dir an older tutti left world-readable.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acquireDataDirLock, createSqliteStateStore, LOCK_FILE_NAME, PID_FILE_NAME } from '../src/index.ts';
import { makeJobSpec } from './builders.ts';

const modeOf = (path: string) => (statSync(path).mode & 0o777).toString(8);

describe('private data dir', () => {
  let root: string;
  const releases: Array<() => void> = [];

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'tutti-private-'));
  });

  afterEach(() => {
    for (const release of releases.splice(0)) release();
    rmSync(root, { recursive: true, force: true });
  });

  function lock(dir: string) {
    const result = acquireDataDirLock(dir);
    if (!result.ok) throw new Error(result.message);
    releases.push(() => result.release());
    return result;
  }

  it('creates the data dir 0700, and the lock, pid, database, -wal and -shm files 0600', async () => {
    const dir = join(root, 'data');
    expect(lock(dir).tightened).toEqual([]);
    const store = await createSqliteStateStore({ path: join(dir, 'tutti.db') });
    await store.createJob(makeJobSpec({ env: { TOKEN: 'secret' } }), 1);
    const modes = Object.fromEntries(['', LOCK_FILE_NAME, PID_FILE_NAME, 'tutti.db', 'tutti.db-wal', 'tutti.db-shm'].map((name) => [name || '.', modeOf(join(dir, name))]));
    await store.close();
    expect(modes).toEqual({ '.': '700', [LOCK_FILE_NAME]: '600', [PID_FILE_NAME]: '600', 'tutti.db': '600', 'tutti.db-wal': '600', 'tutti.db-shm': '600' });
  });

  it("makes an older tutti's world-readable data dir private at start, and says what it changed", async () => {
    const dir = join(root, 'old');
    mkdirSync(dir);
    const old = await createSqliteStateStore({ path: join(dir, 'tutti.db') });
    await old.close();
    chmodSync(dir, 0o755);
    chmodSync(join(dir, 'tutti.db'), 0o644);
    writeFileSync(join(dir, PID_FILE_NAME), '', { mode: 0o644 });
    chmodSync(join(dir, PID_FILE_NAME), 0o644);

    const { tightened } = lock(dir);
    expect(tightened).toEqual([`${dir}: 0755 → 0700`, `${join(dir, PID_FILE_NAME)}: 0644 → 0600`]);
    const store = await createSqliteStateStore({ path: join(dir, 'tutti.db') });
    await store.createJob(makeJobSpec(), 1);
    const modes = ['', 'tutti.db', 'tutti.db-wal', 'tutti.db-shm'].map((name) => modeOf(join(dir, name)));
    await store.close();
    expect(modes).toEqual(['700', '600', '600', '600']);
  });
});
