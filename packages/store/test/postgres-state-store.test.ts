import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { createPostgresStateStore, LATEST_SCHEMA_VERSION, MigrationWhileLeadError, MIGRATIONS, PostgresConnectionError, postgresStoreDialect, runMigrations, SchemaTooNewError } from '../src/index.ts';
import type { PostgresStateStore } from '../src/index.ts';
import { makeBrokenMigration, makeJobSpec } from './builders.ts';
import { createTestDatabase } from './postgres-dev-server.ts';
import type { TestDatabase } from './postgres-dev-server.ts';
import { describeStateStoreContract } from './state-store-contract.ts';

const T0 = 1_700_000_000_000;

describeStateStoreContract('PostgreSQL', async () => {
  const database = await createTestDatabase();
  const store = await createPostgresStateStore({ url: database.url });
  return {
    store,
    async cleanup() {
      await store.close();
      await database.drop();
    },
  };
});

describe('PostgreSQL state store', () => {
  const open: PostgresStateStore[] = [];
  const databases: TestDatabase[] = [];

  async function freshDatabase(): Promise<TestDatabase> {
    const database = await createTestDatabase();
    databases.push(database);
    return database;
  }
  async function openStore(url: string, options: { maxCreateBatch?: number } = {}): Promise<PostgresStateStore> {
    const store = await createPostgresStateStore({ url, ...options });
    open.push(store);
    return store;
  }

  afterEach(async () => {
    for (const store of open.splice(0)) await store.close();
    for (const database of databases.splice(0)) await database.drop();
  });

  it('keeps committed jobs and events across a restart of the store', async () => {
    const { url } = await freshDatabase();
    const first = await createPostgresStateStore({ url });
    const jobs = await Promise.all(Array.from({ length: 20 }, (_, i) => first.createJob(makeJobSpec({ name: `job-${i}` }), T0 + i)));
    await first.close();
    const second = await openStore(url);
    expect((await second.listJobs({ sort: { by: 'id', direction: 'asc' } })).jobs).toEqual(jobs);
    expect((await second.listEvents({})).map((e) => e.type)).toEqual(jobs.map(() => 'submitted'));
  });

  it('migrates a database once when several servers open it at the same moment', async () => {
    const { url } = await freshDatabase();
    const stores = await Promise.all(Array.from({ length: 4 }, () => openStore(url)));
    for (const store of stores) expect(await store.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows } = await client.query<{ version: number }>('select version from schema_migrations order by version');
      expect(rows.map((r) => r.version)).toEqual(Array.from({ length: LATEST_SCHEMA_VERSION }, (_, i) => i + 1));
    } finally {
      await client.end();
    }
  });

  it('gives concurrent submissions consecutive ids in call order over several group commits, every row and event written', async () => {
    const store = await openStore((await freshDatabase()).url, { maxCreateBatch: 64 });
    const n = 500;
    const jobs = await Promise.all(Array.from({ length: n }, (_, i) => store.createJob(makeJobSpec({ name: `j${i}` }), T0 + i)));
    const ids = jobs.map((j) => Number(j.id));
    expect(ids).toEqual(Array.from({ length: n }, (_, i) => (ids[0] as number) + i));
    jobs.forEach((job, i) => expect(job).toMatchObject({ spec: { name: `j${i}` }, createdAt: T0 + i }));
    expect((await store.listJobs({ limit: 1000 })).jobs.map((j) => j.id).reverse()).toEqual(jobs.map((j) => j.id));
    expect((await store.listEvents({ limit: 10_000 })).filter((e) => e.type === 'submitted')).toHaveLength(n);
  });

  it('fails every caller of a batch whose transaction fails, and recovers for the next', async () => {
    const { url } = await freshDatabase();
    const store = await openStore(url);
    // A trigger refuses one job of the batch: the batch's one transaction fails as a whole.
    await withKysely(url, async (db) => {
      await sql`create function refuse_boom() returns trigger language plpgsql as $$ begin if new.name = 'boom' then raise exception 'boom refused'; end if; return new; end $$`.execute(db);
      await sql`create trigger fail_jobs before insert on jobs for each row execute function refuse_boom()`.execute(db);
    });
    const results = await Promise.allSettled([store.createJob(makeJobSpec({ name: 'ok' }), T0), store.createJob(makeJobSpec({ name: 'boom' }), T0)]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(/boom refused/);
    expect(await store.countJobsByStatus()).toMatchObject({ pending: 0 });
    const later = await store.createJob(makeJobSpec({ name: 'after' }), T0);
    expect(await store.getJob(later.id)).toEqual(later);
  });

  /** Runs `use` with a bare Kysely on the database (no store: the schema a test sets up may be an old one). */
  async function withKysely<T>(url: string, use: (db: Kysely<unknown>) => Promise<T>): Promise<T> {
    const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 1 }) }) });
    try {
      return await use(db);
    } finally {
      await db.destroy();
    }
  }

  it("upgrades a database whose ranks were recorded by local pid: each becomes the local backend's handle (PostgreSQL's JSON functions)", async () => {
    // Schema 6 with job 7 running: rank 0 launched (all three old columns), rank 1 launched without a known start
    // time (a null the handle must leave out), rank 2 not launched.
    const { url } = await freshDatabase();
    await withKysely(url, async (db) => {
      await runMigrations(db, postgresStoreDialect, { migrations: MIGRATIONS.slice(0, 6) });
      await sql`insert into jobs (id, name, team, priority, status, spec_json, created_at, started_at, attempt) values (7, 'old', 'default', 0, 'running', ${JSON.stringify(makeJobSpec())}, ${T0}, ${T0 + 1}, 1)`.execute(db);
      const task = (rank: number, pid: number | null, start: number | null, log: string | null) =>
        sql`insert into tasks (job_id, rank, local_rank, node_rank, node, gpus_json, status, pid, pid_start_time, log_path) values (7, ${rank}, ${rank}, 0, 'n1', '[0]', 'running', ${pid}, ${start}, ${log})`.execute(db);
      await task(0, 4242, 987654, '/data/jobs/7/attempt-1/rank-0.log');
      await task(1, 4243, null, '/data/jobs/7/attempt-1/rank-1.log');
      await task(2, null, null, null);
    });
    const upgraded = await openStore(url);
    expect((await upgraded.getTasks('7')).map((t) => t.backend)).toEqual([
      { kind: 'local', ref: { pid: 4242, pidStartTime: 987654, logPath: '/data/jobs/7/attempt-1/rank-0.log' } },
      { kind: 'local', ref: { pid: 4243, logPath: '/data/jobs/7/attempt-1/rank-1.log' } },
      undefined,
    ]);
  });

  it('rolls back a failing migration entirely, its tables included', async () => {
    const { url } = await freshDatabase();
    const broken = makeBrokenMigration();
    await withKysely(url, async (db) => {
      await expect(runMigrations(db, postgresStoreDialect, { migrations: [...MIGRATIONS, broken] })).rejects.toThrow(/syntax error/);
      expect((await sql<{ t: string | null }>`select to_regclass('half_done')::text as t`.execute(db)).rows).toEqual([{ t: null }]);
      expect((await sql<{ v: number }>`select max(version) as v from schema_migrations`.execute(db)).rows).toEqual([{ v: LATEST_SCHEMA_VERSION }]);
    });
  });

  it('refuses to migrate while a replica of the older tutti leads, and migrates once that replica gave its lease up', async () => {
    const { url } = await freshDatabase();
    const older = await openStore(url);
    const lease = await older.acquireLease('control', 'old-replica:7070#12', Date.now(), 60_000);
    const newer = { version: LATEST_SCHEMA_VERSION + 1, name: 'a column of a newer tutti', up: (db: Kysely<unknown>) => sql`alter table jobs add column newer text`.execute(db).then(() => undefined) };
    const upgrade = (db: Kysely<unknown>) => runMigrations(db, postgresStoreDialect, { migrations: [...MIGRATIONS, newer], refuseWhileLeased: 'control', where: url });
    await withKysely(url, async (db) => {
      const refused = await upgrade(db).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(MigrationWhileLeadError);
      expect((refused as Error).message).toMatch(new RegExp(`^the database .* has schema version ${LATEST_SCHEMA_VERSION} and this tutti needs ${LATEST_SCHEMA_VERSION + 1}, but replica old-replica:7070#12 leads on it .*stop every replica of the older tutti first`));
      expect(await older.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
      await older.releaseLease('control', 'old-replica:7070#12', lease.epoch, Date.now());
      expect(await upgrade(db)).toBe(LATEST_SCHEMA_VERSION + 1);
    });
  });

  it('refuses a database written by a newer tutti', async () => {
    const { url } = await freshDatabase();
    await (await createPostgresStateStore({ url })).close();
    await withKysely(url, (db) => sql`insert into schema_migrations (version, name, applied_at) values (${LATEST_SCHEMA_VERSION + 1}, 'from the future', ${T0})`.execute(db));
    const attempt = createPostgresStateStore({ url });
    await expect(attempt).rejects.toBeInstanceOf(SchemaTooNewError);
    await expect(attempt).rejects.toThrow(`schema version ${LATEST_SCHEMA_VERSION + 1}, newer than this tutti knows (${LATEST_SCHEMA_VERSION}); upgrade tutti, or point it at another database`);
  });

  it('reads ids and timestamps as numbers without changing node-postgres for the rest of the process', async () => {
    const store = await openStore((await freshDatabase()).url);
    const job = await store.createJob(makeJobSpec(), T0);
    expect((await store.getJob(job.id))?.createdAt).toBe(T0);
    expect((await store.listEvents({ jobId: job.id }))[0]?.seq).toEqual(expect.any(Number));
    // Another user of the pg package in this process still gets its bigints as strings.
    expect(pg.types.getTypeParser(pg.types.builtins.INT8, 'text')('9007199254740993')).toBe('9007199254740993');
  });

  it('refuses a malformed URL or one of another scheme, naming the URL and how to write it', async () => {
    await expect(createPostgresStateStore({ url: 'not a url' })).rejects.toThrow(/PostgreSQL database URL is not a URL; write it as postgres:\/\/USER/);
    const error = await createPostgresStateStore({ url: 'mysql://root:secret@db/tutti' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PostgresConnectionError);
    expect((error as Error).message).toBe(
      'the PostgreSQL database URL mysql://root:***@db/tutti starts with mysql://, not postgres://; write it as postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE',
    );
  });

  it('says plainly when the server is not there, the database does not exist or SSL is not offered, without the password', async () => {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    await expect(createPostgresStateStore({ url: 'postgres://tutti:secret@127.0.0.1:1/tutti' })).rejects.toThrow(
      /^cannot reach the PostgreSQL server of postgres:\/\/tutti:\*\*\*@127\.0\.0\.1:1\/tutti: connection refused; start the server, or fix the host and port in the database URL$/,
    );
    const missing = new URL((await freshDatabase()).url);
    missing.pathname = '/tutti_no_such_database';
    await expect(createPostgresStateStore({ url: missing.toString() })).rejects.toThrow(/has no such database .*; create it \(createdb NAME\)/);
    // The dev server has no SSL.
    missing.search = '?sslmode=require';
    await expect(createPostgresStateStore({ url: missing.toString() })).rejects.toThrow(/does not accept SSL, which the URL asks for; drop sslmode from the database URL/);
  });

  it('gives up on a server that accepts the connection but never answers, saying so', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as AddressInfo;
    try {
      await expect(createPostgresStateStore({ url: `postgres://tutti@127.0.0.1:${port}/tutti`, connectTimeoutMs: 300 })).rejects.toThrow(
        new RegExp(`^cannot reach the PostgreSQL server of postgres://tutti@127\\.0\\.0\\.1:${port}/tutti: no answer within 300 ms \\(.*\\); check the host, the port and the network$`),
      );
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
