/**
 * Kysely's SQLite driver, made safe for a full disk.
 *
 * On SQLITE_FULL (and a few I/O errors) SQLite may roll the transaction back by itself. Kysely's transaction then
 * issues ROLLBACK anyway, which fails with "cannot rollback - no transaction is active" and *replaces* the real
 * error: the caller saw a misleading message and a 500. This driver skips a ROLLBACK when SQLite has already left
 * the transaction, and turns SQLITE_FULL into a DiskFullError naming the database file, so callers and the API can
 * say what happened ("disk full at …/tutti.db: free space and retry").
 */
import type Database from 'better-sqlite3';
import type { CompiledQuery, DatabaseConnection, Driver, QueryResult, SqliteDialectConfig, TransactionSettings } from 'kysely';
import { SqliteDialect } from 'kysely';
import { DiskFullError } from './errors.ts';

/** Told when writes start failing for lack of space, and when they succeed again. */
export interface DiskFullListener {
  /** Every write refused for lack of space (a listener that logs should log once per episode). */
  full(error: DiskFullError): void;
  /** The first commit that succeeds after a refused one: space is back. */
  recovered(path: string): void;
}

/** SQLite's result codes for "no space": the database or its journal could not grow. */
const SQLITE_NO_SPACE_CODES: ReadonlySet<unknown> = new Set(['SQLITE_FULL']);
/** Kysely's kinds of statements that change rows. */
const WRITE_KINDS: ReadonlySet<string> = new Set(['InsertQueryNode', 'UpdateQueryNode', 'DeleteQueryNode', 'MergeQueryNode']);

export class DiskFullSafeSqliteDialect extends SqliteDialect {
  readonly #database: Database.Database;
  readonly #path: string;
  readonly #listener: DiskFullListener | undefined;

  /** `database` is the better-sqlite3 handle behind `config.database` (asked whether a transaction is open). */
  constructor(config: SqliteDialectConfig, database: Database.Database, path: string, listener?: DiskFullListener) {
    super(config);
    this.#database = database;
    this.#path = path;
    this.#listener = listener;
  }

  override createDriver(): Driver {
    return new DiskFullSafeDriver(super.createDriver(), this.#database, this.#path, this.#listener);
  }
}

class DiskFullSafeDriver implements Driver {
  readonly #inner: Driver;
  readonly #database: Database.Database;
  readonly #path: string;
  readonly #listener: DiskFullListener | undefined;
  /** SQLite has a single connection: its wrapper is made once. */
  #connection: { inner: DatabaseConnection; wrapped: DatabaseConnection } | undefined;
  /** Whether the last write was refused for lack of space (so the next successful commit reports recovery). */
  #full = false;
  /** Whether the open transaction changed something: only a commit that wrote shows that space is back. */
  #wrote = false;

  constructor(inner: Driver, database: Database.Database, path: string, listener: DiskFullListener | undefined) {
    this.#inner = inner;
    this.#database = database;
    this.#path = path;
    this.#listener = listener;
  }

  init(): Promise<void> {
    return this.#inner.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const inner = await this.#inner.acquireConnection();
    if (this.#connection?.inner !== inner) this.#connection = { inner, wrapped: this.#wrap(inner) };
    return this.#connection.wrapped;
  }

  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    this.#wrote = false;
    return this.#inner.beginTransaction(connection, settings);
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await this.#inner.commitTransaction(connection);
    if (this.#full && this.#wrote) {
      this.#full = false;
      this.#listener?.recovered(this.#path);
    }
  }

  /** Only when a transaction is still open: after SQLITE_FULL SQLite may already have rolled it back. */
  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    if (!this.#database.inTransaction) return;
    await this.#inner.rollbackTransaction(connection);
  }

  releaseConnection(connection: DatabaseConnection): Promise<void> {
    return this.#inner.releaseConnection(connection);
  }

  destroy(): Promise<void> {
    return this.#inner.destroy();
  }

  #wrap(inner: DatabaseConnection): DatabaseConnection {
    return {
      executeQuery: async <R>(query: CompiledQuery): Promise<QueryResult<R>> => {
        if (WRITE_KINDS.has(query.query.kind)) this.#wrote = true;
        try {
          return await inner.executeQuery<R>(query);
        } catch (error) {
          throw this.#translate(error);
        }
      },
      streamQuery: (query, chunkSize) => inner.streamQuery(query, chunkSize),
    };
  }

  #translate(error: unknown): unknown {
    if (!SQLITE_NO_SPACE_CODES.has((error as { code?: unknown } | null)?.code)) return error;
    const full = new DiskFullError(this.#path, { cause: error });
    this.#full = true;
    this.#listener?.full(full);
    return full;
  }
}
