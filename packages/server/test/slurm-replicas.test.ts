/**
 * Replicas of one control plane on Slurm: two real replica processes (fixtures/replica.ts) with `backend: 'slurm'` on
 * one real PostgreSQL database (scripts/pg-dev.sh) and one data dir, driving the real dev cluster's partition `four`
 * (scripts/slurm-dev-cluster.sh: n7, n8, each in its own network namespace with 4 fake GPUs; no other test file uses
 * it). kill -9 of the leader while a gang spanning both nodes runs and another job waits: the follower leads and
 * re-adopts the gang's Slurm job (the same one: nothing is submitted to Slurm again), the gang succeeds on its first
 * attempt with every rank started once, and the waiting job then runs.
 *
 * Needs root (the cluster), as CI has.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { JobView } from '@tutti/client';
import { useSlurmDevCluster } from '../../backends/test/slurm-cluster.ts';
import { createTestDatabase } from '../../store/test/postgres-dev-server.ts';
import { isEnded, nodeScript, slurmJobOf, touch, waitForJob } from './harness.ts';
import { leading, startReplicaProcess, waitFor } from './replica-process.ts';
import type { ReplicaProcess } from './replica-process.ts';

const PARTITION = 'four';
/** Short, so that the test waits seconds, not the default's 8: what a lease does does not depend on its length. */
const LEASE_TTL_MS = 2000;
const run = promisify(execFile);

let slurmEnv: Record<string, string> = {};
beforeAll(async () => {
  slurmEnv = await useSlurmDevCluster();
}, 300_000);

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  // Whatever Slurm job the test left (a failed test's) is cancelled: only this file uses partition four.
  await slurm('scancel', `--partition=${PARTITION}`).catch(() => undefined);
  await waitFor(`partition ${PARTITION} to be empty`, async () => ((await slurm('squeue', '-h', `--partition=${PARTITION}`, '-o', '%i')).trim() === '' ? true : undefined), 60_000);
}, 120_000);

/** One of Slurm's tools, run against the dev cluster; its stdout. */
async function slurm(program: string, ...args: string[]): Promise<string> {
  return (await run(program, args, { env: { ...process.env, ...slurmEnv } })).stdout;
}

/** A replica with `backend: 'slurm'` on partition four, with Slurm's environment (SLURM_CONF) in its own. */
async function startSlurmReplica(dataDir: string, database: string): Promise<ReplicaProcess> {
  const options = { backend: 'slurm', slurm: { partition: PARTITION, pollIntervalMs: 250, nodePollIntervalMs: 500 } };
  const replica = await startReplicaProcess({ dataDir, database, leaseTtlMs: LEASE_TTL_MS, options, env: slurmEnv });
  cleanups.push(replica.kill);
  return replica;
}

/**
 * A rank that notes its start (a line "ATTEMPT RANK" in MARKERS/<job id>), then runs until `release` exists (or exits
 * at once without one).
 */
function countedRank(markers: string, release?: string): string[] {
  return nodeScript(
    `const fs=require('fs');fs.appendFileSync(process.argv[1]+'/'+process.env.TUTTI_JOB_ID,process.env.TUTTI_ATTEMPT+' '+process.env.RANK+'\\n');` +
      `const r=process.argv[2];(function w(){if(!r||fs.existsSync(r))process.exit(0);setTimeout(w,25)})()`,
    markers,
    release ?? '',
  );
}

/** Each rank start of each job: "ATTEMPT RANK" lines, sorted. */
async function startsByJob(markers: string): Promise<Record<string, string[]>> {
  const starts: Record<string, string[]> = {};
  for (const file of await readdir(markers)) starts[file] = (await readFile(path.join(markers, file), 'utf8')).trim().split('\n').sort();
  return starts;
}

const isRunning = (job: JobView) => job.status === 'running' && (job.tasks ?? []).length > 0 && (job.tasks ?? []).every((task) => task.status === 'running');

describe('replicas of one control plane on Slurm (real Slurm, real PostgreSQL, real processes)', () => {
  it('kill -9 of the leader while a 2-node gang runs and a job waits: the follower leads, re-adopts the same Slurm job, the gang succeeds on attempt 1 with each rank started once, and the waiting job runs', async () => {
    const database = await createTestDatabase();
    cleanups.push(() => database.drop());
    const root = await mkdtemp(path.join(tmpdir(), 'tutti-slurm-replicas-'));
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    const dataDir = path.join(root, 'data');
    const markers = path.join(root, 'starts');
    const release = path.join(root, 'release');
    await mkdir(markers);

    const first = await startSlurmReplica(dataDir, database.url);
    await waitFor('the first replica to lead', leading(first), 60_000);
    const second = await startSlurmReplica(dataDir, database.url);
    expect((await second.client.health()).role).toBe('follower');

    // One rank on each of n7 and n8; then a job that wants a whole node (4 ranks), which the gang's GPU on each leaves
    // no room for.
    const gang = await first.client.submitJob({ name: 'gang-outlives-its-leader', resources: { gpus: 1 }, num_nodes: 2, run: countedRank(markers, release) });
    const before = await waitForJob(first.client, gang.id, isRunning, 120_000);
    expect(new Set(before.tasks?.map((task) => task.node))).toEqual(new Set(['n7', 'n8']));
    const slurmJob = slurmJobOf(before);
    await waitFor('both ranks to start', async () => ((await startsByJob(markers))[gang.id]?.length === 2 ? true : undefined), 60_000);
    const waiting = await first.client.submitJob({ name: 'waits-for-a-whole-node', resources: { gpus: 4 }, run: countedRank(markers) });
    expect((await waitForJob(first.client, waiting.id, (job) => job.pending_reason !== null, 30_000)).status).toBe('pending');

    first.child.kill('SIGKILL');
    await first.exited;
    // The gang does not depend on the control plane: Slurm runs it on while no replica leads.
    expect((await slurm('squeue', '-h', `--jobs=${slurmJob}`, '-o', '%T')).trim()).toBe('RUNNING');

    await waitFor('the follower to lead', leading(second), 60_000);
    const adopted = await second.client.getJob(gang.id);
    expect(adopted.status).toBe('running');
    expect(adopted.attempt).toBe(1);
    expect(adopted.tasks?.map((task) => [task.rank, task.node, task.status])).toEqual(before.tasks?.map((task) => [task.rank, task.node, 'running']));
    expect(slurmJobOf(adopted)).toBe(slurmJob);
    expect((await second.client.listJobEvents(gang.id)).events.map((event) => event.type)).toContain('adopted');
    // The only Slurm job in the partition is the gang's, from before: adopted, not submitted again.
    expect((await slurm('squeue', '-h', `--partition=${PARTITION}`, '-o', '%i')).trim().split('\n')).toEqual([slurmJob]);
    expect((await second.client.getJob(waiting.id)).status).toBe('pending');

    await touch(release);
    const done = await waitForJob(second.client, gang.id, isEnded, 60_000);
    expect(done).toMatchObject({ status: 'succeeded', attempt: 1, restarts: 0 });
    expect(done.tasks?.map((task) => task.exit_code)).toEqual([0, 0]);
    const ranAfter = await waitForJob(second.client, waiting.id, isEnded, 120_000);
    expect(ranAfter.status).toBe('succeeded');
    // Every rank started exactly once, on the first attempt: nothing ran twice across the failover.
    expect(await startsByJob(markers)).toEqual({ [gang.id]: ['1 0', '1 1'], [waiting.id]: ['1 0', '1 1', '1 2', '1 3'] });
  }, 300_000);
});
