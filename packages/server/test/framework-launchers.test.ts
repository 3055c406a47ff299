/**
 * Frameworks with zero glue, against the real thing: a rank's environment beside what a real `torchrun` gives its
 * workers on this machine (2 ranks, and 2 nodes × 2), `torchrun` itself as the run command of a `launcher: per-node`
 * job (training examples/ddp-torch to the same weights as one process per GPU), the job's own Python environment,
 * torchrun's restart counters through a preemption, and the structured error of a failed rank as the job's reason.
 *
 * Needs Debian's python3-torch (which .ci/run installs; /usr/bin/torchrun comes with it), or the Python of another
 * torch in TUTTI_TORCH_PYTHON (a virtualenv's bin/python, its torchrun beside it); without one these tests are
 * skipped and say so. The fake GPUs only reserve slots: training runs on CPU with gloo.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { LOCAL_NODE_ADDRESS, SANE_PATH, computeRankEnvironment, type RankLaunch } from '@tutti/backends';
import { closeLeavingNothingRunning, isEnded, isRunningWithPids, startTestServer, waitForJob } from './harness.ts';
import type { TestServer } from './harness.ts';

const run = promisify(execFile);
const EXAMPLE = fileURLToPath(new URL('../../../examples/ddp-torch/', import.meta.url));
const PYTHON = process.env.TUTTI_TORCH_PYTHON ?? '/usr/bin/python3';
const TORCHRUN = path.join(path.dirname(PYTHON), 'torchrun');
/** What a job runs: Debian's through the ranks' system PATH, another one by its path. */
const [JOB_PYTHON, JOB_TORCHRUN] = PYTHON === '/usr/bin/python3' ? ['python3', 'torchrun'] : [PYTHON, TORCHRUN];

function hasTorch(): boolean {
  try {
    execFileSync(PYTHON, ['-c', 'import torch.distributed.run'], { stdio: 'ignore', timeout: 60_000 });
    execFileSync(TORCHRUN, ['--help'], { stdio: 'ignore', timeout: 60_000 });
    return true;
  } catch {
    return false;
  }
}
const TORCH = hasTorch();
if (!TORCH) console.warn('[skipped] framework launcher tests: no /usr/bin/python3 with torch and /usr/bin/torchrun (apt-get install python3-torch)');

/**
 * Debian 12's torch 1.13 on Python 3.11: torchrun's default `--redirects 0 --tee 0` crash at start (Std.from_str
 * finds no member for 0, an IntFlag change of Python 3.11). `--redirects 1 --tee 1` avoids the path; a fixed torch
 * needs nothing. What a user of that package must add too (docs/frameworks.md says so).
 */
const TORCHRUN_WORKAROUND = TORCH && execFileSync(PYTHON, ['-c', 'from torch.distributed.elastic.multiprocessing.api import Std; print(Std.from_str("0") is None)'], { encoding: 'utf8' }).trim() === 'True'
  ? ['--redirects', '1', '--tee', '1']
  : [];

/** Writes the worker's whole environment to $OUT/env-<RANK>.json. */
const DUMP_ENV = `import json, os
with open(os.path.join(os.environ["OUT"], "env-%s.json" % os.environ.get("RANK", "node-" + os.environ.get("NODE_RANK", "x"))), "w") as f:
    json.dump(dict(os.environ), f)
`;

/**
 * Every variable a torchrun worker gets from torchrun (torch 1.13 to 2.x), and what tutti's per-gpu rank has for it:
 * - `same`: the same value;
 * - `own`: a value of its own by design (ports, ids and paths are per job; OMP_NUM_THREADS is the CPUs ÷ the ranks,
 *   where torchrun says 1);
 * - `absent`: not set, by design: TORCHELASTIC_USE_AGENT_STORE tells a worker that torchrun's agent hosts the
 *   rendezvous store, and TORCHELASTIC_SIGNALS_TO_HANDLE (torch 2.x) which signals the agent forwards; under tutti
 *   there is no agent: rank 0 hosts the store, and the stop signal goes to every rank's process group.
 * A torchrun that sets a variable missing here fails the test: then decide what tutti gives for it.
 */
const TORCHRUN_PARITY: Readonly<Record<string, 'same' | 'own' | 'absent'>> = {
  RANK: 'same', LOCAL_RANK: 'same', WORLD_SIZE: 'same', LOCAL_WORLD_SIZE: 'same', GROUP_RANK: 'same', GROUP_WORLD_SIZE: 'same',
  ROLE_RANK: 'same', ROLE_WORLD_SIZE: 'same', ROLE_NAME: 'same', MASTER_ADDR: 'same', MASTER_PORT: 'own',
  TORCHELASTIC_RESTART_COUNT: 'same', TORCHELASTIC_MAX_RESTARTS: 'same', TORCHELASTIC_RUN_ID: 'own', TORCHELASTIC_ERROR_FILE: 'own',
  TORCHELASTIC_USE_AGENT_STORE: 'absent', TORCHELASTIC_SIGNALS_TO_HANDLE: 'absent', NCCL_ASYNC_ERROR_HANDLING: 'same', TORCH_NCCL_ASYNC_ERROR_HANDLING: 'same', OMP_NUM_THREADS: 'own',
};

/** What torchrun added to the environment it was started with, per worker (by RANK). */
async function torchrunWorkers(out: string, launches: Array<{ nodeRank: number }>, nnodes: number, extraArgs: string[]): Promise<Map<string, Record<string, string>>> {
  await mkdir(out, { recursive: true });
  await writeFile(path.join(out, 'dump.py'), DUMP_ENV);
  const startEnv = { PATH: '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', LANG: 'C.UTF-8', OUT: out };
  const port = String(29_400 + (process.pid % 500));
  await Promise.all(launches.map(({ nodeRank }) => run(TORCHRUN, [
    ...TORCHRUN_WORKAROUND, `--nnodes=${nnodes}`, `--node_rank=${nodeRank}`, '--nproc_per_node=2', `--master_addr=${LOCAL_NODE_ADDRESS}`, `--master_port=${port}`,
    ...extraArgs, path.join(out, 'dump.py'),
  ], { env: startEnv, cwd: out, timeout: 120_000 })));
  const workers = new Map<string, Record<string, string>>();
  for (const file of (await readdir(out)).filter((f) => /^env-\d+\.json$/.test(f))) {
    const env = JSON.parse(await readFile(path.join(out, file), 'utf8')) as Record<string, string>;
    workers.set(env.RANK!, Object.fromEntries(Object.entries(env).filter(([name]) => !(name in startEnv))));
  }
  return workers;
}

/** Compares one rank's environment with torchrun's worker of the same rank, variable by variable, per TORCHRUN_PARITY. */
function expectParity(tutti: Record<string, string>, torchrun: Record<string, string>, which: string): void {
  const unknown = Object.keys(torchrun).filter((name) => !(name in TORCHRUN_PARITY));
  expect(unknown, `${which}: variables torchrun sets that the parity table does not know`).toEqual([]);
  for (const [name, rule] of Object.entries(TORCHRUN_PARITY)) {
    if (!(name in torchrun)) continue; // another torch version's
    if (rule === 'same') expect([name, tutti[name]], which).toEqual([name, torchrun[name]]);
    else if (rule === 'own') expect(tutti[name], `${which}: ${name}`).toMatch(/./);
    else expect(tutti[name], `${which}: ${name}`).toBeUndefined();
  }
}

let t: TestServer | undefined;
afterEach(async () => {
  await closeLeavingNothingRunning(t);
  t = undefined;
});

async function rankEnvs(scratch: string, count: number): Promise<Record<string, string>[]> {
  return Promise.all(Array.from({ length: count }, async (_, rank) => JSON.parse(await readFile(path.join(scratch, `env-${rank}.json`), 'utf8')) as Record<string, string>));
}

describe.skipIf(!TORCH)('frameworks through tutti, beside a real torchrun (CPU, gloo; fake GPUs)', () => {
  it('gives 2 ranks what torchrun gives its 2 workers (max_restarts 3 included), from a clean environment', async () => {
    t = await startTestServer({ fakeGpus: '2' });
    const reference = await torchrunWorkers(path.join(t.scratch, 'torchrun'), [{ nodeRank: 0 }], 1, ['--max_restarts=3']);
    expect([...reference.keys()].sort()).toEqual(['0', '1']);

    await writeFile(path.join(t.scratch, 'dump.py'), DUMP_ENV);
    const job = await t.client.submitJob({ name: 'parity', resources: { gpus: 2 }, run: [JOB_PYTHON, 'dump.py'], workdir: t.scratch, env: { OUT: t.scratch }, max_restarts: 3 });
    expect((await waitForJob(t.client, job.id, isEnded, 60_000)).status).toBe('succeeded');
    const envs = await rankEnvs(t.scratch, 2);
    envs.forEach((env, rank) => expectParity(env, reference.get(String(rank))!, `rank ${rank}`));
    expect(envs.map((env) => env.TORCHELASTIC_MAX_RESTARTS)).toEqual(['3', '3']);
    // python3 was found on a system PATH, not on the server's (the test runner's), and nothing else of the server's
    // environment came along.
    expect(envs[0]!.PATH).toBe(SANE_PATH);
    const leaked = Object.keys(envs[0]!).filter((name) => name.startsWith('npm_') || name.startsWith('VITEST') || name === 'NODE_OPTIONS' || name === 'TUTTI_TEST');
    expect(leaked).toEqual([]);
  }, 180_000);

  it('gives 2 nodes × 2 ranks what torchrun gives 2 agents of 2 workers', async () => {
    t = await startTestServer({ fakeGpus: '2' });
    const reference = await torchrunWorkers(path.join(t.scratch, 'torchrun-2x2'), [{ nodeRank: 0 }, { nodeRank: 1 }], 2, []);
    expect([...reference.keys()].sort()).toEqual(['0', '1', '2', '3']);
    // The local backend has one node: the environment of a 2-node gang is the one every backend computes (the Slurm
    // backend's shim is compared with it on a real cluster in slurm-dev-cluster.test.ts).
    const ranks: RankLaunch[] = [0, 1, 2, 3].map((rank) => ({ rank, localRank: rank % 2, nodeRank: Math.floor(rank / 2), node: `n${Math.floor(rank / 2)}`, gpus: [0, 1] }));
    for (const rank of ranks) {
      const env = computeRankEnvironment({
        jobId: '7', jobName: 'parity', ranks, rank, masterAddr: LOCAL_NODE_ADDRESS, masterPort: 29_500, coordinatorPort: 29_501,
        logPath: '/tmp/log', errorFile: '/tmp/error.json', base: {}, jobEnv: {}, cpus: 8,
      });
      expectParity(env, reference.get(String(rank.rank))!, `rank ${rank.rank}`);
    }
  }, 180_000);

  it('runs `torchrun train.py` once per node with launcher: per-node, training to the same weights as one process per GPU', async () => {
    t = await startTestServer({ fakeGpus: '2' });
    const steps = { STEPS: '40', CHECKPOINT_EVERY: '20' };
    const perGpu = await t.client.submitJob({ name: 'ddp-per-gpu', resources: { gpus: 2 }, run: [JOB_PYTHON, 'train.py'], workdir: EXAMPLE, env: steps });
    const perNode = await t.client.submitJob({
      name: 'ddp-per-node', resources: { gpus: 2 }, launcher: 'per-node', run: [JOB_TORCHRUN, ...TORCHRUN_WORKAROUND, 'train.py'], workdir: EXAMPLE,
      env: { ...steps, TUTTI_CHECKPOINT_DIR: path.join(t.scratch, 'per-node-checkpoints') },
    });
    const [gpuDone, nodeDone] = [await waitForJob(t.client, perGpu.id, isEnded, 180_000), await waitForJob(t.client, perNode.id, isEnded, 180_000)];
    expect([gpuDone.status, nodeDone.status]).toEqual(['succeeded', 'succeeded']);
    // One rank: the per-node process, holding both GPUs.
    expect(nodeDone.tasks?.map((task) => [task.rank, task.gpus])).toEqual([[0, [0, 1]]]);
    const digestOf = async (id: string) => /final weights digest: ([0-9a-f]{16})/.exec(await readFile(path.join(t!.dataDir, 'jobs', id, 'attempt-1', 'rank-0.log'), 'utf8'))?.[1];
    const expected = await digestOf(perGpu.id);
    expect(expected).toMatch(/^[0-9a-f]{16}$/);
    expect(await digestOf(perNode.id)).toBe(expected);
  }, 300_000);

  it('runs the job in its python_env, and in the submitter\'s virtualenv sent by the CLI, finding modules only that environment has', async () => {
    t = await startTestServer({ fakeGpus: '2' });
    const venv = path.join(t.scratch, 'venv');
    execFileSync(PYTHON, ['-m', 'venv', '--without-pip', '--system-site-packages', venv], { stdio: 'ignore', timeout: 60_000 });
    const sitePackages = (await readdir(path.join(venv, 'lib'))).map((v) => path.join(venv, 'lib', v, 'site-packages'))[0]!;
    await writeFile(path.join(sitePackages, 'only_in_the_venv.py'), 'WHERE = "venv"\n');
    const probe = ['python3', '-c', 'import only_in_the_venv, os, sys; print("found", only_in_the_venv.WHERE, sys.prefix, os.environ.get("VIRTUAL_ENV"))'];

    const outside = await t.client.submitJob({ name: 'no-venv', resources: { gpus: 1 }, run: probe, workdir: t.scratch });
    const bySpec = await t.client.submitJob({ name: 'python-env', resources: { gpus: 1 }, run: probe, workdir: t.scratch, python_env: venv });
    const byCli = await t.client.submitJob({ name: 'from-venv', resources: { gpus: 1 }, run: probe, workdir: t.scratch }, {
      submitterEnv: { PATH: `${venv}/bin:/usr/bin:/bin`, VIRTUAL_ENV: venv },
    });
    const ended = await Promise.all([outside, bySpec, byCli].map((job) => waitForJob(t!.client, job.id, isEnded, 60_000)));
    expect(ended.map((job) => job.status)).toEqual(['failed', 'succeeded', 'succeeded']);
    const log = (id: string) => readFile(path.join(t!.dataDir, 'jobs', id, 'attempt-1', 'rank-0.log'), 'utf8');
    expect(await log(outside.id)).toContain("No module named 'only_in_the_venv'");
    for (const job of [bySpec, byCli]) expect(await log(job.id)).toContain(`found venv ${venv} ${venv}`);
    // The CLI's variables became the job's env, visible in its spec; the spec's own would have won.
    expect((await t.client.getJob(byCli.id)).spec.env).toMatchObject({ PATH: `${venv}/bin:/usr/bin:/bin`, VIRTUAL_ENV: venv });
  }, 180_000);

  it('counts a preemption in TUTTI_PREEMPTIONS, not in TORCHELASTIC_RESTART_COUNT, and a failure restart in both counters of restarts', async () => {
    t = await startTestServer({ fakeGpus: '2' });
    const script = `import json, os, sys, time
attempt = os.environ["TUTTI_ATTEMPT"]
with open(os.path.join(os.environ["OUT"], "counters-%s.json" % attempt), "w") as f:
    json.dump({k: os.environ[k] for k in ("TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS", "TUTTI_PREEMPTIONS", "TUTTI_RESTARTS")}, f)
if attempt == "1":
    time.sleep(600)   # preempted meanwhile
if attempt == "2":
    sys.exit(3)       # fails: restarted
`;
    await writeFile(path.join(t.scratch, 'counters.py'), script);
    const job = await t.client.submitJob({ name: 'counters', resources: { gpus: 1 }, run: [JOB_PYTHON, 'counters.py'], workdir: t.scratch, env: { OUT: t.scratch }, max_restarts: 2, restart_backoff: '0s' });
    await waitForJob(t.client, job.id, isRunningWithPids, 60_000);
    await waitForFile(path.join(t.scratch, 'counters-1.json'));
    expect(await t.server.controller.preempt(job.id, { message: 'a higher-priority job needs the GPUs' })).toBe('preempting');
    const done = await waitForJob(t.client, job.id, isEnded, 120_000);
    expect(done.status).toBe('succeeded');
    const counters = await Promise.all([1, 2, 3].map(async (a) => JSON.parse(await readFile(path.join(t!.scratch, `counters-${a}.json`), 'utf8')) as Record<string, string>));
    expect(counters).toEqual([
      { TORCHELASTIC_RESTART_COUNT: '0', TORCHELASTIC_MAX_RESTARTS: '2', TUTTI_PREEMPTIONS: '0', TUTTI_RESTARTS: '0' },
      { TORCHELASTIC_RESTART_COUNT: '0', TORCHELASTIC_MAX_RESTARTS: '2', TUTTI_PREEMPTIONS: '1', TUTTI_RESTARTS: '0' },
      { TORCHELASTIC_RESTART_COUNT: '1', TORCHELASTIC_MAX_RESTARTS: '2', TUTTI_PREEMPTIONS: '1', TUTTI_RESTARTS: '1' },
    ]);
  }, 180_000);

  it('tells the structured error a rank recorded (torch.distributed.elastic @record) as the job\'s failure reason', async () => {
    t = await startTestServer({ fakeGpus: '2' });
    await writeFile(path.join(t.scratch, 'fails.py'), `import os
from torch.distributed.elastic.multiprocessing.errors import record

@record
def main():
    if os.environ["RANK"] == "1":
        raise RuntimeError("the loss is NaN at step 312")

main()
`);
    const job = await t.client.submitJob({ name: 'fails', resources: { gpus: 2 }, run: [JOB_PYTHON, 'fails.py'], workdir: t.scratch });
    const done = await waitForJob(t.client, job.id, isEnded, 60_000);
    expect(done.status).toBe('failed');
    expect(done.end_reason).toBe('rank 1 exited with code 1: RuntimeError: the loss is NaN at step 312');
  }, 120_000);
});

async function waitForFile(file: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await readFile(file).then(() => true, () => false))) {
    if (Date.now() > deadline) throw new Error(`${file} never appeared`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
