/**
 * `npm run bench:load`: how long `/healthz` takes to answer while the heaviest requests run (docs/benchmarks.md,
 * "/healthz under load").
 *
 * 1. A store with BENCH_LOAD_JOBS (default 10,000) jobs that ran and ended, each with a realistic, moderately large
 *    spec (~8 KiB: a torchrun command line and ~70 environment variables): submitted through the store, then marked
 *    ended in bulk by SQL.
 * 2. A real `tutti up --fake-gpus 4` process on that data dir, with a preloaded probe of its own event-loop delay
 *    (bench/loop-delay-probe.mjs). Submissions go to a team whose quota is 0, so they stay pending: the load is the
 *    API and the store, not rank processes.
 * 3. The heaviest requests, each alone SOLO_RUNS times: the job list at its largest page (and, where the server has
 *    it, the full view at its largest page), the history export, and a submission of a ~63 KiB YAML spec; for each,
 *    how long it takes and the longest stall of the server's event loop while it runs.
 * 4. BENCH_LOAD_CLIENTS (default 16) clients run those requests in turn, each in a loop, for BENCH_LOAD_SECONDS
 *    (default 20), while one prober asks `/healthz` every 10 ms on its own connection. Then every client stops and
 *    aborts what it still waits for, and the prober measures how long the server takes to answer `/healthz` within
 *    50 ms again (work left over for clients that have gone), at most 120 s.
 *
 * Prints `/healthz` p50/p99/max, the server's event-loop delay, its peak RSS and the requests done. Stops itself
 * (bounded time, bounded requests per client) and talks only to 127.0.0.1.
 */
import { setMaxListeners } from 'node:events';
import http from 'node:http';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import type { JobSpec } from '@tutti/model';
import { createSqliteStateStore } from '@tutti/store';
import { startTuttiUp, stopTuttiUp } from './tutti-up.ts';
import type { TuttiUpProcess } from './tutti-up.ts';

const LOOP_DELAY_PROBE = fileURLToPath(new URL('./loop-delay-probe.mjs', import.meta.url));
const JOBS = Number(process.env.BENCH_LOAD_JOBS ?? 10_000);
const SECONDS = Number(process.env.BENCH_LOAD_SECONDS ?? 20);
const CLIENTS = Number(process.env.BENCH_LOAD_CLIENTS ?? 16);
/** A bound on each client's requests, so that a very fast server still ends the run. */
const MAX_REQUESTS_PER_CLIENT = 5_000;
const RECOVERY_LIMIT_MS = 120_000;
const HEALTHY_MS = 50;
const SOLO_RUNS = 5;
const SUBMIT_TEAM = 'bench-submit';

interface Server extends TuttiUpProcess {
  loopDelayFile: string;
}

interface LoopDelay {
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  mean_ms: number;
}

/** ~8 KiB, as a real training job's spec: a torchrun command line and the environment of a shared cluster. */
function realisticSpec(i: number): JobSpec {
  const env: Record<string, string> = {};
  for (let k = 0; k < 70; k++) env[`TRAIN_SETTING_${k}`] = `/mnt/shared/projects/team-${i % 8}/experiments/run-${i}/stage-${k}/cache?retries=3&timeout=600`;
  const argv = ['torchrun', '--nnodes=1', '--nproc-per-node=2', 'train.py'];
  for (let k = 0; k < 40; k++) argv.push(`--opt.layer${k}.lr=${(0.001 * (k + 1)).toFixed(4)}`);
  return {
    name: `history-${i}`,
    team: `team-${i % 8}`,
    priority: i % 100,
    numNodes: 1,
    resources: { gpus: { count: 1 + (i % 2), types: i % 3 === 0 ? ['H100'] : [] }, cpus: 8, memoryMiB: 65_536 },
    run: { kind: 'argv', argv },
    env,
    maxRestarts: i % 3,
  };
}

/** A ~63 KiB YAML spec (under a 64 KiB limit): a large environment, as generated configurations produce. */
function maximalYamlSpec(n: number): string {
  const lines = [`name: big-${n}`, `team: ${SUBMIT_TEAM}`, 'resources: {gpus: 1}', 'run: python train.py', 'env:'];
  let size = lines.join('\n').length;
  for (let k = 0; size < 63 * 1024; k++) {
    const line = `  SETTING_${k}: "/mnt/shared/generated/config/${n}/value-${k}-${'x'.repeat(60)}"`;
    lines.push(line);
    size += line.length + 1;
  }
  return `${lines.join('\n')}\n`;
}

/**
 * JOBS jobs, submitted through the store (one a minute, as a history), then marked as having run and ended in one
 * SQL transaction behind the store: through the store that is two fsynced transactions per job, minutes for 10,000.
 */
async function seedStore(dataDir: string): Promise<void> {
  const databasePath = path.join(dataDir, 'tutti.db');
  const store = await createSqliteStateStore({ path: databasePath });
  const t0 = Date.now() - JOBS * 60_000;
  try {
    for (let i = 0; i < JOBS; i += 1000) {
      await Promise.all(Array.from({ length: Math.min(1000, JOBS - i) }, (_, k) => store.createJob(realisticSpec(i + k), t0 + (i + k) * 60_000, { user: `user-${(i + k) % 20}` })));
    }
  } finally {
    await store.close();
  }
  const database = new Database(databasePath);
  database
    .prepare(
      `update jobs set started_at = created_at + 5000, finished_at = created_at + 35000 + (id % 17) * 60000,
         status = case when id % 20 = 0 then 'cancelled' when id % 10 = 0 then 'failed' else 'succeeded' end,
         exit_code = case when id % 20 = 0 then null when id % 10 = 0 then 1 else 0 end,
         end_reason = case when id % 20 = 0 then 'cancelled' when id % 10 = 0 then 'rank 0 exited with code 1' else 'every rank exited with code 0' end`,
    )
    .run();
  database.close();
}

async function startServer(root: string, dataDir: string): Promise<Server> {
  const config = path.join(root, 'cluster.yaml');
  // Quota 0 and nothing to borrow: benchmark submissions are stored and queued, and never start processes.
  await writeFile(config, `teams:\n  - {name: ${SUBMIT_TEAM}, quota: {'*': 0}, borrowing_limit: {'*': 0}}\n  - {name: default, quota: {'*': 4}}\n`);
  const loopDelayFile = path.join(root, 'loop-delay.json');
  const server = await startTuttiUp(dataDir, ['--host', '127.0.0.1', '--fake-gpus', '4', '--grace', '1', '--config', config], {
    nodeArgs: ['--import', LOOP_DELAY_PROBE],
    env: { ...process.env, TUTTI_BENCH_LOOP_DELAY_FILE: loopDelayFile },
  });
  if (server.url.hostname !== '127.0.0.1') throw new Error(`the server listens on ${server.url.hostname}; this benchmark talks to 127.0.0.1 only`);
  return { ...server, loopDelayFile };
}

interface Answer {
  status: number;
  bytes: number;
  body: string;
}

/** One request; `keepBody` false counts the bytes without keeping them (a 60 MB list should not cost the client). */
function request(server: Server, agent: http.Agent, method: string, pathname: string, options: { body?: string; contentType?: string; signal?: AbortSignal; keepBody?: boolean } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = {};
    if (options.body !== undefined) {
      headers['content-type'] = options.contentType ?? 'application/json';
      headers['content-length'] = Buffer.byteLength(options.body);
    }
    const req = http.request({ host: '127.0.0.1', port: server.url.port, method, path: pathname, agent, headers, ...(options.signal ? { signal: options.signal } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (options.keepBody !== false) chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
      res.on('close', () => {
        if (!res.complete) reject(new Error(`${method} ${pathname}: the answer was cut off`));
      });
    });
    req.on('error', reject);
    if (options.body !== undefined) req.write(options.body);
    req.end();
  });
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Operation {
  name: string;
  run(signal: AbortSignal, n: number): Promise<Answer>;
  expect: number;
}

async function heaviestOperations(server: Server, agent: http.Agent): Promise<Operation[]> {
  const get = (name: string, pathname: string): Operation => ({ name, expect: 200, run: (signal) => request(server, agent, 'GET', pathname, { signal, keepBody: false }) });
  const operations = [get('GET /v1/jobs?limit=1000', '/v1/jobs?limit=1000')];
  // A server with a full view pages it by its own, smaller cap (the 400 names it); an older one has no view at all.
  const probe = await request(server, agent, 'GET', '/v1/jobs?view=full&limit=1000');
  const cap = /at most (\d+)/.exec(probe.body)?.[1];
  if (probe.status === 400 && cap !== undefined && /view/.test(probe.body)) operations.push(get(`GET /v1/jobs?view=full&limit=${cap}`, `/v1/jobs?view=full&limit=${cap}`));
  operations.push(get('GET /v1/export/history', '/v1/export/history'));
  operations.push({ name: 'POST /v1/jobs (63 KiB YAML)', expect: 201, run: (signal, n) => request(server, agent, 'POST', '/v1/jobs', { body: maximalYamlSpec(n), contentType: 'application/yaml', signal }) });
  return operations;
}

/** GET /healthz every 10 ms while `going()`; each latency (a probe stalled past the recovery limit counts as that long). */
async function probeHealthz(server: Server, agent: http.Agent, going: () => boolean): Promise<number[]> {
  const latencies: number[] = [];
  while (going()) {
    const t0 = performance.now();
    const answer = await request(server, agent, 'GET', '/healthz', { signal: AbortSignal.timeout(RECOVERY_LIMIT_MS) }).catch(() => undefined);
    if (answer !== undefined && answer.status !== 200) throw new Error(`/healthz answered ${answer.status}`);
    latencies.push(performance.now() - t0);
    await sleep(10);
  }
  return latencies;
}

/** The server's event-loop delay since the previous call (its probe writes it on SIGUSR2 and starts afresh). */
async function loopDelaySince(server: Server): Promise<LoopDelay | undefined> {
  await rm(server.loopDelayFile, { force: true });
  server.child.kill('SIGUSR2');
  // Written when the server's loop next turns: late when it is busy.
  for (let i = 0; i < RECOVERY_LIMIT_MS / 100; i++) {
    const written = await readFile(server.loopDelayFile, 'utf8').then(
      (text) => JSON.parse(text) as LoopDelay,
      () => undefined,
    );
    if (written) return written;
    await sleep(100);
  }
  return undefined;
}

async function main(): Promise<void> {
  const root = await mkdtemp(path.join(tmpdir(), 'tutti-bench-load-'));
  const say = (line: string) => console.log(line);
  let server: Server | undefined;
  const loadAgent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
  const probeAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    say(`# /healthz under load — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown CPU'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB`);
    const dataDir = path.join(root, 'data');
    const seedStart = performance.now();
    await seedStore(dataDir);
    say(`seeded ${JOBS.toLocaleString('en-US')} ended jobs (~${(JSON.stringify(realisticSpec(1)).length / 1024).toFixed(1)} KiB spec each) in ${((performance.now() - seedStart) / 1000).toFixed(1)} s`);
    server = await startServer(root, dataDir);
    const s = server;
    await sleep(1000);
    const operations = await heaviestOperations(s, loadAgent);
    const submitted = await operations.at(-1)!.run(new AbortController().signal, 0);
    if (submitted.status !== 201) throw new Error(`a 63 KiB submission answered ${submitted.status}: ${submitted.body}`);
    const queued = JSON.parse((await request(s, probeAgent, 'GET', `/v1/jobs/${(JSON.parse(submitted.body) as { id: string }).id}`)).body) as { status: string };
    if (queued.status !== 'pending') throw new Error(`a benchmark submission should stay pending (team quota 0), it is ${queued.status}`);
    say('server: tutti up --fake-gpus 4 on that data dir; /healthz asked every 10 ms on its own connection');

    const f = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`);

    // Each heavy request alone, SOLO_RUNS times, and the slowest /healthz beside each run: how long one such request
    // keeps everyone else waiting. On a shared machine the OS takes the CPU away too, so the best run is the closest
    // to the request's own cost.
    say(`each request alone (${SOLO_RUNS} runs, one client, /healthz every 10 ms beside it):`);
    for (const operation of operations) {
      const took: number[] = [];
      const slowestHealthz: number[] = [];
      for (let n = 0; n < SOLO_RUNS; n++) {
        let running = true;
        const prober = probeHealthz(s, probeAgent, () => running);
        const t0 = performance.now();
        const answer = await operation.run(new AbortController().signal, 1_000_000 + n);
        took.push(performance.now() - t0);
        running = false;
        if (answer.status !== operation.expect) throw new Error(`${operation.name} answered ${answer.status}: ${answer.body.slice(0, 300)}`);
        slowestHealthz.push(Math.max(...(await prober)));
        await sleep(200);
      }
      say(`  ${operation.name}: takes ${f(Math.min(...took))} at best (p50 ${f(percentile(took, 50))}); slowest /healthz beside it ${f(Math.min(...slowestHealthz))} in the best run (p50 ${f(percentile(slowestHealthz, 50))}, max ${f(Math.max(...slowestHealthz))})`);
    }

    say(`${CLIENTS} clients for ${SECONDS} s, each in turn: ${operations.map((o) => o.name).join(' · ')}`);
    const abort = new AbortController();
    setMaxListeners(CLIENTS * 2, abort.signal);
    const done = new Map<string, { count: number; ms: number[]; bytes: number; failures: number }>(operations.map((o) => [o.name, { count: 0, ms: [], bytes: 0, failures: 0 }]));
    let unfinished = 0;
    await loopDelaySince(s); // from here on is the measured window
    const windowEnd = performance.now() + SECONDS * 1000;
    const prober = probeHealthz(s, probeAgent, () => performance.now() < windowEnd);
    const clients = Array.from({ length: CLIENTS }, async (_, client) => {
      for (let n = 0; n < MAX_REQUESTS_PER_CLIENT && performance.now() < windowEnd; n++) {
        const operation = operations[(client + n) % operations.length]!;
        const record = done.get(operation.name)!;
        const t0 = performance.now();
        try {
          const answer = await operation.run(abort.signal, client * MAX_REQUESTS_PER_CLIENT + n + 1);
          if (answer.status !== operation.expect) {
            record.failures++;
            continue;
          }
          record.count++;
          record.bytes += answer.bytes;
          record.ms.push(performance.now() - t0);
        } catch (error) {
          if (abort.signal.aborted) unfinished++;
          else throw error;
        }
      }
    });
    const stopper = setTimeout(() => abort.abort(), SECONDS * 1000);
    await Promise.all(clients);
    clearTimeout(stopper);
    abort.abort();
    const healthz = await prober;
    const loopDelay = await loopDelaySince(s);

    // Work left for clients that have gone: how long until /healthz answers within HEALTHY_MS again.
    const recoveryStart = performance.now();
    let recoveredMs: number | undefined;
    while (performance.now() - recoveryStart < RECOVERY_LIMIT_MS) {
      const t0 = performance.now();
      const answer = await request(s, probeAgent, 'GET', '/healthz', { signal: AbortSignal.timeout(Math.max(1, Math.ceil(RECOVERY_LIMIT_MS - (t0 - recoveryStart)))) }).catch(() => undefined);
      if (answer?.status === 200 && performance.now() - t0 < HEALTHY_MS) {
        recoveredMs = performance.now() - recoveryStart;
        break;
      }
      await sleep(10);
    }
    const status = await readFile(`/proc/${s.child.pid}/status`, 'utf8');
    const peakRssMiB = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024;

    say(`  /healthz during the load (${healthz.length} probes): p50 ${f(percentile(healthz, 50))}, p99 ${f(percentile(healthz, 99))}, max ${f(Math.max(...healthz))}`);
    if (loopDelay) say(`  server event-loop delay during the load: p50 ${f(loopDelay.p50_ms)}, p99 ${f(loopDelay.p99_ms)}, max ${f(loopDelay.max_ms)}, mean ${f(loopDelay.mean_ms)}`);
    say(`  after the clients stopped: /healthz under ${HEALTHY_MS} ms again ${recoveredMs === undefined ? `not within ${RECOVERY_LIMIT_MS / 1000} s` : `after ${f(recoveredMs)}`}; server peak RSS ${peakRssMiB.toFixed(0)} MiB`);
    for (const [name, r] of done) {
      say(`  ${name}: ${r.count} done (${(r.count / SECONDS).toFixed(1)}/s), p50 ${r.ms.length ? f(percentile(r.ms, 50)) : 'n/a'}, ${r.count ? `${(r.bytes / r.count / 1024).toFixed(0)} KiB each` : ''}${r.failures ? `, ${r.failures} refused` : ''}`);
    }
    say(`  requests cut off at the end of the window: ${unfinished}`);
  } finally {
    loadAgent.destroy();
    probeAgent.destroy();
    if (server) await stopTuttiUp(server);
    await rm(root, { recursive: true, force: true }).catch(() => undefined);
  }
}

await main();
