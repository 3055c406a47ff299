/**
 * What only the leader runs, for as long as it leads: the control core and its loops (JobController), the backend
 * that launches and stops ranks, the node watch and the GPU sampler. A term starts when this replica is granted the
 * lease (recovery first: what ran under the previous leader is re-adopted, as after a restart) and ends when it
 * loses it; its ranks run on, for the next term to adopt.
 *
 * Everything a term writes goes through the store fenced at its epoch, and everything it does to ranks through a
 * backend that refuses to act once the lease may have run out (`guardedBackend`): a deposed leader can neither
 * commit nor launch, stop or signal anything.
 */
import type { Job, JobEvent, JobGpuSample, NodeInfo, TeamConfig } from '@tutti/model';
import type { ExecutionBackend } from '@tutti/backends';
import type { SchedulerProfile } from '@tutti/scheduler';
import type { Fence, StateStore } from '@tutti/store';
import type { DiskFullLog } from './disk-full-log.ts';
import type { EventFeed } from './event-feed.ts';
import { GpuSampler } from './gpu-sampler.ts';
import { JobController } from './job-controller.ts';
import type { JobTokens } from './job-tokens.ts';
import type { LifecyclePoint } from './lifecycle-point.ts';
import { NotLeaderError } from './leadership.ts';
import type { Logger } from './logger.ts';
import { describeStoreOutage } from './store-outage.ts';
import type { ServerMetrics } from './metrics.ts';

export interface LeaderTermOptions {
  /** The store, unfenced: the term fences it at its epoch (none for a server alone on its store). */
  store: StateStore;
  fence?: Fence;
  backend: ExecutionBackend;
  /** Whether the backend was made for this term (and is closed with it) or is the server's for good. */
  ownsBackend: boolean;
  /** Synchronous: whether this replica may still act as the leader (see `Leadership.leaseHeld`). */
  leaseHeld: () => boolean;
  /**
   * Whether other replicas share the store: then submissions and cancels they take are learnt from the event log
   * (the feed), since they cannot call this controller.
   */
  replicated: boolean;
  feed: EventFeed;
  metrics: ServerMetrics;
  logger: Logger;
  now: () => number;
  dataDir: string;
  stopGraceMs: number;
  tickMs: number;
  profile: SchedulerProfile;
  teams: readonly TeamConfig[];
  jobTokens: JobTokens;
  apiUrl: () => string | undefined;
  diskFull: DiskFullLog;
  maxLogBytes: number;
  gpuSampleMs?: number;
  onLifecyclePoint?: (point: LifecyclePoint, jobId: string) => void;
  /** The inventory as the term reads it from its backend, for the API's feasibility checks. */
  inventoryChanged: (nodes: readonly NodeInfo[]) => void;
}

/**
 * The backend of a term: every action on ranks or their files (launch, stop, stop deadlines, attempt directories, log
 * caps) first checks, synchronously, that the lease is still held by this replica's clock. Reads (logs, adoption,
 * inventory) pass.
 */
export function guardedBackend(backend: ExecutionBackend, leaseHeld: () => boolean): ExecutionBackend {
  const refuse = (what: string) => {
    if (!leaseHeld()) throw new NotLeaderError(`not ${what}: this replica's lease on the control plane may have run out, so another may lead now`);
  };
  return new Proxy(backend, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      const action = ACTIONS_ON_RANKS[property as string];
      if (action === undefined) return (value as (...args: unknown[]) => unknown).bind(target);
      return (...args: unknown[]) => {
        refuse(action);
        return (value as (...args: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

const ACTIONS_ON_RANKS: Record<string, string> = {
  launch: 'launching ranks',
  stop: 'stopping ranks',
  writeStopDeadline: 'recording a stop deadline',
  prepareAttempt: 'preparing an attempt',
  capLog: 'capping a log',
};

/** How soon a failed read of a job another replica changed is tried again. */
const LEARN_RETRY_MS = 1000;

/** Among replicas, how often the leader writes the pending reasons that changed, for followers to answer `why` from. */
const PENDING_REASONS_WRITE_MS = 2000;

export class LeaderTerm {
  readonly controller: JobController;
  readonly gpuSampler: GpuSampler;
  readonly store: StateStore;
  private readonly options: LeaderTermOptions;
  private readonly backend: ExecutionBackend;
  private inventory: NodeInfo[] = [];
  private nodeWrites = Promise.resolve();
  private unsubscribe: (() => void) | undefined;
  private closed = false;

  private constructor(options: LeaderTermOptions) {
    this.options = options;
    const { logger, now } = options;
    this.store = options.fence ? options.store.withFence(options.fence) : options.store;
    this.backend = options.fence ? guardedBackend(options.backend, options.leaseHeld) : options.backend;
    this.gpuSampler = new GpuSampler({ backend: this.backend, store: this.store, logger, now, ...(options.gpuSampleMs !== undefined ? { intervalMs: options.gpuSampleMs } : {}) });
    this.controller = new JobController({
      store: this.store,
      backend: this.backend,
      feed: options.feed,
      metrics: options.metrics,
      logger,
      now,
      dataDir: options.dataDir,
      stopGraceMs: options.stopGraceMs,
      tickMs: options.tickMs,
      profile: options.profile,
      teams: options.teams,
      jobTokens: options.jobTokens,
      apiUrl: options.apiUrl,
      gpusIdleSince: (jobId) => this.gpuSampler.gpusIdleSince(jobId),
      ...(options.onLifecyclePoint ? { onLifecyclePoint: options.onLifecyclePoint } : {}),
      diskFull: options.diskFull,
      maxLogBytes: options.maxLogBytes,
      ...(options.replicated ? { pendingReasonsWriteMs: PENDING_REASONS_WRITE_MS } : {}),
    });
  }

  /**
   * A term, built but not started: the server hands its controller to the API at once, so that what is submitted
   * while recovery runs is queued (nothing is scheduled before `start` is done).
   */
  static create(options: LeaderTermOptions): LeaderTerm {
    return new LeaderTerm(options);
  }

  /**
   * Starts the term: the inventory read and stored, the node watch, then recovery and the loops. `initialInventory` is
   * the one the server read and stored at start (a term of a server alone on its store need not read it again). On
   * failure the caller closes the term.
   */
  start(initialInventory?: NodeInfo[]): Promise<void> {
    return this.begin(initialInventory);
  }

  private async begin(initialInventory: NodeInfo[] | undefined): Promise<void> {
    const { now, logger, backend } = this.options;
    if (initialInventory) {
      this.inventory = initialInventory;
    } else {
      this.inventory = await backend.inventory();
      await this.store.replaceNodes(this.inventory, now());
      this.options.inventoryChanged(this.inventory);
    }
    // A node's state as its backend sees it (a Slurm node drained, down or back) is what the scheduler places by: the
    // inventory is read again and stored, one change after the other, and a cycle is asked for.
    backend.onNodeState((change) => {
      if (this.inventory.find((node) => node.name === change.node)?.state === change.state) return;
      this.recordInventory(() => backend.inventory(), `node ${change.node} as ${change.state}`);
    });
    // A backend whose inventory changes beyond node states tells it whole: on Slurm, GPUs that other Slurm jobs take
    // or free, so that tutti places around them and on them again once they are free.
    backend.onInventoryChange?.((nodes) => this.recordInventory(() => Promise.resolve(nodes), 'the inventory the backend changed'));
    if (this.options.replicated) this.unsubscribe = this.options.feed.subscribe((event) => this.learnFromOtherReplicas(event));
    await this.controller.start();
    this.gpuSampler.start();
    logger.info(`the control loop runs${this.options.fence ? ` (epoch ${this.options.fence.epoch})` : ''}`);
  }

  private recordInventory(read: () => Promise<NodeInfo[]>, what: string): void {
    this.nodeWrites = this.nodeWrites.then(async () => {
      if (this.closed) return;
      this.inventory = await read();
      await this.store.replaceNodes(this.inventory, this.options.now());
      this.options.inventoryChanged(this.inventory);
      this.controller.nodesChanged();
    }).catch((error: unknown) => this.options.logger.warn(`could not record ${what}: ${error instanceof Error ? error.message : String(error)}`));
  }

  /**
   * Submissions and cancels another replica's API took: it stored them (and their events) but cannot call this
   * controller. What this replica's own API did is known already; learning it again changes nothing.
   */
  private learnFromOtherReplicas(event: JobEvent): void {
    if (this.closed) return;
    if (event.type === 'submitted' && this.controller.isQueued(event.jobId)) return;
    if (event.type === 'submitted' || event.type === 'cancel_requested') this.learnJob(event.jobId, event.type);
    else if (event.type === 'cancelled') this.controller.cancelRecorded(event.jobId, 'cancelled');
  }

  /**
   * Reads a job another replica submitted or asked to cancel, and queues or stops it. A read that fails (the database
   * restarting) is tried again a second later until it succeeds: the event that told of the job is not told twice.
   */
  private learnJob(jobId: string, what: 'submitted' | 'cancel_requested'): void {
    void this.store.getJob(jobId).then(
      (job: Job | undefined) => {
        if (!job || this.closed) return;
        if (job.status === 'pending' && what === 'submitted') this.controller.enqueue(job);
        if (job.status === 'running' && what === 'cancel_requested') this.controller.cancelRecorded(job.id, 'stopping');
      },
      (error: unknown) => {
        if (this.closed) return;
        if (describeStoreOutage(error) === undefined) this.options.logger.warn(`could not read job ${jobId} another replica changed (trying again): ${String(error)}`);
        setTimeout(() => !this.closed && this.learnJob(jobId, what), LEARN_RETRY_MS).unref();
      },
    );
  }

  latestGpuSamples(): ReadonlyMap<string, JobGpuSample> {
    return this.gpuSampler.latest();
  }

  /** Ends the term: loops stopped, what is under way finished or refused; the ranks run on. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe?.();
    await this.gpuSampler.close();
    await this.controller.close();
    await this.nodeWrites;
    if (this.options.ownsBackend) await this.options.backend.close();
  }
}
