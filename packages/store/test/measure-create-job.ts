/**
 * Rough createJob throughput, sequential vs concurrent (group commit). Not a test: run by hand with
 *   node --import tsx packages/store/test/measure-create-job.ts [jobs=4000] [concurrency=32]
 * Each job is durable (synchronous=FULL) when its promise resolves.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSqliteStateStore } from '../src/index.ts';
import { makeJobSpec } from './builders.ts';

const total = Number(process.argv[2] ?? 4000);
const concurrency = Number(process.argv[3] ?? 32);

async function measure(label: string, run: (create: () => Promise<unknown>) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tutti-store-bench-'));
  const store = await createSqliteStateStore({ path: join(dir, 'state.db') });
  try {
    const spec = makeJobSpec({ name: 'bench' });
    let now = 1_700_000_000_000;
    const started = performance.now();
    await run(() => store.createJob(spec, now++));
    const seconds = (performance.now() - started) / 1000;
    console.log(`${label}: ${total} jobs in ${seconds.toFixed(2)} s = ${Math.round(total / seconds)} jobs/s`);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
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
