/**
 * Rough createJob throughput, sequential vs concurrent (group commit). Not a test: run by hand with
 *   node --import tsx packages/store/test/measure-create-job.ts [jobs=4000] [concurrency=32] [sqlite|postgres]
 * Each job is durable (SQLite synchronous=FULL; PostgreSQL synchronous_commit=on) when its promise resolves.
 * `postgres` measures on a fresh database of TUTTI_TEST_POSTGRES_URL's server, or of scripts/pg-dev.sh's (started if
 * down, and left running: `scripts/pg-dev.sh down` stops it).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPostgresStateStore, createSqliteStateStore } from '../src/index.ts';
import type { StateStore } from '../src/index.ts';
import { makeJobSpec } from './builders.ts';
import { createTestDatabase } from './postgres-dev-server.ts';

const total = Number(process.argv[2] ?? 4000);
const concurrency = Number(process.argv[3] ?? 32);
const database = process.argv[4] ?? 'sqlite';
if (database !== 'sqlite' && database !== 'postgres') throw new Error(`the database is sqlite or postgres, not ${database}`);

/** A fresh store and how to throw it away. */
async function openStore(): Promise<{ store: StateStore; remove(): Promise<void> }> {
  if (database === 'postgres') {
    const db = await createTestDatabase();
    const store = await createPostgresStateStore({ url: db.url });
    return { store, remove: async () => { await store.close(); await db.drop(); } };
  }
  const dir = mkdtempSync(join(tmpdir(), 'tutti-store-bench-'));
  const store = await createSqliteStateStore({ path: join(dir, 'state.db') });
  return { store, remove: async () => { await store.close(); rmSync(dir, { recursive: true, force: true }); } };
}

async function measure(label: string, run: (create: () => Promise<unknown>) => Promise<void>): Promise<void> {
  const { store, remove } = await openStore();
  try {
    const spec = makeJobSpec({ name: 'bench' });
    let now = 1_700_000_000_000;
    const started = performance.now();
    await run(() => store.createJob(spec, now++));
    const seconds = (performance.now() - started) / 1000;
    console.log(`${database} ${label}: ${total} jobs in ${seconds.toFixed(2)} s = ${Math.round(total / seconds)} jobs/s`);
  } finally {
    await remove();
  }
}

await measure('sequential', async (create) => {
  for (let i = 0; i < total; i++) await create();
});
await measure(`${concurrency} concurrent`, async (create) => {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next++ < total) await create();
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
});
