/**
 * Bounded work per request, through the real HTTP API of a real server: job lists without specs unless asked, page
 * sizes capped with a clear 400, and a history export streamed from the store a page at a time that stops reading
 * when its client goes away.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { computeTasksForPlacement } from '@tutti/model';
import type { JobSpec, NodeInfo, PlacedNode } from '@tutti/model';
import { createSqliteStateStore } from '@tutti/store';
import type { StateStore } from '@tutti/store';
import { closeLeavingNothingRunning, expectApiError, startTestServer } from './harness.ts';
import type { TestServer } from './harness.ts';

const T0 = 1_700_000_000_000;

let t: TestServer | undefined;
let seededRoot: string | undefined;
afterEach(async () => {
  await closeLeavingNothingRunning(t);
  t = undefined;
  if (seededRoot) await rm(seededRoot, { recursive: true, force: true });
  seededRoot = undefined;
});

function spec(overrides: Partial<JobSpec> = {}): JobSpec {
  return { name: 'ran', team: 'default', priority: 50, numNodes: 1, resources: { gpus: { count: 1, types: [] } }, run: { kind: 'shell', command: 'true' }, env: {}, ...overrides };
}

interface EndedJob {
  spec: JobSpec;
  user?: string;
  createdAt: number;
  startedAt?: number;
  finishedAt: number;
  status: 'succeeded' | 'failed' | 'cancelled';
  /** Where it ran; absent: it never ran (ended while pending). */
  nodes?: PlacedNode[];
}

const seedNodes: NodeInfo[] = ['n1', 'n2'].map((name) => ({
  name,
  address: '127.0.0.1',
  gpus: Array.from({ length: 8 }, (_, index) => ({ index, uuid: `FAKE-${name}-${index}`, type: 'H100', product: 'NVIDIA H100', memoryMiB: 81_920, nvlinkPeers: [] })),
  cpus: 64,
  memoryMiB: 512_000,
  labels: {},
  state: 'ready',
}));

async function newDataDir(): Promise<{ dataDir: string; databasePath: string }> {
  seededRoot = await mkdtemp(path.join(tmpdir(), 'tutti-bounded-'));
  const dataDir = path.join(seededRoot, 'data');
  return { dataDir, databasePath: path.join(dataDir, 'tutti.db') };
}

/** A data dir whose store holds `jobs`, all ended, each written through the store as a server would. */
async function dataDirWith(jobs: readonly EndedJob[]): Promise<string> {
  const { dataDir, databasePath } = await newDataDir();
  const store: StateStore = await createSqliteStateStore({ path: databasePath });
  try {
    await store.replaceNodes(seedNodes, T0);
    for (const job of jobs) {
      const { id } = await store.createJob(job.spec, job.createdAt, job.user !== undefined ? { user: job.user } : {});
      if (job.nodes) {
        const placement = { jobId: id, nodes: job.nodes };
        expect(await store.applyPlacements([{ placement, tasks: computeTasksForPlacement(job.spec, placement) }], job.startedAt!)).toEqual([{ jobId: id, applied: true }]);
      }
      await store.finishJob(id, { status: job.status, exitCode: job.status === 'succeeded' ? 0 : job.status === 'failed' ? 1 : null, endReason: job.status }, job.finishedAt);
    }
  } finally {
    await store.close();
  }
  return dataDir;
}

/**
 * A data dir with `count` jobs that ran 10 ms after their submission and succeeded 10 ms later: submitted through
 * the store, then marked ended in bulk behind it (one transaction, where the store would fsync two per job).
 */
async function dataDirWithManyEndedJobs(count: number): Promise<string> {
  const { dataDir, databasePath } = await newDataDir();
  const store = await createSqliteStateStore({ path: databasePath });
  await Promise.all(Array.from({ length: count }, (_, i) => store.createJob(spec({ name: `ran-${i}` }), T0 + i)));
  await store.close();
  const database = new Database(databasePath);
  database.prepare("update jobs set status = 'succeeded', exit_code = 0, end_reason = 'succeeded', started_at = created_at + 10, finished_at = created_at + 20").run();
  database.close();
  return dataDir;
}

/**
 * Every call of the store's `methods` after the first waits until the test lets it through; `pagesRead` counts the
 * calls (each reads one page). A real store underneath: only the pace is the test's.
 */
function holdReadsAfterTheFirst(store: StateStore, methods: readonly string[]): { pagesRead: number[]; letThrough: () => void } {
  const pagesRead: number[] = [];
  let letThrough!: () => void;
  const held = new Promise<void>((resolve) => (letThrough = resolve));
  const reads = store as unknown as Record<string, (query: unknown) => Promise<unknown>>;
  for (const method of methods) {
    const read = reads[method]?.bind(store);
    if (!read) continue;
    reads[method] = async (query: unknown) => {
      pagesRead.push(pagesRead.length + 1);
      if (pagesRead.length > 1) await held;
      return read(query);
    };
  }
  return { pagesRead, letThrough };
}

/** Many round trips to the server: by their end it has handled a connection that closed before them. */
async function manyRoundTrips(url: string): Promise<void> {
  for (let i = 0; i < 20; i++) expect((await fetch(`${url}/healthz`)).status).toBe(200);
}

/** The client goes away; once the server has seen it go, the held store read is let through (and may be followed). */
async function leaveThenLetThrough(url: string, client: AbortController, letThrough: () => void): Promise<void> {
  client.abort();
  await manyRoundTrips(url);
  letThrough();
  await manyRoundTrips(url);
}

describe('GET /v1/jobs', () => {
  it('lists jobs without their spec by default, and with it on view=full; one job keeps its whole spec', async () => {
    t = await startTestServer({ fakeGpus: '4:H100' });
    const env = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`SETTING_${i}`, `/mnt/shared/config/value-${i}-${'x'.repeat(150)}`]));
    const big = await t.client.submitJob({ name: 'big-env', team: 'vision', priority: 70, resources: { gpus: { count: 1, type: ['H100', 'A100'] }, cpus: 2 }, run: 'sleep 0', env, max_restarts: 2 }, { user: 'ada' });

    const listed = await fetch(`${t.server.url}/v1/jobs`);
    const text = await listed.text();
    expect(text).not.toContain('SETTING_0');
    expect(text.length).toBeLessThan(2000);
    const [job] = (JSON.parse(text) as { jobs: Array<Record<string, unknown>> }).jobs;
    expect(job).not.toHaveProperty('spec');
    expect(job).toMatchObject({ id: big.id, name: 'big-env', team: 'vision', user: 'ada', priority: 70, gpus_per_node: 1, num_nodes: 1, max_restarts: 2, resources: { gpus: { count: 1, type: ['H100', 'A100'] }, cpus: 2 } });

    const full = await t.client.listJobs({ view: 'full' });
    expect(full.jobs[0]?.spec).toMatchObject({ name: 'big-env', env });
    expect((await t.client.getJob(big.id)).spec).toMatchObject({ env, run: 'sleep 0' });
  });

  it('refuses a page larger than its cap with a 400 that names limit and the cap, for summaries and for full views', async () => {
    t = await startTestServer();
    const full = await expectApiError(t.client.listJobs({ view: 'full', limit: 101 }));
    expect(full.status).toBe(400);
    expect(full.code).toBe('invalid_request');
    expect(full.message).toMatch(/limit.*at most 100 .*view=full/);
    expect(full.body.error.fields).toEqual([{ path: 'querystring.limit', message: expect.stringContaining('100') }]);
    const summaries = await expectApiError(t.client.listJobs({ limit: 1001 }));
    expect(summaries.status).toBe(400);
    expect(summaries.message).toMatch(/limit.*1000/);
    expect((await t.client.listJobs({ view: 'full', limit: 100 })).jobs).toEqual([]);
    expect((await t.client.listJobs({ limit: 1000 })).jobs).toEqual([]);
  });
});

describe('GET /v1/export/history', () => {
  it('writes the trace CSV of the jobs that ran and ended, in submission order, as it always has', async () => {
    const dataDir = await dataDirWith([
      // Submitted after job 2 but first in id order: the trace is in submission order.
      { spec: spec({ team: 'vision', numNodes: 2, resources: { gpus: { count: 2, types: ['H100'] } } }), user: 'ada', createdAt: T0 + 1000, startedAt: T0 + 2000, finishedAt: T0 + 62_500, status: 'succeeded', nodes: [{ node: 'n1', gpuIndices: [0, 1] }, { node: 'n2', gpuIndices: [0, 1] }] },
      { spec: spec({ team: 'research', resources: { gpus: { count: 1, types: [], fraction: 0.5, memoryMiB: 1024 } } }), user: 'o"brien,x', createdAt: T0 + 500, startedAt: T0 + 600, finishedAt: T0 + 10_600, status: 'failed', nodes: [{ node: 'n1', gpuIndices: [2], gpuFraction: 0.5, gpuMemoryMiB: 1024 }] },
      { spec: spec({ name: 'never-fit' }), createdAt: T0 + 700, finishedAt: T0 + 800, status: 'failed' },
      { spec: spec({ resources: { gpus: { count: 0, types: [] } } }), createdAt: T0 + 3000, startedAt: T0 + 3100, finishedAt: T0 + 3350, status: 'cancelled', nodes: [{ node: 'n1', gpuIndices: [] }] },
    ]);
    t = await startTestServer({ dataDir });
    expect(await t.client.exportHistory()).toBe(
      [
        'job_id,submit_time_s,duration_s,num_gpus,gpu_type,user,queue,status',
        '2,0,10,0.5,,"o""brien,x",research,failed',
        '1,0.5,60.5,4,H100,ada,vision,succeeded',
        '4,2.5,0.25,0,,,default,cancelled',
        '',
      ].join('\n'),
    );
  });

  it('is streamed: its first lines arrive while the store is still being read, and a client that goes away stops the reading', async () => {
    // Several pages of the store (the export reads a few hundred jobs at a time).
    t = await startTestServer({ dataDir: await dataDirWithManyEndedJobs(2100) });
    const server = t.server;

    const { pagesRead, letThrough } = holdReadsAfterTheFirst(server.store, ['listRunHistory', 'listJobs']);
    const client = new AbortController();
    try {
      const firstBytes = (async () => {
        const response = await fetch(`${server.url}/v1/export/history`, { signal: client.signal });
        return new TextDecoder().decode((await response.body!.getReader().read()).value);
      })();
      // An export built whole before it is sent never answers while the second page is held.
      const first = await Promise.race([firstBytes, new Promise<undefined>((resolve) => setTimeout(resolve, 20_000, undefined))]);
      expect(first, 'no byte of the export arrived while the store was still being read').toBeDefined();
      expect(first).toMatch(/^job_id,submit_time_s,/);
      expect(pagesRead.length).toBeLessThanOrEqual(2);

      await leaveThenLetThrough(server.url, client, letThrough);
      expect(pagesRead).toEqual([1, 2]);
    } finally {
      client.abort();
      letThrough();
    }
  });
});

describe('GET /v1/events with a history to replay', () => {
  it('stops reading the store when its client goes away in the middle of the replay', async () => {
    // 2,100 submitted events: three pages of the replay.
    t = await startTestServer({ dataDir: await dataDirWithManyEndedJobs(2100) });
    const server = t.server;
    const { pagesRead, letThrough } = holdReadsAfterTheFirst(server.store, ['listEvents']);
    const client = new AbortController();
    try {
      const response = await fetch(`${server.url}/v1/events?after=0`, { signal: client.signal });
      const reader = response.body!.getReader();
      let received = '';
      while (!/^id: 1000$/m.test(received)) received += new TextDecoder().decode((await reader.read()).value);
      expect(pagesRead).toEqual([1, 2]);

      await leaveThenLetThrough(server.url, client, letThrough);
      expect(pagesRead).toEqual([1, 2]);
    } finally {
      client.abort();
      letThrough();
    }
  });
});
