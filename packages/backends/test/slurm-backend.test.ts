/**
 * The Slurm backend against a real Slurm cluster (scripts/slurm-dev-cluster.sh: slurmctld and a slurmd per virtual
 * node, each node in its own network namespace): the backend conformance suite on partition `one` (node n1), and
 * what is Slurm's own — gangs across nodes with each rank on the node tutti placed it on, MASTER_ADDR on the node of
 * rank 0 as the others reach it, a node that goes down.
 */
import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ExecutionBackend, RankHandle } from '../src/execution-backend.ts';
import { createSlurmBackend, type SlurmBackendOptions } from '../src/slurm/slurm-backend.ts';
import { readSlurmRankRef } from '../src/slurm/slurm-rank-ref.ts';
import { describeExecutionBackendConformance, logOf, makeRanks, recordExits, waitUntil, type ConformanceHarness } from './execution-backend-conformance.ts';
import { useSlurmDevCluster } from './slurm-cluster.ts';

const run = promisify(execFile);
let slurmEnv: Record<string, string> = {};

beforeAll(async () => {
  slurmEnv = await useSlurmDevCluster();
}, 300_000);

/** Cancels the Slurm jobs of these ranks outright (cleanup after each test). */
async function cancelRanks(handles: readonly RankHandle[]): Promise<void> {
  const ids = [...new Set(handles.map((h) => readSlurmRankRef(h).slurmJobId))];
  if (ids.length > 0) await run('scancel', ['--signal=KILL', ...ids], { env: { ...process.env, ...slurmEnv } }).catch(() => undefined);
}

async function makeSlurmHarness(options: Partial<SlurmBackendOptions> = {}): Promise<ConformanceHarness> {
  // Under the working directory's file system, as a site's shared one: every virtual node sees this machine's files.
  const root = await mkdtemp(join(os.tmpdir(), 'tutti-slurm-backend-'));
  const workdir = join(root, 'work');
  mkdirSync(workdir);
  return {
    workdir,
    createBackend: () => createSlurmBackend({ dataDir: join(root, 'data'), partition: 'one', env: slurmEnv, pollIntervalMs: 200, nodePollIntervalMs: 1_000, launchTimeoutMs: 30_000, ...options }),
    killRanks: cancelRanks,
    // slurmstepd's own line in a stopped task's output.
    stopNotice: /^slurmstepd-\S+: error: \*\*\* STEP \d+\.\d+ ON \S+ CANCELLED AT \S+ \*\*\*$/,
    dispose: () => rm(root, { recursive: true, force: true }),
  };
}

describeExecutionBackendConformance('Slurm backend (real Slurm)', () => makeSlurmHarness());

describe('Slurm backend (real Slurm)', () => {
  let harness: ConformanceHarness;
  let backend: ExecutionBackend;
  const launched: RankHandle[] = [];

  beforeEach(async () => {
    harness = await makeSlurmHarness();
    backend = await harness.createBackend();
  });

  afterEach(async () => {
    await cancelRanks(launched.splice(0));
    await backend.close();
    await harness.dispose();
  });

  const shell = (command: string) => ({ kind: 'shell' as const, command });

  // A rank on a node that died is stopped until Slurm gives its job up, while the gang's next attempt already runs.
  it('watches a rank of the next attempt on its own while the same rank of the last attempt is still being stopped', async () => {
    const exits = recordExits(backend);
    const [node] = await backend.inventory();
    const jobId = `next-attempt-${process.pid}`;
    const [last] = await backend.launch({
      jobId, jobName: 'slow-to-stop', workdir: harness.workdir, env: {}, attempt: 1,
      run: shell('trap \'\' TERM; echo ready; while :; do sleep 0.05; done'), ranks: makeRanks(node!, 1),
    });
    launched.push(last!);
    await waitUntil(async () => (await logOf(backend, last!)).includes('ready'), 'the rank to be ready');
    const stopping = backend.stop([last!], { graceMs: 1_500 });
    launched.push(...(await backend.launch({ jobId, jobName: 'next', workdir: harness.workdir, env: {}, attempt: 2, run: shell('sleep 0.3; exit 3'), ranks: makeRanks(node!, 1) })));
    await stopping;
    await waitUntil(() => exits.of(jobId).length >= 2, 'both attempts\' exits');
    expect(exits.of(jobId).map((e) => [e.attempt, e.exitCode]).sort()).toEqual([[1, 137], [2, 3]]);
  });
});
