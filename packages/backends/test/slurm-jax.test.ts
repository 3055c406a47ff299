/**
 * JAX on the Slurm backend, for real (scripts/slurm-dev-cluster.sh, partition `two`: n2, n3): two processes, one per
 * node, with rank 0 on n3 — not the node Slurm lists first — call `jax.distributed.initialize()`
 * - with no arguments: tutti's cluster detection (packages/backends/python, on the ranks' PYTHONPATH) answers;
 * - with `cluster_detection_method="slurm"`: JAX's own Slurm detection gives the process count and id from Slurm's
 *   variables, and JAX reads the coordinator from tutti's JAX_COORDINATOR_ADDRESS itself.
 * Both meet at rank 0's node. JAX is not a Debian package: these run only where TUTTI_JAX_PYTHON names a Python with
 * JAX (CPU is enough), and are skipped, saying so, elsewhere.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RankLaunch } from '../src/execution-backend.ts';
import { createSlurmBackend } from '../src/slurm/slurm-backend.ts';
import { SLURM_RANK_FILES, slurmRankFile } from '../src/slurm/slurm-submission.ts';
import { attemptDirectory } from '../src/local/rank-files.ts';
import { recordExits } from './execution-backend-conformance.ts';
import { useSlurmDevCluster } from './slurm-cluster.ts';

function findJaxPython(): string | undefined {
  const candidate = process.env.TUTTI_JAX_PYTHON;
  if (candidate === undefined) return undefined;
  try {
    execFileSync(candidate, ['-c', 'import jax'], { stdio: 'ignore', timeout: 120_000 });
    return candidate;
  } catch {
    return undefined;
  }
}

const PYTHON = findJaxPython();
if (!PYTHON) console.warn('[skipped] JAX on the Slurm backend: no Python with JAX (set TUTTI_JAX_PYTHON to one; JAX is not in Debian)');

/**
 * Initializes as argv[1] says (which returns once every process has joined the coordinator on rank 0's node), then
 * reports what JAX made of it. (No collective after it: the virtual nodes share a host name that resolves to the
 * loopback address, which JAX's CPU collectives would bind to.)
 */
const SCRIPT = `
import json, os, sys
import jax
if sys.argv[1] == "slurm":
    jax.distributed.initialize(cluster_detection_method="slurm")
else:
    jax.distributed.initialize()
print(json.dumps({"process": jax.process_index(), "count": jax.process_count(), "node": os.environ["SLURMD_NODENAME"]}), flush=True)
jax.distributed.shutdown()
`;

let slurmEnv: Record<string, string> = {};
let scratch = '';

describe.skipIf(!PYTHON)('JAX on the Slurm backend (real Slurm and JAX on CPU)', () => {
  beforeAll(async () => {
    slurmEnv = await useSlurmDevCluster();
    scratch = await mkdtemp(path.join(tmpdir(), 'tutti-slurm-jax-'));
    await writeFile(path.join(scratch, 'jax_init.py'), SCRIPT);
  }, 300_000);

  afterAll(async () => {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  // Rank 0 on n3: Slurm lists n2 first (SLURM_STEP_NODELIST=n[2-3]).
  const ranks: RankLaunch[] = [
    { rank: 0, localRank: 0, nodeRank: 0, node: 'n3', gpus: [] },
    { rank: 1, localRank: 0, nodeRank: 1, node: 'n2', gpus: [] },
  ];

  it.each([['tutti\'s cluster detection', 'default'], ['JAX\'s own Slurm detection', 'slurm']])('%s: both processes initialize and meet at rank 0\'s node', async (_what, method) => {
    const name = `jax-${method}`;
    const slurm = createSlurmBackend({ dataDir: path.join(scratch, name), partition: 'two', env: slurmEnv, pollIntervalMs: 200, nodePollIntervalMs: 300, launchTimeoutMs: 60_000 });
    try {
      const exits = recordExits(slurm);
      const jobId = `${name}-${process.pid}`;
      await slurm.launch({ jobId, jobName: name, workdir: scratch, env: {}, attempt: 1, run: { kind: 'argv', argv: [PYTHON as string, path.join(scratch, 'jax_init.py'), method] }, ranks });
      const dir = attemptDirectory(path.join(scratch, name), jobId, 1);
      const readLogs = () => Promise.all(ranks.map(async (r) => (await readFile(slurmRankFile(dir, SLURM_RANK_FILES.log, r.rank), 'utf8').catch(() => '')).trim()));
      // JAX's import and its coordinator take seconds on a busy machine.
      const deadline = Date.now() + 90_000;
      while (exits.of(jobId).length < 2) {
        if (Date.now() > deadline) throw new Error(`the JAX processes did not end in 90 s; their logs:\n${(await readLogs()).join('\n---\n')}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      const codes = exits.of(jobId).map((e) => e.exitCode);
      const logs = await readLogs();
      expect(codes, logs.join('\n---\n')).toEqual([0, 0]);
      expect(logs.map((log) => JSON.parse(log.split('\n').at(-1)!) as unknown)).toEqual([
        { process: 0, count: 2, node: 'n3' },
        { process: 1, count: 2, node: 'n2' },
      ]);
    } finally {
      await slurm.close();
    }
  }, 120_000);
});
