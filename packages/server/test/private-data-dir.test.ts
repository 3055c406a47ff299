/**
 * What a job leaves on disk stays its owner's: the data dir is 0700 and the files in it 0600 (the database holds
 * env values, rank logs hold output), and a relative checkpoint_dir lands in the job's workdir, never in the
 * server's working directory.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeLeavingNothingRunning, expectApiError, isEnded, startTestServer, waitForJob } from './harness.ts';
import type { TestServer } from './harness.ts';

const modeOf = (file: string) => (statSync(file).mode & 0o777).toString(8);

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer();
});

afterAll(async () => {
  await closeLeavingNothingRunning(t);
});

describe('the data dir is private', () => {
  it('is 0700, and the database with its -wal and -shm, the token key, and rank logs are 0600', async () => {
    const job = await t.client.submitJob({ name: 'secret-output', resources: { gpus: 1 }, env: { API_KEY: 'hunter2' }, run: 'echo "$API_KEY"' });
    const ended = await waitForJob(t.client, job.id, isEnded);
    expect(ended.status).toBe('succeeded');
    const log = path.join(t.dataDir, 'jobs', job.id, 'attempt-1', 'rank-0.log');
    expect(readFileSync(log, 'utf8')).toContain('hunter2');
    const files = ['.', 'tutti.db', 'tutti.db-wal', 'tutti.db-shm', 'job-token.key', 'server.pid', path.relative(t.dataDir, log)];
    expect(Object.fromEntries(files.map((f) => [f, modeOf(path.join(t.dataDir, f))]))).toEqual({
      '.': '700', 'tutti.db': '600', 'tutti.db-wal': '600', 'tutti.db-shm': '600', 'job-token.key': '600', 'server.pid': '600', [path.relative(t.dataDir, log)]: '600',
    });
  });
});

describe('a relative checkpoint_dir', () => {
  it("is resolved against the job's workdir: the job is given that directory and it is created there", async () => {
    const name = `ckpt-${process.pid}`;
    const job = await t.client.submitJob({ name: 'relative-ckpt', resources: { gpus: 1 }, workdir: t.scratch, checkpoint_dir: `${name}/run1`, run: 'echo "dir=$TUTTI_CHECKPOINT_DIR"' });
    expect((await t.client.getJob(job.id)).spec.checkpoint_dir).toBe(path.join(t.scratch, name, 'run1'));
    await waitForJob(t.client, job.id, isEnded);
    expect(readFileSync(path.join(t.dataDir, 'jobs', job.id, 'attempt-1', 'rank-0.log'), 'utf8').trim()).toBe(`dir=${path.join(t.scratch, name, 'run1')}`);
    expect(existsSync(path.join(t.scratch, name, 'run1'))).toBe(true);
    expect(existsSync(path.join(process.cwd(), name))).toBe(false);
  });

  it('is refused, naming the field, when the job has no workdir to resolve it against', async () => {
    const error = await expectApiError(t.client.submitJob({ name: 'relative-ckpt', run: 'true', checkpoint_dir: 'ckpt' }));
    expect(error.status).toBe(400);
    expect(error.message).toMatch(/^checkpoint_dir: "ckpt" is a relative path and the job has no absolute workdir/);
  });
});
