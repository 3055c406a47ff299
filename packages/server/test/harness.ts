/** Test harness: a real tutti server on an ephemeral port with a temporary data dir, and job-script builders. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'vitest';
import { ApiError, TuttiClient } from '@tutti/client';
import type { JobSummaryView, JobView, TaskView } from '@tutti/client';
import { silentLogger, startTuttiServer } from '@tutti/server';
import type { TuttiServer, TuttiServerOptions } from '@tutti/server';

export interface TestServer {
  server: TuttiServer;
  client: TuttiClient;
  dataDir: string;
  /** A scratch directory for files jobs write or wait for. */
  scratch: string;
  close(): Promise<void>;
}

export async function startTestServer(options: Partial<TuttiServerOptions> = {}): Promise<TestServer> {
  const root = await mkdtemp(path.join(tmpdir(), 'tutti-test-'));
  const dataDir = path.join(root, 'data');
  const scratch = path.join(root, 'scratch');
  await import('node:fs/promises').then((fs) => fs.mkdir(scratch, { recursive: true }));
  const server = await startTuttiServer({ dataDir, port: 0, fakeGpus: '4', logger: silentLogger, tickMs: 200, stopGraceMs: 5000, ...options });
  return {
    server,
    client: new TuttiClient({ baseUrl: server.url }),
    dataDir,
    scratch,
    close: async () => {
      await server.close();
      await rm(root, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}

/** Polls a job until `predicate` holds; fails with the job's last state after `timeoutMs`. */
export async function waitForJob(client: TuttiClient, id: string, predicate: (job: JobView) => boolean, timeoutMs = 20_000): Promise<JobView> {
  const deadline = Date.now() + timeoutMs;
  let job = await client.getJob(id);
  while (!predicate(job)) {
    if (Date.now() > deadline) throw new Error(`job ${id} did not reach the expected state in ${timeoutMs} ms; last: ${JSON.stringify(job)}`);
    await sleep(50);
    job = await client.getJob(id);
  }
  return job;
}

export const isEnded = (job: JobSummaryView) => job.status === 'succeeded' || job.status === 'failed' || job.status === 'cancelled';
/** A local rank's pid, as the API shows it among its backend's details; null before the rank is launched. */
export function pidOf(task: TaskView): number | null {
  const pid = task.backend?.details.pid;
  return typeof pid === 'number' ? pid : null;
}

/** The one Slurm job that runs every rank of this attempt of `job` (the ranks' backend details name it). */
export function slurmJobOf(job: JobView): string {
  const ids = new Set((job.tasks ?? []).map((task) => task.backend?.details.slurm_job));
  expect(ids.size).toBe(1);
  const [id] = ids;
  expect(id).toMatch(/^\d+$/);
  return id as string;
}

export const isRunningWithPids = (job: JobView) => job.status === 'running' && (job.tasks ?? []).length > 0 && (job.tasks ?? []).every((t) => pidOf(t) !== null && t.status === 'running');

/** argv that runs a Node script in the rank: no shell, no dependency on what is installed. */
export function nodeScript(source: string, ...args: string[]): string[] {
  return [process.execPath, '-e', source, ...args];
}

/** A rank that waits until `file` exists, then exits with `code` (and says so on stdout). */
export function waitForFileThenExit(file: string, code = 0): string[] {
  return nodeScript(
    `const fs=require('fs');console.log('rank '+process.env.RANK+' waiting for '+process.argv[1]);` +
      `(function w(){if(fs.existsSync(process.argv[1])){console.log('rank '+process.env.RANK+' released');process.exit(${code});}setTimeout(w,25)})()`,
    file,
  );
}

export async function touch(file: string): Promise<void> {
  await writeFile(file, 'go');
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Leaves no rank behind: cancels whatever still runs, waits for it to end, then stops the server. */
export async function closeLeavingNothingRunning(t: TestServer | undefined): Promise<void> {
  if (!t) return;
  const { jobs } = await t.client.listJobs({ status: 'running', limit: 1000 });
  for (const job of jobs) await t.client.cancelJob(job.id);
  for (const job of jobs) await waitForJob(t.client, job.id, isEnded).catch(() => undefined);
  await t.close();
}

/** The ApiError a request was refused with (fails the test if it succeeded or failed otherwise). */
export async function expectApiError(promise: Promise<unknown>): Promise<ApiError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ApiError);
  return error as ApiError;
}
