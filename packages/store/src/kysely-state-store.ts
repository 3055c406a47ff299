import { sql } from 'kysely';
import type { Insertable, Kysely, Transaction } from 'kysely';
import type {
  AttemptRecord,
  ClusterSnapshot,
  Diagnosis,
  GpuAllocation,
  Job,
  JobEvent,
  JobEventType,
  JobGpuSample,
  JobSpec,
  JobStatus,
  NodeInfo,
  ProgressRecord,
  Task,
} from '@tutti/model';
import { computeGpusHeld, gpuClaimConflict, isTerminalJobStatus, JOB_STATUSES, type GpuShareUse } from '@tutti/model';
import { FencedError, InvalidCursorError } from './errors.ts';
import { GroupCommitQueue } from './group-commit.ts';
import { currentSchemaVersion, runMigrations } from './migrations.ts';
import { attemptFromRow, eventFromRow, jobFromRow, jobSummaryColumns, jobSummaryFromRow, parseJobId, progressFromRow, taskFromRow } from './row-mapping.ts';
import type { JobSummaryRow } from './row-mapping.ts';
import type { StoreDatabase, TasksTable } from './schema.ts';
import { DATABASE_ID_KEY, SNAPSHOT_VERSION_KEY } from './schema.ts';
import type {
  ApplyOutcome,
  CancelOutcome,
  ChangeWatch,
  CreateJobOptions,
  EventQuery,
  Fence,
  GpuSampleQuery,
  GpuUse,
  JobEnd,
  Lease,
  JobPage,
  JobQuery,
  JobSummaryPage,
  JobSortKey,
  NewProgressRecord,
  PlacementWithTasks,
  ProgressQuery,
  RequeueOptions,
  RunHistoryQuery,
  StateStore,
  TaskUpdate,
} from './state-store.ts';
import type { StoreDialect } from './store-dialect.ts';

export interface KyselyStateStoreOptions {
  db: Kysely<StoreDatabase>;
  dialect: StoreDialect;
  /** Names the database in messages (a file path, a connection URL without password). */
  where?: string;
  /** The advice besides upgrading tutti when the database is from a newer one. @default 'use a different --data-dir' */
  otherwise?: string;
  /** The most job submissions one group-commit transaction takes. @default 1000 */
  maxCreateBatch?: number;
  /** See RunMigrationsOptions.refuseWhileLeased. */
  refuseMigrationWhileLeased?: string;
  /** Opens a watch of committed changes (PostgreSQL's LISTEN); without it, watches are never live (SQLite). */
  openChangeWatch?: (onChange: () => void) => Promise<ChangeWatch>;
}

/** What a store and its fenced views share: one database, one group-commit queue, one set of watches, one close. */
interface SharedState {
  readonly creates: GroupCommitQueue<NewJob, Job>;
  readonly watches: Set<ChangeWatch>;
  readonly openChangeWatch: ((onChange: () => void) => Promise<ChangeWatch>) | undefined;
  closed: Promise<void> | undefined;
}

/** The watch of a store that no other process shares (SQLite): never live, never called. */
const NO_CHANGE_WATCH: ChangeWatch = { live: false, close: async () => {} };

/** Page sizes. */
const DEFAULT_JOB_PAGE = 50;
const MAX_JOB_PAGE = 1000;
const DEFAULT_EVENT_PAGE = 1000;
const MAX_EVENT_PAGE = 10_000;
const DEFAULT_GPU_SAMPLE_PAGE = 2000;
const MAX_GPU_SAMPLE_PAGE = 20_000;
/**
 * Rows per multi-row INSERT: keeps the bound parameters (about 6 per row) well under SQLite's 32,766 and
 * PostgreSQL's 65,535.
 */
const INSERT_CHUNK = 500;

interface NewJob {
  specJson: string;
  spec: JobSpec;
  now: number;
  user: string | undefined;
}

/** Thrown inside applyPlacements' transaction to roll it back when the database refuses a GPU as taken. */
class GpuTakenSignal extends Error {}

/**
 * The StateStore written once over Kysely, for every SQL dialect the store supports. Each state change is one
 * `db.transaction()`; dialect differences come in through `StoreDialect` and the factory that opened `db`.
 */
export class KyselyStateStore implements StateStore {
  readonly #db: Kysely<StoreDatabase>;
  /** The last snapshot's nodes by their stored JSON (see `#nodesOf`). */
  #parsedNodes = new Map<string, NodeInfo>();
  readonly #dialect: StoreDialect;
  readonly #where: string | undefined;
  readonly #otherwise: string | undefined;
  readonly #refuseMigrationWhileLeased: string | undefined;
  readonly #shared: SharedState;
  /** Set on a fenced view (see `withFence`): every write checks it first. */
  readonly #fence: Fence | undefined;

  /** `fencedViewOf`: for `withFence` only, the store whose database (and everything else) this view shares. */
  constructor(options: KyselyStateStoreOptions, fencedViewOf?: { store: KyselyStateStore; fence: Fence }) {
    this.#db = options.db;
    this.#dialect = options.dialect;
    this.#where = options.where;
    this.#otherwise = options.otherwise;
    this.#refuseMigrationWhileLeased = options.refuseMigrationWhileLeased;
    this.#fence = fencedViewOf?.fence;
    this.#shared = (fencedViewOf && fencedViewOf.store.#shared) ?? {
      creates: new GroupCommitQueue((batch) => this.#insertJobs(batch), { maxBatch: options.maxCreateBatch ?? 1000 }),
      watches: new Set(),
      openChangeWatch: options.openChangeWatch,
      closed: undefined,
    };
  }

  /**
   * The view whose writes check `fence` (see StateStore.withFence). It shares this store's database, queue and
   * watches: `createJob` goes through the same group commit, unfenced.
   */
  withFence(fence: Fence): StateStore {
    assertWellFormedFence(fence);
    const options: KyselyStateStoreOptions = {
      db: this.#db,
      dialect: this.#dialect,
      ...(this.#where !== undefined ? { where: this.#where } : {}),
      ...(this.#otherwise !== undefined ? { otherwise: this.#otherwise } : {}),
    };
    return new KyselyStateStore(options, { store: this, fence: { lease: fence.lease, holder: fence.holder, epoch: fence.epoch } });
  }

  async checkFence(): Promise<void> {
    if (this.#fence !== undefined) await this.#write(async () => {});
  }

  /**
   * The transaction of every state change but createJob and the leases': on a fenced view it first checks the fence
   * (holding the lease against a change of hands until commit: StoreDialect.lockLease), then runs `change`. Locks
   * are taken lease first, then the job's row, then `meta`, then the append order (StoreDialect.beforeAppend).
   */
  #write<T>(change: (trx: Transaction<StoreDatabase>) => Promise<T>): Promise<T> {
    return this.#db.transaction().execute(async (trx) => {
      await this.#checkFenceIn(trx);
      return change(trx);
    });
  }

  async #checkFenceIn(trx: Transaction<StoreDatabase>): Promise<void> {
    const fence = this.#fence;
    if (fence === undefined) return;
    // Shared: fenced writes do not wait for each other, but a takeover (exclusive) waits for them, and they for it.
    await this.#dialect.lockLease(trx, fence.lease, 'shared');
    const row = await trx.selectFrom('leases').selectAll().where('name', '=', fence.lease).executeTakeFirst();
    if (row !== undefined && row.holder === fence.holder && Number(row.epoch) === fence.epoch) return;
    throw new FencedError(fence.lease, fence.holder, fence.epoch, row && { holder: row.holder, epoch: Number(row.epoch), expiresAt: Number(row.expires_at) });
  }

  /** See StateStore.watchChanges; the store's `close()` closes the watch too. */
  async watchChanges(onChange: () => void): Promise<ChangeWatch> {
    const shared = this.#shared;
    if (shared.closed) throw storeClosedError();
    if (shared.openChangeWatch === undefined) return NO_CHANGE_WATCH;
    const watch = await shared.openChangeWatch(onChange);
    if (shared.closed) {
      // Closed while the watch connected: close() did not see it.
      await watch.close();
      throw storeClosedError();
    }
    shared.watches.add(watch);
    return {
      get live() {
        return watch.live;
      },
      async close() {
        shared.watches.delete(watch);
        await watch.close();
      },
    };
  }

  async migrate(): Promise<void> {
    await runMigrations(this.#db, this.#dialect, {
      ...(this.#refuseMigrationWhileLeased !== undefined ? { refuseWhileLeased: this.#refuseMigrationWhileLeased } : {}),
      ...(this.#where !== undefined ? { where: this.#where } : {}),
      ...(this.#otherwise !== undefined ? { otherwise: this.#otherwise } : {}),
    });
  }

  /**
   * This database's identity: a random number drawn the first time any store asks, kept in `meta`. What tells
   * replicas that reach one database by different addresses (a proxy, another host name) that it is the same one.
   */
  async databaseId(): Promise<string> {
    const drawn = 1 + Math.floor(Math.random() * (Number.MAX_SAFE_INTEGER - 1));
    await this.#db.insertInto('meta').values({ key: DATABASE_ID_KEY, value: drawn }).onConflict((oc) => oc.column('key').doNothing()).execute();
    const row = await this.#db.selectFrom('meta').select('value').where('key', '=', DATABASE_ID_KEY).executeTakeFirstOrThrow();
    return String(row.value);
  }

  /** The highest applied migration (0 before `migrate`). */
  schemaVersion(): Promise<number> {
    return currentSchemaVersion(this.#db);
  }

  /**
   * Waits for submissions already accepted to commit, closes the change watches, then the connection. Idempotent; of
   * a fenced view, closes the store it is a view of.
   */
  close(): Promise<void> {
    const shared = this.#shared;
    shared.closed ??= (async () => {
      await shared.creates.drain();
      for (const watch of [...shared.watches]) await watch.close();
      shared.watches.clear();
      await this.#db.destroy();
    })();
    return shared.closed;
  }

  // ---- jobs -------------------------------------------------------------------------------------------------

  /** Group-committed: see GroupCommitQueue. Resolves once the job's transaction is durable. */
  createJob(spec: JobSpec, now: number, options: CreateJobOptions = {}): Promise<Job> {
    if (this.#shared.closed) return Promise.reject(storeClosedError());
    let specJson: string;
    try {
      // Serialised here, not in the batch, so a spec that cannot be serialised fails only its own caller.
      specJson = JSON.stringify(spec);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#shared.creates.submit({ specJson, spec, now, user: options.user });
  }

  async #insertJobs(batch: NewJob[]): Promise<Job[]> {
    return this.#db.transaction().execute(async (trx) => {
      const ids: number[] = [];
      for (const chunk of chunked(batch, INSERT_CHUNK)) {
        const rows = await trx
          .insertInto('jobs')
          .values(
            chunk.map((j) => ({
              name: j.spec.name,
              team: j.spec.team,
              priority: j.spec.priority,
              status: 'pending',
              submitted_by: j.user ?? null,
              spec_json: j.specJson,
              ...jobSummaryColumns(j.spec),
              created_at: j.now,
            })),
          )
          .returning('id')
          .execute();
        // RETURNING order is unspecified, but the rows of one INSERT take increasing ids in VALUES order (SQLite
        // rowid/AUTOINCREMENT; a PostgreSQL identity evaluates nextval row by row), so sorted ids follow the chunk.
        ids.push(...rows.map((r) => Number(r.id)).sort((a, b) => a - b));
      }
      const events = batch.map((j, i) => ({
        job_id: ids[i] as number,
        at: j.now,
        type: 'submitted' as const,
        message: `submitted by team ${j.spec.team} with priority ${j.spec.priority}`,
        data_json: null,
      }));
      await this.#dialect.beforeAppend(trx, 'events');
      for (const chunk of chunked(events, INSERT_CHUNK)) await trx.insertInto('events').values(chunk).execute();
      return batch.map((j, i): Job => ({
        id: String(ids[i]),
        // A copy, as getJob would return: the caller's spec object may change after the call.
        spec: JSON.parse(j.specJson) as JobSpec,
        status: 'pending',
        ...(j.user !== undefined ? { user: j.user } : {}),
        createdAt: j.now,
      }));
    });
  }

  async getJob(id: string): Promise<Job | undefined> {
    const key = parseJobId(id);
    if (key === undefined) return undefined;
    const row = await this.#db.selectFrom('jobs').selectAll().where('id', '=', key).executeTakeFirst();
    return row && jobFromRow(row);
  }

  /**
   * Keyset pagination: each page is `id < cursor ORDER BY id DESC LIMIT n+1` on an index ending in id, so the
   * cost of a page does not grow with the number of jobs or with how deep the page is. The cursor is the last id
   * of the previous page; a malformed one throws InvalidCursorError. Sorted by another column, the key is the pair
   * (column, id) and the cursor `column:value:id`, compared as a row value in the sort's direction.
   */
  async listJobs(query: JobQuery): Promise<JobPage> {
    const { q, limit, sort } = this.#jobPageQuery(query);
    const rows = await q.selectAll().execute();
    return toPage(rows.slice(0, limit).map(jobFromRow), rows, limit, (row) => encodeJobCursor(sort.by, row));
  }

  async listJobSummaries(query: JobQuery): Promise<JobSummaryPage> {
    const { q, limit, sort } = this.#jobPageQuery(query);
    const rows = await q.select(JOB_SUMMARY_COLUMNS).execute();
    return toPage(rows.slice(0, limit).map(jobSummaryFromRow), rows, limit, (row) => encodeJobCursor(sort.by, row));
  }

  /** The filtered, sorted, keyset-bounded query of one `listJobs` page (limit + 1 rows, to know if more follow). */
  #jobPageQuery(query: JobQuery) {
    const limit = clampLimit(query.limit, DEFAULT_JOB_PAGE, MAX_JOB_PAGE);
    const sort = query.sort ?? { by: 'id', direction: 'desc' };
    const after = query.cursor !== undefined ? decodeJobCursor(query.cursor, sort.by) : undefined;
    if (query.cursor !== undefined && after === undefined) throw new InvalidCursorError(query.cursor);
    const beyond = sort.direction === 'desc' ? '<' : '>';
    let q = this.#db.selectFrom('jobs');
    if (query.status !== undefined) q = q.where('status', '=', query.status);
    if (query.team !== undefined) q = q.where('team', '=', query.team);
    if (query.user !== undefined) q = q.where('submitted_by', '=', query.user);
    if (query.nameContains !== undefined && query.nameContains !== '') {
      const pattern = `%${query.nameContains.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      q = q.where(sql<boolean>`name ${sql.raw(this.#dialect.likeIgnoringCase)} ${pattern} escape '\\'`);
    }
    if (after !== undefined) {
      if (sort.by === 'id') q = q.where('id', beyond, after.id);
      else {
        // A row-value comparison, which both SQLite and PostgreSQL answer with an index range where one exists.
        const column = sort.by;
        q = q.where((eb) => eb(eb.refTuple(column, 'id'), beyond, eb.tuple(after.value as never, after.id)));
      }
    }
    if (sort.by !== 'id') q = q.orderBy(sort.by, sort.direction);
    return { q: q.orderBy('id', sort.direction).limit(limit + 1), limit, sort };
  }

  async listRunHistory(query: RunHistoryQuery): Promise<JobSummaryPage> {
    const limit = clampLimit(query.limit, MAX_JOB_PAGE, MAX_JOB_PAGE);
    const after = query.cursor !== undefined ? decodeRunHistoryCursor(query.cursor) : undefined;
    if (query.cursor !== undefined && after === undefined) throw new InvalidCursorError(query.cursor);
    // `finished_at` is written only when a job ends (finishJob, a pending job's cancel), so it stands for "ended":
    // a condition on status would lead SQLite's planner to the status index and a sort of the whole history.
    let q = this.#db.selectFrom('jobs').select(JOB_SUMMARY_COLUMNS).where('finished_at', 'is not', null).where('started_at', 'is not', null);
    if (after !== undefined) q = q.where((eb) => eb(eb.refTuple('created_at', 'id'), '>', eb.tuple(after.createdAt, after.id)));
    const rows = await q.orderBy('created_at', 'asc').orderBy('id', 'asc').limit(limit + 1).execute();
    return toPage(rows.slice(0, limit).map(jobSummaryFromRow), rows, limit, (row) => `${row.created_at}:${row.id}`);
  }

  async listJobsByStatus(statuses: readonly JobStatus[]): Promise<Job[]> {
    if (statuses.length === 0) return [];
    const rows = await this.#db.selectFrom('jobs').selectAll().where('status', 'in', [...statuses]).orderBy('id', 'asc').execute();
    return rows.map(jobFromRow);
  }

  async countJobsByStatus(): Promise<Record<JobStatus, number>> {
    const rows = await this.#db
      .selectFrom('jobs')
      .select((eb) => ['status', eb.fn.countAll<number | string>().as('n')])
      .groupBy('status')
      .execute();
    const counts = Object.fromEntries(JOB_STATUSES.map((s) => [s, 0])) as Record<JobStatus, number>;
    for (const row of rows) counts[row.status as JobStatus] = Number(row.n);
    return counts;
  }

  async countJobsByTeam(status: JobStatus): Promise<Map<string, number>> {
    const rows = await this.#db
      .selectFrom('jobs')
      .select((eb) => ['team', eb.fn.countAll<number | string>().as('n')])
      .where('status', '=', status)
      .groupBy('team')
      .execute();
    return new Map(rows.map((row) => [row.team, Number(row.n)]));
  }

  // ---- tasks ------------------------------------------------------------------------------------------------

  async getTasks(jobId: string): Promise<Task[]> {
    const key = parseJobId(jobId);
    if (key === undefined) return [];
    const rows = await this.#db.selectFrom('tasks').selectAll().where('job_id', '=', key).orderBy('rank', 'asc').execute();
    return rows.map(taskFromRow);
  }

  async listActiveTasks(): Promise<Task[]> {
    const rows = await this.#db
      .selectFrom('tasks')
      .innerJoin('jobs', 'jobs.id', 'tasks.job_id')
      .selectAll('tasks')
      .where('jobs.status', '=', 'running')
      .orderBy('tasks.job_id', 'asc')
      .orderBy('tasks.rank', 'asc')
      .execute();
    return rows.map(taskFromRow);
  }

  /**
   * Only the fields present in an update are written (`exitCode: null` writes NULL). Updates naming a rank that
   * does not exist change nothing.
   */
  async updateTasks(updates: readonly TaskUpdate[]): Promise<void> {
    const writes = updates.flatMap((u) => {
      const key = parseJobId(u.jobId);
      const set: Partial<Insertable<TasksTable>> = {};
      if (u.status !== undefined) set.status = u.status;
      if (u.backend !== undefined) {
        set.backend = u.backend.kind;
        set.backend_ref_json = JSON.stringify(u.backend.ref);
      }
      if (u.exitCode !== undefined) set.exit_code = u.exitCode;
      if (u.startedAt !== undefined) set.started_at = u.startedAt;
      if (u.finishedAt !== undefined) set.finished_at = u.finishedAt;
      return key === undefined || Object.keys(set).length === 0 ? [] : [{ key, rank: u.rank, set }];
    });
    if (writes.length === 0) return;
    await this.#write(async (trx) => {
      for (const w of writes) {
        await trx.updateTable('tasks').set(w.set).where('job_id', '=', w.key).where('rank', '=', w.rank).execute();
      }
    });
  }

  async relocateRanks(jobId: string, ranks: ReadonlyArray<{ rank: number; node: string }>, now: number): Promise<Task[] | undefined> {
    const key = parseJobId(jobId);
    if (key === undefined) return undefined;
    return this.#write(async (trx) => {
      const job = await this.#lockJob(trx, key);
      if (job?.status !== 'running') return undefined;
      await this.#lockAllocations(trx);
      const tasks = (await trx.selectFrom('tasks').selectAll().where('job_id', '=', key).orderBy('rank', 'asc').execute()).map(taskFromRow);
      const wanted = new Map(ranks.map((r) => [r.rank, r.node]));
      const moving = tasks.filter((t) => wanted.has(t.rank) && wanted.get(t.rank) !== t.node);
      if (moving.length === 0) return tasks;
      // Ranks of one placed node that went to one new node move together, their GPUs renamed through one map.
      const moves = new Map<string, { from: string; to: string; gpus: number[] }>();
      for (const task of moving) {
        const to = wanted.get(task.rank) as string;
        const move = moves.get(`${task.node}\u0000${to}`) ?? { from: task.node, to, gpus: [] };
        for (const gpu of task.gpus) if (!move.gpus.includes(gpu)) move.gpus.push(gpu);
        moves.set(`${task.node}\u0000${to}`, move);
      }
      const oldRows = await trx.selectFrom('gpu_allocations').selectAll().where('job_id', '=', key).execute();
      const targets = [...new Set([...moves.values()].map((m) => m.to))];
      const nodeRows = await trx.selectFrom('nodes').selectAll().where('name', 'in', targets).execute();
      const inventory = new Map(nodeRows.map((r) => [r.name, JSON.parse(r.info_json) as NodeInfo]));
      const heldByOthers = await trx.selectFrom('gpu_allocations').select(['node', 'gpu_index']).where('node', 'in', targets).where('job_id', '!=', key).execute();
      const taken = new Set(heldByOthers.map((r) => `${r.node}/${r.gpu_index}`));
      // Indices on each target node that are the job's already: those of its ranks that stay there, then those chosen here.
      const movingRanks = new Set(moving.map((t) => t.rank));
      const ownOn = new Map<string, Set<number>>();
      for (const task of tasks) {
        if (movingRanks.has(task.rank)) continue;
        for (const gpu of task.gpus) ownOn.set(task.node, (ownOn.get(task.node) ?? new Set()).add(gpu));
      }
      const renamed = new Map<string, Map<number, number>>();
      for (const move of moves.values()) {
        const own = ownOn.get(move.to) ?? new Set<number>();
        const indices = (inventory.get(move.to)?.gpus.map((g) => g.index) ?? []).filter((i) => !own.has(i));
        // Free ones first; should tutti's view of the node be behind the cluster's (it placed the job elsewhere for a
        // reason), any other index of the node before the same index again.
        const candidates = [...indices.filter((i) => !taken.has(`${move.to}/${i}`)), ...indices.filter((i) => taken.has(`${move.to}/${i}`))];
        const map = new Map<number, number>();
        [...move.gpus].sort((a, b) => a - b).forEach((gpu, i) => map.set(gpu, candidates[i] ?? gpu));
        for (const index of map.values()) own.add(index);
        ownOn.set(move.to, own);
        renamed.set(`${move.from}\u0000${move.to}`, map);
      }
      for (const task of moving) {
        const to = wanted.get(task.rank) as string;
        const map = renamed.get(`${task.node}\u0000${to}`);
        const gpus = task.gpus.map((g) => map?.get(g) ?? g);
        await trx.updateTable('tasks').set({ node: to, gpus_json: JSON.stringify(gpus) }).where('job_id', '=', key).where('rank', '=', task.rank).execute();
      }
      // The job's allocations from its tasks as they now are, each GPU once, its share (if any) kept.
      const after = (await trx.selectFrom('tasks').selectAll().where('job_id', '=', key).orderBy('rank', 'asc').execute()).map(taskFromRow);
      const share = oldRows[0];
      const allocations = new Map<string, { node: string; gpu_index: number; job_id: number; fraction: number | null; memory_mib: number | null }>();
      for (const task of after) {
        for (const gpu of task.gpus) {
          allocations.set(`${task.node}/${gpu}`, { node: task.node, gpu_index: gpu, job_id: key, fraction: share?.fraction ?? null, memory_mib: share?.memory_mib ?? null });
        }
      }
      await trx.deleteFrom('gpu_allocations').where('job_id', '=', key).execute();
      for (const chunk of chunked([...allocations.values()], INSERT_CHUNK)) await trx.insertInto('gpu_allocations').values(chunk).execute();
      const said = [...moves.values()].map((m) => `${m.from} → ${m.to}`).join(', ');
      await bumpSnapshotVersion(trx);
      await insertEvent(trx, this.#dialect, key, 'relocated', `the cluster chose the nodes: ${said}`, now, { moves: [...moves.values()].map((m) => ({ from: m.from, to: m.to })) });
      return after;
    });
  }

  // ---- leases ---------------------------------------------------------------------------------------------------

  async acquireLease(name: string, holder: string, now: number, ttlMs: number): Promise<Lease> {
    return this.#db.transaction().execute(async (trx) => {
      // Before anything else: waits for the fenced writes under way to commit (see StoreDialect.lockLease).
      await this.#dialect.lockLease(trx, name, 'exclusive');
      // A row to lock first (a lease never taken has none): of two replicas creating it at once, one inserts.
      await trx.insertInto('leases').values({ name, holder, epoch: 0, expires_at: 0 }).onConflict((oc) => oc.column('name').doNothing()).execute();
      const row = await trx.selectFrom('leases').selectAll().where('name', '=', name).$if(this.#dialect.rowLocks, (q) => q.forUpdate()).executeTakeFirstOrThrow();
      const current = leaseFromRow(row);
      const ours = current.holder === holder && current.epoch > 0;
      if (!ours && current.expiresAt > now) return current;
      const granted: Lease = { name, holder, epoch: ours && current.expiresAt > now ? current.epoch : current.epoch + 1, expiresAt: now + ttlMs };
      await trx.updateTable('leases').set({ holder, epoch: granted.epoch, expires_at: granted.expiresAt }).where('name', '=', name).execute();
      return granted;
    });
  }

  async releaseLease(name: string, holder: string, epoch: number, now: number): Promise<boolean> {
    const released = await this.#db
      .updateTable('leases')
      .set({ expires_at: now })
      .where('name', '=', name)
      .where('holder', '=', holder)
      .where('epoch', '=', epoch)
      .where('expires_at', '>', now)
      .executeTakeFirst();
    return Number(released.numUpdatedRows) > 0;
  }

  // ---- nodes and the snapshot -------------------------------------------------------------------------------

  async replaceNodes(nodes: NodeInfo[], _now: number): Promise<void> {
    await this.#write(async (trx) => {
      await trx.deleteFrom('nodes').execute();
      const rows = nodes.map((n) => ({ name: n.name, info_json: JSON.stringify(n) }));
      for (const chunk of chunked(rows, INSERT_CHUNK)) await trx.insertInto('nodes').values(chunk).execute();
      await bumpSnapshotVersion(trx);
    });
  }

  /**
   * The nodes of a snapshot, parsed from their rows. A node whose stored JSON is the same as at the last snapshot is
   * the same (frozen) object: the scheduler's cycle cache reuses its indexed form of a node while its `NodeInfo` is the
   * same object, so parsing every node anew each cycle would index every node anew each cycle.
   */
  #nodesOf(rows: readonly { info_json: string }[]): NodeInfo[] {
    const last = this.#parsedNodes;
    const next = new Map<string, NodeInfo>();
    const nodes = rows.map((r) => {
      let info = last.get(r.info_json) ?? next.get(r.info_json);
      if (!info) info = deepFreeze(JSON.parse(r.info_json) as NodeInfo);
      next.set(r.info_json, info);
      return info;
    });
    this.#parsedNodes = next;
    return nodes;
  }

  /**
   * Read in one transaction, so the version, nodes and allocations agree. Nodes by name; allocations by node, GPU.
   * Repeatable read: at PostgreSQL's default (read committed) each statement would see the commits made since the
   * one before, e.g. a placement's allocations without its version bump. SQLite's transactions are that already.
   */
  async snapshot(): Promise<ClusterSnapshot> {
    return this.#db.transaction().setIsolationLevel('repeatable read').execute(async (trx) => {
      const meta = await trx.selectFrom('meta').select('value').where('key', '=', SNAPSHOT_VERSION_KEY).executeTakeFirstOrThrow();
      const nodeRows = await trx.selectFrom('nodes').select('info_json').orderBy('name', 'asc').execute();
      const allocationRows = await trx
        .selectFrom('gpu_allocations')
        .selectAll()
        .orderBy('node', 'asc')
        .orderBy('gpu_index', 'asc')
        .execute();
      return {
        version: Number(meta.value),
        nodes: this.#nodesOf(nodeRows),
        allocations: allocationRows.map((r): GpuAllocation => ({
          jobId: String(r.job_id),
          node: r.node,
          gpuIndex: r.gpu_index,
          ...(r.fraction !== null ? { fraction: r.fraction } : {}),
          ...(r.memory_mib !== null ? { memoryMiB: r.memory_mib } : {}),
        })),
      };
    });
  }

  // ---- placing and ending jobs ------------------------------------------------------------------------------

  async applyPlacements(placements: readonly PlacementWithTasks[], now: number): Promise<ApplyOutcome[]> {
    const keys = placements.map((p) => parseJobId(p.placement.jobId));
    const known = [...new Set(keys.filter((key) => key !== undefined))].sort((a, b) => a - b);
    if (known.length === 0) return placements.map((p) => ({ jobId: p.placement.jobId, applied: false, reason: 'job_not_pending' }));
    // One transaction for the whole plan, a savepoint per placement: one job that lost its GPUs does not hold back the
    // others, and the plan pays one commit (a round trip and a WAL flush on PostgreSQL), not one per job.
    return this.#write(async (trx) => {
      // Every job's row first, in id order, then the allocations' lock: the order every other transaction takes them in.
      const statuses = new Map<number, string>();
      for (const chunk of chunked(known, INSERT_CHUNK)) {
        const rows = await trx.selectFrom('jobs').select(['id', 'status']).where('id', 'in', chunk).orderBy('id').$if(this.#dialect.rowLocks, (q) => q.forUpdate()).execute();
        for (const row of rows) statuses.set(Number(row.id), row.status);
      }
      await this.#lockAllocations(trx);
      const outcomes: ApplyOutcome[] = [];
      for (const [i, p] of placements.entries()) {
        const key = keys[i];
        const jobId = p.placement.jobId;
        if (key === undefined || statuses.get(key) !== 'pending') {
          outcomes.push({ jobId, applied: false, reason: 'job_not_pending' });
          continue;
        }
        await sql`savepoint placement`.execute(trx);
        let outcome: ApplyOutcome;
        try {
          outcome = await this.#applyPlacement(trx, p, key, now);
        } catch (error) {
          await sql`rollback to savepoint placement`.execute(trx);
          if (!(error instanceof GpuTakenSignal)) throw error;
          outcome = { jobId, applied: false, reason: 'gpu_taken' };
        }
        await sql`release savepoint placement`.execute(trx);
        if (outcome.applied) statuses.set(key, 'running');
        outcomes.push(outcome);
      }
      return outcomes;
    });
  }

  /** One placement, inside applyPlacements' transaction (its job's row and the allocations locked, the job pending). */
  async #applyPlacement(trx: Transaction<StoreDatabase>, { placement, tasks }: PlacementWithTasks, key: number, now: number): Promise<ApplyOutcome> {
    const jobId = placement.jobId;
    const wanted = placement.nodes.flatMap((n) =>
      n.gpuIndices.map((gpuIndex) => ({ node: n.node, gpu_index: gpuIndex, job_id: key, fraction: n.gpuFraction ?? null, memory_mib: n.gpuFraction !== undefined ? (n.gpuMemoryMiB ?? null) : null })),
    );
    const names = [...new Set(placement.nodes.map((n) => n.node))];
    const nodeRows = names.length === 0 ? [] : await trx.selectFrom('nodes').selectAll().where('name', 'in', names).execute();
    const inventory = new Map(nodeRows.map((r) => [r.name, JSON.parse(r.info_json) as NodeInfo]));
    for (const placed of placement.nodes) {
      const info = inventory.get(placed.node);
      const indices = new Set(info?.gpus.map((g) => g.index));
      if (!info || placed.gpuIndices.some((i) => !indices.has(i))) return { jobId, applied: false, reason: 'unknown_node' };
    }

    if (wanted.length > 0) {
      const held = await trx
        .selectFrom('gpu_allocations')
        .select(['node', 'gpu_index', 'fraction', 'memory_mib'])
        .where((eb) =>
          eb.or(
            placement.nodes
              .filter((n) => n.gpuIndices.length > 0)
              .map((n) => eb.and([eb('node', '=', n.node), eb('gpu_index', 'in', n.gpuIndices)])),
          ),
        )
        .execute();
      if (!fitsBesides(wanted, held, inventory)) return { jobId, applied: false, reason: 'gpu_taken' };
      if (new Set(wanted.map((w) => `${w.node}/${w.gpu_index}`)).size !== wanted.length) return { jobId, applied: false, reason: 'gpu_taken' };
      try {
        // Placements are serialized (one SQLite writer; #lockAllocations on PostgreSQL), so the check above
        // holds until commit; the primary key (node, gpu_index, job_id) still refuses a job naming a GPU twice.
        for (const chunk of chunked(wanted, INSERT_CHUNK)) await trx.insertInto('gpu_allocations').values(chunk).execute();
      } catch (error) {
        if (this.#dialect.isUniqueViolation(error)) throw new GpuTakenSignal();
        throw error;
      }
    }

    await trx
      .updateTable('jobs')
      .set((eb) => ({ status: 'running', started_at: now, pending_reason_json: null, not_before: null, attempt: eb('attempt', '+', 1) }))
      .where('id', '=', key)
      .execute();
    const taskRows = tasks.map((t) => ({
      job_id: key,
      rank: t.rank,
      local_rank: t.localRank,
      node_rank: t.nodeRank,
      node: t.node,
      gpus_json: JSON.stringify(t.gpus),
      status: 'starting',
      backend: t.backend?.kind ?? null,
      backend_ref_json: t.backend === undefined ? null : JSON.stringify(t.backend.ref),
      exit_code: t.exitCode ?? null,
      started_at: t.startedAt ?? null,
      finished_at: t.finishedAt ?? null,
    }));
    for (const chunk of chunked(taskRows, INSERT_CHUNK)) await trx.insertInto('tasks').values(chunk).execute();
    const where = placement.nodes.map((n) => (n.gpuIndices.length > 0 ? `${n.node} (GPUs ${n.gpuIndices.join(',')})` : n.node));
    await bumpSnapshotVersion(trx);
    await insertEvent(trx, this.#dialect, key, 'scheduled', `scheduled on ${where.join(', ')}`, now, { nodes: placement.nodes });
    return { jobId, applied: true };
  }

  /**
   * Also ends a pending job (e.g. one that can never fit). Tasks are kept as the record of the run; their rows
   * are updated by the reconciler through updateTasks. Returns false for an unknown job too.
   */
  async finishJob(jobId: string, end: JobEnd, now: number): Promise<boolean> {
    const key = parseJobId(jobId);
    if (key === undefined) return false;
    return this.#write(async (trx) => {
      const job = await this.#lockJob(trx, key);
      if (!job || isTerminalJobStatus(job.status as JobStatus)) return false;
      if (job.status === 'running') await archiveAttempt(trx, key, now, end.exitCode, end.endReason);
      await trx
        .updateTable('jobs')
        .set({ status: end.status, exit_code: end.exitCode, end_reason: end.endReason, finished_at: now, pending_reason_json: null })
        .where('id', '=', key)
        .execute();
      const released = await trx.deleteFrom('gpu_allocations').where('job_id', '=', key).executeTakeFirst();
      if (Number(released.numDeletedRows) > 0) await bumpSnapshotVersion(trx);
      await insertEvent(trx, this.#dialect, key, end.status, end.endReason, now, { exitCode: end.exitCode });
      return true;
    });
  }

  /** Asking twice for a running job keeps the first cancelRequestedAt and appends one `cancel_requested` event. */
  async requestCancel(jobId: string, now: number): Promise<CancelOutcome> {
    const key = parseJobId(jobId);
    if (key === undefined) return 'not_found';
    return this.#write(async (trx): Promise<CancelOutcome> => {
      const job = await this.#lockJob(trx, key);
      if (!job) return 'not_found';
      const status = job.status as JobStatus;
      if (isTerminalJobStatus(status)) return 'already_finished';
      if (status === 'pending') {
        await trx
          .updateTable('jobs')
          .set({ status: 'cancelled', exit_code: null, end_reason: 'cancelled', finished_at: now, pending_reason_json: null })
          .where('id', '=', key)
          .execute();
        await insertEvent(trx, this.#dialect, key, 'cancelled', 'cancelled before it started', now);
        return 'cancelled';
      }
      if (job.cancel_requested_at === null) {
        await trx.updateTable('jobs').set({ cancel_requested_at: now }).where('id', '=', key).execute();
        await insertEvent(trx, this.#dialect, key, 'cancel_requested', 'cancel requested; stopping every rank', now);
      }
      return 'stopping';
    });
  }

  /**
   * Only a running job is requeued (false otherwise). startedAt and cancelRequestedAt are cleared with the run
   * they belonged to: the server should finish a job whose cancel was requested instead of requeueing it.
   */
  async requeueJob(jobId: string, reason: string, now: number, options: RequeueOptions = {}): Promise<boolean> {
    const key = parseJobId(jobId);
    if (key === undefined) return false;
    return this.#write(async (trx) => {
      const job = await this.#lockJob(trx, key);
      if (job?.status !== 'running') return false;
      await archiveAttempt(trx, key, now, options.attemptEnd?.exitCode ?? null, options.attemptEnd?.reason ?? reason);
      await trx.deleteFrom('tasks').where('job_id', '=', key).execute();
      await trx.deleteFrom('gpu_allocations').where('job_id', '=', key).execute();
      await trx
        .updateTable('jobs')
        .set((eb) => ({
          status: 'pending',
          started_at: null,
          cancel_requested_at: null,
          exit_code: null,
          not_before: options.notBefore ?? null,
          restarts: options.countRestart ? eb('restarts', '+', 1) : eb.ref('restarts'),
        }))
        .where('id', '=', key)
        .execute();
      const event = options.event ?? 'requeued';
      await bumpSnapshotVersion(trx);
      await insertEvent(trx, this.#dialect, key, event, reason, now, { reason, ...(options.notBefore !== undefined ? { not_before: options.notBefore } : {}) });
      return true;
    });
  }

  async listAttempts(jobId: string): Promise<AttemptRecord[]> {
    const key = parseJobId(jobId);
    if (key === undefined) return [];
    const rows = await this.#db.selectFrom('job_attempts').selectAll().where('job_id', '=', key).orderBy('attempt', 'asc').execute();
    return rows.map(attemptFromRow);
  }

  async listGpuUseEndedSince(since: number): Promise<GpuUse[]> {
    const rows = await this.#db
      .selectFrom('job_attempts')
      .innerJoin('jobs', 'jobs.id', 'job_attempts.job_id')
      .select(['job_attempts.job_id', 'job_attempts.started_at', 'job_attempts.finished_at', 'jobs.spec_json', 'jobs.status'])
      .where('job_attempts.finished_at', '>=', since)
      .where('job_attempts.started_at', 'is not', null)
      .orderBy('job_attempts.finished_at', 'asc')
      .execute();
    return rows.map((row) => {
      const spec = JSON.parse(row.spec_json) as JobSpec;
      return { jobId: String(row.job_id), jobStatus: row.status as JobStatus, team: spec.team, gpus: computeGpusHeld(spec), startedAt: Number(row.started_at), finishedAt: Number(row.finished_at) };
    });
  }

  async appendProgress(records: readonly NewProgressRecord[]): Promise<void> {
    const rows = records.flatMap((r) => {
      const key = parseJobId(r.jobId);
      return key === undefined ? [] : [{ key, record: r }];
    });
    if (rows.length === 0) return;
    await this.#write(async (trx) => {
      const keys = [...new Set(rows.map((r) => r.key))];
      // KEY SHARE, in id order: the progress rows' foreign keys lock these rows anyway, but only after the append
      // order's lock, and nothing may wait for a row lock after that (see #write).
      const known = new Set(
        (await trx.selectFrom('jobs').select('id').where('id', 'in', keys).orderBy('id').$if(this.#dialect.rowLocks, (q) => q.forKeyShare()).execute()).map((r) => Number(r.id)),
      );
      const values = rows
        .filter((r) => known.has(r.key))
        .map(({ key, record }) => ({
          job_id: key,
          attempt: record.attempt,
          rank: record.rank,
          at: record.at,
          step: record.step ?? null,
          values_json: JSON.stringify(record.values),
        }));
      const lastCheckpoint = new Map<number, string>();
      for (const { key, record } of rows) if (known.has(key) && record.checkpoint !== undefined) lastCheckpoint.set(key, record.checkpoint);
      for (const [key, checkpoint] of lastCheckpoint) await trx.updateTable('jobs').set({ last_checkpoint: checkpoint }).where('id', '=', key).execute();
      // Last: the append order's lock is held until commit, and nothing may wait for a row lock after it.
      if (values.length > 0) await this.#dialect.beforeAppend(trx, 'progress');
      for (const chunk of chunked(values, INSERT_CHUNK)) await trx.insertInto('progress').values(chunk).execute();
    });
  }

  async listProgress(jobId: string, query: ProgressQuery = {}): Promise<ProgressRecord[]> {
    const key = parseJobId(jobId);
    if (key === undefined) return [];
    if (query.last !== undefined) {
      const last = clampLimit(query.last, DEFAULT_EVENT_PAGE, MAX_EVENT_PAGE);
      const rows = await this.#db.selectFrom('progress').selectAll().where('job_id', '=', key).orderBy('seq', 'desc').limit(last).execute();
      return rows.reverse().map(progressFromRow);
    }
    const limit = clampLimit(query.limit, DEFAULT_EVENT_PAGE, MAX_EVENT_PAGE);
    let q = this.#db.selectFrom('progress').selectAll().where('job_id', '=', key);
    if (query.afterSeq !== undefined) q = q.where('seq', '>', query.afterSeq);
    const rows = await q.orderBy('seq', 'asc').limit(limit).execute();
    return rows.map(progressFromRow);
  }

  async appendGpuSamples(samples: readonly JobGpuSample[]): Promise<void> {
    if (samples.length === 0) return;
    await this.#write(async (trx) => {
      const keys = [...new Set(samples.flatMap((s) => (s.jobId === null ? [] : [parseJobId(s.jobId) ?? -1])))].filter((k) => k >= 0);
      const known = keys.length === 0 ? new Set<number>() : new Set((await trx.selectFrom('jobs').select('id').where('id', 'in', keys).execute()).map((r) => Number(r.id)));
      const values = samples.map((sample) => {
        const key = sample.jobId === null ? undefined : parseJobId(sample.jobId);
        return {
          at: sample.at,
          node: sample.node,
          gpu_index: sample.gpuIndex,
          job_id: key !== undefined && known.has(key) ? key : null,
          interval_ms: Math.max(0, Math.round(sample.intervalMs)),
          utilization_pct: sample.utilizationPct,
          memory_used_mib: sample.memoryUsedMiB,
          memory_total_mib: sample.memoryTotalMiB,
          power_w: sample.powerW,
          temperature_c: sample.temperatureC,
        };
      });
      for (const chunk of chunked(values, INSERT_CHUNK)) await trx.insertInto('gpu_samples').values(chunk).execute();
    });
  }

  async listGpuSamples(jobId: string, query: GpuSampleQuery = {}): Promise<JobGpuSample[]> {
    const key = parseJobId(jobId);
    if (key === undefined) return [];
    const limit = clampLimit(query.limit, DEFAULT_GPU_SAMPLE_PAGE, MAX_GPU_SAMPLE_PAGE);
    let q = this.#db.selectFrom('gpu_samples').selectAll().where('job_id', '=', key);
    if (query.since !== undefined) q = q.where('at', '>=', query.since);
    const rows = await q.orderBy('at', 'desc').orderBy('node', 'desc').orderBy('gpu_index', 'desc').limit(limit).execute();
    return rows.reverse().map((row) => ({
      jobId,
      at: Number(row.at),
      node: row.node,
      gpuIndex: Number(row.gpu_index),
      intervalMs: Number(row.interval_ms),
      utilizationPct: row.utilization_pct,
      memoryUsedMiB: row.memory_used_mib,
      memoryTotalMiB: row.memory_total_mib,
      powerW: row.power_w,
      temperatureC: row.temperature_c,
    }));
  }

  async jobEnergyWh(jobId: string): Promise<number | null> {
    const key = parseJobId(jobId);
    if (key === undefined) return null;
    const row = await this.#db
      .selectFrom('gpu_samples')
      .select((eb) => [eb.fn.sum<number | null>(sql<number>`power_w * interval_ms`).as('joule_ms'), eb.fn.count<number>('power_w').as('with_power')])
      .where('job_id', '=', key)
      .executeTakeFirst();
    if (!row || Number(row.with_power) === 0) return null;
    return Number(row.joule_ms ?? 0) / 3_600_000;
  }

  async pruneGpuSamples(before: number): Promise<number> {
    const result = await this.#write((trx) => trx.deleteFrom('gpu_samples').where('at', '<', before).executeTakeFirst());
    return Number(result.numDeletedRows);
  }

  /** Writes only reasons that differ from the stored one, and only for jobs still pending. */
  async setPendingReasons(reasons: ReadonlyMap<string, Diagnosis>): Promise<void> {
    const writes = [...reasons].flatMap(([id, diagnosis]) => {
      const key = parseJobId(id);
      return key === undefined ? [] : [{ key, json: JSON.stringify(diagnosis) }];
    });
    if (writes.length === 0) return;
    await this.#write(async (trx) => {
      for (const w of writes) {
        await trx
          .updateTable('jobs')
          .set({ pending_reason_json: w.json })
          .where('id', '=', w.key)
          .where('status', '=', 'pending')
          .where((eb) => eb.or([eb('pending_reason_json', 'is', null), eb('pending_reason_json', '<>', w.json)]))
          .execute();
      }
    });
  }

  /**
   * Reads the job's status at the start of a transaction that may change it, locking its row where the dialect
   * has row locks (concurrent transactions on the same job then run one after the other).
   */
  #lockJob(trx: Transaction<StoreDatabase>, key: number) {
    return trx
      .selectFrom('jobs')
      .select(['status', 'cancel_requested_at'])
      .where('id', '=', key)
      .$if(this.#dialect.rowLocks, (q) => q.forUpdate())
      .executeTakeFirst();
  }

  /**
   * Makes transactions that read allocations and then add some (placing, relocating) run one after the other, as
   * SQLite's single writer does anyway. Row locks on jobs are not enough: two jobs placed at once on one GPU would
   * each see it free and both take it (shares have no unique index to stop them; a whole GPU beside shares neither).
   * The lock is the snapshot version's row, which these transactions bump before they commit in any case, so it
   * serializes nothing more than already waited for it. Always taken after the job's row, never before: the same
   * order as every other transaction that locks both, so no two deadlock.
   */
  async #lockAllocations(trx: Transaction<StoreDatabase>): Promise<void> {
    if (!this.#dialect.rowLocks) return;
    await trx.selectFrom('meta').select('value').where('key', '=', SNAPSHOT_VERSION_KEY).forUpdate().execute();
  }

  // ---- events -----------------------------------------------------------------------------------------------

  /** Rejects for a job that does not exist (a bug in the caller). */
  async appendEvent(jobId: string, type: JobEventType, message: string, now: number, data?: Record<string, unknown>): Promise<JobEvent> {
    const key = parseJobId(jobId);
    if (key === undefined) throw new Error(`appendEvent: no job ${JSON.stringify(jobId)}`);
    return this.#write(async (trx) => {
      // The event's foreign key locks the job's row (KEY SHARE) at insert, which must not wait behind a transaction
      // that holds the row and waits for the event order (a placement, a finish): take it first (see #write).
      await trx.selectFrom('jobs').select('id').where('id', '=', key).$if(this.#dialect.rowLocks, (q) => q.forKeyShare()).execute();
      return insertEvent(trx, this.#dialect, key, type, message, now, data);
    });
  }

  /** At most 10,000 events per call. An unknown job id gives no events. */
  async listEvents(query: EventQuery): Promise<JobEvent[]> {
    const limit = clampLimit(query.limit, DEFAULT_EVENT_PAGE, MAX_EVENT_PAGE);
    let q = this.#db.selectFrom('events').selectAll();
    if (query.jobId !== undefined) {
      const key = parseJobId(query.jobId);
      if (key === undefined) return [];
      q = q.where('job_id', '=', key);
    }
    if (query.afterSeq !== undefined) q = q.where('seq', '>', query.afterSeq);
    const rows = await q.orderBy('seq', 'asc').limit(limit).execute();
    return rows.map(eventFromRow);
  }

  /** Read backwards along the (job_id, seq) index. */
  async lastEventOfType(jobId: string, type: JobEventType): Promise<JobEvent | undefined> {
    const key = parseJobId(jobId);
    if (key === undefined) return undefined;
    const row = await this.#db.selectFrom('events').selectAll().where('job_id', '=', key).where('type', '=', type).orderBy('seq', 'desc').limit(1).executeTakeFirst();
    return row === undefined ? undefined : eventFromRow(row);
  }
}

/** The last thing before its transaction commits (see StoreDialect.beforeAppend): nothing may wait for a lock after it. */
async function insertEvent(
  trx: Transaction<StoreDatabase>,
  dialect: StoreDialect,
  jobId: number,
  type: JobEventType,
  message: string,
  at: number,
  data?: Record<string, unknown>,
): Promise<JobEvent> {
  const dataJson = data === undefined ? null : JSON.stringify(data);
  await dialect.beforeAppend(trx, 'events');
  const row = await trx
    .insertInto('events')
    .values({ job_id: jobId, at, type, message, data_json: dataJson })
    .returning('seq')
    .executeTakeFirstOrThrow();
  const event: JobEvent = { seq: Number(row.seq), jobId: String(jobId), at, type, message };
  if (dataJson !== null) event.data = JSON.parse(dataJson) as Record<string, unknown>;
  return event;
}

/**
 * Copies the latest attempt of a running job (its tasks as they are now, its start) into `job_attempts`.
 * Idempotent per (job, attempt): an attempt is recorded once.
 */
async function archiveAttempt(trx: Transaction<StoreDatabase>, key: number, now: number, exitCode: number | null, reason: string): Promise<void> {
  const job = await trx.selectFrom('jobs').select(['attempt', 'started_at']).where('id', '=', key).executeTakeFirst();
  if (!job || Number(job.attempt) <= 0) return;
  const done = await trx.selectFrom('job_attempts').select('attempt').where('job_id', '=', key).where('attempt', '=', job.attempt).executeTakeFirst();
  if (done) return;
  const tasks = (await trx.selectFrom('tasks').selectAll().where('job_id', '=', key).orderBy('rank', 'asc').execute()).map(taskFromRow);
  await trx
    .insertInto('job_attempts')
    .values({ job_id: key, attempt: Number(job.attempt), started_at: job.started_at, finished_at: now, exit_code: exitCode, reason, tasks_json: JSON.stringify(tasks) })
    .execute();
}

/** Atomic in both dialects: the UPDATE locks the row (PostgreSQL) or the database (SQLite). */
async function bumpSnapshotVersion(trx: Transaction<StoreDatabase>): Promise<void> {
  await trx
    .updateTable('meta')
    .set((eb) => ({ value: eb('value', '+', 1) }))
    .where('key', '=', SNAPSHOT_VERSION_KEY)
    .execute();
}

/** A page's last row as the cursor of the next page: its id, or `column:value:id` for another sort order. */
function encodeJobCursor(by: JobSortKey, row: JobSummaryRow): string {
  return by === 'id' ? String(row.id) : `${by}:${String(row[by])}:${row.id}`;
}

function decodeJobCursor(cursor: string, by: JobSortKey): { id: number; value: string | number } | undefined {
  if (by === 'id') {
    const id = parseJobId(cursor);
    return id === undefined ? undefined : { id, value: id };
  }
  const match = /^([a-z]+):(.*):([0-9]+)$/.exec(cursor);
  if (!match || match[1] !== by) return undefined;
  const id = parseJobId(match[3]!);
  if (id === undefined) return undefined;
  if (by === 'priority') {
    const priority = Number(match[2]);
    return /^-?[0-9]+$/.test(match[2]!) && Number.isSafeInteger(priority) ? { id, value: priority } : undefined;
  }
  return { id, value: match[2]! };
}

/** Every column of `jobs` but `spec_json`: what a job summary is read from. */
const JOB_SUMMARY_COLUMNS = [
  'id',
  'name',
  'team',
  'priority',
  'status',
  'submitted_by',
  'created_at',
  'started_at',
  'finished_at',
  'exit_code',
  'end_reason',
  'pending_reason_json',
  'cancel_requested_at',
  'attempt',
  'restarts',
  'not_before',
  'last_checkpoint',
  'resources_json',
  'num_nodes',
  'max_restarts',
] as const satisfies ReadonlyArray<keyof JobSummaryRow>;

/** A page of `limit` items from `rows` (limit + 1 were asked for: one more means another page follows). */
function toPage<T, R>(items: T[], rows: readonly R[], limit: number, cursorOf: (row: R) => string): { jobs: T[]; nextCursor?: string } {
  const lastRow = rows[limit - 1];
  return rows.length > limit && lastRow ? { jobs: items, nextCursor: cursorOf(lastRow) } : { jobs: items };
}

function decodeRunHistoryCursor(cursor: string): { createdAt: number; id: number } | undefined {
  const match = /^(-?[0-9]{1,16}):([0-9]+)$/.exec(cursor);
  const id = match ? parseJobId(match[2]!) : undefined;
  return match && id !== undefined ? { createdAt: Number(match[1]), id } : undefined;
}

function clampLimit(limit: number | undefined, fallback: number, max: number): number {
  if (limit === undefined || !Number.isFinite(limit)) return fallback;
  return Math.min(max, Math.max(1, Math.floor(limit)));
}

function chunked<T>(items: readonly T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size));
  return chunks;
}

/**
 * Whether the GPUs a placement wants are free enough, given the allocations already on them: model's one sharing rule
 * (`gpuClaimConflict`). A GPU missing from the inventory has no memory limit here (the scheduler placed on it).
 */
function fitsBesides(
  wanted: ReadonlyArray<{ node: string; gpu_index: number; fraction: number | null; memory_mib: number | null }>,
  held: ReadonlyArray<{ node: string; gpu_index: number; fraction: number | null; memory_mib: number | null }>,
  inventory: ReadonlyMap<string, NodeInfo>,
): boolean {
  for (const want of wanted) {
    const here = held.filter((h) => h.node === want.node && h.gpu_index === want.gpu_index);
    if (here.length === 0) continue;
    const use: GpuShareUse = { heldWhole: false, share: 0, memoryMiB: 0 };
    for (const h of here) {
      if (h.fraction === null) use.heldWhole = true;
      else {
        use.share += h.fraction;
        use.memoryMiB += h.memory_mib ?? 0;
      }
    }
    const gpuMemoryMiB = inventory.get(want.node)?.gpus.find((g) => g.index === want.gpu_index)?.memoryMiB || Infinity;
    if (gpuClaimConflict(use, { share: want.fraction ?? undefined, memoryMiB: want.memory_mib ?? 0 }, gpuMemoryMiB) !== undefined) return false;
  }
  return true;
}

/** Freezes a parsed JSON value and everything in it (shared between snapshots, so never to be edited). */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

function leaseFromRow(row: { name: string; holder: string; epoch: number; expires_at: number }): Lease {
  return { name: row.name, holder: row.holder, epoch: Number(row.epoch), expiresAt: Number(row.expires_at) };
}

function storeClosedError(): Error {
  return new Error('the state store is closed');
}

/** A fence a caller built by hand may be wrong: say which field, rather than fencing on nonsense. */
function assertWellFormedFence(fence: Fence): void {
  if (typeof fence?.lease !== 'string' || fence.lease === '') throw new TypeError(`withFence: fence.lease must be the lease's name, got ${JSON.stringify(fence?.lease)}`);
  if (typeof fence.holder !== 'string' || fence.holder === '') throw new TypeError(`withFence: fence.holder must be the holder's id, got ${JSON.stringify(fence.holder)}`);
  if (!Number.isSafeInteger(fence.epoch) || fence.epoch < 1) {
    throw new TypeError(`withFence: fence.epoch must be the epoch acquireLease granted (an integer from 1), got ${JSON.stringify(fence.epoch)}`);
  }
}
