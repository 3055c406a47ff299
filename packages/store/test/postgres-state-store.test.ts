import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { createPostgresStateStore, LATEST_SCHEMA_VERSION, PostgresConnectionError } from '../src/index.ts';
import type { PostgresStateStore } from '../src/index.ts';
import { makeJobSpec } from './builders.ts';
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
  async function openStore(url: string): Promise<PostgresStateStore> {
    const store = await createPostgresStateStore({ url });
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

  it('says plainly when the server is not there or the database does not exist, without the password', async () => {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    await expect(createPostgresStateStore({ url: 'postgres://tutti:secret@127.0.0.1:1/tutti' })).rejects.toThrow(
      /^cannot reach the PostgreSQL server of postgres:\/\/tutti:\*\*\*@127\.0\.0\.1:1\/tutti: connection refused; start the server, or fix the host and port in the database URL$/,
    );
    const missing = new URL((await freshDatabase()).url);
    missing.pathname = '/tutti_no_such_database';
    await expect(createPostgresStateStore({ url: missing.toString() })).rejects.toThrow(/has no such database .*; create it \(createdb NAME\)/);
  });
});
