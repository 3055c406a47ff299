/**
 * The server with its state in PostgreSQL (`tutti up --database postgres://…`), against the real PostgreSQL that
 * scripts/pg-dev.sh starts (see packages/store/test/postgres-dev-server.ts): jobs run and their history is in the
 * database, not in tutti.db; a server started again on the same database finds the job that kept running and sees it
 * through; a database it cannot use stops the start with one line saying why.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TuttiClient } from '@tutti/client';
import { StartupError, silentLogger, startTuttiServer, type TuttiServer } from '@tutti/server';
import { createTestDatabase, type TestDatabase } from '../../store/test/postgres-dev-server.ts';
import { isEnded, touch, waitForFileThenExit, waitForJob } from './harness.ts';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function freshDatabase(): Promise<TestDatabase> {
  const database = await createTestDatabase();
  cleanups.push(() => database.drop());
  return database;
}

async function dataDir(): Promise<string> {
  const root = await mkdtemp(path.join(tmpdir(), 'tutti-pg-server-'));
  cleanups.push(() => rm(root, { recursive: true, force: true }));
  return path.join(root, 'data');
}

async function start(dir: string, database: string): Promise<{ server: TuttiServer; client: TuttiClient }> {
  const server = await startTuttiServer({ dataDir: dir, database, port: 0, fakeGpus: '2', logger: silentLogger, tickMs: 200, stopGraceMs: 5_000 });
  return { server, client: new TuttiClient({ baseUrl: server.url }) };
}

describe('tutti up --database postgres://… (real PostgreSQL)', () => {
  it('runs jobs with their state in PostgreSQL, and a server started again on it sees a running job through', async () => {
    const database = await freshDatabase();
    const dir = await dataDir();
    const first = await start(dir, database.url);
    let second: Awaited<ReturnType<typeof start>> | undefined;
    try {
      const done = await first.client.submitJob({ name: 'quick', resources: { gpus: 1 }, run: 'echo hello from postgres' });
      expect((await waitForJob(first.client, done.id, isEnded)).status).toBe('succeeded');
      expect(existsSync(path.join(dir, 'tutti.db'))).toBe(false);
      const release = path.join(dir, '..', 'release');
      const long = await first.client.submitJob({ name: 'outlives-its-server', resources: { gpus: 1 }, run: waitForFileThenExit(release) });
      await waitForJob(first.client, long.id, (job) => job.status === 'running' && (job.tasks ?? []).every((task) => task.status === 'running'));
      await first.server.close();

      second = await start(dir, database.url);
      expect((await second.client.getJob(done.id)).status).toBe('succeeded');
      expect((await second.client.getJob(long.id)).status).toBe('running');
      const next = await second.client.submitJob({ name: 'after', resources: { gpus: 1 }, run: 'true' });
      expect(Number(next.id)).toBeGreaterThan(Number(long.id));
      await touch(release);
      const ended = await waitForJob(second.client, long.id, isEnded);
      expect([ended.status, ended.attempt, ended.restarts]).toEqual(['succeeded', 1, 0]);
      expect((await waitForJob(second.client, next.id, isEnded)).status).toBe('succeeded');
    } finally {
      await first.server.close().catch(() => undefined);
      await second?.server.close();
    }
  }, 60_000);

  it('refuses a database it cannot use in one line naming it, the password hidden', async () => {
    const dir = await dataDir();
    const closedPort = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const refused = await startTuttiServer({ dataDir: dir, database: `postgres://tutti:s3cret@127.0.0.1:${closedPort}/tutti`, port: 0, fakeGpus: '1', logger: silentLogger }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(StartupError);
    expect((refused as Error).message).toMatch(new RegExp(`^--database: .*postgres://tutti:\\*\\*\\*@127\\.0\\.0\\.1:${closedPort}/tutti`));
    expect((refused as Error).message).not.toContain('s3cret');
    expect((refused as Error).message).not.toContain('\n');
    const notAUrl = await startTuttiServer({ dataDir: dir, database: 'tutti.db', port: 0, fakeGpus: '1', logger: silentLogger }).catch((error: unknown) => error);
    expect((notAUrl as Error).message).toMatch(/^--database: .*postgres:\/\/USER\[:PASSWORD\]@HOST\[:PORT\]\/DATABASE/);
  }, 60_000);
});
