import { accessSync, constants, statSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * The database was written by a newer tutti (its schema version is above every migration this build knows).
 * Platform-caused: the operator must upgrade tutti or point it at another data dir; the store refuses to touch it.
 */
export class SchemaTooNewError extends Error {
  override readonly name = 'SchemaTooNewError';
  constructor(
    readonly databaseVersion: number,
    readonly knownVersion: number,
    where?: string,
    /** What else the operator can do, after "upgrade tutti, or". */
    otherwise = 'use a different --data-dir',
  ) {
    super(`the database${where ? ` ${where}` : ''} has schema version ${databaseVersion}, newer than this tutti knows (${knownVersion}); upgrade tutti, or ${otherwise}`);
  }
}

/**
 * Migrations refused because a replica of an older tutti leads on the database (its lease has not run out): it would
 * go on writing in the older schema's terms. Stop the older replicas, then start the new version.
 */
export class MigrationWhileLeadError extends Error {
  override readonly name = 'MigrationWhileLeadError';
  constructor(
    readonly databaseVersion: number,
    readonly neededVersion: number,
    readonly leader: { holder: string; expiresAt: number },
    where?: string,
  ) {
    super(
      `the database${where ? ` ${where}` : ''} has schema version ${databaseVersion} and this tutti needs ${neededVersion}, but replica ${leader.holder} leads on it ` +
        `(its lease runs until ${new Date(leader.expiresAt).toISOString()}); stop every replica of the older tutti first (a replica stopped ` +
        'with Ctrl-C or SIGTERM gives its lease up at once), then start this one: it migrates the database once, and the others after it',
    );
  }
}

/** A `listJobs` cursor that no page of this store produced. User-caused (a tampered or foreign cursor). */
export class InvalidCursorError extends Error {
  override readonly name = 'InvalidCursorError';
  constructor(readonly cursor: string) {
    super(`invalid job list cursor: ${JSON.stringify(cursor)}`);
  }
}

/**
 * A write failed because the filesystem holding `path` is full (SQLite's SQLITE_FULL, or ENOSPC / EDQUOT from a
 * file write). Platform-caused and transient: nothing was written, reads still work, and the same write succeeds
 * once space is freed. The API answers it with 507 `disk_full`.
 */
export class DiskFullError extends Error {
  override readonly name = 'DiskFullError';
  constructor(
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super(`disk full at ${path}: free space and retry`, options);
  }
}

/** Node's codes for a write refused for lack of space: the device is full, or the user's disk quota is used up. */
const NO_SPACE_CODES: ReadonlySet<unknown> = new Set(['ENOSPC', 'EDQUOT']);

/**
 * `error` as a DiskFullError when it is one: a DiskFullError already, or a Node file-system error with code ENOSPC
 * or EDQUOT (named by its own path, else `fallbackPath`), also as the `cause` of another error (a backend's
 * LaunchError wraps the file error it met). Undefined for every other error.
 */
export function asDiskFull(error: unknown, fallbackPath = 'the data dir'): DiskFullError | undefined {
  for (let at = error, depth = 0; at !== undefined && at !== null && depth < 4; at = (at as { cause?: unknown }).cause, depth++) {
    if (at instanceof DiskFullError) return at;
    const { code, path } = at as { code?: unknown; path?: unknown };
    if (NO_SPACE_CODES.has(code)) return new DiskFullError(typeof path === 'string' ? path : fallbackPath, { cause: error });
  }
  return undefined;
}

/**
 * The data dir, or a file in it, cannot be used: read-only, no permission, not a directory, a directory where a
 * file should be, a damaged database, no space. The message is one line naming the path and what to do.
 */
export class DataDirError extends Error {
  override readonly name = 'DataDirError';
  constructor(
    readonly path: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const SQLITE_DAMAGED_CODES: ReadonlySet<unknown> = new Set(['SQLITE_NOTADB', 'SQLITE_CORRUPT']);
/** Errors that say the path cannot be opened or written as it is (as opposed to a bug in tutti). */
const DATA_DIR_CODES: ReadonlySet<unknown> = new Set([
  ...SQLITE_DAMAGED_CODES,
  'SQLITE_CANTOPEN',
  'SQLITE_READONLY',
  'SQLITE_PERM',
  'SQLITE_AUTH',
  'SQLITE_IOERR',
  'SQLITE_FULL',
  'EROFS',
  'EACCES',
  'EPERM',
  'ENOTDIR',
  'EISDIR',
  'ENOSPC',
  'EDQUOT',
  'EIO',
  'ENOENT',
]);

/**
 * Explains why opening or writing `path` (a file of the data dir, or the dir itself) failed, in one line that says
 * what to do; undefined when `error` is not such a failure. `path` names the file the caller was opening; a Node
 * error's own path is preferred when it has one. For a damaged database it gives the `sqlite3 .recover` recipe.
 */
export function explainDataDirFailure(error: unknown, path: string): DataDirError | undefined {
  if (error instanceof DataDirError) return error;
  if (error instanceof DiskFullError) return new DataDirError(error.path, error.message, { cause: error });
  const { code, path: errorPath } = (error ?? {}) as { code?: unknown; path?: unknown };
  const where = typeof errorPath === 'string' ? errorPath : path;
  const codeName = typeof code === 'string' ? code.replace(/^(SQLITE_[A-Z]+)_.*$/, '$1') : undefined;
  if (!DATA_DIR_CODES.has(codeName) && !DATA_DIR_CODES.has(code)) return undefined;
  const explain = (message: string) => new DataDirError(where, message, { cause: error });
  if (SQLITE_DAMAGED_CODES.has(codeName)) {
    return explain(
      `${where} is not a tutti database or is damaged (${(error as Error).message}); stop tutti and salvage it with ` +
        `\`sqlite3 ${where} ".recover" | sqlite3 fixed.db\`, then move fixed.db to ${where}, or pass another --data-dir`,
    );
  }
  if (codeName === 'SQLITE_FULL' || code === 'ENOSPC' || code === 'EDQUOT') return explain(new DiskFullError(where).message);
  if (code === 'ENOTDIR') return explain(`${where}: a part of this path is a file, not a directory; pass a --data-dir that is a directory`);
  if (code === 'EISDIR' || (codeName === 'SQLITE_CANTOPEN' && isDirectory(where))) return explain(`${where} is a directory where tutti keeps a file; move it away, or pass another --data-dir`);
  const writable = writeProblem(where);
  if (code === 'EROFS' || writable === 'EROFS') return explain(`${where} is on a read-only file system; tutti writes to its data dir: pass a writable --data-dir`);
  if (code === 'EACCES' || code === 'EPERM' || writable === 'EACCES' || writable === 'EPERM' || codeName === 'SQLITE_READONLY' || codeName === 'SQLITE_PERM') {
    return explain(`no permission to write ${where}; give this user write access to it (chown or chmod), or pass another --data-dir`);
  }
  const reason = error instanceof Error ? error.message : String(error);
  if (code === 'ENOENT') return explain(`cannot create ${where} (${reason}); pass a --data-dir that can be created`);
  return explain(`cannot use ${where} (${reason}); check the file and its directory, or pass another --data-dir`);
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Why `path` (or, if it does not exist, its nearest existing parent) cannot be written: a Node error code. */
function writeProblem(path: string): string | undefined {
  let probe = path;
  for (;;) {
    try {
      accessSync(probe, constants.W_OK);
      return undefined;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' || dirname(probe) === probe) return code;
      probe = dirname(probe);
    }
  }
}

/**
 * The database URL is malformed, or the server it names cannot be reached, refuses the login, or has no such
 * database. Operator-caused: the message is one line naming the URL (password hidden) and what to fix.
 */
export class PostgresConnectionError extends Error {
  override readonly name = 'PostgresConnectionError';
  constructor(
    /** The URL with its password replaced by `***`. */
    readonly url: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * A write of a fenced store view (`StateStore.withFence`) refused because its replica no longer holds the lease at the
 * fence's epoch: another replica took it over (this one paused past its lease, or lost the database for a while).
 * Nothing of the write was committed. The replica must stop leading: its view of the cluster is stale.
 */
export class FencedError extends Error {
  override readonly name = 'FencedError';
  constructor(
    readonly lease: string,
    readonly holder: string,
    readonly epoch: number,
    /** The lease as it stands now; undefined when it has no row (never taken). */
    readonly current: { holder: string; epoch: number; expiresAt: number } | undefined,
  ) {
    const now = current === undefined ? 'nobody holds it' : `now held by ${current.holder} at epoch ${current.epoch}`;
    super(`this replica (holder ${holder}) no longer holds lease ${JSON.stringify(lease)} at epoch ${epoch}: ${now}; its writes are refused`);
  }
}
