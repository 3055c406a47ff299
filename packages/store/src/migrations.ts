import { sql } from 'kysely';
import type { ColumnDefinitionBuilder, Kysely } from 'kysely';
import { MigrationWhileLeadError, SchemaTooNewError } from './errors.ts';
import type { StoreDialect } from './store-dialect.ts';
import { SNAPSHOT_VERSION_KEY } from './schema.ts';

/**
 * One step of the schema. Rules:
 * - append only: never edit or reorder a migration that has shipped; fix forward with a new one;
 * - `version` is the previous version + 1;
 * - `up` runs inside a transaction together with its `schema_migrations` row, so it applies entirely or not at all
 *   (both SQLite and PostgreSQL have transactional DDL);
 * - write it with the Kysely schema builder so SQLite and PostgreSQL share it; branch on `dialect.name` only for
 *   what really differs (see `addAutoIncrementId`).
 */
export interface Migration {
  version: number;
  name: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration sees the schema of its own time
  up(db: Kysely<any>, dialect: StoreDialect): Promise<void>;
}

/** An autoincrement integer primary key whose values are never reused. */
function autoIncrementId(dialect: StoreDialect): [dataType: 'integer' | 'bigint', build: (c: ColumnDefinitionBuilder) => ColumnDefinitionBuilder] {
  return dialect.name === 'sqlite'
    ? // Exactly `integer primary key autoincrement`: the rowid alias, and AUTOINCREMENT forbids reusing the id of a
      // deleted newest row.
      ['integer', (c) => c.primaryKey().autoIncrement()]
    : ['bigint', (c) => c.primaryKey().generatedByDefaultAsIdentity()];
}

const JOB_STATUS_CHECK = sql`status in ('pending', 'running', 'succeeded', 'failed', 'cancelled')`;
const TASK_STATUS_CHECK = sql`status in ('starting', 'running', 'exited', 'lost')`;

/** Every migration, in order. Add new ones at the end (see README.md, "Adding a migration"). */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    async up(db, dialect) {
      const [idType, idColumn] = autoIncrementId(dialect);
      await db.schema
        .createTable('jobs')
        .addColumn('id', idType, idColumn)
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('team', 'text', (c) => c.notNull())
        .addColumn('priority', 'integer', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('spec_json', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('started_at', 'bigint')
        .addColumn('finished_at', 'bigint')
        .addColumn('exit_code', 'integer')
        .addColumn('end_reason', 'text')
        .addColumn('pending_reason_json', 'text')
        .addColumn('cancel_requested_at', 'bigint')
        .addCheckConstraint('jobs_status_check', JOB_STATUS_CHECK)
        .execute();
      // listJobs pages newest first by id, optionally filtered by status and/or team: each filter combination has
      // an index ending in id, so a page is an index range scan however many jobs there are.
      await db.schema.createIndex('jobs_status_id').on('jobs').columns(['status', 'id']).execute();
      await db.schema.createIndex('jobs_team_id').on('jobs').columns(['team', 'id']).execute();
      await db.schema.createIndex('jobs_team_status_id').on('jobs').columns(['team', 'status', 'id']).execute();

      await db.schema
        .createTable('tasks')
        .addColumn('job_id', 'bigint', (c) => c.notNull().references('jobs.id'))
        .addColumn('rank', 'integer', (c) => c.notNull())
        .addColumn('local_rank', 'integer', (c) => c.notNull())
        .addColumn('node_rank', 'integer', (c) => c.notNull())
        .addColumn('node', 'text', (c) => c.notNull())
        .addColumn('gpus_json', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('pid', 'integer')
        .addColumn('pid_start_time', 'bigint')
        .addColumn('log_path', 'text')
        .addColumn('exit_code', 'integer')
        .addColumn('started_at', 'bigint')
        .addColumn('finished_at', 'bigint')
        .addPrimaryKeyConstraint('tasks_pk', ['job_id', 'rank'])
        .addCheckConstraint('tasks_status_check', TASK_STATUS_CHECK)
        .execute();

      // No foreign key to nodes: an allocation outlives its node leaving the inventory, until its job ends.
      await db.schema
        .createTable('gpu_allocations')
        .addColumn('node', 'text', (c) => c.notNull())
        .addColumn('gpu_index', 'integer', (c) => c.notNull())
        .addColumn('job_id', 'bigint', (c) => c.notNull().references('jobs.id'))
        .addPrimaryKeyConstraint('gpu_allocations_pk', ['node', 'gpu_index'])
        .execute();
      await db.schema.createIndex('gpu_allocations_job').on('gpu_allocations').column('job_id').execute();

      await db.schema
        .createTable('nodes')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('info_json', 'text', (c) => c.notNull())
        .execute();

      const [seqType, seqColumn] = autoIncrementId(dialect);
      await db.schema
        .createTable('events')
        .addColumn('seq', seqType, seqColumn)
        .addColumn('job_id', 'bigint', (c) => c.notNull().references('jobs.id'))
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('message', 'text', (c) => c.notNull())
        .addColumn('data_json', 'text')
        .execute();
      await db.schema.createIndex('events_job_seq').on('events').columns(['job_id', 'seq']).execute();

      await db.schema
        .createTable('meta')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('value', 'bigint', (c) => c.notNull())
        .execute();
      await db.insertInto('meta').values({ key: SNAPSHOT_VERSION_KEY, value: 0 }).execute();
    },
  },
  {
    version: 2,
    name: 'attempts, restarts, checkpoints and progress records',
    async up(db, dialect) {
      // `tasks` keeps the ranks of the latest attempt; an attempt that ends is copied into `job_attempts`.
      await db.schema.alterTable('jobs').addColumn('attempt', 'integer', (c) => c.notNull().defaultTo(0)).execute();
      await db.schema.alterTable('jobs').addColumn('restarts', 'integer', (c) => c.notNull().defaultTo(0)).execute();
      await db.schema.alterTable('jobs').addColumn('not_before', 'bigint').execute();
      await db.schema.alterTable('jobs').addColumn('last_checkpoint', 'text').execute();
      await db.schema
        .createTable('job_attempts')
        .addColumn('job_id', 'bigint', (c) => c.notNull().references('jobs.id'))
        .addColumn('attempt', 'integer', (c) => c.notNull())
        .addColumn('started_at', 'bigint')
        .addColumn('finished_at', 'bigint', (c) => c.notNull())
        .addColumn('exit_code', 'integer')
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('tasks_json', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('job_attempts_pk', ['job_id', 'attempt'])
        .execute();
      const [seqType, seqColumn] = autoIncrementId(dialect);
      await db.schema
        .createTable('progress')
        .addColumn('seq', seqType, seqColumn)
        .addColumn('job_id', 'bigint', (c) => c.notNull().references('jobs.id'))
        .addColumn('attempt', 'integer', (c) => c.notNull())
        .addColumn('rank', 'integer', (c) => c.notNull())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('step', 'bigint')
        .addColumn('values_json', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('progress_job_seq').on('progress').columns(['job_id', 'seq']).execute();
    },
  },
  {
    version: 3,
    name: 'GPU samples (utilization, memory, power, temperature) per GPU, attributed to jobs',
    async up(db, dialect) {
      // `real` on SQLite, as this migration shipped; PostgreSQL's `real` would be 4 bytes (see StoreDialect).
      const double = dialect.doubleType;
      // job_id is null for a sample of a free GPU; samples outlive nothing else (pruned by age).
      await db.schema
        .createTable('gpu_samples')
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('node', 'text', (c) => c.notNull())
        .addColumn('gpu_index', 'integer', (c) => c.notNull())
        .addColumn('job_id', 'bigint')
        .addColumn('interval_ms', 'bigint', (c) => c.notNull())
        .addColumn('utilization_pct', double)
        .addColumn('memory_used_mib', double)
        .addColumn('memory_total_mib', double)
        .addColumn('power_w', double)
        .addColumn('temperature_c', double)
        .execute();
      await db.schema.createIndex('gpu_samples_job_at').on('gpu_samples').columns(['job_id', 'at']).execute();
      await db.schema.createIndex('gpu_samples_at').on('gpu_samples').columns(['at']).execute();
    },
  },
  {
    version: 4,
    name: 'shared GPUs: fractional allocations, several jobs per GPU',
    async up(db, dialect) {
      // The key becomes (node, gpu_index, job_id): a GPU may hold several shares. The applier keeps a whole GPU
      // exclusive and the shares of one GPU within 1 and within its memory, inside the placing transaction.
      await db.schema
        .createTable('gpu_allocations_v4')
        .addColumn('node', 'text', (c) => c.notNull())
        .addColumn('gpu_index', 'integer', (c) => c.notNull())
        .addColumn('job_id', 'bigint', (c) => c.notNull().references('jobs.id'))
        .addColumn('fraction', dialect.doubleType)
        .addColumn('memory_mib', dialect.doubleType)
        .addPrimaryKeyConstraint('gpu_allocations_v4_pk', ['node', 'gpu_index', 'job_id'])
        .execute();
      await db.insertInto('gpu_allocations_v4').columns(['node', 'gpu_index', 'job_id']).expression(db.selectFrom('gpu_allocations').select(['node', 'gpu_index', 'job_id'])).execute();
      await db.schema.dropTable('gpu_allocations').execute();
      await db.schema.alterTable('gpu_allocations_v4').renameTo('gpu_allocations').execute();
      await db.schema.createIndex('gpu_allocations_by_job').on('gpu_allocations').column('job_id').execute();
      // The database's own last word against double-booking a whole GPU (SQLite and PostgreSQL both have partial indexes).
      await sql`create unique index gpu_allocations_whole_gpu on gpu_allocations (node, gpu_index) where fraction is null`.execute(db);
    },
  },
  {
    version: 5,
    name: 'who submitted each job; indexes for listing by user, name and priority',
    async up(db) {
      await db.schema.alterTable('jobs').addColumn('submitted_by', 'text').execute();
      await db.schema.createIndex('jobs_submitted_by_id').on('jobs').columns(['submitted_by', 'id']).execute();
      await db.schema.createIndex('jobs_name_id').on('jobs').columns(['name', 'id']).execute();
      await db.schema.createIndex('jobs_priority_id').on('jobs').columns(['priority', 'id']).execute();
    },
  },
  {
    version: 6,
    name: "a job's resources, node count and restart limit as columns, so that lists read no spec; history export in submission order",
    async up(db) {
      await db.schema.alterTable('jobs').addColumn('resources_json', 'text', (c) => c.notNull().defaultTo('{"gpus":{"count":0,"types":[]}}')).execute();
      await db.schema.alterTable('jobs').addColumn('num_nodes', 'integer', (c) => c.notNull().defaultTo(1)).execute();
      await db.schema.alterTable('jobs').addColumn('max_restarts', 'integer').execute();
      // Filled from each stored spec, a batch at a time (the spec's shape as of this migration, written out here).
      for (let after = 0; ; ) {
        const rows: Array<{ id: number; spec_json: string }> = await db.selectFrom('jobs').select(['id', 'spec_json']).where('id', '>', after).orderBy('id').limit(500).execute();
        for (const row of rows) {
          const spec = JSON.parse(row.spec_json) as { resources: unknown; numNodes: number; maxRestarts?: number };
          await db
            .updateTable('jobs')
            .set({ resources_json: JSON.stringify(spec.resources), num_nodes: spec.numNodes, max_restarts: spec.maxRestarts ?? null })
            .where('id', '=', row.id)
            .execute();
        }
        const last = rows.at(-1);
        if (!last) break;
        after = Number(last.id);
      }
      // listRunHistory pages by (created_at, id): an index range however long the history.
      await db.schema.createIndex('jobs_created_at_id').on('jobs').columns(['created_at', 'id']).execute();
    },
  },
  {
    version: 7,
    name: "a rank's handle as its backend recorded it (backend + ref JSON) instead of a local process's pid, start time and log path",
    async up(db, dialect) {
      // Every rank recorded so far was launched by the local backend: its pid, start time and log path become that
      // backend's ref ({pid, pidStartTime, logPath}), so ranks still running are adopted after the upgrade.
      await db.schema.alterTable('tasks').addColumn('backend', 'text').execute();
      await db.schema.alterTable('tasks').addColumn('backend_ref_json', 'text').execute();
      // One statement, not a row at a time: `tasks` holds a row per rank of every job ever run. The ref's fields that
      // were null are left out (SQLite's json_patch drops null members, PostgreSQL's json_strip_nulls likewise).
      const fields = sql`'pid', pid, 'pidStartTime', pid_start_time, 'logPath', log_path`;
      const ref = dialect.name === 'sqlite' ? sql`json_patch('{}', json_object(${fields}))` : sql`json_strip_nulls(json_build_object(${fields}))::text`;
      await db.updateTable('tasks').set({ backend: 'local', backend_ref_json: ref }).where('pid', 'is not', null).execute();
      for (const column of ['pid', 'pid_start_time', 'log_path']) await db.schema.alterTable('tasks').dropColumn(column).execute();
      // The ranks of ended attempts (Task JSON) the same way.
      type OldAttempt = { job_id: number; attempt: number; tasks_json: string };
      await forEachRowInJobKeyOrder<OldAttempt>(db, 'job_attempts', 'attempt', ['tasks_json'], async (row) => {
        const tasks = JSON.parse(row.tasks_json) as Array<Record<string, unknown>>;
        if (!tasks.some((t) => 'pid' in t || 'pidStartTime' in t || 'logPath' in t)) return;
        const converted = tasks.map(({ pid, pidStartTime, logPath, ...task }) =>
          typeof pid === 'number' ? { ...task, backend: { kind: 'local', ref: localRefOfV6Task({ pid, pidStartTime, logPath }) } } : task,
        );
        await db.updateTable('job_attempts').set({ tasks_json: JSON.stringify(converted) }).where('job_id', '=', row.job_id).where('attempt', '=', row.attempt).execute();
      });
    },
  },
  {
    version: 8,
    name: 'leases: which replica leads (the control core and the backends), with a fencing epoch',
    async up(db) {
      await db.schema
        .createTable('leases')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('holder', 'text', (c) => c.notNull())
        .addColumn('epoch', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
];

/**
 * Visits every row of a table keyed by (`job_id`, `second`), 500 at a time in key order, each page read after the last
 * key of the one before: a table of any size is read in bounded memory, and a row the visit rewrites is not read again.
 */
async function forEachRowInJobKeyOrder<Row extends { job_id: number }>(
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- see Migration.up
  db: Kysely<any>,
  table: string,
  second: string,
  columns: readonly string[],
  visit: (row: Row) => Promise<void>,
): Promise<void> {
  for (let after = { jobId: 0, second: -1 }; ; ) {
    const { jobId, second: afterSecond } = after;
    const rows = (await db
      .selectFrom(table)
      .select(['job_id', second, ...columns])
      .where((eb) => eb.or([eb('job_id', '>', jobId), eb.and([eb('job_id', '=', jobId), eb(second, '>', afterSecond)])]))
      .orderBy('job_id')
      .orderBy(second)
      .limit(500)
      .execute()) as Row[];
    for (const row of rows) await visit(row);
    const last = rows.at(-1);
    if (!last) return;
    after = { jobId: Number(last.job_id), second: Number((last as Record<string, unknown>)[second]) };
  }
}

/** The local backend's ref of a rank recorded before version 7 (the shape of @tutti/backends' LocalRankRef then). */
function localRefOfV6Task(old: { pid: number; pidStartTime: unknown; logPath: unknown }): Record<string, number | string> {
  return {
    pid: old.pid,
    ...(old.pidStartTime !== null && old.pidStartTime !== undefined ? { pidStartTime: Number(old.pidStartTime) } : {}),
    ...(typeof old.logPath === 'string' ? { logPath: old.logPath } : {}),
  };
}

/** The schema version this build writes. */
export const LATEST_SCHEMA_VERSION = MIGRATIONS.reduce((max, m) => Math.max(max, m.version), 0);

export interface RunMigrationsOptions {
  /** @default MIGRATIONS */
  migrations?: readonly Migration[];
  /** Names the database in error messages (a file path). */
  where?: string;
  /** SchemaTooNewError's advice besides upgrading. @default 'use a different --data-dir' */
  otherwise?: string;
  /** @default Date.now */
  now?: () => number;
  /**
   * The lease whose holder leads among replicas (the server's `control`): while it is held by anyone (not run out),
   * pending migrations are refused with MigrationWhileLeadError, so that a schema never changes under a leader that
   * runs an older tutti. Checked in each migration's transaction, the lease's row locked until it commits.
   */
  refuseWhileLeased?: string;
}

/** The migration that creates `leases`: below it, no replica can lead. */
const LEASES_VERSION = 8;

/**
 * Brings the schema up to date: applies each migration above the recorded version, each in its own transaction
 * with its `schema_migrations` row. Idempotent; refuses (SchemaTooNewError) a database from a newer tutti.
 * Returns the schema version afterwards.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see Migration.up
export async function runMigrations(db: Kysely<any>, dialect: StoreDialect, options: RunMigrationsOptions = {}): Promise<number> {
  const migrations = options.migrations ?? MIGRATIONS;
  const now = options.now ?? Date.now;
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration "${m.name}" has version ${m.version}, expected ${i + 1}: versions must be 1, 2, 3, ...`);
  });
  const known = migrations.length;

  // Every step below holds the dialect's migration lock: two servers opening one PostgreSQL database at once would
  // otherwise both create the same tables (the loser failing on a duplicate), as "if not exists" is no lock either.
  await db.transaction().execute(async (trx) => {
    await dialect.lockForMigration(trx);
    await trx.schema
      .createTable('schema_migrations')
      .ifNotExists()
      .addColumn('version', 'integer', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('applied_at', 'bigint', (c) => c.notNull())
      .execute();
  });

  let current = await currentSchemaVersion(db);
  if (current > known) throw new SchemaTooNewError(current, known, options.where, options.otherwise);

  for (const migration of migrations) {
    if (migration.version <= current) continue;
    await db.transaction().execute(async (trx) => {
      await dialect.lockForMigration(trx);
      // Re-checked under the lock: another server may have applied it since `current` was read (PostgreSQL).
      const done = await trx.selectFrom('schema_migrations').select('version').where('version', '=', migration.version).executeTakeFirst();
      if (done) return;
      if (options.refuseWhileLeased !== undefined && current >= LEASES_VERSION) await refuseWhileLeased(trx, dialect, options.refuseWhileLeased, now(), current, known, options.where);
      await migration.up(trx, dialect);
      await trx.insertInto('schema_migrations').values({ version: migration.version, name: migration.name, applied_at: now() }).execute();
    });
    current = migration.version;
  }
  return current;
}

/** The highest applied migration, 0 for an empty database. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see Migration.up
export async function currentSchemaVersion(db: Kysely<any>): Promise<number> {
  const row = await db
    .selectFrom('schema_migrations')
    .select((eb) => eb.fn.max<number | null>('version').as('version'))
    .executeTakeFirst();
  return Number(row?.version ?? 0);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see Migration.up
async function refuseWhileLeased(trx: Kysely<any>, dialect: StoreDialect, lease: string, now: number, current: number, needed: number, where: string | undefined): Promise<void> {
  let query = trx.selectFrom('leases').select(['holder', 'expires_at']).where('name', '=', lease);
  if (dialect.rowLocks) query = query.forUpdate();
  const row = (await query.executeTakeFirst()) as { holder: string; expires_at: number | string } | undefined;
  if (row !== undefined && Number(row.expires_at) > now) throw new MigrationWhileLeadError(current, needed, { holder: row.holder, expiresAt: Number(row.expires_at) }, where);
}
