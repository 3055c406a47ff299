/**
 * `npm run bench`: the control plane's figures on this machine (see docs/benchmarks.md).
 *
 * The server runs as a real `tutti up` process on fake GPUs with a fresh data dir; this process is the load
 * generator (keep-alive HTTP/1.1). Both share the machine's cores, as they would on a small box.
 *
 * 1. Submissions per second, durably stored (the API answers after the fsync), with 1 and 32 concurrent clients.
 *    Reference, same run: GET /healthz at the same concurrency — the HTTP ceiling of this server on this machine.
 * 2. Submit → first rank started latency (p50/p99), one job at a time, on the local backend with fake GPUs.
 * 3. Resident memory of the server idle, and with 100,000 jobs in the store; GET /v1/jobs latency at that size.
 *
 * Options (env): BENCH_SECONDS (per throughput phase, default 5), BENCH_LATENCY_JOBS (default 200),
 * BENCH_STORE_JOBS (default 100000), BENCH_PHASES (default 1,2,3), BENCH_DATABASES (where phases 1 and 2 keep the
 * state, one after the other in the same run: `sqlite` (the default), `postgres` (a fresh database on
 * scripts/pg-dev.sh's server, fsync on), or both: `npm run bench:database`).
 */
import http from 'node:http';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { createSqliteStateStore } from '@tutti/store';
import type { JobSpec } from '@tutti/model';
import { createTestDatabase } from '../packages/store/test/postgres-dev-server.ts';
import { startTuttiUp, stopTuttiUp } from './tutti-up.ts';
import type { TuttiUpProcess } from './tutti-up.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const LATENCY_JOBS = Number(process.env.BENCH_LATENCY_JOBS ?? 200);
const STORE_JOBS = Number(process.env.BENCH_STORE_JOBS ?? 100_000);
const PHASES = (process.env.BENCH_PHASES ?? '1,2,3').split(',');
const DATABASES = (process.env.BENCH_DATABASES ?? 'sqlite').split(',');

interface Server extends TuttiUpProcess {
  dataDir: string;
}

async function startServer(root: string, name: string, database = 'sqlite'): Promise<Server> {
  const dataDir = path.join(root, name);
  const databaseArgs = database === 'postgres' ? ['--database', (await createTestDatabase()).url] : [];
  return { ...(await startTuttiUp(dataDir, ['--fake-gpus', '4', '--grace', '1', ...databaseArgs])), dataDir };
}

async function startServerOn(dataDir: string): Promise<Server> {
  return startServer(path.dirname(dataDir), path.basename(dataDir));
}

/** GET /v1/jobs latency at the current store size: first page, a deep page, a filter, and one job. */
async function timeListing(server: Server, kind: string): Promise<void> {
  const timeGet = async (pathname: string) => {
    const samples: number[] = [];
    let body = '';
    for (let i = 0; i < 50; i++) {
      const t0 = performance.now();
      const res = await request(server.url, 'GET', pathname);
      samples.push(performance.now() - t0);
      if (res.status !== 200) throw new Error(`GET ${pathname} answered ${res.status}: ${res.body}`);
      body = res.body;
    }
    return { p50: percentile(samples, 50), p99: percentile(samples, 99), body };
  };
  const first = await timeGet('/v1/jobs?limit=50');
  let cursor = (JSON.parse(first.body) as { next_cursor: string | null }).next_cursor;
  for (let i = 1; i < 1000 && cursor; i++) cursor = (JSON.parse((await request(server.url, 'GET', `/v1/jobs?limit=50&cursor=${cursor}`)).body) as { next_cursor: string | null }).next_cursor;
  const deep = cursor ? await timeGet(`/v1/jobs?limit=50&cursor=${cursor}`) : undefined;
  const filtered = await timeGet(`/v1/jobs?limit=50&team=team-3&status=${kind === 'finished' ? 'failed' : 'pending'}`);
  const one = await timeGet(`/v1/jobs/${Math.floor(STORE_JOBS / 2)}`);
  const f = (t: { p50: number; p99: number }) => `${t.p50.toFixed(1)}/${t.p99.toFixed(1)} ms`;
  console.log(
    `GET /v1/jobs with ${STORE_JOBS.toLocaleString('en-US')} ${kind} jobs (50 per page; p50/p99 of 50 requests): first page ${f(first)}; page 1,000 ${deep ? f(deep) : 'n/a'}; team+status filter ${f(filtered)}; one job ${f(one)}`,
  );
}

const stopServer = stopTuttiUp;

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function request(url: URL, method: string, pathname: string, body?: string, contentType = 'application/json'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: url.hostname, port: url.port, method, path: pathname, agent, headers: body ? { 'content-type': contentType, 'content-length': Buffer.byteLength(body) } : {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

/** Runs `op` from `concurrency` loops for `seconds`; returns completed operations per second. */
async function throughput(concurrency: number, seconds: number, op: () => Promise<void>): Promise<{ perSecond: number; count: number }> {
  const end = performance.now() + seconds * 1000;
  let count = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        await op();
        count++;
      }
    }),
  );
  return { perSecond: count / ((performance.now() - start) / 1000), count };
}

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
}

const pendingSpec = (i: number) => JSON.stringify({ name: `bench-${i}`, team: `team-${i % 8}`, priority: i % 100, resources: { gpus: 1 }, run: 'true' });

async function submitOrThrow(server: Server, i: number): Promise<void> {
  const res = await request(server.url, 'POST', '/v1/jobs', pendingSpec(i));
  if (res.status !== 201) throw new Error(`submit answered ${res.status}: ${res.body}`);
}

/**
 * Holds all 4 fake GPUs so that benchmark submissions stay pending (measures the API, the store and the scheduling
 * loop, not processes). Top priority, so that the default profile never preempts it for a submission.
 */
async function holdAllGpus(server: Server): Promise<string> {
  const res = await request(server.url, 'POST', '/v1/jobs', JSON.stringify({ name: 'gpu-holder', priority: 1000, resources: { gpus: 4 }, run: 'sleep 3600' }));
  const id = (JSON.parse(res.body) as { id: string }).id;
  for (;;) {
    const job = JSON.parse((await request(server.url, 'GET', `/v1/jobs/${id}`)).body) as { status: string };
    if (job.status === 'running') return id;
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function main(): Promise<void> {
  const root = await mkdtemp(path.join(tmpdir(), 'tutti-bench-'));
  const say = (line: string) => console.log(line);
  say(`# tutti bench — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown CPU'}), server = \`tutti up --fake-gpus 4\` in its own process, SQLite WAL synchronous=FULL`);
  try {
    // 0. Reference for one client: durable createJob calls one after another straight into the store (no HTTP).
    const floorStore = await createSqliteStateStore({ path: path.join(root, 'floor', 'tutti.db') });
    const floorEnd = performance.now() + 2000;
    let floorCount = 0;
    while (performance.now() < floorEnd) {
      await floorStore.createJob({ name: `floor-${floorCount}`, team: 'default', priority: 50, numNodes: 1, env: {}, resources: { gpus: { count: 1, types: [] } }, run: { kind: 'shell', command: 'true' } }, Date.now());
      floorCount++;
    }
    await floorStore.close();
    const storeSequential = floorCount / 2;
    say(`reference: durable store.createJob one after another, no HTTP: ${storeSequential.toFixed(0)}/s (each waits for its own fsync)`);

    let idleEmpty = NaN;
    for (const database of DATABASES) {
      const on = DATABASES.length > 1 || database !== 'sqlite' ? `[${database === 'postgres' ? 'PostgreSQL' : 'SQLite'}] ` : '';
      // 1. Throughput.
      if (PHASES.includes('1')) {
        const server = await startServer(root, `throughput-${database}`, database);
        await new Promise((r) => setTimeout(r, 1500));
        if (database === 'sqlite') idleEmpty = await rssMiB(server.child.pid!);
        const holder = await holdAllGpus(server);
        let next = 0;
        for (const concurrency of [1, 32]) {
          const ceiling = await throughput(concurrency, Math.min(SECONDS, 3), async () => {
            await request(server.url, 'GET', '/healthz');
          });
          const submits = await throughput(concurrency, SECONDS, () => submitOrThrow(server, next++));
          const versusStore = concurrency === 1 && database === 'sqlite' ? `; vs sequential store.createJob ${(submits.perSecond / storeSequential).toFixed(2)}` : '';
          say(`${on}submissions/s, ${concurrency} client${concurrency === 1 ? '' : 's'}: ${submits.perSecond.toFixed(0)} (${submits.count} jobs in ${SECONDS} s); reference GET /healthz at the same concurrency: ${ceiling.perSecond.toFixed(0)}/s; ratio ${(submits.perSecond / ceiling.perSecond).toFixed(2)}${versusStore}`);
        }
        await request(server.url, 'POST', `/v1/jobs/${holder}/cancel`);
        await new Promise((r) => setTimeout(r, 1500));
        await stopServer(server);
      }

      // 2. Latency: submit → first rank started, one job at a time, GPUs free.
      if (PHASES.includes('2')) {
        const latencyServer = await startServer(root, `latency-${database}`, database);
        const latencies: number[] = [];
        for (let i = 0; i < LATENCY_JOBS; i++) {
          const res = await request(latencyServer.url, 'POST', '/v1/jobs', JSON.stringify({ name: `lat-${i}`, resources: { gpus: 1 }, run: 'true' }));
          const { id } = JSON.parse(res.body) as { id: string };
          for (;;) {
            const job = JSON.parse((await request(latencyServer.url, 'GET', `/v1/jobs/${id}`)).body) as { created_at: string; tasks: { started_at: string | null }[]; status: string };
            const started = job.tasks?.[0]?.started_at;
            if (started) {
              latencies.push(Date.parse(started) - Date.parse(job.created_at));
              break;
            }
            if (job.status === 'failed') throw new Error(`latency job failed: ${JSON.stringify(job)}`);
            await new Promise((r) => setTimeout(r, 1));
          }
        }
        say(`${on}submit → first rank started (server clock, ${LATENCY_JOBS} jobs one at a time, 1 fake GPU each): p50 ${percentile(latencies, 50).toFixed(0)} ms, p99 ${percentile(latencies, 99).toFixed(0)} ms, max ${Math.max(...latencies).toFixed(0)} ms`);
        await stopServer(latencyServer);
      }
    }
    if (!PHASES.includes('3')) return;

    // 3a. A store with STORE_JOBS finished jobs (the usual case: history), seeded through the store contract.
    const historyDir = path.join(root, 'history');
    const seedStart = performance.now();
    const store = await createSqliteStateStore({ path: path.join(historyDir, 'tutti.db') });
    const spec = (i: number): JobSpec => ({ name: `history-${i}`, team: `team-${i % 8}`, priority: i % 100, numNodes: 1, env: { EPOCHS: '3' }, resources: { gpus: { count: 1 + (i % 4), types: [] } }, run: { kind: 'shell', command: 'python train.py --config configs/resnet50.yaml' } });
    const ids: string[] = [];
    for (let i = 0; i < STORE_JOBS; i += 1000) {
      const batch = await Promise.all(Array.from({ length: Math.min(1000, STORE_JOBS - i) }, (_, k) => store.createJob(spec(i + k), Date.now())));
      ids.push(...batch.map((job) => job.id));
    }
    for (let i = 0; i < ids.length; i += 64) {
      await Promise.all(ids.slice(i, i + 64).map((id, k) => store.finishJob(id, (i + k) % 10 === 0 ? { status: 'failed', exitCode: 1, endReason: 'rank 0 exited with code 1' } : { status: 'succeeded', exitCode: 0, endReason: 'all 1 ranks exited with code 0' }, Date.now())));
    }
    await store.close();
    const history = await startServerOn(historyDir);
    await new Promise((r) => setTimeout(r, 1500));
    const historyRss = await rssMiB(history.child.pid!);
    say(`resident memory: idle with an empty store ${Number.isNaN(idleEmpty) ? 'not measured (phase 1 on SQLite did not run)' : `${idleEmpty.toFixed(0)} MiB`}; with ${STORE_JOBS.toLocaleString('en-US')} finished jobs in the store ${historyRss.toFixed(0)} MiB (seeded in ${((performance.now() - seedStart) / 1000).toFixed(0)} s)`);
    await timeListing(history, 'finished');
    await stopServer(history);

    // 3b. The extreme: STORE_JOBS jobs all pending at once, submitted through the API (every cycle considers all).
    const big = await startServer(root, 'memory');
    const bigHolder = await holdAllGpus(big);
    const fillStart = performance.now();
    let submitted = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (submitted < STORE_JOBS) await submitOrThrow(big, submitted++);
      }),
    );
    const fillSeconds = (performance.now() - fillStart) / 1000;
    await new Promise((r) => setTimeout(r, 3000));
    const loaded = await rssMiB(big.child.pid!);
    say(`resident memory with ${STORE_JOBS.toLocaleString('en-US')} pending jobs (all in the queue): ${loaded.toFixed(0)} MiB (filled through the API at ${(STORE_JOBS / fillSeconds).toFixed(0)} submissions/s, 32 clients)`);
    await timeListing(big, 'pending');
    const metrics = (await request(big.url, 'GET', '/metrics')).body;
    const cycleSum = Number(/tutti_scheduling_cycle_duration_seconds_sum (\S+)/.exec(metrics)?.[1]);
    const cycleCount = Number(/tutti_scheduling_cycle_duration_seconds_count (\S+)/.exec(metrics)?.[1]);
    say(`scheduling cycles during that fill: ${cycleCount}, mean runCycle ${((cycleSum / cycleCount) * 1000).toFixed(1)} ms (queue growing to ${STORE_JOBS.toLocaleString('en-US')})`);
    await request(big.url, 'POST', `/v1/jobs/${bigHolder}/cancel`);
    await new Promise((r) => setTimeout(r, 1500));
    await stopServer(big);
  } finally {
    await rm(root, { recursive: true, force: true }).catch(() => undefined);
    agent.destroy();
  }
}

await main();
