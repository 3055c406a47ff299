/**
 * Several replicas (store instances, each with its own pool) on one PostgreSQL database, as `tutti up` servers share
 * one in HA: fencing against a concurrent takeover, events committed in seq order for readers that tail them, and
 * change notifications.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { createPostgresStateStore, FencedError } from '../src/index.ts';
import type { ChangeWatch, PostgresStateStore } from '../src/index.ts';
import { makeJobSpec, makeNode, makePlacement } from './builders.ts';
import { createTestDatabase } from './postgres-dev-server.ts';
import type { TestDatabase } from './postgres-dev-server.ts';

const T0 = 1_700_000_000_000;
const TTL = 10_000;
const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../../..');
const fencedWriter = join(here, 'fixtures', 'fenced-writer.ts');

describe('PostgreSQL: replicas sharing one database', () => {
  const open: PostgresStateStore[] = [];
  const databases: TestDatabase[] = [];
  const clients: pg.Client[] = [];
  const children: ChildProcess[] = [];

  async function freshDatabase(): Promise<string> {
    const database = await createTestDatabase();
    databases.push(database);
    return database.url;
  }
  async function openStore(url: string): Promise<PostgresStateStore> {
    const store = await createPostgresStateStore({ url });
    open.push(store);
    return store;
  }
  async function rawClient(url: string): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    clients.push(client);
    return client;
  }

  afterEach(async () => {
    for (const child of children.splice(0)) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      child.kill('SIGKILL');
      await new Promise((resolvePromise) => child.once('exit', resolvePromise));
    }
    for (const client of clients.splice(0)) await client.end();
    for (const store of open.splice(0)) await store.close();
    for (const database of databases.splice(0)) await database.drop();
  });

  it('commits no placement of a deposed epoch after the takeover, however many race it', async () => {
    const url = await freshDatabase();
    const [a, b] = [await openStore(url), await openStore(url)];
    await a.replaceNodes([makeNode('n1', 8)], T0);
    // The takeover's own transaction notes how many jobs run at that moment, and then takes its time to commit: any
    // placement of epoch 1 that commits meanwhile (or after) would run without having been counted.
    const admin = await rawClient(url);
    await admin.query(`
      create table takeover_saw (epoch bigint, running bigint);
      create function note_takeover() returns trigger language plpgsql as $$
      begin
        if new.epoch <> old.epoch then
          insert into takeover_saw select new.epoch, count(*) from jobs where status = 'running';
          perform pg_sleep(0.3);
        end if;
        return new;
      end $$;
      create trigger note_takeover after update on leases for each row execute function note_takeover();`);
    const lease = await a.acquireLease('control', 'replica-a', T0, TTL);
    const fenced = a.withFence({ lease: 'control', holder: 'replica-a', epoch: lease.epoch });
    const jobs = await Promise.all(Array.from({ length: 400 }, (_, i) => b.createJob(makeJobSpec({ name: `j${i}` }), T0)));

    // Ten placement streams of replica-a (its pool has ten connections), each going until it is refused.
    const streams = Array.from({ length: 10 }, async (_, stream) => {
      let applied = 0;
      for (let i = stream; i < jobs.length; i += 10) {
        try {
          const [outcome] = await fenced.applyPlacements([makePlacement(jobs[i]!.id, [['n1', []]])], T0 + 1);
          if (outcome?.applied) applied++;
        } catch (error) {
          if (error instanceof FencedError) return { applied, fenced: true };
          throw error;
        }
      }
      return { applied, fenced: false };
    });
    while ((await b.countJobsByStatus()).running < 40) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(await b.acquireLease('control', 'replica-b', T0 + TTL, TTL)).toMatchObject({ holder: 'replica-b', epoch: 2 });
    const results = await Promise.all(streams);

    expect(results.every((r) => r.fenced)).toBe(true);
    // (Epoch 1 was a change of hands too: from nobody.)
    const { rows } = await admin.query<{ epoch: string; running: string }>('select epoch, running from takeover_saw where epoch > 1');
    expect(rows).toEqual([{ epoch: '2', running: expect.any(String) }]);
    const running = (await b.countJobsByStatus()).running;
    expect(running).toBe(results.reduce((n, r) => n + r.applied, 0));
    expect(running).toBe(Number(rows[0]!.running));
    expect((await b.listEvents({ limit: 10_000 })).filter((e) => e.type === 'scheduled')).toHaveLength(running);
  });

  it('does not let a leader stopped in the middle of a fenced write keep the lease from changing hands', async () => {
    const url = await freshDatabase();
    const b = await openStore(url);
    const lease = await b.acquireLease('control', 'replica-a', T0, TTL);
    const writerUrl = new URL(url);
    writerUrl.searchParams.set('application_name', 'fenced-writer');
    const child = spawn(process.execPath, ['--import', 'tsx', fencedWriter, writerUrl.toString(), String(lease.epoch)], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise((resolvePromise) => child.once('exit', resolvePromise));
    while (!out.includes('writing')) {
      if (child.exitCode !== null) throw new Error(`the fenced writer exited: ${out}`);
      await sleep(20);
    }

    // SIGSTOP it inside a transaction that holds the lease (between two transactions it holds nothing): a session of
    // its idle in the same transaction, with the advisory lock, twice in a row.
    const admin = await rawClient(url);
    const heldInTransaction = async () => {
      const { rows } = await admin.query<{ pid: number; xact_start: Date }>(`
        select a.pid, a.xact_start from pg_stat_activity a join pg_locks l on l.pid = a.pid
        where a.application_name = 'fenced-writer' and a.state = 'idle in transaction' and l.locktype = 'advisory' and l.granted`);
      return rows.map((r) => `${r.pid}@${r.xact_start.toISOString()}`).join();
    };
    for (;;) {
      child.kill('SIGSTOP');
      await sleep(50);
      const first = await heldInTransaction();
      await sleep(50);
      if (first !== '' && first === (await heldInTransaction())) break;
      child.kill('SIGCONT');
      await sleep(Math.random() * 20);
    }

    // Its lease ran out meanwhile (the time acquireLease is told says so): another replica takes over, and does not
    // wait for the stopped one to resume.
    expect(await b.acquireLease('control', 'replica-b', T0 + TTL, TTL)).toMatchObject({ holder: 'replica-b', epoch: 2 });
    child.kill('SIGCONT');
    await exited;
    expect(out).toContain('fenced: this replica (holder replica-a) no longer holds lease "control" at epoch 1: now held by replica-b at epoch 2');
  }, 60_000);

  it('lets a reader tailing events by seq see every event exactly once while two replicas write at once', async () => {
    const url = await freshDatabase();
    const [a, b] = [await openStore(url), await openStore(url)];
    await a.replaceNodes([makeNode('n1', 8)], T0);
    const jobs = await Promise.all(Array.from({ length: 40 }, (_, i) => a.createJob(makeJobSpec({ name: `j${i}` }), T0)));

    // What the server's EventFeed and a resuming SSE stream do.
    const reader = tailBySeq((afterSeq) => b.listEvents({ afterSeq, limit: 10_000 }));
    const writers = [a, b].flatMap((store, s) =>
      Array.from({ length: 10 }, async (_, w) => {
        for (let i = 0; i < 30; i++) {
          const job = jobs[(w * 7 + i) % jobs.length]!;
          if (i % 10 === 3) await store.createJob(makeJobSpec({ name: `late-${s}-${w}-${i}` }), T0 + i);
          else if (i % 10 === 7 && s === 0) await store.applyPlacements([makePlacement(job.id, [['n1', []]])], T0 + i);
          else await store.appendEvent(job.id, 'started', `writer ${s}/${w} #${i}`, T0 + i);
        }
      }),
    );
    await Promise.all(writers);
    const seen = await reader.stop();

    const all = (await a.listEvents({ limit: 10_000 })).map((e) => e.seq);
    expect(all.length).toBeGreaterThan(600);
    expect(seen).toEqual(all);
  });

  it('lets a reader tailing a job\'s progress by seq see every record exactly once while two replicas append at once', async () => {
    const url = await freshDatabase();
    const [a, b] = [await openStore(url), await openStore(url)];
    const job = await a.createJob(makeJobSpec(), T0);
    // What a client polling GET /v1/jobs/:id/progress?after= does.
    const reader = tailBySeq((afterSeq) => b.listProgress(job.id, { afterSeq, limit: 10_000 }));
    await Promise.all(
      [a, b].flatMap((store, s) =>
        Array.from({ length: 10 }, async (_, w) => {
          for (let i = 0; i < 30; i++) await store.appendProgress([{ jobId: job.id, attempt: 1, rank: s * 10 + w, at: T0 + i, step: i, values: { step: i } }]);
        }),
      ),
    );
    const seen = await reader.stop();

    const all = (await a.listProgress(job.id, { limit: 10_000 })).map((r) => r.seq);
    expect(all).toHaveLength(600);
    expect(seen).toEqual(all);
  });

  describe('watchChanges', () => {
    /** A watch whose calls can be awaited one at a time. */
    async function watchOf(store: PostgresStateStore): Promise<{ watch: ChangeWatch; nextChange(): Promise<void> }> {
      let calls = 0;
      let waiting: { after: number; resolve: () => void } | undefined;
      const watch = await store.watchChanges(() => {
        calls++;
        if (waiting && calls > waiting.after) waiting.resolve();
      });
      return {
        watch,
        nextChange() {
          const after = calls;
          return new Promise<void>((resolve) => (waiting = { after, resolve }));
        },
      };
    }

    async function listeners(client: pg.Client): Promise<number[]> {
      const { rows } = await client.query<{ pid: number }>(`select pid from pg_stat_activity where datname = current_database() and query ilike 'listen%'`);
      return rows.map((r) => r.pid);
    }

    it('wakes a watch on one replica when another commits a change', async () => {
      const url = await freshDatabase();
      const [a, b] = [await openStore(url), await openStore(url)];
      const { watch, nextChange } = await watchOf(b);
      expect(watch.live).toBe(true);
      let woke = nextChange();
      const job = await a.createJob(makeJobSpec(), T0);
      await woke;
      woke = nextChange();
      expect(await a.requestCancel(job.id, T0 + 1)).toBe('cancelled');
      await woke;
    });

    it('reconnects after its connection is killed, says so with a call, and is woken by later changes again', async () => {
      const url = await freshDatabase();
      const [a, b] = [await openStore(url), await openStore(url)];
      const { watch, nextChange } = await watchOf(b);
      const admin = await rawClient(url);
      const [pid] = await listeners(admin);
      expect(pid).toBeDefined();
      const reconnected = nextChange();
      await admin.query('select pg_terminate_backend($1)', [pid]);
      await reconnected;
      expect(watch.live).toBe(true);
      const now = await listeners(admin);
      expect(now).toHaveLength(1);
      expect(now).not.toContain(pid);
      const woke = nextChange();
      await a.createJob(makeJobSpec(), T0);
      await woke;
    });

    it('is closed, with its connection, by closing the store', async () => {
      const url = await freshDatabase();
      const store = await openStore(url);
      const admin = await rawClient(url);
      const { watch } = await watchOf(store);
      const other = await store.watchChanges(() => {});
      await other.close();
      expect(other.live).toBe(false);
      expect(await listeners(admin)).toHaveLength(1);
      await store.close();
      expect(watch.live).toBe(false);
      expect(await listeners(admin)).toEqual([]);
    });
  });
});

/**
 * Reads `read(afterSeq)` again and again from seq 0, each time after the last seq seen, as a resuming stream does,
 * until stopped; `stop()` reads once more to the end and answers every seq seen, in order.
 */
function tailBySeq(read: (afterSeq: number) => Promise<ReadonlyArray<{ seq: number }>>): { stop(): Promise<number[]> } {
  let writing = true;
  const seen: number[] = [];
  const done = (async () => {
    let cursor = 0;
    for (let more = true; more; ) {
      more = writing;
      for (;;) {
        const batch = await read(cursor);
        if (batch.length === 0) break;
        seen.push(...batch.map((row) => row.seq));
        cursor = batch.at(-1)!.seq;
      }
    }
  })();
  return {
    async stop() {
      writing = false;
      await done;
      return seen;
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolvePromise) => setTimeout(resolvePromise, ms));
}
