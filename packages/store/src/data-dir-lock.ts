import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import Database from 'better-sqlite3';

export type DataDirLock =
  | {
      ok: true;
      release(): void;
      /** What was made private on the way in (an older data dir): "<path>: 0755 → 0700", for the server's log. */
      tightened: string[];
    }
  | { ok: false; message: string };

/**
 * The data dir holds job specs with their `env` values, the job-token key and every rank's output: only its owner
 * may enter it. Files tutti creates there are 0600 as well, in case the directory is ever opened up again.
 */
export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/**
 * Removes group and other permissions from `path` if it has any; returns "<path>: 0755 → 0700" when it changed
 * something. A missing path is left alone.
 */
export function makePrivate(path: string, mode: number): string | undefined {
  let current: number;
  try {
    current = statSync(path).mode & 0o777;
  } catch {
    return undefined;
  }
  if ((current & 0o077) === 0) return undefined;
  chmodSync(path, mode);
  return `${path}: ${current.toString(8).padStart(4, '0')} → ${mode.toString(8).padStart(4, '0')}`;
}

/** Creates `path` empty with `mode` unless it exists (a file's mode is only ever set when it is created). */
export function createPrivateFile(path: string): void {
  closeSync(openSync(path, 'a', PRIVATE_FILE_MODE));
}

/** The SQLite file whose exclusive lock is the data-dir lock (it holds no data). */
export const LOCK_FILE_NAME = 'server.lock';
/** The holder's PID, for the refusal message only: the lock itself is the SQLite lock. */
export const PID_FILE_NAME = 'server.pid';

/** In a data dir shared by replicas: the database they share (its URL, password hidden), written by the first. */
export const REPLICAS_FILE_NAME = 'replicas.database';

export interface DataDirLockOptions {
  /**
   * Replicas of one control plane share a data dir (their ranks' files and logs): with the database they share (its
   * URL, password hidden), the lock is taken shared. Any number of replicas of that database may hold it at once;
   * a server alone on its store (no `sharedBy`), or replicas of another database, are refused while they do, and
   * replicas are refused while a server alone holds it.
   */
  sharedBy?: SharedDatabase;
}

/** The database replicas share: its identity (what is compared) and how to name it to people. */
export interface SharedDatabase {
  id: string;
  /** e.g. its URL, password hidden. */
  name: string;
}

/**
 * Makes sure only one tutti server uses `dataDir` at a time (creating the directory if needed) — or, with `sharedBy`,
 * only replicas of one database.
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
export function acquireDataDirLock(dataDir: string, options: DataDirLockOptions = {}): DataDirLock {
  const dir = resolve(dataDir);
  mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  // An existing data dir of an older tutti (created 0755, files 0644) is made private, not merely warned about: the
  // secrets in it would stay readable to every local user until someone acted on the warning.
  const tightened = [makePrivate(dir, PRIVATE_DIR_MODE)];
  const pidPath = `${dir}/${PID_FILE_NAME}`;
  const lockPath = `${dir}/${LOCK_FILE_NAME}`;
  createPrivateFile(lockPath);
  tightened.push(makePrivate(lockPath, PRIVATE_FILE_MODE));
  const replicasPath = `${dir}/${REPLICAS_FILE_NAME}`;
  const db = new Database(lockPath, { timeout: 0 });
  let firstReplica = false;
  try {
    db.pragma('busy_timeout = 0');
    db.pragma('locking_mode = EXCLUSIVE');
    if (options.sharedBy === undefined) db.exec('BEGIN EXCLUSIVE');
    else firstReplica = takeSharedLock(db);
  } catch (error) {
    db.close();
    if ((error as { code?: unknown }).code === 'SQLITE_BUSY' || (error as { code?: unknown }).code === 'SQLITE_LOCKED') {
      const replicasOf = options.sharedBy === undefined ? readSharedDatabase(replicasPath)?.name : undefined;
      const holder = replicasOf !== undefined ? `replicas of the database ${replicasOf}` : `another tutti server (${describeHolder(pidPath)})`;
      return { ok: false, message: `${holder} ${replicasOf !== undefined ? 'are' : 'is'} using ${dir}; stop ${replicasOf !== undefined ? 'them' : 'it'} first or pass a different --data-dir` };
    }
    throw error;
  }
  if (options.sharedBy !== undefined) {
    // The first replica names the database; the others must name the same, else two control planes would share one
    // data dir, and their job ids, attempt dirs and logs.
    const shared = options.sharedBy;
    const named = readSharedDatabase(replicasPath);
    if (!firstReplica && named !== undefined && named.id !== shared.id) {
      db.close();
      return { ok: false, message: `replicas of another database (${named.name}) are using ${dir}, not of ${shared.name}; give each control plane its own --data-dir` };
    }
    writeFileSync(replicasPath, `${shared.id}\n${shared.name}\n`, { mode: PRIVATE_FILE_MODE });
    tightened.push(makePrivate(replicasPath, PRIVATE_FILE_MODE));
    return heldLock(db, tightened, () => {});
  }
  rmSync(replicasPath, { force: true });
  writeFileSync(pidPath, `${process.pid}\n`, { mode: PRIVATE_FILE_MODE });
  tightened.push(makePrivate(pidPath, PRIVATE_FILE_MODE));
  // Remove the PID file first, while still holding the lock, so a new holder's file is never deleted.
  return heldLock(db, tightened, () => readPid(pidPath) === process.pid && rmSync(pidPath, { force: true }));
}

/** The lock `db` holds; `beforeRelease` runs once, while it is still held. */
function heldLock(db: Database.Database, tightened: ReadonlyArray<string | undefined>, beforeRelease: () => void): DataDirLock {
  let released = false;
  return {
    ok: true,
    tightened: tightened.filter((change) => change !== undefined),
    release() {
      if (released) return;
      released = true;
      beforeRelease();
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

/** The database the replicas holding a data dir share, as the first of them wrote it (`id`, then `name`). */
function readSharedDatabase(path: string): SharedDatabase | undefined {
  try {
    const [id, name] = readFileSync(path, 'utf8').split('\n');
    return id ? { id, name: name || id } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes the shared lock of a replica; answers whether no other server held the data dir just before (then this
 * replica names the database). Whether the dir is free is asked on a connection of its own, closed at once: an
 * exclusive attempt that fails keeps SQLite's PENDING lock, which on the kept connection (EXCLUSIVE locking mode
 * never lets a lock go) would shut every later replica out. The kept connection then takes the shared lock of a
 * read, which every replica holds at once and which excludes a server alone on its store.
 */
function takeSharedLock(db: Database.Database): boolean {
  const probe = new Database(db.name, { timeout: 0 });
  let first = false;
  try {
    probe.pragma('busy_timeout = 0');
    probe.exec('BEGIN EXCLUSIVE');
    probe.exec('ROLLBACK');
    first = true;
  } catch (error) {
    if ((error as { code?: unknown }).code !== 'SQLITE_BUSY') throw error;
  } finally {
    probe.close();
  }
  db.exec('BEGIN');
  db.prepare('SELECT count(*) FROM sqlite_master').get();
  return first;
}
