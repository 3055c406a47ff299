/**
 * `launcher: mpi` through tutti for real: an MPI program (mpi4py over Open MPI) on 4 ranks of the local backend (fake
 * GPUs only reserve slots), started by mpirun. Needs Open MPI's mpirun and a Python with mpi4py (Debian: openmpi-bin
 * and python3-mpi4py, which .ci/run installs); without them these tests are skipped and say so.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { closeLeavingNothingRunning, isEnded, isRunningWithPids, pidOf, startTestServer, waitForJob } from './harness.ts';
import type { TestServer } from './harness.ts';

function findMpiPython(): string | undefined {
  try {
    if (!execFileSync('mpirun', ['--version'], { encoding: 'utf8', timeout: 30_000 }).includes('Open MPI')) return undefined;
  } catch {
    return undefined;
  }
  for (const candidate of ['/usr/bin/python3', 'python3']) {
    try {
      execFileSync(candidate, ['-c', 'import mpi4py'], { stdio: 'ignore', timeout: 30_000 });
      return candidate;
    } catch {
      // not this one
    }
  }
  return undefined;
}

const PYTHON = findMpiPython();
if (!PYTHON) console.warn('[skipped] launcher: mpi tests through tutti: no Open MPI mpirun with a python3 that has mpi4py (apt-get install openmpi-bin python3-mpi4py)');

/**
 * Each rank says who it is to MPI and to tutti after an allreduce of the ranks (which every rank must join). With
 * FAIL_RANK, that rank then fails as MPI programs do, with MPI_Abort (a plain exit would wait in MPI_Finalize for the
 * other ranks); with WAIT, the others wait until they are stopped, saying so.
 */
const HELLO = `
import os, signal, sys, time
from mpi4py import MPI
comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
total = comm.allreduce(rank, op=MPI.SUM)
print(f"hello from MPI rank {rank} of {size}: sum of ranks {total}, OMPI_COMM_WORLD_RANK={os.environ.get('OMPI_COMM_WORLD_RANK')}, RANK={os.environ.get('RANK')}", flush=True)
if os.environ.get("FAIL_RANK") == str(rank):
    print(f"rank {rank} fails on purpose", flush=True)
    comm.Abort(3)
if os.environ.get("WAIT"):
    def stopped(signum, frame):
        print(f"rank {rank} stopped by signal {signum}", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stopped)
    print(f"rank {rank} waiting (pid {os.getpid()})", flush=True)
    while True:
        time.sleep(0.05)
`;

let t: TestServer | undefined;
afterEach(async () => {
  await closeLeavingNothingRunning(t);
  t = undefined;
});

const rankLog = (dataDir: string, id: string, rank: number) => readFileSync(`${dataDir}/jobs/${id}/attempt-1/rank-${rank}.log`, 'utf8');

/** Live processes whose argv mentions `text` (the job's files: mpirun, the ranks' supervisors; the script: the ranks). */
function processesMentioning(text: string): string[][] {
  const found: string[][] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\u0000');
      const state = /\)\s+(\S)/.exec(readFileSync(`/proc/${entry}/stat`, 'utf8'))?.[1];
      if (state !== 'Z' && args.some((arg) => arg.includes(text))) found.push([entry, ...args]);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function startWithScript(): Promise<{ t: TestServer; script: string }> {
  const server = await startTestServer({ fakeGpus: '4' });
  const script = path.join(server.scratch, 'mpi_hello.py');
  await writeFile(script, HELLO);
  return { t: server, script };
}

const job = (name: string, script: string, env: Record<string, string> = {}) => ({
  name, resources: { gpus: 4 }, launcher: 'mpi', run: [PYTHON as string, script], env, preemption_grace: '10s',
});

describe.skipIf(!PYTHON)('launcher: mpi through tutti (mpi4py over Open MPI, 4 ranks; fake GPUs)', () => {
  it('an MPI hello world on 4 ranks succeeds: MPI\'s rank is tutti\'s RANK, each rank\'s log holds its own line, and nothing of it is left', async () => {
    let script: string;
    ({ t, script } = await startWithScript());
    const submitted = await t.client.submitJob(job('mpi-hello', script));
    const done = await waitForJob(t.client, submitted.id, isEnded, 60_000);
    expect([done.status, done.end_reason]).toEqual(['succeeded', 'all 4 ranks exited with code 0']);
    for (let rank = 0; rank < 4; rank++) {
      expect(rankLog(t.dataDir, submitted.id, rank)).toBe(`hello from MPI rank ${rank} of 4: sum of ranks 6, OMPI_COMM_WORLD_RANK=${rank}, RANK=${rank}\n`);
    }
    await waitForNothingLeft(path.join(t.dataDir, 'jobs', submitted.id), script);
  }, 120_000);

  it('a rank that calls MPI_Abort fails the job (its reason in mpirun\'s words when mpirun said them in time); nothing of the job is left', async () => {
    let script: string;
    ({ t, script } = await startWithScript());
    const submitted = await t.client.submitJob(job('mpi-fails', script, { FAIL_RANK: '2', WAIT: '1' }));
    const done = await waitForJob(t.client, submitted.id, isEnded, 60_000);
    expect(done.status).toBe('failed');
    // Which rank tutti hears of first may be one mpirun killed. The reason carries mpirun's words when mpirun had said
    // them by then; it may say them later, or not at all once tutti has stopped it with the ranks (best effort).
    expect(done.end_reason).toMatch(/^rank \d (exited with code \d+|was killed by \w+|was lost .*)(: MPI_ABORT was invoked on rank 2 in communicator MPI_COMM_WORLD with errorcode 3.*)?$/);
    expect(rankLog(t.dataDir, submitted.id, 2)).toMatch(/rank 2 fails on purpose/);
    await waitForNothingLeft(path.join(t.dataDir, 'jobs', submitted.id), script);
  }, 120_000);

  it('a cancel stops every rank and leaves no process of the job (mpirun included)', async () => {
    let script: string;
    ({ t, script } = await startWithScript());
    const submitted = await t.client.submitJob(job('mpi-cancel', script, { WAIT: '1' }));
    const running = await waitForJob(t.client, submitted.id, isRunningWithPids, 60_000);
    await waitForLogs(t.dataDir, submitted.id, /waiting/);
    const pids = (running.tasks ?? []).map(pidOf);
    expect(pids.every((pid) => typeof pid === 'number')).toBe(true);
    // The ranks themselves: 4 Pythons (beside them, their supervisors and mpirun name the script too).
    expect(processesMentioning(script).filter(([, program]) => program === PYTHON)).toHaveLength(4);
    await t.client.cancelJob(submitted.id);
    const done = await waitForJob(t.client, submitted.id, isEnded, 60_000);
    expect(done.status).toBe('cancelled');
    for (let rank = 0; rank < 4; rank++) expect(rankLog(t.dataDir, submitted.id, rank)).toMatch(new RegExp(`rank ${rank} stopped by signal 15`));
    // The backend's stop has returned once the job is cancelled: nothing may be left at this moment.
    expect(processesMentioning(path.join(t.dataDir, 'jobs', submitted.id))).toEqual([]);
    expect(processesMentioning(script)).toEqual([]);
  }, 120_000);
});

async function waitForLogs(dataDir: string, id: string, pattern: RegExp): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const logs = [0, 1, 2, 3].map((rank) => {
      try {
        return rankLog(dataDir, id, rank);
      } catch {
        return '';
      }
    });
    if (logs.every((log) => pattern.test(log))) return;
    if (Date.now() > deadline) throw new Error(`the ranks' logs never all matched ${pattern}: ${JSON.stringify(logs)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** mpirun exits by itself once its ranks are over (or is ended by the backend): wait for every process of the job to go. */
async function waitForNothingLeft(jobDir: string, script: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (processesMentioning(jobDir).length + processesMentioning(script).length > 0) {
    if (Date.now() > deadline) throw new Error(`processes left: ${JSON.stringify([...processesMentioning(jobDir), ...processesMentioning(script)])}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

