/**
 * The store on a database that cannot grow (SQLite's real SQLITE_FULL, from `max_page_count`): every kind of write
 * is refused with DiskFullError naming the file — not "cannot rollback - no transaction is active", which Kysely's
 * ROLLBACK used to put in its place — reads keep working, and writes succeed again once pages are freed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { DiskFullError, createSqliteStateStore } from '../src/index.ts';
import { makeJobSpec } from './builders.ts';

const dir = mkdtempSync(join(tmpdir(), 'tutti-store-full-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function refusal(write: Promise<unknown>): Promise<unknown> {
  return write.then(
    () => undefined,
    (error: unknown) => error,
  );
}

describe('a SQLite store that runs out of space', () => {
  it('refuses each write with DiskFullError, keeps reads, tells its listener once per episode, and recovers', async () => {
    const path = join(dir, 'tutti.db');
    const maxPages = 400;
    const told: string[] = [];
    const store = await createSqliteStateStore({
      path,
      maxPageCount: maxPages,
      diskFull: { full: (error) => told.push(`full ${error.path}`), recovered: (where) => told.push(`recovered ${where}`) },
    });
    const other = new Database(path);
    try {
      const kept = await store.createJob(makeJobSpec({ name: 'before' }), 1);
      // Another connection fills the file to the store's limit.
      other.exec('CREATE TABLE filler (b BLOB)');
      const insert = other.prepare('INSERT INTO filler VALUES (randomblob(3500))');
      other.transaction(() => {
        while (Number(other.pragma('page_count', { simple: true })) < maxPages) for (let i = 0; i < 20; i++) insert.run();
      })();

      const big = { PAD: 'x'.repeat(20_000) };
      const refusals = [
        await refusal(store.createJob(makeJobSpec({ name: 'while-full', env: big }), 2)),
        await refusal(store.appendEvent(kept.id, 'requeued', 'y'.repeat(20_000), 3)),
        await refusal(store.appendProgress([{ jobId: kept.id, attempt: 1, rank: 0, at: 4, values: { note: 'z'.repeat(20_000) } }])),
      ];
      for (const error of refusals) {
        expect(error).toBeInstanceOf(DiskFullError);
        expect((error as Error).message).toBe(`disk full at ${path}: free space and retry`);
      }
      expect(told.filter((t) => t.startsWith('full'))).toHaveLength(3);
      expect(told).not.toContain(`recovered ${path}`);

      // Reads are unaffected.
      expect((await store.listJobs({})).jobs.map((j) => j.spec.name)).toEqual(['before']);
      expect((await store.getJob(kept.id))?.status).toBe('pending');

      other.exec('DROP TABLE filler');
      const after = await store.createJob(makeJobSpec({ name: 'after', env: big }), 5);
      expect(after.status).toBe('pending');
      expect(told.at(-1)).toBe(`recovered ${path}`);
      expect(told.filter((t) => t.startsWith('recovered'))).toHaveLength(1);
    } finally {
      other.close();
      await store.close();
    }
  });
});
