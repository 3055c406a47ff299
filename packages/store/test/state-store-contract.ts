import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Job } from '@tutti/model';
import { FencedError } from '../src/errors.ts';
import type { PlacementWithTasks, StateStore } from '../src/state-store.ts';
import { makeDiagnosis, makeJobSpec, makeNode, makePlacement } from './builders.ts';

export interface StoreUnderTest {
  store: StateStore;
  cleanup(): Promise<void>;
}

const T0 = 1_700_000_000_000;

/**
 * The behaviour every StateStore promises (see state-store.ts). Run it against each implementation with a factory
 * that returns a fresh, migrated, empty store:
 *
 *   describeStateStoreContract('sqlite', async () => { ... return { store, cleanup } });
 */
export function describeStateStoreContract(name: string, makeStore: () => Promise<StoreUnderTest>): void {
  describe(`StateStore contract: ${name}`, () => {
    let subject: StoreUnderTest;
    let store: StateStore;

    beforeEach(async () => {
      subject = await makeStore();
      store = subject.store;
    });
    afterEach(async () => {
      await subject.cleanup();
    });

    /** A running job on n1 holding `gpus`. */
    async function startJob(gpus: number[] = [0], node = 'n1', at = T0 + 10): Promise<Job> {
      const job = await store.createJob(makeJobSpec(), T0);
      const [outcome] = await store.applyPlacements([makePlacement(job.id, [[node, gpus]])], at);
      expect(outcome).toEqual({ jobId: job.id, applied: true });
      return job;
    }

    describe('migrate', () => {
      it('is safe to call again', async () => {
        await store.migrate();
        await store.migrate();
        expect(await store.countJobsByStatus()).toMatchObject({ pending: 0 });
      });
    });

    describe('createJob and getJob', () => {
      it('creates a pending job with a decimal id and reads it back', async () => {
        const spec = makeJobSpec({ name: 'resnet', team: 'vision', priority: 70, env: { A: '1' }, maxDurationMs: 60_000 });
        const job = await store.createJob(spec, T0);
        expect(job).toEqual({ id: expect.stringMatching(/^[1-9][0-9]*$/), spec, status: 'pending', createdAt: T0 });
        expect(await store.getJob(job.id)).toEqual(job);
      });

      it('gives increasing ids', async () => {
        const a = await store.createJob(makeJobSpec(), T0);
        const b = await store.createJob(makeJobSpec(), T0);
        expect(Number(b.id)).toBeGreaterThan(Number(a.id));
      });

      it('gives concurrent submissions distinct ids increasing in call order', async () => {
        const jobs = await Promise.all(Array.from({ length: 40 }, (_, i) => store.createJob(makeJobSpec({ name: `j${i}` }), T0 + i)));
        const ids = jobs.map((j) => Number(j.id));
        expect(ids).toEqual([...ids].sort((x, y) => x - y));
        expect(new Set(ids).size).toBe(40);
        for (const [i, job] of jobs.entries()) {
          expect(job.spec.name).toBe(`j${i}`);
          expect(await store.getJob(job.id)).toEqual(job);
        }
      });

      it('stores a copy of the spec', async () => {
        const spec = makeJobSpec();
        const job = await store.createJob(spec, T0);
        spec.name = 'changed';
        expect((await store.getJob(job.id))?.spec.name).toBe('train');
        expect(job.spec.name).toBe('train');
      });

      it('appends a submitted event', async () => {
        const job = await store.createJob(makeJobSpec(), T0);
        const events = await store.listEvents({ jobId: job.id });
        expect(events).toHaveLength(1);
        expect(events[0]).toMatchObject({ jobId: job.id, type: 'submitted', at: T0 });
      });

      it('returns undefined for unknown or malformed ids', async () => {
        await store.createJob(makeJobSpec(), T0);
        for (const id of ['999999', '0', '-1', '01', 'abc', '', '1.0', '99999999999999999999']) {
          expect(await store.getJob(id)).toBeUndefined();
        }
      });
    });

    describe('listJobs', () => {
      it('lists newest first and pages with a cursor', async () => {
        const created: Job[] = [];
        for (let i = 0; i < 7; i++) created.push(await store.createJob(makeJobSpec({ name: `j${i}` }), T0 + i));
        const newestFirst = created.map((j) => j.id).reverse();

        const first = await store.listJobs({ limit: 3 });
        expect(first.jobs.map((j) => j.id)).toEqual(newestFirst.slice(0, 3));
        expect(first.nextCursor).toBeDefined();
        const second = await store.listJobs({ limit: 3, cursor: first.nextCursor as string });
        expect(second.jobs.map((j) => j.id)).toEqual(newestFirst.slice(3, 6));
        const third = await store.listJobs({ limit: 3, cursor: second.nextCursor as string });
        expect(third.jobs.map((j) => j.id)).toEqual(newestFirst.slice(6));
        expect(third.nextCursor).toBeUndefined();
        expect(third.jobs[0]).toEqual(created[0]);
      });

      it('has no next cursor when the page is exactly full', async () => {
        for (let i = 0; i < 3; i++) await store.createJob(makeJobSpec(), T0);
        expect((await store.listJobs({ limit: 3 })).nextCursor).toBeUndefined();
      });

      it('returns an empty page for an empty store', async () => {
        expect(await store.listJobs({})).toEqual({ jobs: [] });
      });

      it('pages 50 by default and at most 1000', async () => {
        await Promise.all(Array.from({ length: 1005 }, (_, i) => store.createJob(makeJobSpec(), T0 + i)));
        const byDefault = await store.listJobs({});
        expect(byDefault.jobs).toHaveLength(50);
        expect(byDefault.nextCursor).toBeDefined();
        const big = await store.listJobs({ limit: 5000 });
        expect(big.jobs).toHaveLength(1000);
        const rest = await store.listJobs({ limit: 5000, cursor: big.nextCursor as string });
        expect(rest.jobs).toHaveLength(5);
        expect(rest.nextCursor).toBeUndefined();
      });

      it('filters by status, team, and both', async () => {
        const a = await store.createJob(makeJobSpec({ team: 'red' }), T0);
        const b = await store.createJob(makeJobSpec({ team: 'blue' }), T0);
        const c = await store.createJob(makeJobSpec({ team: 'red' }), T0);
        const d = await store.createJob(makeJobSpec({ team: 'red' }), T0);
        await store.requestCancel(c.id, T0 + 1);
        const ids = (page: { jobs: Job[] }) => page.jobs.map((j) => j.id);
        expect(ids(await store.listJobs({ team: 'red' }))).toEqual([d.id, c.id, a.id]);
        expect(ids(await store.listJobs({ status: 'pending' }))).toEqual([d.id, b.id, a.id]);
        expect(ids(await store.listJobs({ status: 'pending', team: 'red' }))).toEqual([d.id, a.id]);
        expect(ids(await store.listJobs({ status: 'cancelled', team: 'blue' }))).toEqual([]);
        const page1 = await store.listJobs({ status: 'pending', team: 'red', limit: 1 });
        expect(ids(page1)).toEqual([d.id]);
        expect(ids(await store.listJobs({ status: 'pending', team: 'red', limit: 1, cursor: page1.nextCursor as string }))).toEqual([a.id]);
      });

      it('rejects a malformed cursor', async () => {
        await expect(store.listJobs({ cursor: 'not-a-cursor' })).rejects.toThrow(/cursor/);
      });

      it('filters by a part of the name, taking % and _ literally', async () => {
        const train = await store.createJob(makeJobSpec({ name: 'train-llm' }), T0);
        await store.createJob(makeJobSpec({ name: 'eval' }), T0);
        const pretrain = await store.createJob(makeJobSpec({ name: 'pretrain' }), T0);
        const ids = (page: { jobs: Job[] }) => page.jobs.map((j) => j.id);
        expect(ids(await store.listJobs({ nameContains: 'train' }))).toEqual([pretrain.id, train.id]);
        expect(ids(await store.listJobs({ nameContains: 'rain-l' }))).toEqual([train.id]);
        expect(ids(await store.listJobs({ nameContains: '%' }))).toEqual([]);
        expect(ids(await store.listJobs({ nameContains: 'tr_in' }))).toEqual([]);
      });

      it('finds a part of the name whatever its case', async () => {
        const job = await store.createJob(makeJobSpec({ name: 'Train-LLM' }), T0);
        await store.createJob(makeJobSpec({ name: 'eval' }), T0);
        for (const nameContains of ['train', 'TRAIN-llm', 'Llm']) expect((await store.listJobs({ nameContains })).jobs.map((j) => j.id)).toEqual([job.id]);
      });

      it('sorts by a column with the id breaking ties, and pages each order with its own cursors', async () => {
        const specs = [
          { name: 'c', team: 'red', priority: 10 },
          { name: 'a', team: 'blue', priority: 90 },
          { name: 'b', team: 'red', priority: 10 },
          { name: 'a', team: 'green', priority: 50 },
          { name: 'd', team: 'blue', priority: 90 },
        ];
        const jobs: Job[] = [];
        for (const spec of specs) jobs.push(await store.createJob(makeJobSpec(spec), T0));
        const [c, a1, b, a2, d] = jobs.map((j) => j.id);
        const walk = async (sort: Parameters<StateStore['listJobs']>[0]['sort']) => {
          const seen: string[] = [];
          let cursor: string | undefined;
          do {
            const page = await store.listJobs({ sort, limit: 2, ...(cursor !== undefined ? { cursor } : {}) });
            seen.push(...page.jobs.map((j) => j.id));
            cursor = page.nextCursor;
          } while (cursor !== undefined);
          return seen;
        };
        expect(await walk({ by: 'id', direction: 'asc' })).toEqual([c, a1, b, a2, d]);
        expect(await walk({ by: 'name', direction: 'asc' })).toEqual([a1, a2, b, c, d]);
        expect(await walk({ by: 'team', direction: 'desc' })).toEqual([b, c, a2, d, a1]);
        expect(await walk({ by: 'priority', direction: 'desc' })).toEqual([d, a1, a2, b, c]);
        const byName = await store.listJobs({ sort: { by: 'name', direction: 'asc' }, limit: 2 });
        await expect(store.listJobs({ sort: { by: 'team', direction: 'asc' }, cursor: byName.nextCursor as string })).rejects.toThrow(/cursor/);
        await expect(store.listJobs({ cursor: byName.nextCursor as string })).rejects.toThrow(/cursor/);
      });
    });

    describe('listJobSummaries', () => {
      const summaryOf = ({ spec, ...job }: Job) => ({
        ...job,
        spec: { name: spec.name, team: spec.team, priority: spec.priority, resources: spec.resources, numNodes: spec.numNodes, ...(spec.maxRestarts !== undefined ? { maxRestarts: spec.maxRestarts } : {}) },
      });

      it('gives the pages of listJobs, each job without its command and environment', async () => {
        const big = makeJobSpec({ name: 'big', team: 'vision', priority: 70, env: { SECRET_PATH: 'x'.repeat(10_000) }, maxRestarts: 2, numNodes: 2, resources: { gpus: { count: 4, types: ['H100', 'A100'], memoryMiB: 40_960 }, cpus: 8, memoryMiB: 65_536 } });
        const shared = makeJobSpec({ name: 'shared', resources: { gpus: { count: 1, types: [], fraction: 0.25, memoryMiB: 10_240 } } });
        const created: Job[] = [];
        for (const spec of [big, shared, makeJobSpec({ name: 'plain' })]) created.push(await store.createJob(spec, T0, { user: 'ada' }));
        await store.setPendingReasons(new Map([[created[0]!.id, makeDiagnosis()]]));
        const jobs = await Promise.all(created.map(async (job) => (await store.getJob(job.id))!));

        const first = await store.listJobSummaries({ limit: 2 });
        expect(first.jobs).toEqual([summaryOf(jobs[2]!), summaryOf(jobs[1]!)]);
        expect(first.jobs.map((j) => j.spec)).not.toContainEqual(expect.objectContaining({ env: expect.anything() }));
        expect(first.nextCursor).toBe((await store.listJobs({ limit: 2 })).nextCursor);
        const rest = await store.listJobSummaries({ limit: 2, cursor: first.nextCursor as string });
        expect(rest).toEqual({ jobs: [summaryOf(jobs[0]!)] });
        expect(JSON.stringify(rest.jobs[0]).length).toBeLessThan(1000);
      });

      it('filters and sorts as listJobs does, and refuses a foreign cursor', async () => {
        for (const [name, team, priority] of [['c', 'red', 10], ['a', 'blue', 90], ['b', 'red', 50]] as const) await store.createJob(makeJobSpec({ name, team, priority }), T0);
        const ids = (page: { jobs: Array<{ id: string }> }) => page.jobs.map((j) => j.id);
        for (const query of [{ team: 'red' }, { status: 'pending' as const }, { nameContains: 'a' }, { sort: { by: 'priority' as const, direction: 'desc' as const } }, { sort: { by: 'name' as const, direction: 'asc' as const }, limit: 1 }]) {
          expect(ids(await store.listJobSummaries(query))).toEqual(ids(await store.listJobs(query)));
        }
        await expect(store.listJobSummaries({ cursor: 'name:a:1' })).rejects.toThrow(/cursor/);
      });
    });

    describe('listRunHistory', () => {
      /** A job that ran from `started` to `finished` and ended as `status`. */
      async function ranJob(createdAt: number, status: 'succeeded' | 'failed' | 'cancelled', name = 'ran'): Promise<Job> {
        const job = await store.createJob(makeJobSpec({ name, env: { BIG: 'y'.repeat(5000) } }), createdAt);
        await store.applyPlacements([makePlacement(job.id, [['n1', [0]]])], createdAt + 10);
        await store.finishJob(job.id, { status, exitCode: status === 'succeeded' ? 0 : status === 'failed' ? 1 : null, endReason: status }, createdAt + 20);
        return job;
      }

      it('lists the jobs that ran and ended, by submission time then id, a page at a time', async () => {
        await store.replaceNodes([makeNode('n1', 1)], T0);
        const late = await ranJob(T0 + 5000, 'succeeded', 'late');
        const early = await ranJob(T0 + 1000, 'failed', 'early');
        const tie = await ranJob(T0 + 5000, 'cancelled', 'tie');
        const neverRan = await store.createJob(makeJobSpec(), T0);
        await store.finishJob(neverRan.id, { status: 'failed', exitCode: null, endReason: 'can never fit' }, T0 + 1);
        await store.createJob(makeJobSpec({ name: 'waiting' }), T0 + 2000);
        await startJob([0], 'n1', T0 + 3000);

        const all = await store.listRunHistory({});
        expect(all.jobs.map((j) => j.spec.name)).toEqual(['early', 'late', 'tie']);
        expect(all.jobs[0]).toMatchObject({ id: early.id, status: 'failed', createdAt: T0 + 1000, startedAt: T0 + 1010, finishedAt: T0 + 1020, spec: { numNodes: 1, resources: { gpus: { count: 1 } } } });
        expect(all.jobs[0]!.spec).not.toHaveProperty('env');
        expect(all.nextCursor).toBeUndefined();

        const seen: string[] = [];
        let cursor: string | undefined;
        do {
          const page = await store.listRunHistory({ limit: 1, ...(cursor !== undefined ? { cursor } : {}) });
          seen.push(...page.jobs.map((j) => j.id));
          cursor = page.nextCursor;
        } while (cursor !== undefined);
        expect(seen).toEqual([early.id, late.id, tie.id]);
      });

      it('rejects a cursor it did not produce', async () => {
        await expect(store.listRunHistory({ cursor: '42' })).rejects.toThrow(/cursor/);
        await expect(store.listRunHistory({ cursor: 'name:a:1' })).rejects.toThrow(/cursor/);
      });
    });

    describe('listJobsByStatus and countJobsByStatus', () => {
      it('lists the jobs in any of the states, oldest first, with spec and pending reason', async () => {
        const a = await store.createJob(makeJobSpec({ name: 'a' }), T0);
        await store.replaceNodes([makeNode('n1', 2)], T0);
        const running = await store.createJob(makeJobSpec({ name: 'r' }), T0);
        await store.applyPlacements([makePlacement(running.id, [['n1', [0]]])], T0 + 1);
        const c = await store.createJob(makeJobSpec({ name: 'c' }), T0);
        const cancelled = await store.createJob(makeJobSpec({ name: 'x' }), T0);
        await store.requestCancel(cancelled.id, T0 + 2);
        const reason = makeDiagnosis();
        await store.setPendingReasons(new Map([[a.id, reason]]));

        const pending = await store.listJobsByStatus(['pending']);
        expect(pending.map((j) => j.id)).toEqual([a.id, c.id]);
        expect(pending[0]).toMatchObject({ spec: { name: 'a' }, pendingReason: reason });
        expect((await store.listJobsByStatus(['running', 'pending'])).map((j) => j.id)).toEqual([a.id, running.id, c.id]);
        expect(await store.listJobsByStatus([])).toEqual([]);
        expect(await store.countJobsByStatus()).toEqual({ pending: 2, running: 1, succeeded: 0, failed: 0, cancelled: 1 });
      });

      it('counts zero of every state in an empty store', async () => {
        expect(await store.countJobsByStatus()).toEqual({ pending: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 });
      });

      it('counts the jobs of one state per team', async () => {
        await store.replaceNodes([makeNode('n1', 2)], T0);
        for (const team of ['vision', 'vision', 'speech']) await store.createJob(makeJobSpec({ team }), T0);
        const running = await store.createJob(makeJobSpec({ team: 'speech' }), T0);
        await store.applyPlacements([makePlacement(running.id, [['n1', [0]]])], T0 + 1);
        expect(await store.countJobsByTeam('pending')).toEqual(new Map([['vision', 2], ['speech', 1]]));
        expect(await store.countJobsByTeam('running')).toEqual(new Map([['speech', 1]]));
        expect(await store.countJobsByTeam('failed')).toEqual(new Map());
      });
    });

    describe('replaceNodes and snapshot', () => {
      it('starts empty', async () => {
        const snap = await store.snapshot();
        expect(snap.nodes).toEqual([]);
        expect(snap.allocations).toEqual([]);
        expect(typeof snap.version).toBe('number');
      });

      it('replaces the inventory and bumps the version', async () => {
        const v0 = (await store.snapshot()).version;
        const n2 = makeNode('n2', 4, { labels: { rack: 'r1' }, state: 'draining' });
        await store.replaceNodes([n2, makeNode('n1', 8)], T0);
        const s1 = await store.snapshot();
        expect(s1.version).toBeGreaterThan(v0);
        expect(s1.nodes).toEqual([makeNode('n1', 8), n2]);
        await store.replaceNodes([makeNode('n3', 1)], T0);
        const s2 = await store.snapshot();
        expect(s2.version).toBeGreaterThan(s1.version);
        expect(s2.nodes.map((n) => n.name)).toEqual(['n3']);
      });

      it('gives an unchanged node as the same frozen object in the next snapshot, and a changed one as a new object', async () => {
        await store.replaceNodes([makeNode('n1', 2), makeNode('n2', 2)], T0);
        const first = await store.snapshot();
        await store.replaceNodes([makeNode('n1', 2), makeNode('n2', 2, { state: 'draining' })], T0 + 10);
        const second = await store.snapshot();
        // The scheduler's cycle cache reuses its index of a node while the node is the same object.
        expect(second.nodes[0]).toBe(first.nodes[0]);
        expect(second.nodes[1]).not.toBe(first.nodes[1]);
        expect(second.nodes[1]).toEqual(makeNode('n2', 2, { state: 'draining' }));
        // Shared between snapshots, so nobody may edit it.
        expect(Object.isFrozen(second.nodes[0])).toBe(true);
        expect(Object.isFrozen(second.nodes[0]?.gpus[0])).toBe(true);
      });

      it('keeps the allocations of a node that left until their job ends', async () => {
        await store.replaceNodes([makeNode('n1', 2)], T0);
        const job = await startJob([1]);
        await store.replaceNodes([makeNode('n2', 2)], T0 + 20);
        expect((await store.snapshot()).allocations).toEqual([{ jobId: job.id, node: 'n1', gpuIndex: 1 }]);
        expect(await store.finishJob(job.id, { status: 'failed', exitCode: null, endReason: 'node n1 lost' }, T0 + 30)).toBe(true);
        expect((await store.snapshot()).allocations).toEqual([]);
      });
    });

    describe('applyPlacements', () => {
      beforeEach(async () => {
        await store.replaceNodes([makeNode('n1', 4), makeNode('n2', 4)], T0);
      });

      it('starts a placed job: running, allocations, tasks, scheduled event, new version', async () => {
        const job = await store.createJob(makeJobSpec({ resources: { gpus: { count: 2, types: [] } }, numNodes: 2 }), T0);
        await store.setPendingReasons(new Map([[job.id, makeDiagnosis()]]));
        const v0 = (await store.snapshot()).version;
        const p = makePlacement(job.id, [['n2', [2, 3]], ['n1', [0, 1]]]);
        expect(await store.applyPlacements([p], T0 + 5)).toEqual([{ jobId: job.id, applied: true }]);

        const after = await store.getJob(job.id);
        expect(after).toMatchObject({ status: 'running', startedAt: T0 + 5 });
        expect(after?.pendingReason).toBeUndefined();
        const snap = await store.snapshot();
        expect(snap.version).toBeGreaterThan(v0);
        expect(snap.allocations).toEqual([
          { jobId: job.id, node: 'n1', gpuIndex: 0 },
          { jobId: job.id, node: 'n1', gpuIndex: 1 },
          { jobId: job.id, node: 'n2', gpuIndex: 2 },
          { jobId: job.id, node: 'n2', gpuIndex: 3 },
        ]);
        const tasks = await store.getTasks(job.id);
        expect(tasks).toEqual(p.tasks.map((t) => ({ ...t, status: 'starting' })));
        expect(tasks.map((t) => [t.rank, t.node, t.localRank, t.nodeRank])).toEqual([
          [0, 'n2', 0, 0],
          [1, 'n2', 1, 0],
          [2, 'n1', 0, 1],
          [3, 'n1', 1, 1],
        ]);
        const events = await store.listEvents({ jobId: job.id });
        expect(events.map((e) => e.type)).toEqual(['submitted', 'scheduled']);
        expect(events[1]?.at).toBe(T0 + 5);
      });

      it('places a CPU-only job without allocations', async () => {
        const job = await store.createJob(makeJobSpec({ resources: { gpus: { count: 0, types: [] } } }), T0);
        expect(await store.applyPlacements([makePlacement(job.id, [['n1', []]])], T0 + 1)).toEqual([{ jobId: job.id, applied: true }]);
        expect((await store.snapshot()).allocations).toEqual([]);
        expect(await store.getTasks(job.id)).toHaveLength(1);
      });

      it('skips a job that is not pending (running, finished, unknown)', async () => {
        const running = await startJob([0]);
        const cancelled = await store.createJob(makeJobSpec(), T0);
        await store.requestCancel(cancelled.id, T0);
        const outcomes = await store.applyPlacements(
          [makePlacement(running.id, [['n1', [1]]]), makePlacement(cancelled.id, [['n1', [2]]]), makePlacement('424242', [['n1', [3]]])],
          T0 + 20,
        );
        expect(outcomes).toEqual([
          { jobId: running.id, applied: false, reason: 'job_not_pending' },
          { jobId: cancelled.id, applied: false, reason: 'job_not_pending' },
          { jobId: '424242', applied: false, reason: 'job_not_pending' },
        ]);
        expect((await store.snapshot()).allocations).toEqual([{ jobId: running.id, node: 'n1', gpuIndex: 0 }]);
        expect(await store.getTasks(running.id)).toHaveLength(1);
      });

      it('skips a placement whose GPU is taken, leaving no partial allocation', async () => {
        const holder = await startJob([1]);
        const job = await store.createJob(makeJobSpec({ numNodes: 2 }), T0);
        const v = (await store.snapshot()).version;
        const outcomes = await store.applyPlacements([makePlacement(job.id, [['n2', [0]], ['n1', [1]]])], T0 + 20);
        expect(outcomes).toEqual([{ jobId: job.id, applied: false, reason: 'gpu_taken' }]);
        expect(await store.getJob(job.id)).toMatchObject({ status: 'pending' });
        const snap = await store.snapshot();
        expect(snap.version).toBe(v);
        expect(snap.allocations).toEqual([{ jobId: holder.id, node: 'n1', gpuIndex: 1 }]);
        expect(await store.getTasks(job.id)).toEqual([]);
        expect((await store.listEvents({ jobId: job.id })).map((e) => e.type)).toEqual(['submitted']);
      });

      it('refuses a placement that names one GPU twice', async () => {
        const job = await store.createJob(makeJobSpec({ numNodes: 2 }), T0);
        const outcomes = await store.applyPlacements([makePlacement(job.id, [['n1', [0]], ['n1', [0]]])], T0 + 1);
        expect(outcomes).toEqual([{ jobId: job.id, applied: false, reason: 'gpu_taken' }]);
        expect(await store.getJob(job.id)).toMatchObject({ status: 'pending' });
        expect((await store.snapshot()).allocations).toEqual([]);
      });

      it('skips a placement on an unknown node or GPU', async () => {
        const a = await store.createJob(makeJobSpec(), T0);
        const b = await store.createJob(makeJobSpec(), T0);
        const outcomes = await store.applyPlacements([makePlacement(a.id, [['n9', [0]]]), makePlacement(b.id, [['n1', [4]]])], T0 + 1);
        expect(outcomes).toEqual([
          { jobId: a.id, applied: false, reason: 'unknown_node' },
          { jobId: b.id, applied: false, reason: 'unknown_node' },
        ]);
        expect(await store.countJobsByStatus()).toMatchObject({ pending: 2, running: 0 });
      });

      it('decides each placement on its own, in order', async () => {
        const a = await store.createJob(makeJobSpec(), T0);
        const b = await store.createJob(makeJobSpec(), T0);
        const c = await store.createJob(makeJobSpec(), T0);
        const outcomes = await store.applyPlacements(
          [makePlacement(a.id, [['n1', [0, 1]]]), makePlacement(b.id, [['n1', [1, 2]]]), makePlacement(c.id, [['n1', [2, 3]]])],
          T0 + 1,
        );
        expect(outcomes).toEqual([
          { jobId: a.id, applied: true },
          { jobId: b.id, applied: false, reason: 'gpu_taken' },
          { jobId: c.id, applied: true },
        ]);
      });

      it('never double-books a GPU under concurrent calls', async () => {
        const jobs = await Promise.all(Array.from({ length: 6 }, () => store.createJob(makeJobSpec(), T0)));
        const results = await Promise.all(jobs.map((j) => store.applyPlacements([makePlacement(j.id, [['n1', [3]]])], T0 + 1)));
        expect(results.flat().filter((o) => o.applied)).toHaveLength(1);
        expect((await store.snapshot()).allocations).toHaveLength(1);
        expect(await store.countJobsByStatus()).toMatchObject({ running: 1, pending: 5 });
      });

      it('never puts a whole-GPU job beside shares, nor shares past a GPU, under concurrent calls', async () => {
        const share = (jobId: string, node: string, gpu: number, fraction: number): PlacementWithTasks => {
          const placed = makePlacement(jobId, [[node, [gpu]]]);
          return { ...placed, placement: { jobId, nodes: [{ node, gpuIndices: [gpu], gpuFraction: fraction, gpuMemoryMiB: 1000 }] } };
        };
        // On each of the 8 GPUs, all at once: a whole-GPU job and two shares that do not fit together (0.6 + 0.6).
        const gpus = ['n1', 'n2'].flatMap((node) => [0, 1, 2, 3].map((gpu) => ({ node, gpu })));
        const contenders = await Promise.all(
          gpus.map(async ({ node, gpu }) => {
            const [whole, first, second] = await Promise.all([0, 1, 2].map(() => store.createJob(makeJobSpec(), T0)));
            return [makePlacement(whole!.id, [[node, [gpu]]]), share(first!.id, node, gpu, 0.6), share(second!.id, node, gpu, 0.6)];
          }),
        );
        await Promise.all(contenders.flat().map((placement) => store.applyPlacements([placement], T0 + 1)));
        const { allocations } = await store.snapshot();
        for (const { node, gpu } of gpus) expect(allocations.filter((a) => a.node === node && a.gpuIndex === gpu)).toHaveLength(1);
        expect(await store.countJobsByStatus()).toMatchObject({ running: 8, pending: 16 });
      });

      it('shares a GPU between fractional jobs within its capacity and memory, never beside a whole-GPU job', async () => {
        const share = (jobId: string, gpu: number, fraction: number, memoryMiB: number): PlacementWithTasks => {
          const placed = makePlacement(jobId, [['n1', [gpu]]]);
          return { ...placed, placement: { jobId, nodes: [{ node: 'n1', gpuIndices: [gpu], gpuFraction: fraction, gpuMemoryMiB: memoryMiB }] } };
        };
        const [a, b, c, d, e, whole] = await Promise.all(Array.from({ length: 6 }, () => store.createJob(makeJobSpec(), T0)));
        const outcomes = await store.applyPlacements(
          [
            share(a!.id, 0, 0.5, 20_000),
            share(b!.id, 0, 0.25, 20_000),
            share(c!.id, 0, 0.5, 10_000), // 0.5 + 0.25 + 0.5 > 1
            share(d!.id, 0, 0.25, 50_000), // memory 20,000 + 20,000 + 50,000 MiB > 81,920
            makePlacement(whole!.id, [['n1', [0]]]), // a whole GPU beside shares
            share(e!.id, 0, 0.25, 40_000),
          ],
          T0 + 1,
        );
        expect(outcomes.map((o) => (o.applied ? 'placed' : o.reason))).toEqual(['placed', 'placed', 'gpu_taken', 'gpu_taken', 'gpu_taken', 'placed']);
        expect((await store.snapshot()).allocations.filter((x) => x.gpuIndex === 0).map((x) => [x.jobId, x.fraction, x.memoryMiB])).toEqual(
          expect.arrayContaining([[a!.id, 0.5, 20_000], [b!.id, 0.25, 20_000], [e!.id, 0.25, 40_000]]),
        );
        // A share never lands on a GPU a whole-GPU job holds.
        const holder = await store.createJob(makeJobSpec(), T0);
        const sharer = await store.createJob(makeJobSpec(), T0);
        const [held, refused] = await store.applyPlacements([makePlacement(holder.id, [['n1', [1]]]), share(sharer.id, 1, 0.1, 1000)], T0 + 2);
        expect([held?.applied, refused]).toEqual([true, { jobId: sharer.id, applied: false, reason: 'gpu_taken' }]);
        // Ending a job frees only its share.
        await store.finishJob(a!.id, { status: 'succeeded', exitCode: 0, endReason: 'done' }, T0 + 3);
        expect((await store.snapshot()).allocations.filter((x) => x.gpuIndex === 0).map((x) => x.jobId).sort()).toEqual([b!.id, e!.id].sort());
      });

      it('returns an empty list for no placements', async () => {
        expect(await store.applyPlacements([], T0)).toEqual([]);
      });
    });

    describe('tasks', () => {
      beforeEach(async () => {
        await store.replaceNodes([makeNode('n1', 4)], T0);
      });

      it('updates only the given fields, in one batch, ignoring unknown ranks', async () => {
        const job = await startJob([0, 1]);
        await store.updateTasks([
          { jobId: job.id, rank: 0, status: 'running', backend: { kind: 'local', ref: { pid: 4242, pidStartTime: 123456, logPath: '/logs/0.log' } }, startedAt: T0 + 11 },
          // The store keeps any backend's handle as it recorded it, without reading it.
          { jobId: job.id, rank: 1, status: 'running', backend: { kind: 'slurm', ref: { job: 77, step: 0, nested: { ok: [true, null] } } } },
          { jobId: job.id, rank: 7, status: 'running' },
          { jobId: '999999', rank: 0, status: 'running' },
        ]);
        await store.updateTasks([{ jobId: job.id, rank: 1, status: 'exited', exitCode: 3, finishedAt: T0 + 12 }]);
        const [t0, t1] = await store.getTasks(job.id);
        expect(t0).toMatchObject({ status: 'running', backend: { kind: 'local', ref: { pid: 4242, pidStartTime: 123456, logPath: '/logs/0.log' } }, startedAt: T0 + 11 });
        expect(t0?.exitCode).toBeUndefined();
        expect(t0?.finishedAt).toBeUndefined();
        expect(t1).toMatchObject({ status: 'exited', backend: { kind: 'slurm', ref: { job: 77, step: 0, nested: { ok: [true, null] } } }, exitCode: 3, finishedAt: T0 + 12 });
        expect(await store.getTasks(job.id)).toHaveLength(2);
      });

      it('records a null exit code of a lost rank', async () => {
        const job = await startJob([0]);
        await store.updateTasks([{ jobId: job.id, rank: 0, status: 'lost', exitCode: null }]);
        expect((await store.getTasks(job.id))[0]).toMatchObject({ status: 'lost', exitCode: null });
      });

      it('lists the tasks of running jobs only', async () => {
        const a = await startJob([0, 1]);
        const b = await startJob([2]);
        const c = await startJob([3]);
        await store.finishJob(b.id, { status: 'succeeded', exitCode: 0, endReason: 'all ranks exited 0' }, T0 + 50);
        expect((await store.listActiveTasks()).map((t) => [t.jobId, t.rank])).toEqual([
          [a.id, 0],
          [a.id, 1],
          [c.id, 0],
        ]);
        expect(await store.getTasks('999999')).toEqual([]);
      });
    });

    describe('relocateRanks', () => {
      beforeEach(async () => {
        await store.replaceNodes([makeNode('n1', 4), makeNode('n2', 4), makeNode('n3', 4)], T0);
      });
      const allocations = async (jobId: string) => (await store.snapshot()).allocations.filter((a) => a.jobId === jobId).map((a) => `${a.node}/${a.gpuIndex}`).sort();

      it('moves ranks to the nodes the cluster chose, onto GPUs no other job holds there, with the allocations and an event', async () => {
        const other = await startJob([0], 'n2');
        const job = await store.createJob(makeJobSpec(), T0);
        await store.applyPlacements([makePlacement(job.id, [['n1', [2, 3]], ['n3', [0, 1]]])], T0 + 10);
        const v0 = (await store.snapshot()).version;
        // n1's ranks ran on n2 (where the other job holds GPU 0); n3's stayed.
        const tasks = await store.relocateRanks(job.id, [{ rank: 0, node: 'n2' }, { rank: 1, node: 'n2' }, { rank: 2, node: 'n3' }, { rank: 3, node: 'n3' }], T0 + 20);
        // Each rank sees its node's GPUs of the job (makePlacement's tasks, as torchrun's).
        expect(tasks?.map((t) => [t.rank, t.node, t.gpus])).toEqual([[0, 'n2', [1, 2]], [1, 'n2', [1, 2]], [2, 'n3', [0, 1]], [3, 'n3', [0, 1]]]);
        expect(await store.getTasks(job.id)).toEqual(tasks);
        expect(await allocations(job.id)).toEqual(['n2/1', 'n2/2', 'n3/0', 'n3/1']);
        expect(await allocations(other.id)).toEqual(['n2/0']);
        expect((await store.snapshot()).version).toBeGreaterThan(v0);
        const event = (await store.listEvents({ jobId: job.id })).at(-1);
        expect(event).toMatchObject({ type: 'relocated', message: 'the cluster chose the nodes: n1 → n2' });
      });

      it('changes nothing for ranks already where they are said to be, and nothing of a job that is not running', async () => {
        const job = await startJob([0, 1]);
        const before = await store.getTasks(job.id);
        expect(await store.relocateRanks(job.id, [{ rank: 0, node: 'n1' }, { rank: 1, node: 'n1' }], T0 + 20)).toEqual(before);
        expect((await store.listEvents({ jobId: job.id })).map((e) => e.type)).not.toContain('relocated');
        await store.finishJob(job.id, { status: 'succeeded', exitCode: 0, endReason: 'done' }, T0 + 30);
        expect(await store.relocateRanks(job.id, [{ rank: 0, node: 'n2' }], T0 + 40)).toBeUndefined();
        expect(await store.relocateRanks('999999', [{ rank: 0, node: 'n2' }], T0 + 40)).toBeUndefined();
      });
    });

    describe('leases', () => {
      const TTL = 10_000;

      it('grants a free lease, renews it for its holder at the same epoch, and refuses it to another until it expires', async () => {
        expect(await store.acquireLease('leader', 'replica-a', T0, TTL)).toEqual({ name: 'leader', holder: 'replica-a', epoch: 1, expiresAt: T0 + TTL });
        expect(await store.acquireLease('leader', 'replica-b', T0 + 5_000, TTL)).toEqual({ name: 'leader', holder: 'replica-a', epoch: 1, expiresAt: T0 + TTL });
        expect(await store.acquireLease('leader', 'replica-a', T0 + 6_000, TTL)).toEqual({ name: 'leader', holder: 'replica-a', epoch: 1, expiresAt: T0 + 16_000 });
        expect((await store.acquireLease('leader', 'replica-b', T0 + 15_999, TTL)).holder).toBe('replica-a');
        // replica-a stopped renewing (paused, or dead): the lease changes hands, with a new epoch.
        expect(await store.acquireLease('leader', 'replica-b', T0 + 16_000, TTL)).toEqual({ name: 'leader', holder: 'replica-b', epoch: 2, expiresAt: T0 + 26_000 });
        // Back, replica-a does not get it back by renewing: it is replica-b's.
        expect((await store.acquireLease('leader', 'replica-a', T0 + 17_000, TTL)).holder).toBe('replica-b');
        // Another lease is another row.
        expect((await store.acquireLease('other', 'replica-a', T0 + 17_000, TTL)).epoch).toBe(1);
      });

      it('a holder taking it again after it lapsed gets a new epoch: its writes of the old one are stale', async () => {
        await store.acquireLease('leader', 'replica-a', T0, TTL);
        expect(await store.acquireLease('leader', 'replica-a', T0 + TTL, TTL)).toMatchObject({ holder: 'replica-a', epoch: 2 });
      });

      it('is given up only by its holder at its epoch, and then taken at once by another', async () => {
        const a = await store.acquireLease('leader', 'replica-a', T0, TTL);
        expect(await store.releaseLease('leader', 'replica-b', a.epoch, T0 + 1)).toBe(false);
        expect(await store.releaseLease('leader', 'replica-a', a.epoch + 1, T0 + 1)).toBe(false);
        expect(await store.releaseLease('leader', 'replica-a', a.epoch, T0 + 1)).toBe(true);
        expect(await store.releaseLease('leader', 'replica-a', a.epoch, T0 + 2)).toBe(false);
        expect(await store.acquireLease('leader', 'replica-b', T0 + 2, TTL)).toMatchObject({ holder: 'replica-b', epoch: 2 });
      });

      it('goes to exactly one of many replicas asking at once, and every one of them is told the same holder', async () => {
        const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => store.acquireLease('leader', `replica-${i}`, T0, TTL)));
        const holders = new Set(answers.map((lease) => `${lease.holder}@${lease.epoch}`));
        expect(holders.size).toBe(1);
        expect(answers[0]?.epoch).toBe(1);
      });
    });

    describe('fencing (withFence)', () => {
      const TTL = 10_000;
      const sample = (jobId: string, at: number) => ({
        jobId, at, node: 'n1', gpuIndex: 0, intervalMs: 10_000, utilizationPct: 90, memoryUsedMiB: 1000, memoryTotalMiB: 81559, powerW: 300, temperatureC: 60,
      });

      /** Replica a leads at epoch 1 with a running job (through its fenced view) and a pending one. */
      async function leadAsA() {
        await store.replaceNodes([makeNode('n1', 4), makeNode('n2', 4)], T0);
        const lease = await store.acquireLease('control', 'replica-a', T0, TTL);
        expect(lease.epoch).toBe(1);
        const fenced = store.withFence({ lease: 'control', holder: 'replica-a', epoch: lease.epoch });
        const running = await fenced.createJob(makeJobSpec(), T0);
        expect(await fenced.applyPlacements([makePlacement(running.id, [['n1', [0]]])], T0 + 1)).toEqual([{ jobId: running.id, applied: true }]);
        const pending = await fenced.createJob(makeJobSpec(), T0 + 2);
        return { fenced, running, pending };
      }

      it('writes through a fenced view while its epoch holds, to the same database, even after its lease lapsed', async () => {
        const { fenced, running, pending } = await leadAsA();
        expect(await store.getJob(running.id)).toMatchObject({ status: 'running', startedAt: T0 + 1 });
        expect((await fenced.getJob(pending.id))?.status).toBe('pending');
        await expect(fenced.checkFence()).resolves.toBeUndefined();
        await fenced.appendEvent(running.id, 'started', 'rank 0 started', T0 + 3);
        // Fencing is by epoch, not by the clock: nobody took the lapsed lease, so replica-a's writes still count.
        expect(await fenced.finishJob(running.id, { status: 'succeeded', exitCode: 0, endReason: 'done' }, T0 + TTL * 5)).toBe(true);
        expect((await store.listEvents({ jobId: running.id })).map((e) => e.type)).toEqual(['submitted', 'scheduled', 'started', 'succeeded']);
      });

      it('refuses every write of a deposed replica with FencedError once another took the lease over, and changes nothing', async () => {
        const { fenced, running, pending } = await leadAsA();
        await store.appendGpuSamples([sample(running.id, T0 + 3)]);
        const before = { events: await store.listEvents({}), snapshot: await store.snapshot(), tasks: await store.getTasks(running.id) };
        expect(await store.acquireLease('control', 'replica-b', T0 + TTL, TTL)).toMatchObject({ holder: 'replica-b', epoch: 2 });

        const at = T0 + TTL + 1;
        const writes: Record<string, () => Promise<unknown>> = {
          applyPlacements: () => fenced.applyPlacements([makePlacement(pending.id, [['n1', [1]]])], at),
          updateTasks: () => fenced.updateTasks([{ jobId: running.id, rank: 0, status: 'running', startedAt: at }]),
          relocateRanks: () => fenced.relocateRanks(running.id, [{ rank: 0, node: 'n2' }], at),
          finishJob: () => fenced.finishJob(running.id, { status: 'failed', exitCode: 1, endReason: 'late' }, at),
          'requestCancel (running)': () => fenced.requestCancel(running.id, at),
          'requestCancel (pending)': () => fenced.requestCancel(pending.id, at),
          requeueJob: () => fenced.requeueJob(running.id, 'node lost', at),
          appendProgress: () => fenced.appendProgress([{ jobId: running.id, attempt: 1, rank: 0, at, step: 1, checkpoint: '/ck/1', values: { step: 1 } }]),
          appendGpuSamples: () => fenced.appendGpuSamples([sample(running.id, at)]),
          pruneGpuSamples: () => fenced.pruneGpuSamples(at + 1),
          setPendingReasons: () => fenced.setPendingReasons(new Map([[pending.id, makeDiagnosis()]])),
          appendEvent: () => fenced.appendEvent(running.id, 'started', 'late', at),
          replaceNodes: () => fenced.replaceNodes([makeNode('n9', 1)], at),
          checkFence: () => fenced.checkFence(),
        };
        for (const [name, write] of Object.entries(writes)) {
          const error = await write().then(() => undefined, (e: unknown) => e);
          expect(error, name).toBeInstanceOf(FencedError);
          expect(error, name).toMatchObject({ lease: 'control', holder: 'replica-a', epoch: 1, current: { holder: 'replica-b', epoch: 2, expiresAt: T0 + 2 * TTL } });
          expect((error as Error).message, name).toBe('this replica (holder replica-a) no longer holds lease "control" at epoch 1: now held by replica-b at epoch 2; its writes are refused');
        }

        expect(await store.getJob(pending.id)).toMatchObject({ status: 'pending' });
        expect((await store.getJob(pending.id))?.pendingReason).toBeUndefined();
        const job = await store.getJob(running.id);
        expect(job).toMatchObject({ status: 'running' });
        expect(job?.cancelRequestedAt).toBeUndefined();
        expect(job?.lastCheckpoint).toBeUndefined();
        expect(await store.getTasks(running.id)).toEqual(before.tasks);
        expect(await store.listEvents({})).toEqual(before.events);
        expect(await store.snapshot()).toEqual(before.snapshot);
        expect(await store.listProgress(running.id)).toEqual([]);
        expect((await store.listGpuSamples(running.id)).map((s) => s.at)).toEqual([T0 + 3]);
      });

      it('leaves the unfenced store and createJob of a deposed view alone, and fences the new holder by its own epoch', async () => {
        const { fenced, running } = await leadAsA();
        const taken = await store.acquireLease('control', 'replica-b', T0 + TTL, TTL);
        // A submission is no leader's write: every replica takes them.
        const submitted = await fenced.createJob(makeJobSpec(), T0 + TTL + 1);
        expect((await store.getJob(submitted.id))?.status).toBe('pending');
        await expect(store.checkFence()).resolves.toBeUndefined();
        const b = store.withFence({ lease: 'control', holder: taken.holder, epoch: taken.epoch });
        expect(await b.applyPlacements([makePlacement(submitted.id, [['n1', [1]]])], T0 + TTL + 2)).toEqual([{ jobId: submitted.id, applied: true }]);
        expect(await store.finishJob(running.id, { status: 'succeeded', exitCode: 0, endReason: 'done' }, T0 + TTL + 3)).toBe(true);
        // A fence of an epoch the holder never had (replica-b at 1) is refused too.
        await expect(store.withFence({ lease: 'control', holder: 'replica-b', epoch: 1 }).checkFence()).rejects.toBeInstanceOf(FencedError);
        // A lease nobody ever took fences everything.
        await expect(store.withFence({ lease: 'never-taken', holder: 'replica-a', epoch: 1 }).checkFence()).rejects.toThrow(
          'this replica (holder replica-a) no longer holds lease "never-taken" at epoch 1: nobody holds it; its writes are refused',
        );
      });

      it('refuses a malformed fence, naming the field', () => {
        expect(() => store.withFence({ lease: '', holder: 'a', epoch: 1 })).toThrow(/fence\.lease/);
        expect(() => store.withFence({ lease: 'control', holder: '', epoch: 1 })).toThrow(/fence\.holder/);
        expect(() => store.withFence({ lease: 'control', holder: 'a', epoch: 0 })).toThrow(/fence\.epoch/);
      });
    });

    describe('finishJob', () => {
      beforeEach(async () => {
        await store.replaceNodes([makeNode('n1', 2)], T0);
      });

      it('ends a running job, releases its GPUs and appends the event named after the status', async () => {
        const job = await startJob([0, 1]);
        const v = (await store.snapshot()).version;
        const ok = await store.finishJob(job.id, { status: 'failed', exitCode: 3, endReason: 'rank 1 exited with code 3' }, T0 + 100);
        expect(ok).toBe(true);
        expect(await store.getJob(job.id)).toMatchObject({
          status: 'failed',
          exitCode: 3,
          endReason: 'rank 1 exited with code 3',
          startedAt: T0 + 10,
          finishedAt: T0 + 100,
        });
        const snap = await store.snapshot();
        expect(snap.allocations).toEqual([]);
        expect(snap.version).toBeGreaterThan(v);
        const last = (await store.listEvents({ jobId: job.id })).at(-1);
        expect(last).toMatchObject({ type: 'failed', message: 'rank 1 exited with code 3', at: T0 + 100 });
        expect(await store.getTasks(job.id)).toHaveLength(2);
      });

      it('returns false for a terminal or unknown job and changes nothing', async () => {
        const job = await startJob([0]);
        expect(await store.finishJob(job.id, { status: 'succeeded', exitCode: 0, endReason: 'done' }, T0 + 100)).toBe(true);
        expect(await store.finishJob(job.id, { status: 'failed', exitCode: 1, endReason: 'again' }, T0 + 200)).toBe(false);
        expect(await store.getJob(job.id)).toMatchObject({ status: 'succeeded', exitCode: 0, finishedAt: T0 + 100 });
        expect((await store.listEvents({ jobId: job.id })).filter((e) => e.type === 'failed')).toEqual([]);
        expect(await store.finishJob('999999', { status: 'failed', exitCode: 1, endReason: 'x' }, T0)).toBe(false);
      });

      it('freed GPUs can be placed again', async () => {
        const job = await startJob([0]);
        await store.finishJob(job.id, { status: 'cancelled', exitCode: null, endReason: 'cancelled' }, T0 + 100);
        expect((await store.getJob(job.id))?.exitCode).toBeNull();
        await startJob([0]);
      });
    });

    describe('requestCancel', () => {
      beforeEach(async () => {
        await store.replaceNodes([makeNode('n1', 2)], T0);
      });

      it('cancels a pending job at once', async () => {
        const job = await store.createJob(makeJobSpec(), T0);
        await store.setPendingReasons(new Map([[job.id, makeDiagnosis()]]));
        expect(await store.requestCancel(job.id, T0 + 5)).toBe('cancelled');
        const after = await store.getJob(job.id);
        expect(after).toMatchObject({ status: 'cancelled', finishedAt: T0 + 5, exitCode: null });
        expect(after?.pendingReason).toBeUndefined();
        expect((await store.listEvents({ jobId: job.id })).map((e) => e.type)).toEqual(['submitted', 'cancelled']);
      });

      it('marks a running job as stopping, once', async () => {
        const job = await startJob([0]);
        expect(await store.requestCancel(job.id, T0 + 20)).toBe('stopping');
        expect(await store.requestCancel(job.id, T0 + 30)).toBe('stopping');
        expect(await store.getJob(job.id)).toMatchObject({ status: 'running', cancelRequestedAt: T0 + 20 });
        expect((await store.listEvents({ jobId: job.id })).map((e) => e.type)).toEqual(['submitted', 'scheduled', 'cancel_requested']);
        expect((await store.snapshot()).allocations).toHaveLength(1);
        await store.finishJob(job.id, { status: 'cancelled', exitCode: null, endReason: 'cancelled' }, T0 + 40);
        expect(await store.getJob(job.id)).toMatchObject({ status: 'cancelled', cancelRequestedAt: T0 + 20 });
      });

      it('leaves a finished job alone and reports unknown jobs', async () => {
        const job = await startJob([0]);
        await store.finishJob(job.id, { status: 'succeeded', exitCode: 0, endReason: 'done' }, T0 + 20);
        expect(await store.requestCancel(job.id, T0 + 30)).toBe('already_finished');
        expect(await store.getJob(job.id)).toMatchObject({ status: 'succeeded' });
        expect(await store.requestCancel('999999', T0)).toBe('not_found');
        expect(await store.requestCancel('nope', T0)).toBe('not_found');
      });
    });

    describe('requeueJob', () => {
      beforeEach(async () => {
        await store.replaceNodes([makeNode('n1', 2)], T0);
      });

      it('sends a running job back to pending without tasks or allocations', async () => {
        const job = await startJob([0, 1]);
        const v = (await store.snapshot()).version;
        expect(await store.requeueJob(job.id, 'node n1 lost', T0 + 50)).toBe(true);
        const after = await store.getJob(job.id);
        expect(after?.status).toBe('pending');
        expect(after?.startedAt).toBeUndefined();
        expect(await store.getTasks(job.id)).toEqual([]);
        const snap = await store.snapshot();
        expect(snap.allocations).toEqual([]);
        expect(snap.version).toBeGreaterThan(v);
        const last = (await store.listEvents({ jobId: job.id })).at(-1);
        expect(last).toMatchObject({ type: 'requeued', message: 'node n1 lost', at: T0 + 50 });
        // and it can be placed again
        expect(await store.applyPlacements([makePlacement(job.id, [['n1', [1]]])], T0 + 60)).toEqual([{ jobId: job.id, applied: true }]);
      });

      it('returns false for a job that is not running', async () => {
        const pending = await store.createJob(makeJobSpec(), T0);
        expect(await store.requeueJob(pending.id, 'x', T0)).toBe(false);
        const done = await startJob([0]);
        await store.finishJob(done.id, { status: 'succeeded', exitCode: 0, endReason: 'done' }, T0 + 20);
        expect(await store.requeueJob(done.id, 'x', T0)).toBe(false);
        expect(await store.requeueJob('999999', 'x', T0)).toBe(false);
        expect((await store.listEvents({})).filter((e) => e.type === 'requeued')).toEqual([]);
      });
    });

    describe('attempts and restarts', () => {
      beforeEach(async () => {
        await store.replaceNodes([makeNode('n1', 2)], T0);
      });

      it('numbers attempts, records each ended attempt with its tasks, and counts only restarts asked for', async () => {
        const job = await startJob([0, 1]);
        expect((await store.getJob(job.id))?.attempt).toBe(1);
        await store.updateTasks([{ jobId: job.id, rank: 0, status: 'exited', exitCode: 137, backend: { kind: 'local', ref: { pid: 42, pidStartTime: 7 } }, finishedAt: T0 + 40 }]);
        expect(
          await store.requeueJob(job.id, 'rank 0 was killed by SIGKILL; restart 1 of 2', T0 + 50, {
            event: 'restarting',
            countRestart: true,
            notBefore: T0 + 5050,
            attemptEnd: { exitCode: 137, reason: 'rank 0 was killed by SIGKILL' },
          }),
        ).toBe(true);
        let after = await store.getJob(job.id);
        expect(after).toMatchObject({ status: 'pending', attempt: 1, restarts: 1, notBefore: T0 + 5050 });
        const [first] = await store.listAttempts(job.id);
        expect(first).toMatchObject({ jobId: job.id, attempt: 1, startedAt: T0 + 10, finishedAt: T0 + 50, exitCode: 137, reason: 'rank 0 was killed by SIGKILL' });
        expect(first?.tasks.map((t) => [t.rank, t.status, t.exitCode ?? null, t.backend ?? null])).toEqual([[0, 'exited', 137, { kind: 'local', ref: { pid: 42, pidStartTime: 7 } }], [1, 'starting', null, null]]);
        expect((await store.listEvents({ jobId: job.id })).at(-1)).toMatchObject({ type: 'restarting' });

        expect(await store.applyPlacements([makePlacement(job.id, [['n1', [0]]])], T0 + 6000)).toEqual([{ jobId: job.id, applied: true }]);
        after = await store.getJob(job.id);
        expect(after).toMatchObject({ status: 'running', attempt: 2, restarts: 1 });
        expect(after?.notBefore).toBeUndefined();
        // A preemption is not a restart.
        expect(await store.requeueJob(job.id, 'preempted', T0 + 7000, { event: 'preempted' })).toBe(true);
        expect(await store.getJob(job.id)).toMatchObject({ attempt: 2, restarts: 1 });
        await store.applyPlacements([makePlacement(job.id, [['n1', [1]]])], T0 + 8000);
        await store.finishJob(job.id, { status: 'failed', exitCode: 3, endReason: 'rank 0 exited with code 3' }, T0 + 9000);
        const attempts = await store.listAttempts(job.id);
        expect(attempts.map((a) => [a.attempt, a.exitCode, a.reason])).toEqual([
          [1, 137, 'rank 0 was killed by SIGKILL'],
          [2, null, 'preempted'],
          [3, 3, 'rank 0 exited with code 3'],
        ]);
        expect(await store.listAttempts('999999')).toEqual([]);
      });

      it('lists the GPU use of attempts that ended since a time, with team and GPUs, for fair share after a restart', async () => {
        const red = await store.createJob(makeJobSpec({ team: 'red', resources: { gpus: { count: 2, types: [] } } }), T0);
        await store.applyPlacements([makePlacement(red.id, [['n1', [0, 1]]], makeJobSpec({ resources: { gpus: { count: 2, types: [] } } }))], T0 + 100);
        await store.requeueJob(red.id, 'rank 1 failed', T0 + 1_100, { event: 'restarting', countRestart: true });
        await store.applyPlacements([makePlacement(red.id, [['n1', [0, 1]]], makeJobSpec({ resources: { gpus: { count: 2, types: [] } } }))], T0 + 2_000);
        await store.finishJob(red.id, { status: 'succeeded', exitCode: 0, endReason: 'done' }, T0 + 5_000);
        const blue = await store.createJob(makeJobSpec({ team: 'blue' }), T0);
        await store.finishJob(blue.id, { status: 'cancelled', exitCode: null, endReason: 'cancelled' }, T0 + 6_000);
        expect(await store.listGpuUseEndedSince(T0)).toEqual([
          { jobId: red.id, jobStatus: 'succeeded', team: 'red', gpus: 2, startedAt: T0 + 100, finishedAt: T0 + 1_100 },
          { jobId: red.id, jobStatus: 'succeeded', team: 'red', gpus: 2, startedAt: T0 + 2_000, finishedAt: T0 + 5_000 },
        ]);
        expect((await store.listGpuUseEndedSince(T0 + 2_000)).map((u) => u.finishedAt)).toEqual([T0 + 5_000]);
      });

      it('a job that never started has no attempts', async () => {
        const job = await store.createJob(makeJobSpec(), T0);
        expect((await store.getJob(job.id))?.attempt).toBeUndefined();
        await store.finishJob(job.id, { status: 'failed', exitCode: null, endReason: 'never fits' }, T0 + 1);
        expect(await store.listAttempts(job.id)).toEqual([]);
      });
    });

    describe('progress', () => {
      it('stores records per job in order, keeps the last checkpoint, and drops records of unknown jobs', async () => {
        const a = await store.createJob(makeJobSpec(), T0);
        const b = await store.createJob(makeJobSpec(), T0);
        await store.appendProgress([
          { jobId: a.id, attempt: 1, rank: 0, at: T0 + 1, step: 10, loss: 0.5, values: { step: 10, loss: 0.5 } },
          { jobId: a.id, attempt: 1, rank: 0, at: T0 + 2, step: 20, checkpoint: '/ck/step-20', values: { step: 20, checkpoint: '/ck/step-20' } },
          { jobId: b.id, attempt: 1, rank: 0, at: T0 + 2, step: 1, values: { step: 1 } },
          { jobId: '999999', attempt: 1, rank: 0, at: T0 + 2, values: {} },
        ]);
        await store.appendProgress([{ jobId: a.id, attempt: 2, rank: 0, at: T0 + 3, step: 21, loss: 0.25, values: { step: 21, loss: 0.25 } }]);
        const records = await store.listProgress(a.id);
        expect(records.map((r) => [r.attempt, r.step, r.loss ?? null, r.checkpoint ?? null])).toEqual([
          [1, 10, 0.5, null],
          [1, 20, null, '/ck/step-20'],
          [2, 21, 0.25, null],
        ]);
        expect((await store.getJob(a.id))?.lastCheckpoint).toBe('/ck/step-20');
        expect((await store.getJob(b.id))?.lastCheckpoint).toBeUndefined();
        expect((await store.listProgress(a.id, { last: 1 })).map((r) => r.step)).toEqual([21]);
        expect((await store.listProgress(a.id, { afterSeq: records[0]!.seq })).map((r) => r.step)).toEqual([20, 21]);
        expect(await store.listProgress('999999')).toEqual([]);
      });
    });

    describe('who submitted', () => {
      it('records the submitting user, reads it back and lists by it', async () => {
        const ada = await store.createJob(makeJobSpec(), T0, { user: 'ada' });
        const anonymous = await store.createJob(makeJobSpec(), T0);
        const grace = await store.createJob(makeJobSpec(), T0, { user: 'grace' });
        expect([ada.user, anonymous.user, grace.user]).toEqual(['ada', undefined, 'grace']);
        expect((await store.getJob(ada.id))?.user).toBe('ada');
        expect((await store.getJob(anonymous.id))?.user).toBeUndefined();
        expect((await store.listJobs({ user: 'ada' })).jobs.map((j) => j.id)).toEqual([ada.id]);
        expect((await store.listJobs({ user: 'nobody' })).jobs).toEqual([]);
      });
    });

    describe('GPU samples', () => {
      const sample = (jobId: string | null, at: number, gpuIndex: number, powerW: number | null, intervalMs = 10_000) => ({
        jobId, at, node: 'n1', gpuIndex, intervalMs, utilizationPct: 90, memoryUsedMiB: 1000, memoryTotalMiB: 81559, powerW, temperatureC: 60,
      });

      it('stores samples per job, oldest first, and integrates power over the sample intervals into Wh', async () => {
        const a = await store.createJob(makeJobSpec(), T0);
        const b = await store.createJob(makeJobSpec(), T0);
        await store.appendGpuSamples([
          sample(a.id, T0 + 10_000, 0, 360), sample(a.id, T0 + 10_000, 1, 720),
          sample(b.id, T0 + 10_000, 2, 100), sample(null, T0 + 10_000, 3, 60), sample('999999', T0 + 10_000, 4, 60),
        ]);
        await store.appendGpuSamples([sample(a.id, T0 + 20_000, 0, 360), sample(a.id, T0 + 20_000, 1, null)]);
        const samples = await store.listGpuSamples(a.id);
        expect(samples.map((s) => [s.at - T0, s.gpuIndex, s.powerW])).toEqual([[10_000, 0, 360], [10_000, 1, 720], [20_000, 0, 360], [20_000, 1, null]]);
        expect(samples[0]).toMatchObject({ jobId: a.id, node: 'n1', utilizationPct: 90, memoryUsedMiB: 1000, memoryTotalMiB: 81559, temperatureC: 60, intervalMs: 10_000 });
        // (360 + 720 + 360) W × 10 s = 14,400 J = 4 Wh; the sample without power adds nothing.
        expect(await store.jobEnergyWh(a.id)).toBeCloseTo(4, 9);
        expect((await store.listGpuSamples(a.id, { since: T0 + 15_000 })).map((s) => s.gpuIndex)).toEqual([0, 1]);
        expect((await store.listGpuSamples(a.id, { limit: 1 })).map((s) => [s.at - T0, s.gpuIndex])).toEqual([[20_000, 1]]);
        expect(await store.listGpuSamples('999999')).toEqual([]);
      });

      it('keeps fractional gauges as 8-byte floats, in reads and in the energy sum', async () => {
        const a = await store.createJob(makeJobSpec(), T0);
        await store.appendGpuSamples([{ ...sample(a.id, T0 + 10_000, 0, 333.3), utilizationPct: 12.3, temperatureC: 61.7 }]);
        expect((await store.listGpuSamples(a.id)).map((s) => [s.powerW, s.utilizationPct, s.temperatureC])).toEqual([[333.3, 12.3, 61.7]]);
        expect(await store.jobEnergyWh(a.id)).toBe((333.3 * 10_000) / 3_600_000);
      });

      it('has no energy figure for a job without power readings', async () => {
        const a = await store.createJob(makeJobSpec(), T0);
        expect(await store.jobEnergyWh(a.id)).toBeNull();
        await store.appendGpuSamples([sample(a.id, T0 + 1, 0, null)]);
        expect(await store.jobEnergyWh(a.id)).toBeNull();
      });

      it('prunes samples older than a time', async () => {
        const a = await store.createJob(makeJobSpec(), T0);
        await store.appendGpuSamples([sample(a.id, T0 + 1, 0, 100), sample(a.id, T0 + 2, 0, 100), sample(a.id, T0 + 3, 0, 100)]);
        expect(await store.pruneGpuSamples(T0 + 3)).toBe(2);
        expect((await store.listGpuSamples(a.id)).map((s) => s.at - T0)).toEqual([3]);
      });
    });

    describe('setPendingReasons', () => {
      it('records reasons of pending jobs, replacing older ones, and ignores other jobs', async () => {
        await store.replaceNodes([makeNode('n1', 1)], T0);
        const a = await store.createJob(makeJobSpec(), T0);
        const running = await startJob([0]);
        await store.setPendingReasons(new Map([[a.id, makeDiagnosis('first')]]));
        expect((await store.getJob(a.id))?.pendingReason).toEqual(makeDiagnosis('first'));
        const second = makeDiagnosis('can never fit', 'NeverFits');
        await store.setPendingReasons(
          new Map([
            [a.id, second],
            [running.id, makeDiagnosis('x')],
            ['999999', makeDiagnosis('x')],
          ]),
        );
        expect((await store.getJob(a.id))?.pendingReason).toEqual(second);
        expect((await store.getJob(running.id))?.pendingReason).toBeUndefined();
        await store.setPendingReasons(new Map());
        expect((await store.listJobsByStatus(['pending']))[0]?.pendingReason).toEqual(second);
      });
    });

    describe('events', () => {
      it('appends events with increasing seq and reads them back by job and after a seq', async () => {
        const a = await store.createJob(makeJobSpec(), T0);
        const b = await store.createJob(makeJobSpec(), T0);
        const e1 = await store.appendEvent(a.id, 'started', 'all ranks running', T0 + 1, { pids: [1, 2], nested: { ok: true } });
        const e2 = await store.appendEvent(b.id, 'rank_exited', 'rank 0 exited with code 0', T0 + 2);
        const e3 = await store.appendEvent(a.id, 'adopted', 'adopted after restart', T0 + 3);
        expect(e1).toEqual({ seq: expect.any(Number), jobId: a.id, at: T0 + 1, type: 'started', message: 'all ranks running', data: { pids: [1, 2], nested: { ok: true } } });
        expect(e2.data).toBeUndefined();
        expect(e2.seq).toBeGreaterThan(e1.seq);
        expect(e3.seq).toBeGreaterThan(e2.seq);

        const ofA = await store.listEvents({ jobId: a.id });
        expect(ofA.map((e) => e.type)).toEqual(['submitted', 'started', 'adopted']);
        expect(ofA[1]).toEqual(e1);
        const all = await store.listEvents({});
        expect(all.map((e) => e.seq)).toEqual([...all.map((e) => e.seq)].sort((x, y) => x - y));
        expect(all).toHaveLength(5);
        expect(await store.listEvents({ afterSeq: e1.seq })).toEqual([e2, e3]);
        expect(await store.listEvents({ afterSeq: e1.seq, limit: 1 })).toEqual([e2]);
        expect(await store.listEvents({ jobId: a.id, afterSeq: e1.seq })).toEqual([e3]);
        expect(await store.listEvents({ jobId: '999999' })).toEqual([]);
      });

      it("finds a job's newest event of a type", async () => {
        const a = await store.createJob(makeJobSpec(), T0);
        const b = await store.createJob(makeJobSpec(), T0);
        await store.appendEvent(a.id, 'stopping', 'first', T0 + 1, { attempt: 1 });
        const second = await store.appendEvent(a.id, 'stopping', 'second', T0 + 2, { attempt: 2 });
        await store.appendEvent(b.id, 'stopping', 'of another job', T0 + 3);
        await store.appendEvent(a.id, 'adopted', 'a later event of another type', T0 + 4);
        expect(await store.lastEventOfType(a.id, 'stopping')).toEqual(second);
        expect(await store.lastEventOfType(a.id, 'hung')).toBeUndefined();
        expect(await store.lastEventOfType('999999', 'stopping')).toBeUndefined();
        expect(await store.lastEventOfType('abc', 'stopping')).toBeUndefined();
      });

      it('lists at most 1000 events by default', async () => {
        const job = await store.createJob(makeJobSpec(), T0);
        await Promise.all(Array.from({ length: 1005 }, (_, i) => store.appendEvent(job.id, 'started', `e${i}`, T0 + i)));
        expect(await store.listEvents({ jobId: job.id })).toHaveLength(1000);
      });

      it('rejects an event of a job that does not exist', async () => {
        await expect(store.appendEvent('999999', 'started', 'x', T0)).rejects.toThrow();
      });
    });

    describe('close', () => {
      it('commits submissions accepted before it', async () => {
        const pending = Array.from({ length: 10 }, () => store.createJob(makeJobSpec(), T0));
        await store.close();
        const jobs = await Promise.all(pending);
        expect(new Set(jobs.map((j) => j.id)).size).toBe(10);
      });
    });
  });
}
