/**
 * What the web dashboard needs from the server, on 4 fake GPUs: its files served at `/` (and nothing outside its
 * directory), the API kept where it was, and the API additions the pages use (spec validation, name filter and
 * sort orders, the cluster history, the newest events first on the event stream).
 */
import { request } from 'node:http';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeLeavingNothingRunning, startTestServer, expectApiError } from './harness.ts';
import type { TestServer } from './harness.ts';

let t: TestServer;
let dist: string;

beforeAll(async () => {
  dist = await mkdtemp(path.join(tmpdir(), 'tutti-dist-'));
  await mkdir(path.join(dist, 'assets'));
  await writeFile(path.join(dist, 'index.html'), '<!doctype html><title>tutti</title><div id="root"></div>');
  await writeFile(path.join(dist, 'assets', 'index-AbC123.js'), 'console.log("dashboard");'.repeat(50));
  await writeFile(path.join(dist, 'assets', 'index-AbC123.css'), 'body{margin:0}');
  await writeFile(path.join(path.dirname(dist), 'secret.txt'), 'not for the web');
  t = await startTestServer({ dashboardDir: dist, clusterSampleMs: 100 });
});
afterAll(async () => {
  await closeLeavingNothingRunning(t);
  await rm(dist, { recursive: true, force: true });
});

const get = (url: string, headers: Record<string, string> = {}) => fetch(`${t.server.url}${url}`, { headers });

/** A GET with the path sent exactly as written (fetch would resolve `..` and `%2e%2e` before sending). */
function rawGet(rawPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const url = new URL(t.server.url);
    const req = request({ host: url.hostname, port: url.port, path: rawPath, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the dashboard at / (fake GPUs)', () => {
  it('serves index.html for the app and its routes, revalidated; assets with their types, cached for good', async () => {
    for (const route of ['/', '/jobs', '/jobs/42', '/nodes?x=1']) {
      const response = await get(route);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/html/);
      expect(response.headers.get('cache-control')).toBe('no-cache');
      expect(await response.text()).toContain('<div id="root">');
    }
    const js = await get('/assets/index-AbC123.js', { 'accept-encoding': 'gzip' });
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect(js.headers.get('cache-control')).toContain('immutable');
    expect(await js.text()).toContain('console.log("dashboard")');
    const css = await get('/assets/index-AbC123.css');
    expect(css.headers.get('content-type')).toMatch(/^text\/css/);
  });

  it('answers 404 for a missing asset and never serves a file outside its directory', async () => {
    expect((await get('/assets/missing-123.js')).status).toBe(404);
    for (const attempt of ['/../secret.txt', '/%2e%2e/secret.txt', '/assets/%2e%2e/%2e%2e/secret.txt', '/..%2fsecret.txt', '/%2e%2e%5csecret.txt', '/%00.js']) {
      const response = await rawGet(attempt);
      expect(response.status, attempt).toBe(404);
      expect(response.body, attempt).not.toContain('not for the web');
    }
  });

  it('keeps the API, its docs, metrics and health where they were; an unknown API path is the API’s JSON 404', async () => {
    expect((await get('/healthz')).status).toBe(200);
    expect((await get('/metrics')).headers.get('content-type')).toMatch(/^text\/plain/);
    expect((await get('/docs/json')).status).toBe(200);
    const unknown = await get('/v1/nope');
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('not_found');
  });

  it('says how to build the dashboard when it is not built', async () => {
    const bare = await startTestServer({ dashboardDir: path.join(dist, 'nowhere') });
    try {
      const response = await fetch(`${bare.server.url}/jobs`);
      expect(response.status).toBe(503);
      expect(await response.text()).toContain('npm run build');
      expect((await fetch(`${bare.server.url}/healthz`)).status).toBe(200);
    } finally {
      await bare.close();
    }
  });
});

describe('API additions for the dashboard (fake GPUs)', () => {
  it('validates a YAML spec without submitting it: the normalised spec, or field errors with their lines', async () => {
    const ok = await t.client.validateJob('name: check-me\nresources:\n  gpus: 1\nrun: "true"\n');
    expect(ok.valid).toBe(true);
    expect(ok.spec.name).toBe('check-me');
    const bad = await expectApiError(t.client.validateJob('name: check-me\nresources:\n  gpus: lots\nrun: "true"\n'));
    expect(bad.status).toBe(400);
    expect(bad.body.error.fields?.[0]).toMatchObject({ path: 'resources.gpus', line: 3 });
    const tooBig = await expectApiError(t.client.validateJob('name: huge\nresources:\n  gpus: 64\nrun: "true"\n'));
    expect(tooBig.status).toBe(422);
    expect((await t.client.listJobs()).jobs.map((j) => j.name)).not.toContain('check-me');
  });

  it('filters jobs by a part of the name and sorts by a column, paging each order; refuses bad values with 400', async () => {
    for (const name of ['train-a', 'eval-b', 'train-c']) await t.client.submitJob({ name, resources: { gpus: 0 }, run: 'true', priority: name === 'eval-b' ? 90 : 10 });
    const trains = await t.client.listJobs({ name: 'train' });
    expect(trains.jobs.map((j) => j.name)).toEqual(['train-c', 'train-a']);
    const byPriority = await t.client.listJobs({ sort: 'priority', order: 'desc', limit: 1 });
    expect(byPriority.jobs[0]?.name).toBe('eval-b');
    const second = await t.client.listJobs({ sort: 'priority', order: 'desc', limit: 1, cursor: byPriority.next_cursor! });
    expect(second.jobs[0]?.name).toBe('train-c');
    const byName = await t.client.listJobs({ sort: 'name', order: 'asc' });
    expect(byName.jobs.map((j) => j.name)).toEqual(['eval-b', 'train-a', 'train-c']);

    expect((await expectApiError(t.client.listJobs({ sort: 'owner' as never }))).status).toBe(400);
    expect((await expectApiError(t.client.listJobs({ name: 'Has Spaces' }))).message).toMatch(/name/);
    const foreign = await expectApiError(t.client.listJobs({ sort: 'team', cursor: byPriority.next_cursor! }));
    expect(foreign.status).toBe(400);
    expect(foreign.message).toMatch(/cursor/);
  });

  it('keeps a history of queue length and GPUs allocated, sampled by the server', async () => {
    const history = await t.client.getClusterHistory({ minutes: 5 });
    expect(history.interval_s).toBe(0.1);
    expect(history.samples.length).toBeGreaterThan(0);
    const last = history.samples.at(-1)!;
    expect(last.gpus_total).toBe(4);
    expect(Date.parse(last.at)).toBeLessThanOrEqual(Date.now());
    expect((await expectApiError(t.client.getClusterHistory({ minutes: 0 }))).status).toBe(400);
  });

  it('starts the event stream with the newest events when asked for the last N', async () => {
    await t.client.submitJob({ name: 'newest', resources: { gpus: 0 }, run: 'true' });
    const abort = new AbortController();
    const seen: string[] = [];
    for await (const event of t.client.events({ last: 3, signal: abort.signal })) {
      seen.push(event.type);
      if (seen.length === 3) break;
    }
    abort.abort();
    expect(seen).toHaveLength(3);
  });
});
