/**
 * The dashboard end to end in real headless Chromium, against a real tutti server on 4 fake GPUs (the GPUs are
 * simulated; the server, its SQLite file, the rank processes and the browser are real). Jobs are submitted through
 * the API, and the test checks what a user would see. Screenshots of every page go to test-artifacts/.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { TuttiClient } from '@tutti/client';
import type { JobView } from '@tutti/client';
import { parseClusterConfigYaml } from '@tutti/model';
import { silentLogger, startTuttiServer } from '@tutti/server';
import type { TuttiServer } from '@tutti/server';
import { dashboardDistDir, ensureDashboardBuilt } from '../src/index.ts';

const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/screenshots/', import.meta.url));
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

const TEAMS = `
teams:
  - {name: vision, weight: 2, quota: {'*': 2}}
  - {name: nlp, weight: 1, quota: {'*': 2}}
`;

let root: string;
let server: TuttiServer;
let client: TuttiClient;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

/** A rank that says it waits, prints ticks until `file` exists, then says it was released and exits 0. */
function waitForFile(file: string): string[] {
  return [
    process.execPath,
    '-e',
    `const fs=require('fs');console.log('rank '+process.env.RANK+' waiting');let i=0;` +
      `(function w(){if(fs.existsSync(process.argv[1])){console.log('rank '+process.env.RANK+' released');process.exit(0);}if(++i%10===0)console.log('tick '+i);setTimeout(w,20)})()`,
    file,
  ];
}

async function waitForJob(id: string, predicate: (job: JobView) => boolean, what: string): Promise<JobView> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const job = await client.getJob(id);
    if (predicate(job)) return job;
    if (Date.now() > deadline) throw new Error(`job ${id} never became ${what}; last: ${JSON.stringify(job)}`);
    await sleep(50);
  }
}

async function screenshot(name: string): Promise<void> {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Every form control and button on the page has a name a screen reader can say. */
async function unlabelledControls(): Promise<string[]> {
  return page.evaluate(() =>
    [...document.querySelectorAll('button, input, select, textarea, a[href]')]
      .filter((el) => {
        const labelled = el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') || (el as HTMLInputElement).labels?.length || (el.textContent ?? '').trim();
        return !labelled;
      })
      .map((el) => el.outerHTML.slice(0, 120)),
  );
}

beforeAll(async () => {
  await ensureDashboardBuilt();
  await mkdir(ARTIFACTS, { recursive: true });
  root = await mkdtemp(path.join(tmpdir(), 'tutti-web-e2e-'));
  const config = parseClusterConfigYaml(TEAMS);
  if (!config.ok) throw new Error(JSON.stringify(config.errors));
  server = await startTuttiServer({ dataDir: path.join(root, 'data'), port: 0, fakeGpus: '4', logger: silentLogger, tickMs: 200, stopGraceMs: 2000, clusterSampleMs: 500, dashboardDir: dashboardDistDir, config: config.value });
  client = new TuttiClient({ baseUrl: server.url });
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
  page.on('pageerror', (error) => pageErrors.push(error.message));
});

afterAll(async () => {
  await browser?.close();
  if (client) {
    const { jobs } = await client.listJobs({ status: 'running', limit: 1000 }).catch(() => ({ jobs: [] as JobView[] }));
    for (const job of jobs) await client.cancelJob(job.id).catch(() => undefined);
    for (const job of jobs) await waitForJob(job.id, (j) => j.status === 'cancelled' || j.status === 'succeeded' || j.status === 'failed', 'ended').catch(() => undefined);
  }
  await server?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('the dashboard in Chromium, on 4 fake GPUs', () => {
  let holder: JobView;
  let waiting: JobView;

  it('shows overview counts that match the cluster', async () => {
    holder = await client.submitJob({ name: 'holder', team: 'vision', resources: { gpus: 2 }, run: waitForFile(path.join(root, 'release-holder')) });
    await waitForJob(holder.id, (j) => j.status === 'running', 'running');

    await page.goto(`${server.url}/`);
    const { nodes } = await client.listNodes();
    const type = nodes[0]!.gpus[0]!.type;
    const row = page.locator(`[data-testid=gpus-by-type] tr[data-gpu-type="${type}"]`);
    await row.locator('[data-field=allocated]', { hasText: /^2$/ }).waitFor();
    expect(await row.locator('[data-field=total]').textContent()).toBe('4');
    expect(await row.locator('[data-field=free]').textContent()).toBe('2');
    expect(await row.locator('[data-field=unhealthy]').textContent()).toBe('0');
    const vision = page.locator('[data-testid=jobs-by-team] tr[data-team=vision]');
    expect(await vision.locator('[data-field=running]').textContent()).toBe('1');
    await page.locator('[data-testid=recent-events] li', { hasText: `job ${holder.id}` }).first().waitFor();
    // The chart of the last hour spans the hour, ending now, though the server has only a few samples yet.
    const chart = page.locator('figure[aria-label="pending jobs, running jobs and GPUs allocated"] .chart-canvas');
    await chart.and(page.locator('[data-x-max]')).waitFor();
    const [xMin, xMax] = [Number(await chart.getAttribute('data-x-min')), Number(await chart.getAttribute('data-x-max'))];
    expect(xMax - xMin).toBe(3600);
    expect(Math.abs(xMax - Date.now() / 1000)).toBeLessThan(60);
    expect(await unlabelledControls()).toEqual([]);
    await screenshot('overview');
  });

  it('shows a newly submitted job in the list without a reload', async () => {
    await page.goto(`${server.url}/jobs`);
    await page.locator(`[data-testid=jobs-table] tr[data-job-id="${holder.id}"]`).waitFor();
    await page.evaluate(() => ((window as unknown as { stillTheSamePage: boolean }).stillTheSamePage = true));

    // Needs all 4 GPUs while 2 are held: it waits.
    waiting = await client.submitJob({ name: 'needs-four', team: 'nlp', resources: { gpus: 4 }, run: 'sleep 30' }, { user: 'grace' });
    const row = page.locator(`[data-testid=jobs-table] tr[data-job-id="${waiting.id}"]`);
    await row.waitFor();
    expect(await row.textContent()).toContain('needs-four');
    expect(await page.evaluate(() => (window as unknown as { stillTheSamePage?: boolean }).stillTheSamePage)).toBe(true);

    // The filters narrow the list (through the server) and are labelled controls.
    await page.getByLabel('Status', { exact: true }).selectOption('pending');
    await page.locator(`[data-testid=jobs-table] tr[data-job-id="${holder.id}"]`).waitFor({ state: 'detached' });
    // The table may be empty for a moment between the two lists: wait for the job that stays.
    await row.waitFor();
    expect(await page.locator('[data-testid=jobs-table] tbody tr').count()).toBe(1);
    expect(page.url()).toContain('status=pending');
    await page.getByLabel('Status', { exact: true }).selectOption('');
    await page.locator(`[data-testid=jobs-table] tr[data-job-id="${holder.id}"]`).waitFor();
    // By who submitted it: only grace's job is left.
    expect(await row.textContent()).toContain('grace');
    await page.getByLabel('User', { exact: true }).fill('grace');
    await page.locator(`[data-testid=jobs-table] tr[data-job-id="${holder.id}"]`).waitFor({ state: 'detached' });
    // The table may be empty for a moment between the two lists: wait for the job that stays.
    await row.waitFor();
    expect(await page.locator('[data-testid=jobs-table] tbody tr').count()).toBe(1);
    expect(page.url()).toContain('user=grace');
    await page.getByLabel('User', { exact: true }).fill('');
    await page.locator(`[data-testid=jobs-table] tr[data-job-id="${holder.id}"]`).waitFor();
    expect(await unlabelledControls()).toEqual([]);
    await screenshot('jobs');
  });

  it('shows why a pending job waits, and cancels it', async () => {
    const diagnosed = await waitForJob(waiting.id, (j) => j.pending_diagnosis !== null, 'diagnosed');
    await page.locator(`[data-testid=jobs-table] tr[data-job-id="${waiting.id}"] a`).first().click();
    await page.waitForURL(`**/jobs/${waiting.id}`);
    const reason = page.locator('[data-testid=pending-reason]');
    await reason.getByText(diagnosed.pending_diagnosis!.message, { exact: false }).waitFor();
    expect(await reason.textContent()).toContain(diagnosed.pending_diagnosis!.code);
    await page.getByText('kind: shell', { exact: false }).or(page.getByText('sleep 30', { exact: false })).first().waitFor();
    await screenshot('job-pending');

    await page.getByRole('button', { name: 'Cancel job…' }).click();
    await page.getByRole('button', { name: `Yes, cancel job ${waiting.id}` }).click();
    await page.locator('.job-header .badge', { hasText: 'cancelled' }).waitFor();
    expect((await client.getJob(waiting.id)).status).toBe('cancelled');
  });

  it('streams a running job’s logs live, and shows it end', async () => {
    await page.goto(`${server.url}/jobs/${holder.id}`);
    const log = page.locator('[data-testid=log]');
    await log.getByText('rank 0 waiting').waitFor();
    await log.getByText('tick 20', { exact: true }).waitFor();
    expect(await page.locator('[data-testid=ranks] tbody tr').count()).toBe(2);
    // Each rank's backend, with what it tells of the rank: the pid and host of a local process.
    const ranks = (await client.getJob(holder.id)).tasks ?? [];
    for (const task of ranks) {
      const { pid, host } = task.backend!.details;
      await page.locator('[data-testid=ranks] tbody tr', { hasText: `local: pid ${pid}, host ${host}` }).waitFor();
    }
    expect(await page.locator('[data-testid=no-gpu-metrics]').textContent()).toMatch(/no GPU metrics \(fake GPUs/);
    await screenshot('job-running');

    await writeFile(path.join(root, 'release-holder'), 'go');
    await log.getByText('rank 0 released').waitFor();
    await page.locator('.job-header .badge', { hasText: 'succeeded' }).waitFor();

    // Search keeps only matching lines.
    await page.getByLabel('Search', { exact: true }).fill('released');
    await page.locator('.log-line').first().waitFor();
    expect(await page.locator('.log-line').count()).toBe(1);
    await page.getByLabel('Rank', { exact: true }).selectOption('1');
    await log.getByText('rank 1 released').waitFor();
    await page.locator('[data-testid=history] li', { hasText: 'succeeded' }).waitFor();
    expect(await unlabelledControls()).toEqual([]);
  });

  it('shows the server’s YAML error at its line before submitting, then submits', async () => {
    await page.goto(`${server.url}/submit`);
    const editor = page.getByLabel('job spec in YAML');
    await editor.fill('name: broken\nresources:\n  gpus: lots\nrun: echo hi\n');
    const problem = page.locator('[data-testid=spec-check] li[data-line="3"]');
    await problem.waitFor();
    expect(await problem.textContent()).toContain('line 3');
    expect(await problem.textContent()).toContain('resources.gpus');
    await page.locator('.gutter-line.has-error[data-line="3"]').waitFor();
    expect(await page.locator('.gutter-line.has-error').count()).toBe(1);
    expect((await client.listJobs({ name: 'broken' })).jobs).toHaveLength(0);
    await screenshot('submit-error');

    await editor.fill('name: from-the-browser\nteam: nlp\nresources:\n  gpus: 1\nrun: echo hello from the browser\n');
    await page.getByText('The server accepts this spec.').waitFor();
    await page.getByRole('button', { name: 'Submit', exact: true }).click();
    await page.waitForURL(/\/jobs\/\d+$/);
    await page.locator('[data-testid=log]').getByText('hello from the browser').waitFor();
  });

  it('draws every GPU coloured by its job on the nodes page, and teams with their quotas', async () => {
    const holdOne = await client.submitJob({ name: 'one-gpu', team: 'nlp', resources: { gpus: 1 }, run: waitForFile(path.join(root, 'never')) });
    await waitForJob(holdOne.id, (j) => j.status === 'running', 'running');
    await page.goto(`${server.url}/nodes`);
    const held = page.locator(`.gpu[data-job-id="${holdOne.id}"]`);
    await held.waitFor();
    expect(await page.locator('.gpu').count()).toBe(4);
    expect(await held.getAttribute('aria-label')).toContain('team nlp');
    await held.focus();
    expect(await held.locator('.tooltip').isVisible()).toBe(true);
    await page.getByLabel('Group by', { exact: true }).selectOption('nvlink');
    await held.waitFor();
    await screenshot('nodes');

    await page.goto(`${server.url}/teams`);
    const nlp = page.locator('[data-testid=teams-table] tr[data-team=nlp]');
    await nlp.waitFor();
    expect(await nlp.textContent()).toContain('2 any');
    await screenshot('teams');
    await client.cancelJob(holdOne.id);
  });

  it('shows a job on a share of one GPU as that share, in the list and on its page', async () => {
    const half = await client.submitJob({ name: 'half-gpu', team: 'nlp', resources: { gpus: 0.5 }, run: waitForFile(path.join(root, 'never')) });
    await waitForJob(half.id, (j) => j.status === 'running', 'running');
    await page.goto(`${server.url}/jobs`);
    const cell = page.locator(`[data-testid=jobs-table] tr[data-job-id="${half.id}"] [data-field=gpus]`);
    await cell.waitFor();
    expect(await cell.textContent()).toBe('0.5');
    await page.goto(`${server.url}/jobs/${half.id}`);
    const gpus = page.locator('[data-testid=job-gpus]');
    await gpus.waitFor();
    expect(await gpus.textContent()).toBe('0.5 GPU');
    await page.goto(`${server.url}/nodes`);
    const shared = page.locator(`.gpu[data-job-id="${half.id}"]`);
    await shared.waitFor();
    expect(await shared.getAttribute('aria-label')).toContain(`a share: job ${half.id} 50%`);
    await client.cancelJob(half.id);
    await waitForJob(half.id, (j) => j.status === 'cancelled', 'cancelled');
  });

  it('can be used from the keyboard: Tab reaches the navigation, Enter follows it', async () => {
    await page.goto(`${server.url}/teams`);
    // Keys pressed before the app has rendered go nowhere: wait for the page first.
    await page.locator('[data-testid=teams-table]').waitFor();
    await page.keyboard.press('Tab'); // skip link
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Overview');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/jobs$/);
    await page.locator('[data-testid=jobs-table]').waitFor();
    expect(pageErrors).toEqual([]);
  });
});
