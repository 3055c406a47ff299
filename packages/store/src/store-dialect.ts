import { sql } from 'kysely';
import type { Transaction } from 'kysely';

/**
 * What differs between the SQL databases the store runs on, kept in one place so that the queries and migrations
 * stay shared. Connection setup (SQLite pragmas, a PostgreSQL pool) lives in each `create*StateStore` factory.
 */
export interface StoreDialect {
  readonly name: 'sqlite' | 'postgres';
  /** True when `error` is a primary-key or unique-constraint violation (an expected outcome, e.g. a GPU taken). */
  isUniqueViolation(error: unknown): boolean;
  /**
   * Whether `SELECT ... FOR UPDATE` exists. PostgreSQL needs it so that two transactions cannot both see a job
   * pending and both start it; SQLite has no such clause and needs none, as its writers are serialised.
   */
  readonly rowLocks: boolean;
  /**
   * The column type of an 8-byte float. SQLite's `real` is one; PostgreSQL's `real` is a 4-byte float (a GPU share of
   * 0.3 would read back as 0.30000001192...), so there it is `double precision`. The migrations that shipped with
   * `real` still write `real` on SQLite: only the PostgreSQL schema, new with this dialect, uses the other name.
   */
  readonly doubleType: 'real' | 'double precision';
  /**
   * The operator of a LIKE that ignores case (job names are searched so). SQLite's LIKE ignores ASCII case already;
   * PostgreSQL's does not, its ILIKE does. (`lower(name) LIKE lower(?)` on both would cost SQLite a third more on a
   * scan of 100,000 names.)
   */
  readonly likeIgnoringCase: 'like' | 'ilike';
  /**
   * Called first in each migration's transaction: holds off any other process migrating the same database until
   * this transaction ends. PostgreSQL takes a transaction-scoped advisory lock; SQLite needs none (one server per
   * data dir, and its writers are serialised anyway).
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations see the schema of their own time
  lockForMigration(trx: Transaction<any>): Promise<void>;
  /**
   * Called in a transaction right before it first appends to `log`, and nothing but the commit may follow it that
   * waits for another lock. A log's `seq` is taken from a sequence at insert time, so on PostgreSQL two
   * transactions could commit their rows out of seq order, and a reader tailing `seq > cursor` (an event stream that
   * resumes) would skip the row that committed late, for good. PostgreSQL therefore takes a transaction-scoped
   * advisory lock per log, held until commit: appends to one log commit in seq order. For `events` it also notifies
   * `CHANGES_CHANNEL`, delivered on commit to every `watchChanges`. SQLite's single writer does both already.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- only raw SQL, on any schema
  beforeAppend(trx: Transaction<any>, log: AppendLog): Promise<void>;
  /**
   * Holds lease `name` against a change of hands until the transaction ends: `shared` for a fenced write (which
   * then reads the lease and commits only while it stays as read), `exclusive` for `acquireLease`. So a takeover
   * commits either before a fenced write's check (which then refuses it) or after its commit. PostgreSQL takes a
   * transaction-scoped advisory lock: its lock manager queues requests fairly, so a takeover waits only for the
   * writes already under way, not for an endless stream of new ones (a row's `FOR SHARE` would let new sharers pass
   * a waiting `FOR UPDATE` for as long as they overlap). SQLite's single writer serializes transactions already.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- only raw SQL, on any schema
  lockLease(trx: Transaction<any>, name: string, mode: 'shared' | 'exclusive'): Promise<void>;
}

/** The append-only logs whose `seq` readers tail: see `StoreDialect.beforeAppend`. */
export type AppendLog = 'events' | 'progress';

/** The PostgreSQL NOTIFY channel of committed changes (each transaction that appends events notifies it). */
export const CHANGES_CHANNEL = 'tutti_changes';

export const sqliteStoreDialect: StoreDialect = {
  name: 'sqlite',
  rowLocks: false,
  doubleType: 'real',
  likeIgnoringCase: 'like',
  isUniqueViolation(error) {
    const code = (error as { code?: unknown } | null)?.code;
    return code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE';
  },
  async lockForMigration() {},
  async beforeAppend() {},
  async lockLease() {},
};

/**
 * The key of tutti's migration lock among the database's advisory locks (any 64-bit number other software on the
 * same database is unlikely to pick: "tutti" in ASCII).
 */
export const POSTGRES_MIGRATION_LOCK_KEY = 0x7475747469;

/** The advisory lock keys that order appends to each log (see `StoreDialect.beforeAppend`): "tutti" + 1, + 2. */
/** The first key of the leases' advisory locks (the second is the lease name's `hashtext`): "tutt". */
export const POSTGRES_LEASE_LOCK_SPACE = 0x74757474;

export const POSTGRES_APPEND_LOCK_KEYS: Readonly<Record<AppendLog, number>> = { events: POSTGRES_MIGRATION_LOCK_KEY + 1, progress: POSTGRES_MIGRATION_LOCK_KEY + 2 };

/** For the PostgreSQL store (SQLSTATE 23505 `unique_violation`). */
export const postgresStoreDialect: StoreDialect = {
  name: 'postgres',
  rowLocks: true,
  doubleType: 'double precision',
  likeIgnoringCase: 'ilike',
  isUniqueViolation(error) {
    return (error as { code?: unknown } | null)?.code === '23505';
  },
  async lockForMigration(trx) {
    // Released by the transaction's commit or rollback: a server that dies mid-migration holds nothing.
    await sql`select pg_advisory_xact_lock(${POSTGRES_MIGRATION_LOCK_KEY})`.execute(trx);
  },
  async beforeAppend(trx, log) {
    // Taking the lock again later in the same transaction (a second append) returns at once.
    if (log === 'events') await sql`select pg_advisory_xact_lock(${POSTGRES_APPEND_LOCK_KEYS.events}), pg_notify(${CHANGES_CHANNEL}, '')`.execute(trx);
    else await sql`select pg_advisory_xact_lock(${POSTGRES_APPEND_LOCK_KEYS[log]})`.execute(trx);
  },
  async lockLease(trx, name, mode) {
    if (mode === 'shared') await sql`select pg_advisory_xact_lock_shared(${POSTGRES_LEASE_LOCK_SPACE}, hashtext(${name}))`.execute(trx);
    else await sql`select pg_advisory_xact_lock(${POSTGRES_LEASE_LOCK_SPACE}, hashtext(${name}))`.execute(trx);
  },
};
