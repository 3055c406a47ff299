import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import Database from 'better-sqlite3';

export type DataDirLock = { ok: true; release(): void } | { ok: false; message: string };

/** The SQLite file whose exclusive lock is the data-dir lock (it holds no data). */
export const LOCK_FILE_NAME = 'server.lock';
/** The holder's PID, for the refusal message only: the lock itself is the SQLite lock. */
export const PID_FILE_NAME = 'server.pid';

/**
 * Makes sure only one tutti server uses `dataDir` at a time (creating the directory if needed).
 *
 * The lock is an OS file lock, not a file's existence: `server.lock` is a SQLite database opened with
 * `locking_mode=EXCLUSIVE` inside a `BEGIN EXCLUSIVE` transaction that is never committed. SQLite takes that
 * lock with fcntl, which the kernel drops when the holding process dies, even by `kill -9`, so there are no
 * stale locks to clean up. `busy_timeout=0` makes a second server fail at once instead of waiting.
 * A second call in the same process is refused too (SQLite shares locks between connections of one process).
 * Needs a filesystem with working POSIX locks (not some network filesystems).
 *
 * Refusal is a value (`ok: false`) with a message naming the holder's PID; other failures (permissions) throw.
 */
export function acquireDataDirLock(dataDir: string): DataDirLock {
  const dir = resolve(dataDir);
  mkdirSync(dir, { recursive: true });
  const pidPath = `${dir}/${PID_FILE_NAME}`;
  const db = new Database(`${dir}/${LOCK_FILE_NAME}`, { timeout: 0 });
  try {
    db.pragma('busy_timeout = 0');
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
  } catch (error) {
    db.close();
    if ((error as { code?: unknown }).code === 'SQLITE_BUSY' || (error as { code?: unknown }).code === 'SQLITE_LOCKED') {
      return { ok: false, message: `another tutti server (${describeHolder(pidPath)}) is using ${dir}; stop it first or pass a different --data-dir` };
    }
    throw error;
  }
  writeFileSync(pidPath, `${process.pid}\n`);
  let released = false;
  return {
    ok: true,
    release() {
      if (released) return;
      released = true;
      // Remove the PID file first, while still holding the lock, so a new holder's file is never deleted.
      if (readPid(pidPath) === process.pid) rmSync(pidPath, { force: true });
      db.close(); // closing the connection drops the transaction and with it the lock
    },
  };
}

function describeHolder(pidPath: string): string {
  const pid = readPid(pidPath);
  return pid === undefined ? 'pid unknown' : `pid ${pid}`;
}

function readPid(pidPath: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(pidPath, 'utf8').trim(), 10);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
