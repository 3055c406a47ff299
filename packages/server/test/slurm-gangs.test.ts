/**
 * tutti on a real Slurm cluster (scripts/slurm-dev-cluster.sh, partition `three`: n4, n5, n6, each in its own network
 * namespace with its own eth0 address and 4 fake GPUs): a server with `backend: 'slurm'` runs examples/ddp-torch — real
 * PyTorch DDP on CPU with gloo — as one rank on each of two nodes, through sbatch and srun; and when one of those
 * nodes dies mid-run, the gang is stopped, requeued and started again on the two nodes left, resumes from its last
 * checkpoint, and ends with exactly the weights of a run that was never interrupted. Cancelled or preempted, a gang
 * checkpoints within its grace. A drained node takes no work and says why; GPUs another Slurm user holds are placed around. A
 * `tutti up --backend slurm` killed with SIGKILL re-adopts its gangs (and does not leave a cut launch queued).
 *
 * The tests share partition three, so they run one after the other in this one file.
 *
 * Needs root (the cluster) and a python3 with torch (Debian's python3-torch, which .ci/run installs); without torch
 * these tests are skipped and say so.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TuttiClient } from '@tutti/client';
import type { JobView } from '@tutti/client';
import { SLURM_DEV_CLUSTER_SCRIPT, useSlurmDevCluster } from '../../backends/test/slurm-cluster.ts';
import { closeLeavingNothingRunning, isEnded, nodeScript, slurmJobOf, startTestServer, touch, waitForFileThenExit, waitForJob, type TestServer } from './harness.ts';

const run = promisify(execFile);
const EXAMPLE = fileURLToPath(new URL('../../../examples/ddp-torch/', import.meta.url));
const TUTTI = fileURLToPath(new URL('../../cli/bin/tutti.js', import.meta.url));

function findTorchPython(): string | undefined {
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import torch, torch.distributed as d; assert d.is_gloo_available()'], { stdio: 'ignore', timeout: 60_000 });
    return '/usr/bin/python3';
  } catch {
    return undefined;
  }
}

const PYTHON = findTorchPython();
if (!PYTHON) console.warn('[skipped] tutti on Slurm with examples/ddp-torch: no python3 with torch (apt-get install python3-torch)');
/** Debian 12's torchrun crashes with its default --redirects/--tee (see framework-launchers.test.ts). */
const TORCHRUN_WORKAROUND = PYTHON && execFileSync(PYTHON, ['-c', 'from torch.distributed.elastic.multiprocessing.api import Std; print(Std.from_str("0") is None)'], { encoding: 'utf8' }).trim() === 'True'
  ? ['--redirects', '1', '--tee', '1']
  : [];

let slurmEnv: Record<string, string> = {};
let t: TestServer | undefined;
const crashed: string[] = [];

beforeAll(async () => {
  if (PYTHON) slurmEnv = await useSlurmDevCluster();
}, 300_000);

/** `tutti up` processes a test started, and its temp dirs. */
const children: ChildProcess[] = [];
/** Nodes a test drained: resumed after it, whatever happened. */
const drained: string[] = [];
/** Partitions a test set down: up again after it, whatever happened. */
const partitionsDown: string[] = [];
const tempDirs: string[] = [];

afterEach(async () => {
  // Pending jobs first: while only the running ones are cancelled, the scheduler could start a pending one.
  if (t) for (const job of (await t.client.listJobs({ status: 'pending', limit: 1000 })).jobs) await t.client.cancelJob(job.id);
  await closeLeavingNothingRunning(t);
  t = undefined;
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const partition of partitionsDown.splice(0)) await slurm('scontrol', 'update', `partitionname=${partition}`, 'state=up').catch(() => undefined);
  for (const node of drained.splice(0)) await slurm('scontrol', 'update', `nodename=${node}`, 'state=resume').catch(() => undefined);
  for (const dir of tempDirs.splice(0)) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  // Whatever Slurm job a test left (a killed server's, a failed test's) is cancelled: only this file uses partition
  // three. The next test starts once they are gone, since its tutti instance would count their GPUs as others'.
  if (PYTHON) {
    await slurm('scancel', '--partition=three').catch(() => undefined);
    await waitFor(async () => (await slurm('squeue', '-h', '--partition=three', '-o', '%i')).trim() === '', 'partition three to be empty');
  }
  for (const node of crashed.splice(0)) await run('bash', [SLURM_DEV_CLUSTER_SCRIPT, 'revive', node]);
}, 180_000);

function startSlurmServer(): Promise<TestServer> {
  return startTestServer({
    backend: 'slurm',
    fakeGpus: undefined,
    slurm: { partition: 'three', env: slurmEnv, pollIntervalMs: 250, nodePollIntervalMs: 500 },
  });
}

/** examples/ddp-torch as one rank on each of two nodes (1 GPU each); gloo talks over each node's eth0. */
const ddpJob = (name: string, env: Record<string, string>) => ({
  name,
  resources: { gpus: 1 },
  num_nodes: 2,
  run: [PYTHON, 'train.py'],
  workdir: EXAMPLE,
  env: { STEPS: '300', CHECKPOINT_EVERY: '20', GLOO_SOCKET_IFNAME: 'eth0', ...env },
  max_restarts: 1,
  restart_backoff: '0s',
});

const finalDigest = async (t: TestServer, id: string, attempt: number): Promise<string> =>
  (await readFile(`${t.dataDir}/jobs/${id}/attempt-${attempt}/rank-0.log`, 'utf8')).trim().split('\n').at(-1) ?? '';

async function waitForStep(t: TestServer, id: string, atLeast: number): Promise<void> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const { records } = await t.client.getJobMetrics(id, { last: 1 });
    if ((records[0]?.step ?? 0) >= atLeast) return;
    if (Date.now() > deadline) throw new Error(`job ${id} never reached step ${atLeast}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const nodesOf = (job: JobView): string[] => (job.tasks ?? []).map((task) => task.node);

/** One of Slurm's tools, run against the dev cluster; its stdout. */
async function slurm(program: string, ...args: string[]): Promise<string> {
  return (await run(program, args, { env: { ...process.env, ...slurmEnv } })).stdout;
}

/** A data dir for the `tutti up` of one test, and a release file's path beside it; both removed after the test. */
async function newTuttiUpDir(): Promise<{ dataDir: string; release: string }> {
  const root = await mkdtemp(path.join(tmpdir(), 'tutti-slurm-restart-'));
  tempDirs.push(root);
  return { dataDir: path.join(root, 'data'), release: path.join(root, 'release') };
}

/** Starts `tutti up --backend slurm --slurm-partition three` as its own process; resolves once it says it is up. */
function startTuttiUp(dataDir: string): Promise<{ child: ChildProcess; client: TuttiClient }> {
  const args = [TUTTI, 'up', '--port', '0', '--data-dir', dataDir, '--backend', 'slurm', '--slurm-partition', 'three', '--grace', '5'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...slurmEnv } });
  children.push(child);
  let output = '';
  return new Promise((resolve, reject) => {
    const onData = (data: Buffer) => {
      output += data.toString();
      const url = /tutti is up at (http:\/\/\S+)/.exec(output)?.[1];
      if (url) resolve({ child, client: new TuttiClient({ baseUrl: url }) });
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('exit', (code, signal) => reject(new Error(`tutti up exited (${code ?? signal}): ${output}`)));
  });
}

const exited = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.on('exit', () => resolve())));

async function waitFor(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`waited in vain for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Slurm's state of a job as squeue has it (`RUNNING`, `COMPLETED`, …), or `gone` once Slurm has forgotten it. */
async function slurmJobState(id: string): Promise<string> {
  const out = await slurm('squeue', '-h', '--states=all', `--jobs=${id}`, '-o', '%T').catch(() => '');
  return out.trim() || 'gone';
}

/** Waits until Slurm says the job has no process left (a rank's exit file may be read before its job ends). */
async function waitForSlurmJobToEnd(id: string): Promise<string> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const state = await slurmJobState(id);
    if (!['RUNNING', 'PENDING', 'COMPLETING', 'CONFIGURING', 'SUSPENDED'].includes(state)) return state;
    if (Date.now() > deadline) throw new Error(`Slurm job ${id} is still ${state}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe.skipIf(!PYTHON)('tutti on Slurm: PyTorch DDP across nodes (real Slurm, gloo on CPU, fake GPUs)', () => {
  it('runs one rank on each of two nodes, each where tutti placed it, as one Slurm job; its log reads through the API', async () => {
    t = await startSlurmServer();
    expect(t.server.inventory.map((n) => [n.name, n.address, n.gpus.length, n.state])).toEqual([
      ['n4', '10.77.0.14', 4, 'ready'], ['n5', '10.77.0.15', 4, 'ready'], ['n6', '10.77.0.16', 4, 'ready'],
    ]);
    const submitted = await t.client.submitJob(ddpJob('ddp-slurm', {}));
    const done = await waitForJob(t.client, submitted.id, isEnded, 180_000);
    expect(done.status).toBe('succeeded');
    const tasks = done.tasks ?? [];
    expect(tasks.map((task) => task.exit_code)).toEqual([0, 0]);
    expect(new Set(nodesOf(done)).size).toBe(2);
    // One Slurm job for the gang, named on every rank.
    const slurmJobs = new Set(tasks.map((task) => task.backend?.details.slurm_job));
    expect(slurmJobs.size).toBe(1);
    expect([...slurmJobs][0]).toMatch(/^\d+$/);
    // Each rank ran where tutti placed it: train.py prints the node it runs on and the rendezvous it joined.
    for (const task of tasks) {
      let log = '';
      for await (const chunk of t.client.logs(submitted.id, { rank: task.rank })) log += chunk;
      expect(log).toContain(`joined the group as rank ${task.rank}/2 on ${task.node}`);
    }
    expect(await finalDigest(t, submitted.id, 1)).toMatch(/^final weights digest: [0-9a-f]{16}$/);
  }, 240_000);

  it('runs `torchrun train.py` once on each of two nodes with launcher: per-node (2 workers each), to the weights of 2 × 2 ranks started by tutti', async () => {
    t = await startSlurmServer();
    const twoByTwo = { ...ddpJob('ddp-per-gpu', { STEPS: '40' }), resources: { gpus: 2 }, run: [PYTHON!, 'train.py'] };
    const perNode = { ...twoByTwo, name: 'ddp-per-node', launcher: 'per-node', run: ['torchrun', ...TORCHRUN_WORKAROUND, 'train.py'] };
    const [a, b] = [await t.client.submitJob(twoByTwo), await t.client.submitJob(perNode)];
    const [perGpuDone, perNodeDone] = [await waitForJob(t.client, a.id, isEnded, 240_000), await waitForJob(t.client, b.id, isEnded, 240_000)];
    expect([perGpuDone.status, perNodeDone.status], perNodeDone.end_reason ?? '').toEqual(['succeeded', 'succeeded']);
    // One process per node, on two nodes, holding its node's two GPUs; torchrun started the four workers.
    expect(perNodeDone.tasks?.map((task) => [task.rank, task.gpus.length])).toEqual([[0, 2], [1, 2]]);
    expect(new Set(nodesOf(perNodeDone)).size).toBe(2);
    const digest = async (id: string) => /final weights digest: ([0-9a-f]{16})/.exec(await readFile(`${t!.dataDir}/jobs/${id}/attempt-1/rank-0.log`, 'utf8'))?.[1];
    const expected = await digest(a.id);
    expect(expected).toMatch(/^[0-9a-f]{16}$/);
    expect(await digest(b.id)).toBe(expected);
  }, 300_000);

  it('restarts the gang on the nodes left when one of its nodes dies, from its checkpoint, with the weights of an uninterrupted run', async () => {
    t = await startSlurmServer();
    const clean = await t.client.submitJob(ddpJob('ddp-clean', {}));
    expect((await waitForJob(t.client, clean.id, isEnded, 180_000)).status).toBe('succeeded');
    const expected = await finalDigest(t, clean.id, 1);

    const victim = await t.client.submitJob(ddpJob('ddp-node-lost', { STEP_MS: '100' }));
    const running = await waitForJob(t.client, victim.id, (job) => job.status === 'running' && (job.tasks ?? []).every((task) => task.status === 'running'), 120_000);
    await waitForStep(t, victim.id, 45);
    const [, lostNode] = nodesOf(running) as [string, string];
    crashed.push(lostNode);
    await run('bash', [SLURM_DEV_CLUSTER_SCRIPT, 'crash', lostNode]);

    // Its peer on the dead node gone, rank 0 fails at once; Slurm declares the node down after SlurmdTimeout. A
    // restart placed on it before tutti knew is held by Slurm for that node, and placed again elsewhere.
    const restarted = await waitForJob(t.client, victim.id, (job) => job.status === 'running' && job.restarts === 1 && (job.tasks ?? []).every((task) => task.status === 'running'), 180_000);
    expect(nodesOf(restarted)).not.toContain(lostNode);
    const nodes = await t.client.listNodes();
    expect(nodes.nodes.find((node) => node.name === lostNode)?.state).toBe('down');
    const done = await waitForJob(t.client, victim.id, isEnded, 180_000);
    expect(done.status).toBe('succeeded');
    expect(done.restarts).toBe(1);
    const last = done.attempt ?? 0;
    expect(await readFile(`${t.dataDir}/jobs/${victim.id}/attempt-${last}/rank-0.log`, 'utf8')).toMatch(/resuming from .*step-0000[2-9]0\.pt/);
    expect(await finalDigest(t, victim.id, last)).toBe(expected);
    console.log(`[figures] node lost: attempts ${JSON.stringify(done.attempts?.map((a) => [a.attempt, a.reason]))}`);
  }, 420_000);

  it('restarts the gang on the nodes left, from its checkpoint, when one of its nodes is set down in Slurm mid-run', async () => {
    t = await startSlurmServer();
    const victim = await t.client.submitJob(ddpJob('ddp-node-set-down', { STEP_MS: '100' }));
    const running = await waitForJob(t.client, victim.id, (job) => job.status === 'running' && (job.tasks ?? []).every((task) => task.status === 'running'), 120_000);
    await waitForStep(t, victim.id, 45);
    const [, downNode] = nodesOf(running) as [string, string];
    // An administrator takes the node out at once: Slurm ends the job (NODE_FAIL), sending its ranks SIGTERM, which
    // train.py answers as asked to stop: a checkpoint and exit 0. Drained too, so that it stays out once its slurmd
    // registers again (the dev cluster's ReturnToService=2 returns a down node then).
    drained.push(downNode);
    await slurm('scontrol', 'update', `nodename=${downNode}`, 'state=down', 'reason=tutti test: bad DIMM');
    await slurm('scontrol', 'update', `nodename=${downNode}`, 'state=drain', 'reason=tutti test: bad DIMM');

    const restarted = await waitForJob(t.client, victim.id, (job) => job.status === 'running' && job.restarts === 1 && (job.tasks ?? []).every((task) => task.status === 'running'), 180_000);
    expect(nodesOf(restarted)).not.toContain(downNode);
    const node = (await t.client.listNodes()).nodes.find((n) => n.name === downNode);
    expect(node?.state).not.toBe('ready');
    expect(node?.state_reason).toBe('tutti test: bad DIMM');
    const done = await waitForJob(t.client, victim.id, isEnded, 180_000);
    expect(done.status).toBe('succeeded');
    expect(done.restarts).toBe(1);
    const last = done.attempt ?? 0;
    // From the checkpoint rank 0 wrote when Slurm's SIGTERM came (or an earlier one), not from the start.
    expect(await readFile(`${t.dataDir}/jobs/${victim.id}/attempt-${last}/rank-0.log`, 'utf8')).toMatch(/resuming from .*step-0000[4-9]\d\.pt/);
    expect(await finalDigest(t, victim.id, last)).toMatch(/^final weights digest: [0-9a-f]{16}$/);
  }, 420_000);

  it('on cancel, every rank on both nodes stops after the same step, rank 0 checkpoints within the grace, and the Slurm job ends', async () => {
    t = await startSlurmServer();
    const long = await t.client.submitJob({
      ...ddpJob('ddp-cancel', { STEPS: '100000', STEP_MS: '20', CHECKPOINT_EVERY: '100000' }),
      preemption_grace: '30s',
    });
    const running = await waitForJob(t.client, long.id, (job) => job.status === 'running' && (job.tasks ?? []).every((task) => task.status === 'running'), 120_000);
    const slurmJob = slurmJobOf(running);
    await waitForStep(t, long.id, 10);
    await t.client.cancelJob(long.id);
    const done = await waitForJob(t.client, long.id, isEnded, 90_000);
    expect(done.status).toBe('cancelled');
    // The stop signal reached the rank on each node, and the gang agreed on when to stop: both exited 0, neither
    // died in a collective its peer had left, and rank 0 wrote its checkpoint before exiting.
    expect(done.tasks?.map((task) => task.exit_code)).toEqual([0, 0]);
    expect(new Set(nodesOf(done)).size).toBe(2);
    const rank0 = await readFile(`${t.dataDir}/jobs/${long.id}/attempt-1/rank-0.log`, 'utf8');
    const rank1 = await readFile(`${t.dataDir}/jobs/${long.id}/attempt-1/rank-1.log`, 'utf8');
    expect(rank0).toMatch(/received SIGTERM: stopping after step \d+/);
    expect(rank1).toMatch(/received SIGTERM: stopping after step \d+/);
    const checkpoint = /checkpoint (\S*step-(\d+)\.pt) \(stop signal SIGTERM\)/.exec(rank0);
    expect(checkpoint).not.toBeNull();
    expect(done.last_checkpoint).toBe(checkpoint?.[1]);
    // The last step any rank reported is the one checkpointed: nobody trained on after the agreed stop.
    const { records } = await t.client.getJobMetrics(long.id, { last: 1 });
    expect(records[0]?.step).toBe(Number(checkpoint?.[2]));
    // The Slurm job ran to its end (its step's ranks exited) rather than being killed or left running.
    expect(await waitForSlurmJobToEnd(slurmJob)).toBe('COMPLETED');
  }, 240_000);

  it('preempts a lower-priority gang over three nodes with its grace: it checkpoints, gives way, and resumes from its checkpoint when the GPUs are free', async () => {
    t = await startSlurmServer();
    const release = `${t.scratch}/release`;
    // Rank 0 checkpoints on SIGTERM, as a training script does; every rank exits 0 then, and says where it resumes from.
    const checkpointsOnStop = nodeScript(
      "const fs=require('fs'),path=require('path'),r=process.env.RANK;" +
        "console.log('rank '+r+' attempt '+process.env.TUTTI_ATTEMPT+' resumes from '+(process.env.TUTTI_RESUME_FROM||'nothing'));" +
        "process.on('SIGTERM',()=>{if(r==='0'){fs.mkdirSync(process.env.TUTTI_CHECKPOINT_DIR,{recursive:true});fs.writeFileSync(path.join(process.env.TUTTI_CHECKPOINT_DIR,'step-7.ckpt'),'7')}console.log('rank '+r+' stopping');process.exit(0)});" +
        "(function w(){if(fs.existsSync(process.argv[1]))process.exit(0);setTimeout(w,25)})()",
      `${release}-low`,
    );
    const low = await t.client.submitJob({ name: 'low', priority: 0, resources: { gpus: 4 }, num_nodes: 3, preemption_grace: '20s', run: checkpointsOnStop });
    const isRunning = (job: JobView) => job.status === 'running' && (job.tasks ?? []).every((task) => task.status === 'running');
    const before = await waitForJob(t.client, low.id, isRunning, 120_000);
    const lowSlurmJob = slurmJobOf(before);
    const rankLog = (rank: number, attempt: number) => readFile(`${t!.dataDir}/jobs/${low.id}/attempt-${attempt}/rank-${rank}.log`, 'utf8').catch(() => '');
    // Every rank has its SIGTERM handler before the preemption comes.
    await waitFor(async () => (await Promise.all(before.tasks!.map((task) => rankLog(task.rank, 1)))).every((log) => log.includes('resumes from')), 'every rank to be up');

    const high = await t.client.submitJob({ name: 'high', priority: 10, resources: { gpus: 4 }, run: waitForFileThenExit(`${release}-high`) });
    await waitForJob(t.client, high.id, isRunning, 120_000);
    // The victim stopped cleanly on every node (each of its 12 ranks exited 0) and went back to the queue, no restart used.
    const preempted = await waitForJob(t.client, low.id, (job) => job.status === 'pending', 60_000);
    expect(preempted.restarts).toBe(0);
    expect(preempted.attempts?.[0]?.reason).toMatch(/^preempted/);
    for (const task of before.tasks!) expect(await rankLog(task.rank, 1)).toContain(`rank ${task.rank} stopping`);
    expect(await waitForSlurmJobToEnd(lowSlurmJob)).toBe('COMPLETED');

    await touch(`${release}-high`);
    expect((await waitForJob(t.client, high.id, isEnded, 60_000)).status).toBe('succeeded');
    const resumed = await waitForJob(t.client, low.id, isRunning, 120_000);
    await waitFor(async () => (await rankLog(0, resumed.attempt ?? 0)).includes('resumes from'), 'rank 0 of the resumed gang to start');
    expect(await rankLog(0, resumed.attempt ?? 0)).toMatch(/rank 0 attempt 2 resumes from .*step-7\.ckpt/);
    await touch(`${release}-low`);
    expect(await waitForJob(t.client, low.id, isEnded, 60_000)).toMatchObject({ status: 'succeeded', restarts: 0 });
  }, 300_000);

  it('stops a gang at its max_duration itself, with its grace, before the longer time limit it gave Slurm', async () => {
    t = await startSlurmServer();
    const stopsOnTerm = nodeScript("process.on('SIGTERM',()=>{console.log('rank '+process.env.RANK+' stopping');process.exit(0)});console.log('up');setInterval(()=>{},1000)");
    const job = await t.client.submitJob({ name: 'too-long', resources: { gpus: 1 }, num_nodes: 2, max_duration: '5s', preemption_grace: '10s', run: stopsOnTerm });
    const running = await waitForJob(t.client, job.id, (j) => j.status === 'running' && (j.tasks ?? []).every((task) => task.status === 'running'), 120_000);
    const slurmJob = slurmJobOf(running);
    // Slurm's own limit is max_duration + grace + 1 min, in whole minutes: 5 s + 10 s + 60 s → 2 minutes.
    expect((await slurm('squeue', '-h', `--jobs=${slurmJob}`, '-o', '%l')).trim()).toBe('2:00');
    const done = await waitForJob(t.client, job.id, isEnded, 60_000);
    expect(done.status).toBe('failed');
    expect(done.end_reason).toContain('max_duration');
    for (const rank of [0, 1]) {
      expect(await readFile(`${t.dataDir}/jobs/${job.id}/attempt-1/rank-${rank}.log`, 'utf8')).toContain(`rank ${rank} stopping`);
    }
    // tutti's stop ended it (the ranks exited), not Slurm's time limit.
    expect(await waitForSlurmJobToEnd(slurmJob)).toBe('COMPLETED');
  }, 180_000);

  it('declares a gang that stops reporting progress hung, stops it on both nodes and restarts it per its policy', async () => {
    t = await startSlurmServer();
    const job = await t.client.submitJob({
      name: 'hangs-once',
      resources: { gpus: 1 },
      num_nodes: 2,
      // Rank 0 reports one step, then the first attempt hangs on every rank; the second reports a step more and ends.
      run: nodeScript(
        'if (process.env.RANK === "0") console.log(JSON.stringify({tutti: {step: 1, loss: 0.9}}));' +
          'if (process.env.TUTTI_ATTEMPT === "1") setInterval(() => {}, 1000); else if (process.env.RANK === "0") console.log(JSON.stringify({tutti: {step: 2}}));',
      ),
      max_restarts: 1,
      restart_on: ['hang'],
      restart_backoff: '0s',
      // Shorter than the few seconds Slurm takes here to release a job whose ranks all exited, when the Slurm backend
      // reports their exits: the control plane waits that much more (exitReportDelayMs) before it declares a hang, so
      // the second attempt, ended, is not taken for a hung one (with 3 s it was, in 2 of 4 runs, before that).
      hang_timeout: '3s',
    });
    const done = await waitForJob(t.client, job.id, isEnded, 120_000);
    expect(done).toMatchObject({ status: 'succeeded', restarts: 1 });
    expect(done.attempts?.[0]?.reason).toMatch(/^hung: no progress record for 3s \(hang_timeout\); last progress \{"step":1,"loss":0.9\}/);
    expect((await t.client.getJobMetrics(job.id)).records.map((r) => [r.attempt, r.step])).toEqual([[1, 1], [2, 1], [2, 2]]);
  }, 180_000);

  it('a drained node takes no new job and says why in the API and `tutti nodes`; resumed, it is ready again and the job that waited runs there', async () => {
    t = await startSlurmServer();
    const reason = 'tutti test: cooling fan swap';
    drained.push('n6');
    await slurm('scontrol', 'update', 'nodename=n6', 'state=drain', `reason=${reason}`);
    const n6 = async () => (await t!.client.listNodes()).nodes.find((node) => node.name === 'n6');
    await waitFor(async () => (await n6())?.state === 'draining', 'n6 to be draining');
    expect((await n6())?.state_reason).toBe(reason);
    const { stdout: nodesOutput } = await run(process.execPath, [TUTTI, '--server', t.server.url, 'nodes']);
    expect(nodesOutput).toMatch(new RegExp(`^n6 +draining \\(${reason}\\)`, 'm'));

    // Three jobs of a whole node each: two run on n4 and n5, the third waits and says why; none runs on n6.
    const release = `${t.scratch}/release`;
    const wholeNode = (name: string) => ({ name, resources: { gpus: 4 }, run: waitForFileThenExit(release) });
    const jobs = [await t.client.submitJob(wholeNode('whole-node-1')), await t.client.submitJob(wholeNode('whole-node-2')), await t.client.submitJob(wholeNode('whole-node-3'))];
    const isRunning = (job: JobView) => job.status === 'running' && (job.tasks ?? []).every((task) => task.status === 'running');
    await waitFor(async () => (await Promise.all(jobs.map((j) => t!.client.getJob(j.id)))).filter(isRunning).length === 2, 'two jobs to run');
    const views = await Promise.all(jobs.map((j) => t!.client.getJob(j.id)));
    const running = views.filter(isRunning);
    expect(running.flatMap(nodesOf).sort()).toEqual(['n4', 'n4', 'n4', 'n4', 'n5', 'n5', 'n5', 'n5']);
    const waiting = views.find((job) => job.status === 'pending');
    expect(waiting).toBeDefined();
    const waitingView = await waitForJob(t.client, waiting!.id, (job) => job.pending_reason !== null, 30_000);
    expect(waitingView.pending_reason).toContain('not ready: n6 (draining)');

    await slurm('scontrol', 'update', 'nodename=n6', 'state=resume');
    drained.splice(drained.indexOf('n6'), 1);
    const ranThere = await waitForJob(t.client, waiting!.id, isRunning, 60_000);
    expect(new Set(nodesOf(ranThere))).toEqual(new Set(['n6']));
    expect(await n6()).toMatchObject({ state: 'ready', state_reason: null });

    await touch(release);
    for (const job of jobs) expect((await waitForJob(t.client, job.id, isEnded, 60_000)).status).toBe('succeeded');
  }, 240_000);

  it('GPUs that another Slurm user takes while tutti runs are used capacity: tutti places around them, and on them once they are freed', async () => {
    t = await startSlurmServer();
    const others: string[] = [];
    for (const node of ['n4', 'n5']) {
      const id = (await slurm('sbatch', '--parsable', '-p', 'three', '-w', node, '--gres=gpu:4', `--output=${t.scratch}/other-user-${node}.out`, '--wrap', 'sleep 600')).trim();
      others.push(id);
    }
    await waitFor(async () => (await Promise.all(others.map(slurmJobState))).every((state) => state === 'RUNNING'), "the other user's jobs to run");
    const nodeView = async (name: string) => (await t!.client.listNodes()).nodes.find((node) => node.name === name);
    await waitFor(async () => (await nodeView('n4'))?.labels.slurm_gpus_used_by_others === '4' && (await nodeView('n5'))?.labels.slurm_gpus_used_by_others === '4', 'tutti to see the GPUs the other user holds');
    expect((await nodeView('n4'))?.gpus).toEqual([]);

    const release = `${t.scratch}/release`;
    const wholeNode = (name: string) => ({ name, resources: { gpus: 4 }, run: waitForFileThenExit(release) });
    const first = await t.client.submitJob(wholeNode('beside-other-user'));
    const second = await t.client.submitJob(wholeNode('after-other-user'));
    const isRunning = (job: JobView) => job.status === 'running' && (job.tasks ?? []).every((task) => task.status === 'running');
    expect(new Set(nodesOf(await waitForJob(t.client, first.id, isRunning, 60_000)))).toEqual(new Set(['n6']));
    const waiting = await waitForJob(t.client, second.id, (job) => job.pending_reason !== null, 30_000);
    expect(waiting.status).toBe('pending');

    await slurm('scancel', others[0] as string);
    const ranThere = await waitForJob(t.client, second.id, isRunning, 60_000);
    expect(new Set(nodesOf(ranThere))).toEqual(new Set(['n4']));
    await touch(release);
    for (const job of [first, second]) expect((await waitForJob(t.client, job.id, isEnded, 60_000)).status).toBe('succeeded');
  }, 240_000);

  it('with placement left to Slurm, a job tutti placed on a node another user took runs where Slurm put it, and tutti records it there', async () => {
    // tutti reads the inventory at start and then not for an hour: the other user's jobs that come after are news to it.
    t = await startTestServer({ backend: 'slurm', fakeGpus: undefined, slurm: { partition: 'three', env: slurmEnv, pollIntervalMs: 250, nodePollIntervalMs: 3_600_000, placement: 'slurm' } });
    const others: string[] = [];
    for (const node of ['n4', 'n5']) {
      others.push((await slurm('sbatch', '--parsable', '-p', 'three', '-w', node, '--gres=gpu:4', `--output=${t.scratch}/other-user-${node}.out`, '--wrap', 'sleep 600')).trim());
    }
    await waitFor(async () => (await Promise.all(others.map(slurmJobState))).every((state) => state === 'RUNNING'), "the other user's jobs to run");
    const release = `${t.scratch}/release`;
    const job = await t.client.submitJob({ name: 'slurm-placed', resources: { gpus: 4 }, run: waitForFileThenExit(release) });
    const running = await waitForJob(t.client, job.id, (j) => j.status === 'running' && (j.tasks ?? []).every((task) => task.status === 'running'), 60_000);
    expect(new Set(nodesOf(running))).toEqual(new Set(['n6']));
    const events = (await t.client.listJobEvents(job.id)).events;
    const placedOn = /^scheduled on (n\d)/.exec(events.find((e) => e.type === 'scheduled')?.message ?? '')?.[1];
    expect(['n4', 'n5']).toContain(placedOn);
    expect(events.find((e) => e.type === 'relocated')?.message).toBe(`the cluster chose the nodes: ${placedOn} → n6`);
    expect(events.find((e) => e.type === 'started')?.message).toMatch(/ on n6$/);
    // Its GPUs are n6's in tutti's books too: the node view says who holds them, and the placed node's are free there.
    const nodes = (await t.client.listNodes()).nodes;
    expect(nodes.find((n) => n.name === 'n6')?.gpus.map((g) => g.job_id)).toEqual([job.id, job.id, job.id, job.id]);
    expect(nodes.find((n) => n.name === placedOn)?.gpus.some((g) => g.job_id === job.id)).toBe(false);
    await touch(release);
    expect((await waitForJob(t.client, job.id, isEnded, 60_000)).status).toBe('succeeded');
  }, 240_000);

  it('re-adopts a 2-node gang after kill -9 of the server: the same Slurm job runs on, nothing is relaunched, and it succeeds on its first attempt', async () => {
    const { dataDir, release } = await newTuttiUpDir();
    const first = await startTuttiUp(dataDir);
    const submitted = await first.client.submitJob({ name: 'outlives-its-server', resources: { gpus: 1 }, num_nodes: 2, run: waitForFileThenExit(release) });
    const diesMeanwhile = await first.client.submitJob({ name: 'ends-while-no-server', resources: { gpus: 1 }, run: waitForFileThenExit(`${release}-dier`, 3) });
    const isRunning = (job: JobView) => job.status === 'running' && (job.tasks ?? []).every((task) => task.status === 'running');
    const before = await waitForJob(first.client, submitted.id, isRunning, 120_000);
    const slurmJob = slurmJobOf(before);
    const dierSlurmJob = slurmJobOf(await waitForJob(first.client, diesMeanwhile.id, isRunning, 120_000));

    first.child.kill('SIGKILL');
    await exited(first.child);
    // The gang does not depend on the control plane: Slurm still runs it while no server is up; the other job's
    // rank exits with code 3 meanwhile.
    expect(await slurmJobState(slurmJob)).toBe('RUNNING');
    await touch(`${release}-dier`);
    expect(await waitForSlurmJobToEnd(dierSlurmJob)).toBe('FAILED');

    const second = await startTuttiUp(dataDir);
    const adopted = await second.client.getJob(submitted.id);
    expect(adopted.status).toBe('running');
    expect(adopted.tasks?.map((task) => [task.rank, task.node, task.status])).toEqual(before.tasks?.map((task) => [task.rank, task.node, 'running']));
    expect(slurmJobOf(adopted)).toBe(slurmJob);
    // Exactly one Slurm job in the partition runs, the one from before: adopted, not submitted again.
    expect((await slurm('squeue', '-h', '--partition=three', '-o', '%i')).trim().split('\n')).toEqual([slurmJob]);
    expect((await second.client.listJobEvents(submitted.id)).events.map((e) => e.type)).toContain('adopted');
    // The job that ended while no server watched ended with its rank's own exit code, read back, not as lost.
    const dier = await waitForJob(second.client, diesMeanwhile.id, isEnded, 60_000);
    expect(dier.status).toBe('failed');
    expect(dier.exit_code).toBe(3);
    expect(dier.restarts).toBe(0);

    await touch(release);
    const done = await waitForJob(second.client, submitted.id, isEnded, 60_000);
    expect(done.status).toBe('succeeded');
    expect(done.attempt).toBe(1);
    expect(done.restarts).toBe(0);
    expect(done.tasks?.map((task) => task.exit_code)).toEqual([0, 0]);
    // Both ranks' output, from before the kill and after it, reads through the new server.
    for (const rank of [0, 1]) {
      let log = '';
      for await (const chunk of second.client.logs(submitted.id, { rank })) log += chunk;
      expect(log).toContain(`rank ${rank} waiting for`);
      expect(log).toContain(`rank ${rank} released`);
    }
    expect(await waitForSlurmJobToEnd(slurmJob)).toBe('COMPLETED');
    second.child.kill('SIGTERM');
    await exited(second.child);
  }, 300_000);

  it('a node set down while no server runs: the restarted server takes the gang Slurm ended as lost and restarts it, though its ranks exited 0 on Slurm\'s SIGTERM', async () => {
    const { dataDir, release } = await newTuttiUpDir();
    const first = await startTuttiUp(dataDir);
    // Each rank stops cleanly (exit 0) when asked to, as a training script that checkpoints on SIGTERM does.
    const stopsCleanly = nodeScript(
      "const fs=require('fs');process.on('SIGTERM',()=>{console.log('rank '+process.env.RANK+' stopping on SIGTERM');process.exit(0)});" +
        "console.log('rank '+process.env.RANK+' up');(function w(){if(fs.existsSync(process.argv[1]))process.exit(0);setTimeout(w,25)})()",
      release,
    );
    const job = await first.client.submitJob({ name: 'node-down-unwatched', resources: { gpus: 1 }, num_nodes: 2, run: stopsCleanly, max_restarts: 1, restart_backoff: '0s' });
    const running = await waitForJob(first.client, job.id, (j) => j.status === 'running' && (j.tasks ?? []).every((task) => task.status === 'running'), 120_000);
    const slurmJob = slurmJobOf(running);
    const rankLog = (rank: number) => readFile(path.join(dataDir, 'jobs', job.id, 'attempt-1', `rank-${rank}.log`), 'utf8').catch(() => '');
    await waitFor(async () => (await rankLog(0)).includes('up') && (await rankLog(1)).includes('up'), 'both ranks to be up');
    first.child.kill('SIGKILL');
    await exited(first.child);

    const [, downNode] = nodesOf(running) as [string, string];
    drained.push(downNode);
    await slurm('scontrol', 'update', `nodename=${downNode}`, 'state=down', 'reason=tutti test: PSU');
    await slurm('scontrol', 'update', `nodename=${downNode}`, 'state=drain', 'reason=tutti test: PSU');
    expect(await waitForSlurmJobToEnd(slurmJob)).toBe('NODE_FAIL');
    expect(await rankLog(1)).toContain('rank 1 stopping on SIGTERM');

    const second = await startTuttiUp(dataDir);
    const restarted = await waitForJob(second.client, job.id, (j) => j.status === 'running' && j.restarts === 1 && (j.tasks ?? []).every((task) => task.status === 'running'), 120_000);
    expect(nodesOf(restarted)).not.toContain(downNode);
    await touch(release);
    expect(await waitForJob(second.client, job.id, isEnded, 60_000)).toMatchObject({ status: 'succeeded', restarts: 1 });
    second.child.kill('SIGTERM');
    await exited(second.child);
  }, 300_000);

  it('a cancel whose server is killed during the grace: the restarted server SIGKILLs the gang that ignores SIGTERM at the committed deadline', async () => {
    const { dataDir } = await newTuttiUpDir();
    const first = await startTuttiUp(dataDir);
    const ignoresTerm = nodeScript(
      "process.on('SIGTERM',()=>console.log('rank '+process.env.RANK+' ignores SIGTERM'));console.log('rank '+process.env.RANK+' up');setInterval(()=>{},1000)",
    );
    const job = await first.client.submitJob({ name: 'ignores-term', resources: { gpus: 1 }, num_nodes: 2, preemption_grace: '3s', run: ignoresTerm });
    const running = await waitForJob(first.client, job.id, (j) => j.status === 'running' && (j.tasks ?? []).every((task) => task.status === 'running'), 120_000);
    const slurmJob = slurmJobOf(running);
    const rankLog = (rank: number) => readFile(path.join(dataDir, 'jobs', job.id, 'attempt-1', `rank-${rank}.log`), 'utf8').catch(() => '');
    // Each rank has its SIGTERM handler before the cancel (else node would die of the signal at once).
    await waitFor(async () => (await rankLog(0)).includes('up') && (await rankLog(1)).includes('up'), 'both ranks to be up');
    await first.client.cancelJob(job.id);
    let deadline = 0;
    await waitFor(async () => {
      const stopping = (await first.client.listJobEvents(job.id)).events.find((e) => e.type === 'stopping');
      deadline = Number(stopping?.data?.deadline ?? 0);
      return deadline > 0;
    }, 'the stop to be committed');
    first.child.kill('SIGKILL');
    await exited(first.child);
    // Restarted only once the deadline has passed, when no server was left to send the SIGKILL.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, deadline - Date.now()) + 300));
    expect(await slurmJobState(slurmJob)).toBe('RUNNING');

    const second = await startTuttiUp(dataDir);
    const done = await waitForJob(second.client, job.id, isEnded, 60_000);
    expect(done).toMatchObject({ status: 'cancelled', restarts: 0 });
    const events = (await second.client.listJobEvents(job.id)).events;
    // The stop the first server committed is the one carried out: no second stop with a fresh grace.
    expect(events.filter((e) => e.type === 'stopping').map((e) => e.data?.deadline)).toEqual([deadline]);
    expect(events.filter((e) => e.type === 'rank_exited').map((e) => e.data?.signal)).toEqual(['SIGKILL', 'SIGKILL']);
    // SIGKILL ended the rank on each node (the first server may have died before its SIGTERM went out), and with
    // them the Slurm job.
    expect(await waitForSlurmJobToEnd(slurmJob)).not.toBe('RUNNING');
    second.child.kill('SIGTERM');
    await exited(second.child);
  }, 300_000);

  it('kill -9 of the server while Slurm still queues its launch: the gang is launched again and runs as exactly one Slurm job', async () => {
    const { dataDir, release } = await newTuttiUpDir();
    // A partition that is down queues jobs but starts none: the launch waits in Slurm's queue, its ranks not started.
    partitionsDown.push('three');
    await slurm('scontrol', 'update', 'partitionname=three', 'state=down');
    const first = await startTuttiUp(dataDir);
    const submitted = await first.client.submitJob({ name: 'launch-cut', resources: { gpus: 1 }, num_nodes: 2, run: waitForFileThenExit(release) });
    const queuedInSlurm = async () => (await slurm('squeue', '-h', '--partition=three', '-o', '%i|%T')).trim();
    await waitFor(async () => /^\d+\|PENDING$/.test(await queuedInSlurm()), 'the launch to be queued in Slurm');
    const [cutLaunch] = (await queuedInSlurm()).split('|') as [string];
    first.child.kill('SIGKILL');
    await exited(first.child);

    const second = await startTuttiUp(dataDir);
    await slurm('scontrol', 'update', 'partitionname=three', 'state=up');
    partitionsDown.splice(partitionsDown.indexOf('three'), 1);
    const isRunning = (job: JobView) => job.status === 'running' && (job.tasks ?? []).every((task) => task.status === 'running');
    const running = await waitForJob(second.client, submitted.id, isRunning, 120_000);
    const slurmJob = slurmJobOf(running);
    // One gang, one Slurm job: the launch the crash cut does not run beside it.
    expect((await queuedInSlurm()).split('\n')).toEqual([`${slurmJob}|RUNNING`]);
    expect(await slurmJobState(cutLaunch)).not.toMatch(/RUNNING|PENDING/);

    await touch(release);
    const done = await waitForJob(second.client, submitted.id, isEnded, 60_000);
    expect(done.status).toBe('succeeded');
    expect(done.restarts).toBe(0);
    second.child.kill('SIGTERM');
    await exited(second.child);
  }, 300_000);
});
