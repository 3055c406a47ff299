/**
 * `npm run bench:recovery`: how long a `tutti up` takes to come back after a kill -9 with 10,000 jobs in its store
 * (see docs/benchmarks.md).
 *
 * The store is filled the way a server fills it (through @tutti/store and the local backend, with real rank
 * processes): finished jobs with their ranks and attempts, pending jobs, and 64 running jobs on 64 fake GPUs whose
 * ranks are real `sleep` processes — among them ranks whose exit was recorded just before the crash, the jobs
 * still `running` (the window recovery used to leave stuck). A real `tutti up` then adopts it all and is killed
 * with SIGKILL; while it is down some ranks exit; then it is started again and timed from spawn to:
 *   - the first answer of GET /healthz (the API listens before recovery, so this is not "recovered"),
 *   - "tutti is up" (recovery over: every running job adopted, finished or requeued; the controller started), and
 *     what recovery itself took by the server's log line ("recovered N running jobs in X ms"),
 *   - the first scheduling cycle's placement (the first `scheduled` event the new process writes: GPUs freed by
 *     the ranks that exited meanwhile go to pending jobs).
 * The same start on an empty data dir is the floor (Node, the CLI bundle, SQLite).
 *
 * Options (env): BENCH_RECOVERY_JOBS (default 10000), BENCH_RECOVERY_ROUNDS (kill -9 + restart rounds, default 3).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { cpus, tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { createLocalBackend, readLocalRankRef, recordOfHandle } from '@tutti/backends';
import type { RankHandle } from '@tutti/backends';
import { computeTasksForPlacement, parseJobSpecObject } from '@tutti/model';
import type { JobSpec } from '@tutti/model';
import { createSqliteStateStore } from '@tutti/store';

/**
 * The CLI bundle itself (`npm run bench:recovery` builds it first), not bin/tutti.js: that one compiles the sources
 * instead whenever one is newer than the bundle, which would time the compiler.
 */
const TUTTI = fileURLToPath(new URL('../packages/cli/dist/tutti.mjs', import.meta.url));
const JOBS = Number(process.env.BENCH_RECOVERY_JOBS ?? 10_000);
const ROUNDS = Number(process.env.BENCH_RECOVERY_ROUNDS ?? 3);
const GPUS = 64;
/** Ranks released (exit 0) while the server is down, per round: their GPUs go to pending jobs at the first cycle. */
const RELEASED_PER_ROUND = 8;
/** Running jobs whose rank's exit is recorded before the first kill, the jobs still `running`. */
const EXIT_RECORDED = 8;
const FINISHED_SHARE = 0.7;

function spec(name: string, command: string): JobSpec {
  const parsed = parseJobSpecObject({ name, resources: { gpus: 1 }, run: command });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  return parsed.value;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** Fills the store as a server that then died would have left it. Returns the release files of the running ranks. */
async function fillStore(dataDir: string, root: string): Promise<string[]> {
  const store = await createSqliteStateStore({ path: path.join(dataDir, 'tutti.db') });
  const backend = createLocalBackend({ dataDir, fakeGpus: String(GPUS) });
  const [node] = await backend.inventory();
  await store.replaceNodes([node!], Date.now());
  const place = async (ids: string[], gpuOf: (i: number) => number) => {
    const placements = ids.map((jobId, i) => {
      const placement = { jobId, nodes: [{ node: node!.name, gpuIndices: [gpuOf(i)] }] };
      return { placement, tasks: computeTasksForPlacement(spec('x', 'true'), placement) };
    });
    const outcomes = await store.applyPlacements(placements, Date.now());
    if (outcomes.some((o) => !o.applied)) throw new Error(`placement refused: ${JSON.stringify(outcomes.find((o) => !o.applied))}`);
  };

  const finished = Math.round(JOBS * FINISHED_SHARE);
  const ids: string[] = [];
  for (let start = 0; start < JOBS; start += 1000) {
    const batch = Array.from({ length: Math.min(1000, JOBS - start) }, (_, i) => start + i);
    const jobs = await Promise.all(batch.map((i) => store.createJob(spec(`job-${i}`, i < finished ? 'true' : 'sleep 3600'), Date.now())));
    ids.push(...jobs.map((j) => j.id));
  }
  // Finished jobs ran first: placed, their rank exited, the job ended (a tenth of them failed).
  for (let start = 0; start < finished; start += GPUS) {
    const wave = ids.slice(start, Math.min(finished, start + GPUS));
    await place(wave, (i) => i);
    await store.updateTasks(wave.map((jobId, i) => ({ jobId, rank: 0, status: 'exited', exitCode: (start + i) % 10 === 0 ? 1 : 0, backend: { kind: 'local', ref: { pid: 1, pidStartTime: 0 } }, startedAt: Date.now(), finishedAt: Date.now() })));
    for (const [i, jobId] of wave.entries()) {
      const failed = (start + i) % 10 === 0;
      await store.finishJob(jobId, failed ? { status: 'failed', exitCode: 1, endReason: 'rank 0 exited with code 1' } : { status: 'succeeded', exitCode: 0, endReason: 'its rank exited with code 0' }, Date.now());
    }
  }
  // Running jobs: real ranks, each waiting for its release file; the rest of the store stays pending.
  const running = ids.slice(finished, finished + GPUS);
  await place(running, (i) => i);
  const releases: string[] = [];
  const handles: RankHandle[] = [];
  for (const [i, jobId] of running.entries()) {
    const release = path.join(root, `release-${jobId}`);
    releases.push(release);
    const [handle] = await backend.launch({
      jobId, jobName: `job-${finished + i}`, attempt: 1, env: {},
      run: { kind: 'shell', command: `while [ ! -e '${release}' ]; do sleep 0.2; done` },
      ranks: [{ rank: 0, localRank: 0, nodeRank: 0, node: node!.name, gpus: [i] }],
    });
    handles.push(handle!);
  }
  await store.updateTasks(handles.map(recordOfHandle));
  // The window of issue 13: these ranks' exits are recorded, their jobs not finished, when the server dies.
  for (const release of releases.slice(0, EXIT_RECORDED)) await writeFile(release, '');
  await waitFor(async () => (await Promise.all(handles.slice(0, EXIT_RECORDED).map((h) => exitFileOf(h)))).every((e) => e !== undefined), 'the first ranks to exit');
  await store.updateTasks(handles.slice(0, EXIT_RECORDED).map((h) => ({ jobId: h.jobId, rank: 0, status: 'exited', exitCode: 0, finishedAt: Date.now() })));
  await backend.close();
  await store.close();
  return releases.slice(EXIT_RECORDED);
}

async function exitFileOf(handle: RankHandle): Promise<string | undefined> {
  return readFile((readLocalRankRef(handle).logPath ?? '').replace(/\.log$/, '.exit'), 'utf8').catch(() => undefined);
}

async function waitFor(condition: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Start {
  child: ChildProcess;
  healthzMs: number;
  upMs: number;
  spawnedAt: number;
  /** What the server's log says recovery itself took ("recovered N running jobs in X ms"). */
  recoveryMs?: number;
}

/** Starts `tutti up` on a known port and times it from spawn to its first /healthz answer and its "up" line. */
async function timedStart(dataDir: string): Promise<Start> {
  const port = await freePort();
  const spawnedAt = Date.now();
  const t0 = performance.now();
  const child = spawn(process.execPath, [TUTTI, 'up', '--port', String(port), '--data-dir', dataDir, '--fake-gpus', String(GPUS), '--grace', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let output = '';
  const up = new Promise<number>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      output += d.toString();
      if (/tutti is up at/.test(output)) resolve(performance.now() - t0);
    });
    child.on('exit', (code) => reject(new Error(`tutti up exited ${code}: ${output}`)));
  });
  let healthzMs: number | undefined;
  while (healthzMs === undefined) {
    const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false);
    if (ok) healthzMs = performance.now() - t0;
    else await new Promise((r) => setTimeout(r, 2));
    if (child.exitCode !== null) throw new Error(`tutti up exited: ${output}`);
  }
  const upMs = await up;
  const recovered = /recovered \d+ running jobs? in (\d+) ms/.exec(output);
  return { child, healthzMs, upMs, spawnedAt, ...(recovered ? { recoveryMs: Number(recovered[1]) } : {}) };
}

function kill9(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

/** The first placement the process started at `since` made (its first scheduling cycle that placed a job). */
function firstPlacementAt(dataDir: string, since: number): number | undefined {
  const db = new Database(path.join(dataDir, 'tutti.db'), { readonly: true });
  try {
    const row = db.prepare("SELECT min(at) AS at FROM events WHERE type = 'scheduled' AND at >= ?").get(since) as { at: number | null };
    return row.at ?? undefined;
  } finally {
    db.close();
  }
}

function counts(dataDir: string): Record<string, number> {
  const db = new Database(path.join(dataDir, 'tutti.db'), { readonly: true });
  try {
    const rows = db.prepare('SELECT status, count(*) AS n FROM jobs GROUP BY status').all() as Array<{ status: string; n: number }>;
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  } finally {
    db.close();
  }
}

async function killRanks(dataDir: string): Promise<void> {
  const entries = await readdir(path.join(dataDir, 'jobs'), { recursive: true }).catch(() => [] as string[]);
  for (const entry of entries.filter((e) => e.endsWith('.pid'))) {
    const pid = Number((await readFile(path.join(dataDir, 'jobs', entry), 'utf8').catch(() => '')).trim());
    if (pid > 0) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const ms = (value: number) => `${Math.round(value)} ms`;

async function main(): Promise<void> {
  const root = await mkdtemp(path.join(tmpdir(), 'tutti-bench-recovery-'));
  const dataDir = path.join(root, 'data');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const servers: ChildProcess[] = [];
  try {
    console.log(`machine: ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB; node ${process.version}`);
    const empty = path.join(root, 'empty');
    const floor: Start[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const start = await timedStart(empty);
      servers.push(start.child);
      floor.push(start);
      await kill9(start.child);
    }
    console.log(`empty data dir: /healthz ${ms(median(floor.map((s) => s.healthzMs)))}, up ${ms(median(floor.map((s) => s.upMs)))} (median of ${ROUNDS})`);

    const filling = performance.now();
    const releases = await fillStore(dataDir, root);
    console.log(`filled the store in ${ms(performance.now() - filling)}: ${JSON.stringify(counts(dataDir))} (${EXIT_RECORDED} running jobs with their rank's exit recorded)`);
    const first = await timedStart(dataDir);
    servers.push(first.child);
    await kill9(first.child);
    console.log(`first start on it (adopts ${GPUS - EXIT_RECORDED} ranks, finishes ${EXIT_RECORDED} jobs): up ${ms(first.upMs)}; killed with SIGKILL`);

    const rows: Array<{ healthzMs: number; upMs: number; recoveryMs: number; firstCycleMs: number }> = [];
    for (let round = 0; round < ROUNDS; round++) {
      // While no server runs, some ranks exit: the restart finds their exit files and frees their GPUs.
      for (const release of releases.splice(0, RELEASED_PER_ROUND)) await writeFile(release, '');
      await new Promise((r) => setTimeout(r, 600));
      const start = await timedStart(dataDir);
      servers.push(start.child);
      let placedAt: number | undefined;
      await waitFor(async () => (placedAt = firstPlacementAt(dataDir, start.spawnedAt)) !== undefined, 'the first placement', 30_000);
      const row = { healthzMs: start.healthzMs, upMs: start.upMs, recoveryMs: start.recoveryMs ?? Number.NaN, firstCycleMs: placedAt! - start.spawnedAt };
      rows.push(row);
      // Killed while it works as usual, not in the middle of its first launches.
      await new Promise((r) => setTimeout(r, 1000));
      console.log(`restart ${round + 1} after kill -9: /healthz ${ms(row.healthzMs)}, up (recovered) ${ms(row.upMs)} (recovery itself ${ms(row.recoveryMs)}), first placement ${ms(row.firstCycleMs)}; ${JSON.stringify(counts(dataDir))}`);
      await kill9(start.child);
    }
    console.log(
      `median of ${ROUNDS} restarts with ${JOBS} jobs: /healthz ${ms(median(rows.map((r) => r.healthzMs)))}, recovered ${ms(median(rows.map((r) => r.upMs)))} (recovery itself ${ms(median(rows.map((r) => r.recoveryMs)))}), first placement ${ms(median(rows.map((r) => r.firstCycleMs)))}`,
    );
  } finally {
    for (const child of servers) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await killRanks(dataDir);
    await rm(root, { recursive: true, force: true });
  }
}

await main();
