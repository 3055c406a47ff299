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
}

export const sqliteStoreDialect: StoreDialect = {
  name: 'sqlite',
  rowLocks: false,
  isUniqueViolation(error) {
    const code = (error as { code?: unknown } | null)?.code;
    return code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE';
  },
};

/** For the PostgreSQL store (SQLSTATE 23505 `unique_violation`). */
export const postgresStoreDialect: StoreDialect = {
  name: 'postgres',
  rowLocks: true,
  isUniqueViolation(error) {
    return (error as { code?: unknown } | null)?.code === '23505';
  },
};
