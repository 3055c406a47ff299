/**
 * `npm run bench:web`: the web dashboard with 100,000 jobs in the store (see docs/benchmarks.md).
 *
 * 1. Fills a fresh SQLite store with BENCH_WEB_JOBS jobs (bulk insert behind the store: ended jobs of 20 teams and
 *    many names), then starts a tutti server on 8 fake GPUs in this process, serving the built dashboard.
 * 2. Submits one job through the API that prints 500 progress records and ends: the job page's subject.
 * 3. In headless Chromium, loads the jobs page and that job page BENCH_WEB_LOADS times each and reads the time from
 *    navigation start to the page's first render with data (`performance.mark` the app sets then): cold = a new
 *    browser context per load (no HTTP cache), warm = a reload in the same context (assets cached).
 * 4. Times the list API itself at that size (first page, a deep page, a name filter, a sort by name).
 * 5. The bundle's size, raw and gzip (what the server sends).
 *
 * Options (env): BENCH_WEB_JOBS (default 100000), BENCH_WEB_LOADS (default 15), BENCH_JSON=1 for JSON only.
 */
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { chromium } from 'playwright-core';
import type { Browser, BrowserContext } from 'playwright-core';
import { TuttiClient } from '@tutti/client';
import { parseJobSpecObject } from '@tutti/model';
import { silentLogger, startTuttiServer } from '@tutti/server';
import { createSqliteStateStore } from '@tutti/store';
import { dashboardDistDir, ensureDashboardBuilt } from '@tutti/web';

const JOBS = Number(process.env.BENCH_WEB_JOBS ?? 100_000);
const LOADS = Number(process.env.BENCH_WEB_LOADS ?? 15);
const JSON_ONLY = process.env.BENCH_JSON === '1';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

const log = (line: string) => {
  if (!JSON_ONLY) process.stderr.write(`${line}\n`);
};

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

const round = (ms: number) => Math.round(ms * 10) / 10;

async function fillStore(dbPath: string): Promise<void> {
  const store = await createSqliteStateStore({ path: dbPath });
  await store.migrate();
  await store.close();
  const parsed = parseJobSpecObject({ name: 'x', resources: { gpus: 1 }, run: ['python', 'train.py'] });
  if (!parsed.ok) throw new Error('bench spec does not parse');
  const db = new Database(dbPath);
  const insert = db.prepare(
    'insert into jobs (name, team, priority, status, spec_json, created_at, started_at, finished_at, exit_code, end_reason, attempt) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)',
  );
  const statuses = ['succeeded', 'succeeded', 'succeeded', 'failed', 'cancelled'] as const;
  const t0 = Date.now() - JOBS * 10_000;
  db.transaction(() => {
    for (let i = 0; i < JOBS; i++) {
      const name = `${['train', 'eval', 'sweep', 'finetune'][i % 4]}-${i % 997}`;
      const team = `team-${i % 20}`;
      const status = statuses[i % statuses.length]!;
      const created = t0 + i * 10_000;
      const spec = JSON.stringify({ ...parsed.value, name, team, priority: (i * 7) % 101 });
      insert.run(name, team, (i * 7) % 101, status, spec, created, created + 2000, created + 62_000, status === 'succeeded' ? 0 : status === 'failed' ? 1 : null, status === 'succeeded' ? 'all ranks exited 0' : status);
    }
  })();
  db.close();
}

/** Time from navigation start to the app's first render with data, in each of `LOADS` loads. */
async function measurePage(browser: Browser, url: string, mark: string): Promise<{ cold: number[]; warm: number[] }> {
  const read = async (context: BrowserContext, reload: boolean) => {
    const page = context.pages()[0] ?? (await context.newPage());
    if (reload) await page.reload();
    else await page.goto(url);
    await page.waitForFunction((name) => performance.getEntriesByName(name).length > 0, mark, { timeout: 30_000 });
    return page.evaluate((name) => performance.getEntriesByName(name)[0]!.startTime, mark);
  };
  const cold: number[] = [];
  const warm: number[] = [];
  // One load first to let the server's caches (SQLite pages, gzip of the bundle) settle; not counted.
  const first = await browser.newContext();
  await read(first, false);
  for (let i = 0; i < LOADS; i++) warm.push(await read(first, true));
  await first.close();
  for (let i = 0; i < LOADS; i++) {
    const context = await browser.newContext();
    cold.push(await read(context, false));
    await context.close();
  }
  return { cold, warm };
}

async function timeApi(label: string, run: () => Promise<unknown>): Promise<{ label: string; p50: number }> {
  const times: number[] = [];
  await run();
  for (let i = 0; i < 20; i++) {
    const started = performance.now();
    await run();
    times.push(performance.now() - started);
  }
  return { label, p50: round(percentile(times, 50)) };
}

async function bundleSizes(): Promise<{ file: string; bytes: number; gzipBytes: number }[]> {
  const files = ['index.html', ...(await readdir(path.join(dashboardDistDir, 'assets'))).map((f) => `assets/${f}`)];
  return Promise.all(
    files.map(async (file) => {
      const body = await readFile(path.join(dashboardDistDir, file));
      return { file, bytes: (await stat(path.join(dashboardDistDir, file))).size, gzipBytes: gzipSync(body).length };
    }),
  );
}

async function main(): Promise<void> {
  const built = await ensureDashboardBuilt();
  log(built ? 'built the dashboard' : 'the dashboard build is up to date');
  const root = await mkdtemp(path.join(tmpdir(), 'tutti-bench-web-'));
  const dataDir = path.join(root, 'data');
  let browser: Browser | undefined;
  const server = await (async () => {
    const started = performance.now();
    await fillStore(path.join(dataDir, 'tutti.db'));
    log(`stored ${JOBS} jobs in ${Math.round(performance.now() - started)} ms`);
    return startTuttiServer({ dataDir, port: 0, fakeGpus: '8', logger: silentLogger, dashboardDir: dashboardDistDir });
  })();
  try {
    const client = new TuttiClient({ baseUrl: server.url });
    const script = `for(let s=1;s<=500;s++)console.log(JSON.stringify({tutti:{step:s,loss:4/Math.sqrt(s),samples_per_s:900+s%50}}));console.log('done')`;
    const job = await client.submitJob({ name: 'bench-subject', team: 'team-1', resources: { gpus: 2 }, run: [process.execPath, '-e', script] });
    for (let deadline = Date.now() + 30_000; ; ) {
      const current = await client.getJob(job.id);
      if (current.status === 'succeeded' || current.status === 'failed') break;
      if (Date.now() > deadline) throw new Error(`job ${job.id} did not end: ${current.status}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const records = (await client.getJobMetrics(job.id, { last: 10_000 })).records.length;
    log(`job ${job.id} ended with ${records} progress records`);

    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
    const version = browser.version();
    const jobsPage = await measurePage(browser, `${server.url}/jobs`, 'tutti:jobs-page-rendered');
    const jobPage = await measurePage(browser, `${server.url}/jobs/${job.id}`, 'tutti:job-page-rendered');

    const api = [
      await timeApi('GET /v1/jobs (first page of 50, newest first)', () => client.listJobs({ limit: 50 })),
      await timeApi('GET /v1/jobs?cursor=100 (the last page)', () => client.listJobs({ limit: 50, cursor: '100' })),
      await timeApi('GET /v1/jobs?status=failed&team=team-3', () => client.listJobs({ status: 'failed', team: 'team-3', limit: 50 })),
      await timeApi('GET /v1/jobs?name=eval-99 (name contains)', () => client.listJobs({ name: 'eval-99', limit: 50 })),
      await timeApi('GET /v1/jobs?sort=team&order=asc', () => client.listJobs({ sort: 'team', order: 'asc', limit: 50 })),
      await timeApi('GET /v1/jobs?sort=name&order=asc (sorts)', () => client.listJobs({ sort: 'name', order: 'asc', limit: 50 })),
      await timeApi(`GET /v1/jobs/${job.id}`, () => client.getJob(job.id)),
    ];
    const bundle = await bundleSizes();
    const result = {
      conditions: { jobs: JOBS, loads: LOADS, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', node: process.version, chromium: version, fakeGpus: 8, progressRecords: records },
      firstRenderMs: {
        jobsPage: { coldP50: round(percentile(jobsPage.cold, 50)), coldP90: round(percentile(jobsPage.cold, 90)), warmP50: round(percentile(jobsPage.warm, 50)), warmP90: round(percentile(jobsPage.warm, 90)) },
        jobPage: { coldP50: round(percentile(jobPage.cold, 50)), coldP90: round(percentile(jobPage.cold, 90)), warmP50: round(percentile(jobPage.warm, 50)), warmP90: round(percentile(jobPage.warm, 90)) },
      },
      apiP50Ms: api,
      bundle: { files: bundle, totalBytes: bundle.reduce((a, f) => a + f.bytes, 0), totalGzipBytes: bundle.reduce((a, f) => a + f.gzipBytes, 0) },
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await browser?.close();
    await server.close();
    await rm(root, { recursive: true, force: true });
  }
}

await main();
