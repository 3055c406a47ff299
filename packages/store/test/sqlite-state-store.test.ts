import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSqliteStateStore, LATEST_SCHEMA_VERSION, MIGRATIONS, runMigrations, SchemaTooNewError, sqliteStoreDialect } from '../src/index.ts';
import type { Migration, SqliteStateStore } from '../src/index.ts';
import { Kysely, SqliteDialect } from 'kysely';
import { makeBrokenMigration, makeDiagnosis, makeJobSpec, makeNode, makePlacement } from './builders.ts';
import { describeStateStoreContract } from './state-store-contract.ts';

const T0 = 1_700_000_000_000;

function makeTempDir(): string {
  return mkdtempSync(join(tmpdir(), 'tutti-store-'));
}

describeStateStoreContract('SQLite file', async () => {
  const dir = makeTempDir();
  const store = await createSqliteStateStore({ path: join(dir, 'state.db') });
  return {
    store,
    async cleanup() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe('SQLite state store', () => {
  let dir: string;
  let path: string;
  const open: SqliteStateStore[] = [];

  async function openStore(options: { maxCreateBatch?: number } = {}): Promise<SqliteStateStore> {
    const store = await createSqliteStateStore({ path, ...options });
    open.push(store);
    return store;
  }

  beforeEach(() => {
    dir = makeTempDir();
    path = join(dir, 'data', 'state.db');
  });
  afterEach(async () => {
    for (const store of open.splice(0)) await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives a change watch that is never live and never called (no other process shares the file: callers poll)', async () => {
    const store = await openStore();
    let calls = 0;
    const watch = await store.watchChanges(() => calls++);
    expect(watch.live).toBe(false);
    const job = await store.createJob(makeJobSpec(), T0);
    await store.appendEvent(job.id, 'started', 'x', T0 + 1);
    expect(calls).toBe(0);
    await watch.close();
  });

  it('sets the durability pragmas', async () => {
    await openStore();
    const raw = new Database(path, { readonly: true });
    try {
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    } finally {
      raw.close();
    }
    // synchronous and foreign_keys are per connection: check the store's own by their effects instead.
    const store = await openStore();
    await expect(store.appendEvent('424242', 'started', 'x', T0)).rejects.toThrow(/FOREIGN KEY/);
  });

  it('keeps every committed change across close and reopen', async () => {
    let store = await openStore();
    await store.replaceNodes([makeNode('n1', 2)], T0);
    const a = await store.createJob(makeJobSpec({ name: 'a', team: 'red' }), T0);
    const b = await store.createJob(makeJobSpec({ name: 'b' }), T0 + 1);
    await store.applyPlacements([makePlacement(a.id, [['n1', [0, 1]]])], T0 + 2);
    await store.updateTasks([{ jobId: a.id, rank: 0, status: 'running', backend: { kind: 'local', ref: { pid: 100, pidStartTime: 5 } } }]);
    await store.setPendingReasons(new Map([[b.id, makeDiagnosis()]]));
    await store.requestCancel(a.id, T0 + 3);
    const before = {
      jobs: await store.listJobs({}),
      tasks: await store.listActiveTasks(),
      snapshot: await store.snapshot(),
      events: await store.listEvents({}),
      counts: await store.countJobsByStatus(),
    };
    await store.close();

    store = await openStore();
    expect({
      jobs: await store.listJobs({}),
      tasks: await store.listActiveTasks(),
      snapshot: await store.snapshot(),
      events: await store.listEvents({}),
      counts: await store.countJobsByStatus(),
    }).toEqual(before);
    // Ids continue after the restart.
    const c = await store.createJob(makeJobSpec(), T0 + 4);
    expect(Number(c.id)).toBe(Number(b.id) + 1);
  });

  it('migrates idempotently and records each migration once', async () => {
    const store = await openStore();
    expect(await store.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
    await store.migrate();
    await store.migrate();
    await store.close();
    const again = await openStore();
    expect(await again.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
    await again.close();
    const raw = new Database(path, { readonly: true });
    try {
      const rows = raw.prepare('select version, name from schema_migrations order by version').all();
      expect(rows).toEqual(MIGRATIONS.map((m) => ({ version: m.version, name: m.name })));
    } finally {
      raw.close();
    }
  });

  it('applies only the migrations above the recorded version, each with its row', async () => {
    const database = new Database(':memory:');
    const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database }) });
    try {
      const applied: number[] = [];
      const extra: Migration = {
        version: MIGRATIONS.length + 1,
        name: 'add a column',
        async up(trx) {
          applied.push(this.version);
          await trx.schema.alterTable('jobs').addColumn('note', 'text').execute();
        },
      };
      expect(await runMigrations(db, sqliteStoreDialect)).toBe(LATEST_SCHEMA_VERSION);
      expect(await runMigrations(db, sqliteStoreDialect, { migrations: [...MIGRATIONS, extra] })).toBe(LATEST_SCHEMA_VERSION + 1);
      expect(await runMigrations(db, sqliteStoreDialect, { migrations: [...MIGRATIONS, extra] })).toBe(LATEST_SCHEMA_VERSION + 1);
      expect(applied).toEqual([LATEST_SCHEMA_VERSION + 1]);
    } finally {
      await db.destroy();
    }
  });

  it('upgrades a database with running jobs to shared-GPU allocations, keeping each allocation a whole GPU', async () => {
    // A data dir written before GPUs could be shared: schema 3, one job running on GPU 1 of n1.
    mkdirSync(dirname(path), { recursive: true });
    const database = new Database(path);
    const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database }) });
    await runMigrations(db, sqliteStoreDialect, { migrations: MIGRATIONS.slice(0, 3) });
    database.prepare("insert into jobs (id, name, team, priority, status, spec_json, created_at, started_at) values (7, 'old', 'default', 0, 'running', ?, ?, ?)").run(JSON.stringify(makeJobSpec()), T0, T0 + 1);
    database.prepare("insert into gpu_allocations (node, gpu_index, job_id) values ('n1', 1, 7)").run();
    await db.destroy();
    const job = { id: '7' };

    const upgraded = await openStore();
    await upgraded.migrate();
    await upgraded.replaceNodes([makeNode('n1', 2)], T0);
    expect(await upgraded.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
    expect((await upgraded.snapshot()).allocations).toEqual([{ jobId: job.id, node: 'n1', gpuIndex: 1 }]);
    const sharer = await upgraded.createJob(makeJobSpec(), T0);
    const share = makePlacement(sharer.id, [['n1', [1]]]);
    const outcome = await upgraded.applyPlacements([{ ...share, placement: { jobId: sharer.id, nodes: [{ node: 'n1', gpuIndices: [1], gpuFraction: 0.5, gpuMemoryMiB: 1024 }] } }], T0 + 2);
    expect(outcome).toEqual([{ jobId: sharer.id, applied: false, reason: 'gpu_taken' }]);
  });

  it('upgrades a database whose jobs have no summary columns: lists show the resources of their stored specs', async () => {
    // A data dir written before job lists read summaries: schema 5, two jobs.
    mkdirSync(dirname(path), { recursive: true });
    const database = new Database(path);
    const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database }) });
    await runMigrations(db, sqliteStoreDialect, { migrations: MIGRATIONS.slice(0, 5) });
    const wide = makeJobSpec({ name: 'wide', numNodes: 2, maxRestarts: 3, resources: { gpus: { count: 8, types: ['H100'] }, cpus: 32 } });
    const share = makeJobSpec({ name: 'share', resources: { gpus: { count: 1, types: [], fraction: 0.5 } } });
    const insert = database.prepare("insert into jobs (id, name, team, priority, status, spec_json, created_at) values (?, ?, 'default', 50, 'pending', ?, ?)");
    insert.run(3, 'wide', JSON.stringify(wide), T0);
    insert.run(9, 'share', JSON.stringify(share), T0 + 1);
    await db.destroy();

    const upgraded = await openStore();
    expect(await upgraded.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
    const { jobs } = await upgraded.listJobSummaries({});
    expect(jobs.map((j) => [j.id, j.spec])).toEqual([
      ['9', { name: 'share', team: 'default', priority: 50, numNodes: 1, resources: share.resources }],
      ['3', { name: 'wide', team: 'default', priority: 50, numNodes: 2, maxRestarts: 3, resources: wide.resources }],
    ]);
  });

  it('upgrades a database whose ranks were recorded by local pid: each becomes the local backend\'s handle, running and in ended attempts', async () => {
    // A data dir written before rank handles were backend-neutral: schema 6, job 7 in its second attempt (rank 0
    // launched, rank 1 not yet), its first attempt ended.
    mkdirSync(dirname(path), { recursive: true });
    const database = new Database(path);
    const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database }) });
    await runMigrations(db, sqliteStoreDialect, { migrations: MIGRATIONS.slice(0, 6) });
    database.prepare("insert into jobs (id, name, team, priority, status, spec_json, created_at, started_at, attempt) values (7, 'old', 'default', 0, 'running', ?, ?, ?, 2)").run(JSON.stringify(makeJobSpec()), T0, T0 + 1);
    const task = database.prepare("insert into tasks (job_id, rank, local_rank, node_rank, node, gpus_json, status, pid, pid_start_time, log_path, started_at) values (7, ?, ?, 0, 'n1', '[0,1]', ?, ?, ?, ?, ?)");
    task.run(0, 0, 'running', 4242, 987654, '/data/jobs/7/attempt-2/rank-0.log', T0 + 20);
    task.run(1, 1, 'starting', null, null, null, null);
    const endedTasks = [
      { jobId: '7', rank: 0, localRank: 0, nodeRank: 0, node: 'n1', gpus: [0, 1], status: 'exited', pid: 4000, pidStartTime: 5, logPath: '/data/jobs/7/attempt-1/rank-0.log', exitCode: 137 },
      { jobId: '7', rank: 1, localRank: 1, nodeRank: 0, node: 'n1', gpus: [0, 1], status: 'lost', exitCode: null },
    ];
    database.prepare("insert into job_attempts (job_id, attempt, started_at, finished_at, exit_code, reason, tasks_json) values (7, 1, ?, ?, 137, 'rank 0 was killed by SIGKILL', ?)").run(T0 + 1, T0 + 10, JSON.stringify(endedTasks));
    await db.destroy();

    const upgraded = await openStore();
    expect(await upgraded.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
    const [rank0, rank1] = await upgraded.listActiveTasks();
    expect(rank0).toEqual({
      jobId: '7', rank: 0, localRank: 0, nodeRank: 0, node: 'n1', gpus: [0, 1], status: 'running', startedAt: T0 + 20,
      backend: { kind: 'local', ref: { pid: 4242, pidStartTime: 987654, logPath: '/data/jobs/7/attempt-2/rank-0.log' } },
    });
    expect(rank1?.backend).toBeUndefined();
    const [attempt1] = await upgraded.listAttempts('7');
    expect(attempt1?.tasks).toEqual([
      { jobId: '7', rank: 0, localRank: 0, nodeRank: 0, node: 'n1', gpus: [0, 1], status: 'exited', exitCode: 137, backend: { kind: 'local', ref: { pid: 4000, pidStartTime: 5, logPath: '/data/jobs/7/attempt-1/rank-0.log' } } },
      { jobId: '7', rank: 1, localRank: 1, nodeRank: 0, node: 'n1', gpus: [0, 1], status: 'lost', exitCode: null },
    ]);
    // The old columns are gone: nothing can write a pid beside the handle any more.
    const raw = new Database(path, { readonly: true });
    try {
      expect((raw.prepare('select name from pragma_table_info(\'tasks\')').all() as { name: string }[]).map((c) => c.name)).not.toContain('pid');
    } finally {
      raw.close();
    }
  });

  it('rolls back a failing migration entirely', async () => {
    const database = new Database(':memory:');
    const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database }) });
    try {
      const broken = makeBrokenMigration();
      await expect(runMigrations(db, sqliteStoreDialect, { migrations: [...MIGRATIONS, broken] })).rejects.toThrow();
      const tables = database.prepare("select name from sqlite_master where name = 'half_done'").all();
      expect(tables).toEqual([]);
      expect(database.prepare('select max(version) as v from schema_migrations').get()).toEqual({ v: LATEST_SCHEMA_VERSION });
    } finally {
      await db.destroy();
    }
  });

  it('refuses a database written by a newer tutti', async () => {
    const store = await openStore();
    await store.close();
    const raw = new Database(path);
    raw.prepare('insert into schema_migrations (version, name, applied_at) values (?, ?, ?)').run(LATEST_SCHEMA_VERSION + 1, 'from the future', T0);
    raw.close();
    const attempt = createSqliteStateStore({ path });
    await expect(attempt).rejects.toBeInstanceOf(SchemaTooNewError);
    await expect(attempt).rejects.toThrow(new RegExp(`schema version ${LATEST_SCHEMA_VERSION + 1}.*upgrade tutti`));
  });

  it('gives concurrent submissions consecutive ids in call order, every row and event written', async () => {
    const store = await openStore({ maxCreateBatch: 64 });
    const n = 500;
    const jobs = await Promise.all(Array.from({ length: n }, (_, i) => store.createJob(makeJobSpec({ name: `j${i}` }), T0 + i)));
    const ids = jobs.map((j) => Number(j.id));
    expect(ids).toEqual(Array.from({ length: n }, (_, i) => (ids[0] as number) + i));
    jobs.forEach((job, i) => expect(job).toMatchObject({ spec: { name: `j${i}` }, createdAt: T0 + i }));
    expect((await store.countJobsByStatus()).pending).toBe(n);
    const all = await store.listJobs({ limit: 1000 });
    expect(all.jobs.map((j) => j.id).reverse()).toEqual(jobs.map((j) => j.id));
    expect((await store.listEvents({ limit: 10_000 })).filter((e) => e.type === 'submitted')).toHaveLength(n);
  });

  it('fails every caller of a batch whose transaction fails, and recovers for the next', async () => {
    const store = await openStore();
    // A CHECK constraint no valid job violates: make this batch's insert fail at commit time.
    const raw = new Database(path);
    raw.exec(`create trigger fail_jobs before insert on jobs when new.name = 'boom' begin select raise(abort, 'boom refused'); end`);
    raw.close();
    const batch = [store.createJob(makeJobSpec({ name: 'ok' }), T0), store.createJob(makeJobSpec({ name: 'boom' }), T0)];
    const results = await Promise.allSettled(batch);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(/boom refused/);
    expect(await store.countJobsByStatus()).toMatchObject({ pending: 0 });
    const later = await store.createJob(makeJobSpec({ name: 'after' }), T0);
    expect(await store.getJob(later.id)).toEqual(later);
  });

  it('rejects only the caller whose spec cannot be serialised', async () => {
    const store = await openStore();
    const circular = makeJobSpec() as unknown as Record<string, unknown>;
    circular.self = circular;
    const [good, bad] = await Promise.allSettled([
      store.createJob(makeJobSpec(), T0),
      store.createJob(circular as never, T0),
    ]);
    expect(good?.status).toBe('fulfilled');
    expect(bad?.status).toBe('rejected');
  });

  it('never double-books a GPU, even when the database is the only guard', async () => {
    const store = await openStore();
    await store.replaceNodes([makeNode('n1', 1)], T0);
    const a = await store.createJob(makeJobSpec(), T0);
    const b = await store.createJob(makeJobSpec(), T0);
    const [ra, rb] = await Promise.all([
      store.applyPlacements([makePlacement(a.id, [['n1', [0]]])], T0 + 1),
      store.applyPlacements([makePlacement(b.id, [['n1', [0]]])], T0 + 1),
    ]);
    expect([...(ra ?? []), ...(rb ?? [])].filter((o) => o.applied)).toHaveLength(1);
    // Writing a second whole-GPU allocation behind the store's back is refused by the database (a unique index).
    const raw = new Database(path);
    try {
      expect(() => raw.prepare('insert into gpu_allocations (node, gpu_index, job_id) values (?, ?, ?)').run('n1', 0, Number(b.id))).toThrow(/UNIQUE|PRIMARY/);
    } finally {
      raw.close();
    }
  });

  it('pages through 1,000+ jobs returning each exactly once, with filters', async () => {
    const store = await openStore();
    const jobs = await Promise.all(Array.from({ length: 1234 }, (_, i) => store.createJob(makeJobSpec({ team: i % 3 === 0 ? 'red' : 'blue' }), T0 + i)));
    for (const [query, expected] of [
      [{}, jobs],
      [{ team: 'red' }, jobs.filter((j) => j.spec.team === 'red')],
      [{ team: 'blue', status: 'pending' as const }, jobs.filter((j) => j.spec.team === 'blue')],
    ] as const) {
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await store.listJobs({ ...query, limit: 97, ...(cursor !== undefined ? { cursor } : {}) });
        seen.push(...page.jobs.map((j) => j.id));
        cursor = page.nextCursor;
      } while (cursor !== undefined);
      expect(seen).toEqual(expected.map((j) => j.id).reverse());
    }
  });

  it('answers listJobs from an index at 100,000 jobs', async () => {
    const store = await openStore();
    // Bulk-load behind the store (fast), then query through it.
    await store.createJob(makeJobSpec(), T0);
    const raw = new Database(path);
    const insert = raw.prepare("insert into jobs (name, team, priority, status, spec_json, created_at) values ('j', ?, 50, ?, ?, ?)");
    const spec = JSON.stringify(makeJobSpec());
    raw.transaction(() => {
      for (let i = 0; i < 100_000; i++) insert.run(`team-${i % 10}`, i % 7 === 0 ? 'pending' : 'succeeded', spec, T0 + i);
    })();
    // The first page without filters walks the table backwards by rowid and stops after 51 rows; every other page
    // must start with an index search. None may sort.
    const firstPage = raw.prepare('explain query plan select * from jobs order by id desc limit 51').all();
    expect(firstPage.map((r) => (r as { detail: string }).detail)).toEqual(['SCAN jobs']);
    const plans = [
      "select * from jobs where id < 50000 order by id desc limit 51",
      "select * from jobs where status = 'pending' and id < 50000 order by id desc limit 51",
      "select * from jobs where team = 'team-3' and id < 50000 order by id desc limit 51",
      "select * from jobs where status = 'pending' and team = 'team-3' and id < 50000 order by id desc limit 51",
      // listRunHistory: submission order from the (created_at, id) index, after a cursor.
      `select id from jobs where finished_at is not null and started_at is not null and (created_at, id) > (${T0 + 50_000}, 50000) order by created_at asc, id asc limit 1001`,
    ].map((q) => raw.prepare(`explain query plan ${q}`).all().map((r) => (r as { detail: string }).detail).join('; '));
    raw.close();
    for (const plan of plans) {
      expect(plan).not.toMatch(/TEMP B-TREE/);
      expect(plan).toMatch(/^SEARCH jobs USING (INTEGER PRIMARY KEY|INDEX|COVERING INDEX)/);
    }

    const started = performance.now();
    let cursor: string | undefined;
    for (let i = 0; i < 20; i++) {
      const page = await store.listJobs({ status: 'pending', team: 'team-3', ...(cursor !== undefined ? { cursor } : {}) });
      expect(page.jobs).toHaveLength(50);
      cursor = page.nextCursor;
    }
    const deep = await store.listJobs({ cursor: '100' });
    expect(deep.jobs[0]?.id).toBe('99');
    // Generous bound for a slow CI machine; a scan of 100k rows per page would take far longer.
    expect(performance.now() - started).toBeLessThan(2000);
  });
});
