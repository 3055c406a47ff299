import { Kysely, PostgresDialect } from 'kysely';
import type { CustomTypesConfig, types as PgTypes } from 'pg';
import { KyselyStateStore } from './kysely-state-store.ts';
import type { KyselyStateStoreOptions } from './kysely-state-store.ts';
import { PostgresChangeWatch } from './postgres-change-watch.ts';
import type { StoreDatabase } from './schema.ts';
import { postgresStoreDialect } from './store-dialect.ts';
import { PostgresConnectionError } from './errors.ts';

export interface PostgresStateStoreOptions {
  /**
   * The database, as `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (or `postgresql://`; libpq's query
   * parameters such as `?sslmode=require` or `?host=/socket/dir` are understood). The database must exist; its
   * tables are created by the migrations.
   */
  url: string;
  /** Apply pending migrations before resolving (rejects with SchemaTooNewError for a newer database). @default true */
  migrate?: boolean;
  /**
   * Refuse pending migrations (MigrationWhileLeadError) while this lease is held: replicas pass the lease whose
   * holder leads, so that an upgrade never changes the schema under a leader of the older version.
   */
  refuseMigrationWhileLeased?: string;
  /** The most job submissions one group-commit transaction takes. @default 1000 */
  maxCreateBatch?: number;
  /** The most connections the store opens to the server at once. @default 10 */
  maxConnections?: number;
  /** How long to wait for a connection to open before failing. @default 10000 */
  connectTimeoutMs?: number;
}

/** The StateStore on a PostgreSQL database: a pool of connections, every commit durable (synchronous_commit). */
export class PostgresStateStore extends KyselyStateStore {
  constructor(
    /** The database URL, password hidden: safe to log. */
    readonly url: string,
    db: Kysely<StoreDatabase>,
    options: Pick<KyselyStateStoreOptions, 'maxCreateBatch' | 'openChangeWatch' | 'refuseMigrationWhileLeased'> = {},
  ) {
    super({ db, dialect: postgresStoreDialect, where: url, otherwise: 'point it at another database', ...options });
  }
}

/**
 * Opens and, by default, migrates a PostgreSQL state store. Migrations run in transactions under an advisory lock,
 * so servers opening one database at once migrate it once. What is PostgreSQL's own lives here (the pool, how
 * `bigint` values are read) and in `postgresStoreDialect`; every query is the one the SQLite store runs.
 */
export async function createPostgresStateStore(options: PostgresStateStoreOptions): Promise<PostgresStateStore> {
  const url = checkedPostgresUrl(options.url);
  // Loaded here, not at the top: node-postgres takes ~45 ms to load, which a server on SQLite (the default) would pay
  // at every start for nothing.
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    // A transaction of a process that stopped mid-way (SIGSTOP, a VM paused) would hold its locks until it resumes:
    // a fenced write's hold on the lease would then keep another replica from taking the lease over. The server ends
    // such a session instead; the store's own transactions never sit idle between statements for anywhere near this.
    idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_TIMEOUT_MS,
    types: storeTypeParsers(pg.types),
  });
  // An idle connection the server closes (a restart, an administrator's pg_terminate_backend) is reported as an
  // 'error' event on the pool, which would end the process if nobody listened. The pool has already dropped that
  // connection and opens a new one for the next query; a query that was running gets its own error.
  pool.on('error', () => {});
  // A connection in use but between queries (held by a transaction, or just checked out) has no pool listener: the
  // server ending it (a restart: FATAL 57P01) would be an unhandled 'error' that kills the process. Its next query
  // fails instead, and the pool discards a connection that is no longer queryable when it comes back.
  pool.on('connect', (client) => client.on('error', () => {}));
  const connectionTimeoutMillis = options.connectTimeoutMs ?? 10_000;
  const store = new PostgresStateStore(url, new Kysely<StoreDatabase>({ dialect: new PostgresDialect({ pool }) }), {
    ...(options.maxCreateBatch !== undefined ? { maxCreateBatch: options.maxCreateBatch } : {}),
    ...(options.refuseMigrationWhileLeased !== undefined ? { refuseMigrationWhileLeased: options.refuseMigrationWhileLeased } : {}),
    // keepAlive: a listening connection is idle for long; TCP keepalive notices a peer that vanished without a word.
    openChangeWatch: (onChange) => PostgresChangeWatch.open(() => new pg.Client({ connectionString: options.url, connectionTimeoutMillis, keepAlive: true }), onChange),
  });
  try {
    if (options.migrate ?? true) await store.migrate();
    else await store.schemaVersion().catch(async (error: unknown) => {
      // Not migrating: still prove the server is there, but a database without tables yet is not an error.
      if ((error as { code?: unknown }).code !== UNDEFINED_TABLE) throw error;
    });
  } catch (error) {
    await store.close();
    throw explainPostgresFailure(error, url, options.connectTimeoutMs ?? 10_000) ?? error;
  }
  return store;
}

/** How long PostgreSQL lets a session of the store sit idle inside a transaction before ending it (see the pool). */
export const IDLE_IN_TRANSACTION_TIMEOUT_MS = 5000;

/** SQLSTATE 42P01: the relation does not exist. */
const UNDEFINED_TABLE = '42P01';

/**
 * Every id, timestamp and counter is a `bigint` column, which node-postgres reads as a string (a bigint may exceed
 * 2^53). The store's values stay far below 2^53 (epoch milliseconds, row counts), so they are read as numbers,
 * as SQLite gives them. Set on this pool only: node-postgres' global parsers, which other code in the process may
 * rely on, are left alone.
 */
function storeTypeParsers(types: typeof PgTypes): CustomTypesConfig {
  return {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
      oid === types.builtins.INT8 && format !== 'binary' ? Number : types.getTypeParser(oid, format)) as CustomTypesConfig['getTypeParser'],
  };
}

/** The URL with its password hidden, after checking it is a PostgreSQL URL at all. */
function checkedPostgresUrl(raw: string): string {
  const expected = 'write it as postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE';
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new PostgresConnectionError('(unparsable)', `the PostgreSQL database URL is not a URL; ${expected}`);
  }
  if (parsed.password !== '') parsed.password = '***';
  const shown = parsed.toString();
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new PostgresConnectionError(shown, `the PostgreSQL database URL ${shown} starts with ${parsed.protocol}//, not postgres://; ${expected}`);
  }
  if (parsed.hostname === '' && !parsed.searchParams.has('host')) {
    throw new PostgresConnectionError(shown, `the PostgreSQL database URL ${shown} names no host; ${expected}`);
  }
  return shown;
}

/**
 * Why the server at `url` could not be used, in one line that says what to do; undefined for any other error
 * (a bug, SchemaTooNewError), which the caller rethrows as it is.
 */
export function explainPostgresFailure(error: unknown, url: string, connectTimeoutMs: number): PostgresConnectionError | undefined {
  if (error instanceof PostgresConnectionError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const reason = error instanceof Error ? error.message : String(error);
  const explain = (message: string) => new PostgresConnectionError(url, message, { cause: error });
  const server = `the PostgreSQL server of ${url}`;
  if (code === 'ECONNREFUSED') return explain(`cannot reach ${server}: connection refused; start the server, or fix the host and port in the database URL`);
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return explain(`cannot reach ${server}: its host name does not resolve; fix the host in the database URL`);
  if (code === 'ENOENT') return explain(`cannot reach ${server}: no socket at the host directory it names; start the server, or fix the host in the database URL`);
  if (code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || /timeout/i.test(reason)) {
    return explain(`cannot reach ${server}: no answer within ${connectTimeoutMs} ms (${reason}); check the host, the port and the network`);
  }
  if (/does not support SSL/i.test(reason)) return explain(`${server} does not accept SSL, which the URL asks for; drop sslmode from the database URL or enable SSL on the server`);
  if (code === '28P01' || code === '28000') return explain(`${server} refused the login (${reason}); fix the user and password in the database URL`);
  if (code === '3D000') return explain(`${server} has no such database (${reason}); create it (createdb NAME) or name another in the database URL`);
  if (code === '42501') return explain(`the user of ${url} may not create tutti's tables (${reason}); grant it CREATE on the database, or use the database's owner`);
  if (code === '53300') return explain(`${server} accepts no more connections (${reason}); raise its max_connections or lower the store's maxConnections`);
  return undefined;
}
