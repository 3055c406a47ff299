/**
 * The cluster over time, for the dashboard's charts: every `intervalMs` the server notes the queue length, the
 * running jobs and the GPUs allocated. Kept in memory only (a bounded ring): a restarted server starts a new
 * history, which is all a "last hour" chart needs.
 */
import type { Logger } from './logger.ts';

export interface ClusterSample {
  /** Epoch ms. */
  at: number;
  pendingJobs: number;
  runningJobs: number;
  gpusTotal: number;
  /** GPUs held by jobs (a fractional share counts as its fraction). */
  gpusAllocated: number;
}

export interface ClusterHistoryOptions {
  /** Reads the current figures (without `at`). */
  read: () => Promise<Omit<ClusterSample, 'at'>>;
  now: () => number;
  logger: Logger;
  /** @default 5000 */
  intervalMs?: number;
  /** @default 24 hours of samples */
  capacity?: number;
}

export class ClusterHistory {
  readonly intervalMs: number;
  private readonly capacity: number;
  private readonly ring: ClusterSample[] = [];
  private timer: ReturnType<typeof setInterval> | undefined;
  private sampling: Promise<void> | undefined;

  constructor(private readonly options: ClusterHistoryOptions) {
    this.intervalMs = options.intervalMs ?? 5000;
    this.capacity = options.capacity ?? Math.ceil((24 * 3600_000) / this.intervalMs);
  }

  /** Takes a first sample at once (so a chart has a point from the start), then one per interval. */
  async start(): Promise<void> {
    await this.sample();
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.sampling;
  }

  /** The samples taken at or after `since` (epoch ms), oldest first. */
  since(since: number): ClusterSample[] {
    // The ring is in time order: find the first sample in range by binary search.
    let lo = 0;
    let hi = this.ring.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ring[mid]!.at < since) lo = mid + 1;
      else hi = mid;
    }
    return this.ring.slice(lo);
  }

  /** One sample now; a sample still being read is not started twice. */
  sample(): Promise<void> {
    this.sampling ??= this.takeSample().finally(() => {
      this.sampling = undefined;
    });
    return this.sampling;
  }

  private async takeSample(): Promise<void> {
    try {
      const figures = await this.options.read();
      this.ring.push({ at: this.options.now(), ...figures });
      if (this.ring.length > this.capacity) this.ring.splice(0, this.ring.length - this.capacity);
    } catch (error) {
      this.options.logger.error('sampling the cluster history failed', error);
    }
  }
}
