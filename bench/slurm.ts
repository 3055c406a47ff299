/**
 * `npm run bench:slurm`: tutti on a real Slurm cluster, side by side with plain `sbatch` and `srun` on the same
 * cluster in the same run (see docs/benchmarks.md, "tutti on Slurm").
 *
 * The cluster is scripts/slurm-dev-cluster.sh's (started here if it is not up; needs root): 6 virtual nodes × 4 fake
 * GPUs, each slurmd in its own network namespace, all on this machine's 2 cores. Partition `dev` (every node). Nothing
 * else may use the cluster meanwhile (no tests). tutti runs as a real `tutti up --backend slurm` process.
 *
 * 1. Submissions per second: N submissions one after another and from 8 concurrent clients — `sbatch` (one process
 *    per submission, as a script would) against tutti's API (each answered once stored durably; the Slurm job is
 *    made when tutti places it). And end to end: N one-GPU jobs that only `true`, from the first submission until
 *    all have ended, with Slurm running as many at a time as the partition has GPUs, either way.
 * 2. Submit → every rank running (p50/p99), one job at a time: each rank touches a file the moment it runs; timed
 *    from the submit call to the last rank's file. A 1-rank job (`sbatch --wrap`, `srun`, tutti) and a gang of 2
 *    nodes × 2 ranks (`sbatch` whose script runs `srun`, tutti).
 * 3. A node going down under a 2-node gang → the gang running again: tutti (max_restarts 1, its own restart on the
 *    nodes left) against plain Slurm with `--requeue` (Slurm requeues a job that lost a node). Timed from the crash
 *    (scripts/slurm-dev-cluster.sh crash: slurmd and every process on the node SIGKILLed) to every rank of the new
 *    run having started; with when Slurm marked the node not responding, and when tutti's /v1/nodes said down.
 * 4. tutti's own scheduling cost per cycle with 2,000 jobs known: 2,000 one-GPU jobs submitted (one per GPU runs as a
 *    Slurm job, the rest wait in tutti's queue), then one more job per 250 ms for 20 s; the mean cycle (runCycle)
 *    from /metrics over that window. Reference, same run: the same on the local backend with as many fake GPUs.
 *
 * Options (env): BENCH_SLURM_JOBS (phase 1, default 200), BENCH_SLURM_LATENCY_JOBS (phase 2, default 30),
 * BENCH_SLURM_KNOWN (phase 4, default 2000), BENCH_SLURM_PHASES (default 1,2,3,4), BENCH_SLURM_NODES (run on a
 * partition `bench` of these nodes only, made for the run: e.g. n1,n2,n3 while tests use the others; default: `dev`),
 * BENCH_SLURM_VIA (how phases 1 and 2 reach Slurm: `tools`, `slurmrestd` or both, the default).
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { TuttiClient } from '@tutti/client';
import { startTuttiUp, stopTuttiUp, type TuttiUpProcess } from './tutti-up.ts';

const run = promisify(execFile);
const CLUSTER = fileURLToPath(new URL('../scripts/slurm-dev-cluster.sh', import.meta.url));
const JOBS = Number(process.env.BENCH_SLURM_JOBS ?? 200);
const LATENCY_JOBS = Number(process.env.BENCH_SLURM_LATENCY_JOBS ?? 30);
const KNOWN = Number(process.env.BENCH_SLURM_KNOWN ?? 2_000);
/** The partition used; BENCH_SLURM_NODES makes one of those nodes (e.g. n1,n2,n3) while others use the rest. */
let PARTITION = 'dev';
const BENCH_NODES = process.env.BENCH_SLURM_NODES;
/** GPUs of the partition, counted at the start. */
let GPUS = 0;
const CONCURRENCY = 8;

let slurmEnv: NodeJS.ProcessEnv = process.env;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const percentile = (values: readonly number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
};
const ms = (value: number) => `${value.toFixed(0)} ms`;
const s = (value: number) => `${(value / 1000).toFixed(1)} s`;

async function slurm(program: string, args: string[]): Promise<string> {
  return (await run(program, args, { env: slurmEnv, maxBuffer: 64 * 1024 * 1024 })).stdout;
}

async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 300_000, pollMs = 5): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(pollMs);
  }
  return performance.now();
}

/** Runs `count` tasks, `concurrency` at a time; resolves with the wall time in ms. */
async function pool(count: number, concurrency: number, task: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) await task(next++);
  }));
  return performance.now() - t0;
}

async function slurmJobsLeft(prefix: string): Promise<number> {
  return (await slurm('squeue', ['-h', '-o', '%j'])).split('\n').filter((name) => name.startsWith(prefix)).length;
}

/** How tutti reaches Slurm: its tools on this machine, or the dev cluster's slurmrestd (tokens from its JWT key). */
type Via = 'tools' | 'slurmrestd';
let REST: { url: string; jwtKey: string } | undefined;
/** BENCH_SLURM_VIA: which ways phases 1 and 2 measure tutti (default both). */
const VIAS = (process.env.BENCH_SLURM_VIA ?? 'tools,slurmrestd').split(',') as Via[];
const viaLabel = (via: Via) => (via === 'tools' ? '' : ' via slurmrestd');

async function startTuttiOnSlurm(dataDir: string, via: Via = 'tools'): Promise<TuttiUpProcess & { client: TuttiClient }> {
  const rest = via === 'slurmrestd' && REST ? ['--slurm-rest-url', REST.url, '--slurm-jwt-key', REST.jwtKey] : [];
  const up = await startTuttiUp(dataDir, ['--backend', 'slurm', '--slurm-partition', PARTITION, '--grace', '5', ...rest], { env: slurmEnv });
  return { ...up, client: new TuttiClient({ baseUrl: up.url.origin }) };
}

async function waitForJobsEnded(client: TuttiClient, ids: readonly string[]): Promise<void> {
  await waitFor(async () => {
    const { jobs } = await client.listJobs({ status: 'running', limit: 1 });
    const { jobs: pending } = await client.listJobs({ status: 'pending', limit: 1 });
    return jobs.length === 0 && pending.length === 0;
  }, `${ids.length} jobs to end`, 600_000, 100);
}

// ---- 1. submissions per second ------------------------------------------------------------------------------

async function submissions(root: string): Promise<void> {
  console.log(`\n== 1. submissions/s (${JOBS} one-GPU jobs running \`true\`, partition ${PARTITION}: ${GPUS} GPUs)`);
  // `true` in the batch script itself, and through `srun` as tutti's ranks run (a step: Slurm then takes longer to
  // release the job's node, see docs/benchmarks.md).
  for (const [label, wrap] of [['sbatch', 'true'], ['sbatch + srun', 'srun true']] as const) {
    const sbatchOne = (tag: string) => slurm('sbatch', ['--parsable', '-p', PARTITION, '-J', `bench.${tag}`, '-N1', '-n1', '--gres=gpu:1', '--output=/dev/null', '--wrap', wrap]);
    for (const concurrency of [1, CONCURRENCY]) {
      const wall = await pool(JOBS, concurrency, async (i) => void (await sbatchOne(`sb${concurrency}-${i}`)));
      const t0 = performance.now() - wall;
      await waitFor(async () => (await slurmJobsLeft('bench.')) === 0, 'sbatch jobs to end', 600_000, 50);
      console.log(`${label}, ${concurrency} client(s): ${(JOBS / (wall / 1000)).toFixed(0)} submissions/s; all ${JOBS} ended after ${s(performance.now() - t0)}`);
    }
  }
  for (const via of VIAS) {
    const tutti = await startTuttiOnSlurm(path.join(root, `submit-${via}`), via);
    try {
      for (const concurrency of [1, CONCURRENCY]) {
        const ids: string[] = [];
        const wall = await pool(JOBS, concurrency, async (i) => void ids.push((await tutti.client.submitJob({ name: `t${concurrency}-${i}`, resources: { gpus: 1 }, run: 'true' })).id));
        const t0 = performance.now() - wall;
        await waitForJobsEnded(tutti.client, ids);
        console.log(`tutti API${viaLabel(via)}, ${concurrency} client(s): ${(JOBS / (wall / 1000)).toFixed(0)} submissions/s (durable); all ${JOBS} ended after ${s(performance.now() - t0)}`);
      }
    } finally {
      await stopTuttiUp(tutti);
    }
  }
}

// ---- 2. submit → every rank running ---------------------------------------------------------------------------

async function latency(root: string): Promise<void> {
  console.log(`\n== 2. submit → every rank running, one job at a time (${LATENCY_JOBS} jobs each)`);
  const marks = path.join(root, 'marks');
  await run('mkdir', ['-p', marks]);
  const measure = async (label: string, ranks: number, submit: (tag: string) => Promise<unknown>) => {
    const samples: number[] = [];
    for (let i = 0; i < LATENCY_JOBS; i++) {
      const tag = `${label.toLowerCase().replace(/[^a-z0-9]+/g, '')}-${i}`;
      const t0 = performance.now();
      const submitted = submit(tag);
      const done = await waitFor(() => Array.from({ length: ranks }, (_, r) => existsSync(`${marks}/${tag}-${r}`)).every(Boolean), `${tag} to run`);
      await submitted;
      samples.push(done - t0);
    }
    console.log(`${label}: p50 ${ms(percentile(samples, 50))}, p99 ${ms(percentile(samples, 99))}`);
  };
  const touch = (tag: string, rankVar: string) => `touch ${marks}/${tag}-$${rankVar}; sleep 0.2`;
  await measure('sbatch --wrap, 1 rank', 1, (tag) => slurm('sbatch', ['--parsable', '-p', PARTITION, '-J', `bench.${tag}`, '-N1', '-n1', '--gres=gpu:1', '--output=/dev/null', '--wrap', touch(tag, 'SLURM_PROCID')]));
  await measure('srun, 1 rank', 1, (tag) => slurm('srun', ['-p', PARTITION, '-J', `bench.${tag}`, '-N1', '-n1', '--gres=gpu:1', 'sh', '-c', touch(tag, 'SLURM_PROCID')]));
  await measure('sbatch + srun, 2 nodes x 2 ranks', 4, (tag) => slurm('sbatch', ['--parsable', '-p', PARTITION, '-J', `bench.${tag}`, '-N2', '--ntasks-per-node=2', '--gres=gpu:2', '--output=/dev/null', '--wrap', `srun sh -c '${touch(tag, 'SLURM_PROCID')}'`]));
  for (const via of VIAS) {
    const tutti = await startTuttiOnSlurm(path.join(root, `latency-${via}`), via);
    try {
      await measure(`tutti on Slurm${viaLabel(via)}, 1 rank`, 1, (tag) => tutti.client.submitJob({ name: `${tag}-${via}`, resources: { gpus: 1 }, run: touch(tag, 'RANK') }));
      await measure(`tutti on Slurm${viaLabel(via)}, 2 nodes x 2 ranks`, 4, (tag) => tutti.client.submitJob({ name: `${tag}-${via}`, resources: { gpus: 2 }, num_nodes: 2, run: touch(tag, 'RANK') }));
      await waitForJobsEnded(tutti.client, []);
    } finally {
      await stopTuttiUp(tutti);
    }
  }
  await waitFor(async () => (await slurmJobsLeft('bench.')) === 0, 'every Slurm job to end', 120_000, 100);
}

// ---- 3. node down → running again ------------------------------------------------------------------------------

async function nodeOf(jobName: string): Promise<string[]> {
  const line = (await slurm('squeue', ['-h', '-n', jobName, '-t', 'R', '-o', '%N'])).trim();
  return (await slurm('scontrol', ['show', 'hostnames', line])).trim().split('\n');
}

async function notResponding(node: string): Promise<boolean> {
  return /\*|down|fail/i.test((await slurm('sinfo', ['-h', '-n', node, '-o', '%t'])).trim());
}

async function nodeDown(root: string): Promise<void> {
  console.log('\n== 3. a node of a running 2-node gang crashes → the gang running again on the nodes left');
  const marks = path.join(root, 'node-marks');
  await run('mkdir', ['-p', marks]);
  const loop = (tag: string, attemptVar: string, rankVar: string) => `touch ${marks}/${tag}-$${attemptVar}-$${rankVar}; while :; do sleep 0.2; done`;
  const revive = async (node: string) => {
    await run('bash', [CLUSTER, 'revive', node]);
    await waitFor(async () => !(await notResponding(node)), `${node} back`, 120_000, 200);
  };

  // Plain Slurm: --requeue, and Slurm requeues the job once the node is down.
  const name = 'bench.requeue';
  await slurm('sbatch', ['--parsable', '-p', PARTITION, '-J', name, '--requeue', '-N2', '--ntasks-per-node=1', '--gres=gpu:1', '--output=/dev/null', '--wrap', `srun sh -c '${loop('slurm', 'SLURM_RESTART_COUNT', 'SLURM_PROCID').replace('$SLURM_RESTART_COUNT', '${SLURM_RESTART_COUNT:-0}')}'`]);
  await waitFor(() => existsSync(`${marks}/slurm-0-0`) && existsSync(`${marks}/slurm-0-1`), 'the Slurm job to run');
  const [, slurmVictim] = await nodeOf(name);
  let t0 = performance.now();
  await run('bash', [CLUSTER, 'crash', slurmVictim!]);
  const slurmNoticed = await waitFor(() => notResponding(slurmVictim!), 'Slurm to notice', 300_000, 200);
  const slurmAgain = await waitFor(() => existsSync(`${marks}/slurm-1-0`) && existsSync(`${marks}/slurm-1-1`), 'the requeued Slurm job to run', 600_000, 50);
  console.log(`plain Slurm (--requeue): node marked not responding after ${s(slurmNoticed - t0)}; the job running again after ${s(slurmAgain - t0)}`);
  await slurm('scancel', ['-n', name]);
  await revive(slurmVictim!);

  const tutti = await startTuttiOnSlurm(path.join(root, 'node-down'));
  try {
    const job = await tutti.client.submitJob({ name: 'gang', resources: { gpus: 1 }, num_nodes: 2, max_restarts: 1, restart_backoff: '0s', run: loop('tutti', 'TUTTI_ATTEMPT', 'RANK') });
    await waitFor(() => existsSync(`${marks}/tutti-1-0`) && existsSync(`${marks}/tutti-1-1`), 'the tutti job to run');
    const running = await tutti.client.getJob(job.id);
    const victim = running.tasks?.find((task) => task.rank === 1)?.node ?? '';
    t0 = performance.now();
    await run('bash', [CLUSTER, 'crash', victim]);
    const noticed = await waitFor(() => notResponding(victim), 'Slurm to notice', 300_000, 200);
    const tuttiDown = await waitFor(async () => (await tutti.client.listNodes()).nodes.find((n) => n.name === victim)?.state === 'down', 'tutti to see the node down', 300_000, 100);
    const again = await waitFor(() => readdirMarks(marks, 'tutti-').some((f) => !f.startsWith('tutti-1-')) && ranksOfLatestAttempt(marks) === 2, 'the gang to run again', 600_000, 50);
    const final = await tutti.client.getJob(job.id);
    console.log(`tutti: node marked not responding by Slurm after ${s(noticed - t0)}, down in tutti after ${s(tuttiDown - t0)}; the gang running again after ${s(again - t0)} (attempts: ${JSON.stringify(final.attempts?.map((a) => a.reason))})`);
    await tutti.client.cancelJob(job.id);
    await waitForJobsEnded(tutti.client, [job.id]);
    await revive(victim);
  } finally {
    await stopTuttiUp(tutti);
  }
}

function readdirMarks(dir: string, prefix: string): string[] {
  return readdirSync(dir).filter((f) => f.startsWith(prefix));
}

/** How many ranks of tutti's latest attempt have started (files tutti-<attempt>-<rank>). */
function ranksOfLatestAttempt(dir: string): number {
  const files = readdirMarks(dir, 'tutti-');
  const latest = Math.max(...files.map((f) => Number(f.split('-')[1])));
  return files.filter((f) => f.startsWith(`tutti-${latest}-`)).length;
}

// ---- 4. scheduling cost with 2,000 jobs ------------------------------------------------------------------------

async function cycleSeconds(url: URL): Promise<{ sum: number; count: number }> {
  const text = await (await fetch(new URL('/metrics', url))).text();
  const read = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { sum: read('tutti_scheduling_cycle_duration_seconds_sum'), count: read('tutti_scheduling_cycle_duration_seconds_count') };
}

async function schedulingCost(root: string): Promise<void> {
  console.log(`\n== 4. scheduling cost per cycle with ${KNOWN} jobs known (${GPUS} running, the rest pending)`);
  const measure = async (label: string, up: TuttiUpProcess) => {
    const client = new TuttiClient({ baseUrl: up.url.origin });
    const long = { resources: { gpus: 1 }, run: 'sleep 3600' };
    await pool(KNOWN, CONCURRENCY, async (i) => void (await client.submitJob({ name: `known-${i}`, ...long })));
    await waitFor(async () => (await client.listJobs({ status: 'running', limit: 1000 })).jobs.length >= GPUS, `${GPUS} jobs running`, 300_000, 200);
    await sleep(2_000);
    const before = await cycleSeconds(up.url);
    const t0 = performance.now();
    let extra = 0;
    while (performance.now() - t0 < 20_000) {
      await client.submitJob({ name: `more-${extra++}`, ...long });
      await sleep(250);
    }
    const after = await cycleSeconds(up.url);
    const cycles = after.count - before.count;
    console.log(`${label}: ${cycles} cycles, mean ${((after.sum - before.sum) / cycles * 1000).toFixed(1)} ms per cycle`);
    // The waiting ones first: cancelling a running one would start the next.
    for (const status of ['pending', 'running'] as const) {
      for (;;) {
        const { jobs } = await client.listJobs({ status, limit: 500 });
        if (jobs.length === 0) break;
        await pool(jobs.length, CONCURRENCY, async (i) => void (await client.cancelJob(jobs[i]!.id)));
      }
    }
    await waitForJobsEnded(client, []);
  };
  const onSlurm = await startTuttiOnSlurm(path.join(root, 'known-slurm'));
  try {
    await measure(`tutti on Slurm (partition ${PARTITION}, ${GPUS} GPUs)`, onSlurm);
  } finally {
    await stopTuttiUp(onSlurm);
  }
  const local = await startTuttiUp(path.join(root, 'known-local'), ['--fake-gpus', String(GPUS), '--grace', '1']);
  try {
    await measure(`reference: tutti on the local backend (1 node x ${GPUS} fake GPUs)`, local);
  } finally {
    await stopTuttiUp(local);
  }
  await waitFor(async () => (await slurmJobsLeft('bench.')) === 0, 'every Slurm job to end', 120_000, 200);
}

async function main(): Promise<void> {
  const { stdout } = await run('bash', [CLUSTER, 'up'], { timeout: 300_000 });
  const conf = /export SLURM_CONF=(\S+)/.exec(stdout)?.[1];
  if (!conf) throw new Error(`scripts/slurm-dev-cluster.sh up printed no SLURM_CONF: ${stdout}`);
  slurmEnv = { ...process.env, SLURM_CONF: conf };
  const restUrl = /TUTTI_SLURM_REST_URL=(\S+)/.exec(stdout)?.[1];
  const jwtKey = /TUTTI_SLURM_JWT_KEY=(\S+)/.exec(stdout)?.[1];
  if (restUrl && jwtKey) REST = { url: restUrl, jwtKey };
  const version = (await slurm('sinfo', ['--version'])).trim();
  if (BENCH_NODES) {
    PARTITION = 'bench';
    await slurm('scontrol', ['delete', 'PartitionName=bench']).catch(() => undefined);
    await slurm('scontrol', ['create', `PartitionName=bench`, `Nodes=${BENCH_NODES}`, 'State=UP', 'MaxTime=INFINITE']);
  }
  GPUS = (await slurm('sinfo', ['-h', '-N', '-p', PARTITION, '-o', '%G'])).trim().split('\n').reduce((sum, gres) => sum + Number(/gpu(?::[^:(]+)?:(\d+)/.exec(gres)?.[1] ?? 0), 0);
  console.log(`tutti on Slurm, ${new Date().toISOString()}: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${version}; dev cluster: 6 nodes x 4 fake GPUs in network namespaces on this machine; partition ${PARTITION} (${GPUS} GPUs)`);
  const root = await mkdtemp(path.join(tmpdir(), 'tutti-bench-slurm-'));
  const phases = (process.env.BENCH_SLURM_PHASES ?? '1,2,3,4').split(',');
  try {
    if (phases.includes('1')) await submissions(root);
    if (phases.includes('2')) await latency(root);
    if (phases.includes('3')) await nodeDown(root);
    if (phases.includes('4')) await schedulingCost(root);
  } finally {
    await slurm('scancel', ['-n', 'bench.requeue']).catch(() => undefined);
    if (BENCH_NODES) await slurm('scontrol', ['delete', 'PartitionName=bench']).catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  }
}

await main();
