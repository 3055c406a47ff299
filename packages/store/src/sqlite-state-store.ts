import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { SqliteDatabase, SqliteStatement } from 'kysely';
import { Kysely } from 'kysely';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, createPrivateFile, makePrivate } from './data-dir-lock.ts';
import { explainDataDirFailure } from './errors.ts';
import { KyselyStateStore } from './kysely-state-store.ts';
import type { StoreDatabase } from './schema.ts';
import { DiskFullSafeSqliteDialect } from './sqlite-driver.ts';
import type { DiskFullListener } from './sqlite-driver.ts';
import { sqliteStoreDialect } from './store-dialect.ts';

export interface SqliteStateStoreOptions {
  /** The database file, created (with its directory) if missing. `:memory:` gives a throwaway database. */
  path: string;
  /** Apply pending migrations before resolving (rejects with SchemaTooNewError for a newer database). @default true */
  migrate?: boolean;
  /** The most job submissions one group-commit transaction takes. @default 1000 */
  maxCreateBatch?: number;
  /** Told when writes are refused for lack of space (DiskFullError) and when they succeed again. */
  diskFull?: DiskFullListener;
  /**
   * The most pages (of 4 KiB) the database may grow to (`PRAGMA max_page_count`): past it every write is refused
   * with DiskFullError, exactly as on a full disk, until pages are freed. Caps the database's size; tests use it to
   * run out of space without a small filesystem. @default SQLite's (about 4 billion)
   */
  maxPageCount?: number;
}

/** The default StateStore: one SQLite file, one connection, every commit fsynced. */
export class SqliteStateStore extends KyselyStateStore {
  constructor(
    readonly path: string,
    db: Kysely<StoreDatabase>,
    maxCreateBatch?: number,
  ) {
    super({ db, dialect: sqliteStoreDialect, where: path, ...(maxCreateBatch !== undefined ? { maxCreateBatch } : {}) });
  }
}

/**
 * Opens (creating if needed) and, by default, migrates a SQLite state store.
 *
 * Connection settings, the SQLite-specific part of the store:
 * - `journal_mode=WAL`: readers never block the writer, and a commit appends to one file;
 * - `synchronous=FULL`: each commit fsyncs the WAL, so a change is on disk before its promise resolves
 *   (NORMAL could lose the last commits on power loss, which an API that acknowledged them must not);
 * - `foreign_keys=ON`: tasks, allocations and events must name a job that exists;
 * - `busy_timeout=5000`: wait rather than fail if another connection (a backup, the sqlite3 shell) holds a lock.
 */
export async function createSqliteStateStore(options: SqliteStateStoreOptions): Promise<SqliteStateStore> {
  try {
    return await openSqliteStateStore(options);
  } catch (error) {
    // A read-only, unwritable, damaged or full file: one line naming it and what to do, instead of SQLite's words.
    throw explainDataDirFailure(error, options.path) ?? error;
  }
}

async function openSqliteStateStore(options: SqliteStateStoreOptions): Promise<SqliteStateStore> {
  const inMemory = options.path === ':memory:' || options.path === '';
  if (!inMemory) {
    mkdirSync(dirname(options.path), { recursive: true, mode: PRIVATE_DIR_MODE });
    makeDatabaseFilesPrivate(options.path);
  }
  const database = new Database(options.path);
  try {
    const mode = database.pragma('journal_mode = WAL', { simple: true });
    if (!inMemory && String(mode).toLowerCase() !== 'wal') {
      throw new Error(`could not put ${options.path} in WAL mode (journal_mode is ${String(mode)})`);
    }
    database.pragma('synchronous = FULL');
    database.pragma('foreign_keys = ON');
    database.pragma('busy_timeout = 5000');
    if (options.maxPageCount !== undefined) database.pragma(`max_page_count = ${Math.max(1, Math.floor(options.maxPageCount))}`);
  } catch (error) {
    database.close();
    throw error;
  }
  const dialect = new DiskFullSafeSqliteDialect({ database: withStatementCache(database) }, database, options.path, options.diskFull);
  const db = new Kysely<StoreDatabase>({ dialect });
  const store = new SqliteStateStore(options.path, db, options.maxCreateBatch);
  if (options.migrate ?? true) {
    try {
      await store.migrate();
    } catch (error) {
      await store.close();
      throw error;
    }
  }
  return store;
}

/**
 * The database holds every job's spec, `env` values included: it is created 0600, and SQLite gives its -wal and -shm
 * files the database file's mode. Files of an older tutti (0644) are tightened.
 */
function makeDatabaseFilesPrivate(path: string): void {
  createPrivateFile(path);
  for (const file of [path, `${path}-wal`, `${path}-shm`]) makePrivate(file, PRIVATE_FILE_MODE);
}

/**
 * Kysely's SQLite driver prepares every query afresh; reusing prepared statements saves about a third of the CPU
 * of a small transaction. Bounded (oldest evicted) because multi-row inserts make one SQL text per row count.
 * Safe because the store never streams (a statement mid-iteration could not be reused), and SQLite re-prepares
 * a cached statement by itself when a migration changes the schema.
 */
function withStatementCache(database: Database.Database, maxStatements = 256): SqliteDatabase {
  const cache = new Map<string, SqliteStatement>();
  return {
    close: () => database.close(),
    prepare(sql: string): SqliteStatement {
      let stmt = cache.get(sql);
      if (!stmt) {
        stmt = database.prepare(sql) as unknown as SqliteStatement;
        if (cache.size >= maxStatements) cache.delete(cache.keys().next().value as string);
        cache.set(sql, stmt);
      }
      return stmt;
    },
  };
}
