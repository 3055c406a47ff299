import type { JobGpuSample, AttemptRecord, JobEnd, RequeueOptions, ClusterSnapshot, Diagnosis, Job, JobEvent, JobEventType, JobSpec, JobStatus, JobSummary, NodeInfo, Placement, ProgressRecord, Task, TaskBackendRecord, TaskStatus } from '@tutti/model';

/**
 * The durable state of the control plane. Every method that changes state is one transaction, durable
 * (fsynced) when its promise resolves, so the API may acknowledge right after. Implementations: SQLite (default,
 * embedded) and PostgreSQL (several replicas may share one: see `withFence`, `watchChanges`) — both must pass
 * `test/state-store-contract.ts`.
 *
 * Expected outcomes (a job that is not pending any more, a GPU taken meanwhile) are returned as values; a rejected
 * promise means a bug or a broken database.
 */
export interface StateStore {
  /** Applies pending migrations in order; safe to call on every start. */
  migrate(): Promise<void>;
  close(): Promise<void>;
  /**
   * Takes or renews the lease `name` for `holder` until `now + ttlMs`. Granted when nobody holds it, when its holder's
   * time ran out (`expiresAt <= now`), or to its holder again (a renewal keeps the epoch; a change of hands adds one
   * to it). Answers the lease as it stands afterwards, whoever holds it: the caller leads while `holder` and `epoch`
   * are its own and `now` is before `expiresAt`. One transaction: of replicas asking at once, one gets it. Times are
   * the callers' clocks, which must agree to well within `ttlMs`.
   */
  acquireLease(name: string, holder: string, now: number, ttlMs: number): Promise<Lease>;
  /** Gives the lease up at once, if `holder` still holds it at `epoch`; answers whether it did. */
  releaseLease(name: string, holder: string, epoch: number, now: number): Promise<boolean>;

  /**
   * A view of this same store (same connections, same group-commit queue; closing either closes both) whose writes
   * are fenced by a lease: every state-changing method except `createJob`, `acquireLease` and `releaseLease` first
   * checks, inside its own transaction, that lease `fence.lease` still has holder `fence.holder` at epoch
   * `fence.epoch`, and otherwise rolls back and rejects with `FencedError`, having changed nothing. Expiry is not
   * checked: fencing is by epoch, so a leader whose lease lapsed still writes until another replica takes it. On
   * PostgreSQL the check locks the lease row (`FOR SHARE`) until the write commits, so a takeover either commits
   * first (the write is refused) or waits for the write: no write of epoch e commits after epoch e + 1 was granted.
   * Reads are not fenced. What the leader's control core and backends write through.
   */
  withFence(fence: Fence): StateStore;
  /**
   * Of a fenced view (`withFence`): a transaction that only checks the fence, rejecting with `FencedError` when the
   * lease changed hands. The server calls it right before launching ranks, which no database write covers. Of the
   * unfenced store: resolves at once.
   */
  checkFence(): Promise<void>;
  /**
   * Calls `onChange` after other processes (or this one) committed changes that carry events, so a follower can
   * refresh instead of polling. PostgreSQL: one dedicated connection LISTENs (every transaction that appends an event
   * notifies on commit); when that connection drops, the watch reconnects with backoff (1 s, 2 s, ... at most 10 s)
   * and calls `onChange` once after reconnecting, since changes may have been missed meanwhile. It never throws.
   * SQLite: no other process shares the database, so the watch is never `live` and never calls `onChange`: callers
   * poll (or need nothing). `close()` of the store closes its watches.
   */
  watchChanges(onChange: () => void): Promise<ChangeWatch>;

  /**
   * Inserts a pending job and its `submitted` event. The id is the next sequence number as a string. Calls made
   * concurrently may share one transaction (group commit); ids still increase in call order, and each promise
   * resolves only once its job is durable.
   */
  createJob(spec: JobSpec, now: number, options?: CreateJobOptions): Promise<Job>;
  /** Undefined for an unknown id, including one that is not a canonical decimal ("01", "abc"). */
  getJob(id: string): Promise<Job | undefined>;
  /**
   * Newest first unless `sort` says otherwise. `cursor` is the opaque `nextCursor` of the previous page; a cursor
   * the store did not produce (or produced for another sort order) rejects with InvalidCursorError. Pages are
   * keyset-paginated: a page's cost does not grow with how deep it is.
   */
  listJobs(query: JobQuery): Promise<JobPage>;
  /**
   * The same pages as `listJobs` (same query, order and cursors), each job as its summary: the spec's name, team,
   * priority, resources, node count and restart limit, without its command and environment. Reads no stored spec,
   * so a page's cost does not grow with the size of the specs.
   */
  listJobSummaries(query: JobQuery): Promise<JobSummaryPage>;
  /**
   * Jobs that ran and ended (succeeded, failed or cancelled, with a start and a finish), as summaries, in
   * submission order: by `createdAt`, the id breaking ties. A page at a time (`cursor`: the previous page's
   * `nextCursor`; one the store did not produce rejects with InvalidCursorError), each an index range however long
   * the history. What the history export streams.
   */
  listRunHistory(query: RunHistoryQuery): Promise<JobSummaryPage>;
  /** All jobs in the given states, oldest (lowest id) first: the scheduler's queue and the reconciler's work. */
  listJobsByStatus(statuses: readonly JobStatus[]): Promise<Job[]>;
  countJobsByStatus(): Promise<Record<JobStatus, number>>;
  /** How many jobs in `status` each team has (teams with none are absent), counted without reading a spec. */
  countJobsByTeam(status: JobStatus): Promise<Map<string, number>>;
  /** The ranks of a job, by rank. */
  getTasks(jobId: string): Promise<Task[]>;
  /** The ranks of every job that is running (for re-adoption and the nodes view). */
  listActiveTasks(): Promise<Task[]>;

  /** Replaces the node inventory (on start). Allocations of nodes that disappeared stay until their jobs end. */
  replaceNodes(nodes: NodeInfo[], now: number): Promise<void>;
  /** Nodes and current GPU allocations; `version` increases whenever either changes. */
  snapshot(): Promise<ClusterSnapshot>;

  /**
   * Starts placed jobs, in one transaction (one commit for a cycle's plan), each placement in order under its own
   * savepoint: re-checks that the job is still pending and every GPU is still free, then marks the job running (startedAt = now, attempt + 1), records allocations and `tasks`
   * (status `starting`) and a `scheduled` event. Placements that fail the re-check are skipped and reported:
   * `job_not_pending` (also for an unknown job), `unknown_node` (a node, or a GPU index on it, that the inventory
   * lacks), `gpu_taken` (a GPU already allocated, or named twice in the placement). The database itself forbids
   * two allocations of one GPU, so a race can only produce `gpu_taken`, never a double booking.
   */
  applyPlacements(placements: readonly PlacementWithTasks[], now: number): Promise<ApplyOutcome[]>;
  /**
   * Updates ranks (the backend's handle once launched, status, exit code). One transaction for the whole batch. Only fields that
   * are present are written (`exitCode: null` writes null); an update of a rank that does not exist does nothing.
   */
  updateTasks(updates: readonly TaskUpdate[]): Promise<void>;
  /**
   * Records that ranks of a running job run on other nodes than they were placed on (a backend that leaves the choice
   * of nodes to its cluster: the Slurm backend's `placement: 'slurm'`). In one transaction: each moved rank's node,
   * and its GPUs renamed to as many GPUs of its new node (those no other job holds first, lowest index first; tutti's
   * indices there are bookkeeping, the cluster binds the devices), with the job's GPU allocations to match, and a
   * `relocated` event. Ranks named with the node they have already are left alone. Answers the job's tasks as now
   * recorded, or undefined when the job is not running.
   */
  relocateRanks(jobId: string, ranks: ReadonlyArray<{ rank: number; node: string }>, now: number): Promise<Task[] | undefined>;
  /**
   * Ends a running job: sets status, exitCode, endReason, finishedAt; releases its GPUs; appends the
   * event of the same name as the status. Returns false when the job was already terminal (or does not exist).
   * A pending job may be ended too (e.g. one that can never fit). Its tasks are kept as the record of the run,
   * and a job that was running has its last attempt recorded (see `listAttempts`) with the same exit code and reason.
   */
  finishJob(jobId: string, end: JobEnd, now: number): Promise<boolean>;
  /**
   * A pending job becomes `cancelled` at once (returns `cancelled`); a running one gets cancelRequestedAt
   * (returns `stopping`) and ends later through finishJob; a terminal job is left as it is (returns `already_finished`).
   * Asking again for a running job returns `stopping` and keeps the first cancelRequestedAt and event.
   */
  requestCancel(jobId: string, now: number): Promise<CancelOutcome>;
  /**
   * Sends a running job back to pending: deletes its tasks and allocations, clears startedAt and
   * cancelRequestedAt, appends `requeued` with `reason`. False (and no change) for a job that is not running.
   * A job whose cancel was requested should be finished as `cancelled` instead. The attempt that ran is recorded
   * first (see `listAttempts`), with its tasks as they were.
   */
  requeueJob(jobId: string, reason: string, now: number, options?: RequeueOptions): Promise<boolean>;
  /** The ended attempts of a job, oldest first (the running attempt is not among them: its ranks are `getTasks`). */
  listAttempts(jobId: string): Promise<AttemptRecord[]>;
  /**
   * GPU use of every attempt that ended at or after `since` and had started: the team, GPUs held (a share counts its
   * fraction) and the interval. What fair share needs to rebuild its decayed history after a restart.
   */
  listGpuUseEndedSince(since: number): Promise<GpuUse[]>;
  /**
   * Appends progress records (one transaction). A record with a `checkpoint` also becomes the job's
   * `lastCheckpoint`. Records of unknown jobs are dropped.
   */
  appendProgress(records: readonly NewProgressRecord[]): Promise<void>;
  /** A job's progress records in seq order: after `afterSeq`, or the newest `last` of them. */
  listProgress(jobId: string, query?: ProgressQuery): Promise<ProgressRecord[]>;
  /** Appends GPU samples (one transaction). Samples naming a job that does not exist are kept unattributed. */
  appendGpuSamples(samples: readonly JobGpuSample[]): Promise<void>;
  /** A job's GPU samples, oldest first: those taken at or after `since`, at most `limit` (the newest ones). */
  listGpuSamples(jobId: string, query?: GpuSampleQuery): Promise<JobGpuSample[]>;
  /** Energy drawn by the job's GPUs while it held them, in Wh: Σ powerW × intervalMs. Null when no sample had power. */
  jobEnergyWh(jobId: string): Promise<number | null>;
  /** Deletes samples taken before `before` (epoch ms); returns how many. Keeps the time series bounded. */
  pruneGpuSamples(before: number): Promise<number>;
  /** Records why pending jobs wait (only changed ones need writing). Ids of jobs not pending are ignored. */
  setPendingReasons(reasons: ReadonlyMap<string, Diagnosis>): Promise<void>;

  /** Rejects when the job does not exist (a bug in the caller). */
  appendEvent(jobId: string, type: JobEventType, message: string, now: number, data?: Record<string, unknown>): Promise<JobEvent>;
  /** Events in seq order: of one job, or of all jobs after `afterSeq` (for event streams that resume). */
  listEvents(query: EventQuery): Promise<JobEvent[]>;
  /** A job's newest event of this type (undefined when it has none, or for an unknown job). */
  lastEventOfType(jobId: string, type: JobEventType): Promise<JobEvent | undefined>;
}

export interface CreateJobOptions {
  /** Who submits it (see `Job.user`). */
  user?: string;
}

export interface JobQuery {
  status?: JobStatus;
  team?: string;
  /** Only jobs submitted by this user. */
  user?: string;
  /** Only jobs whose name contains this text, ignoring case (`%` and `_` are taken literally). */
  nameContains?: string;
  /**
   * The order of the pages: by `id` (submission order), or by a column with the id breaking ties in the same
   * direction. Every sort key is read from an index.
   * @default { by: 'id', direction: 'desc' } (newest first)
   */
  sort?: JobSort;
  /** @default 50, at most 1000 */
  limit?: number;
  /** The `nextCursor` of the previous page of the same query (a cursor of another sort order is refused). */
  cursor?: string;
}

export const JOB_SORT_KEYS = ['id', 'name', 'team', 'status', 'priority'] as const;
export type JobSortKey = (typeof JOB_SORT_KEYS)[number];
export interface JobSort {
  by: JobSortKey;
  direction: 'asc' | 'desc';
}

export interface JobPage {
  jobs: Job[];
  /** Absent on the last page. */
  nextCursor?: string;
}

export interface JobSummaryPage {
  jobs: JobSummary[];
  /** Absent on the last page. */
  nextCursor?: string;
}

export interface RunHistoryQuery {
  /** @default 1000, at most 1000 */
  limit?: number;
  cursor?: string;
}

export interface PlacementWithTasks {
  placement: Placement;
  tasks: Task[];
}

export type ApplyOutcome =
  | { jobId: string; applied: true }
  | { jobId: string; applied: false; reason: 'job_not_pending' | 'gpu_taken' | 'unknown_node' };

export interface TaskUpdate {
  jobId: string;
  rank: number;
  status?: TaskStatus;
  /** The launched rank's handle as its backend made it (see @tutti/backends' `recordOfHandle`). */
  backend?: TaskBackendRecord;
  exitCode?: number | null;
  startedAt?: number;
  finishedAt?: number;
}

/** How a job ended and how a requeue is recorded: domain types, in model (the control core decides them). */
export type { JobEnd, RequeueOptions } from '@tutti/model';

export type NewProgressRecord = Omit<ProgressRecord, 'seq'>;

export interface ProgressQuery {
  afterSeq?: number;
  /** Only the newest `last` records (still returned oldest first). */
  last?: number;
  /** @default 1000, at most 10000 */
  limit?: number;
}

export interface GpuUse {
  jobId: string;
  /** The job's status now (e.g. `succeeded` for the last attempt of a job that finished well). */
  jobStatus: JobStatus;
  team: string;
  gpus: number;
  startedAt: number;
  finishedAt: number;
}

export interface GpuSampleQuery {
  since?: number;
  /** @default 2000, at most 20000 */
  limit?: number;
}

export type CancelOutcome = 'cancelled' | 'stopping' | 'already_finished' | 'not_found';

export interface EventQuery {
  jobId?: string;
  afterSeq?: number;
  /** @default 1000, at most 10000 */
  limit?: number;
}

/** A lease as the store has it (see `StateStore.acquireLease`). */
export interface Lease {
  name: string;
  holder: string;
  /** +1 at each change of hands, never reused: a fencing token. */
  epoch: number;
  /** Epoch ms. */
  expiresAt: number;
}

/** Whose writes a fenced store view carries: a lease's holder at one epoch (see `StateStore.withFence`). */
export interface Fence {
  lease: string;
  holder: string;
  epoch: number;
}

/** A subscription to committed changes (see `StateStore.watchChanges`). */
export interface ChangeWatch {
  /** Stops watching (and closes its connection). Idempotent. */
  close(): Promise<void>;
  /** Whether the watch is connected now (a notification would reach it). Always false on SQLite. */
  readonly live: boolean;
}
