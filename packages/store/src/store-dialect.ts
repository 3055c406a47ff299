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
}

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
};

/**
 * The key of tutti's migration lock among the database's advisory locks (any 64-bit number other software on the
 * same database is unlikely to pick: "tutti" in ASCII).
 */
export const POSTGRES_MIGRATION_LOCK_KEY = 0x7475747469;

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
};
