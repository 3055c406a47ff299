/**
 * Progress records of running attempts: their rank logs tailed (through the backend) and the records posted to the
 * API, stored, and told to the control core as `progress` events — the core owns the hang timer; this only reads,
 * stores and remembers the last record of each attempt for /metrics and the views.
 */
import { formatByteSize } from '@tutti/model';
import type { Job } from '@tutti/model';
import type { LifecycleEvent } from '@tutti/control';
import type { ExecutionBackend, LogTrim, RankHandle } from '@tutti/backends';
import type { NewProgressRecord, StateStore } from '@tutti/store';
import type { EventFeed } from './event-feed.ts';
import type { Logger } from './logger.ts';
import { LogTail, parseProgressLine } from './progress-tail.ts';

type ProgressValues = Record<string, string | number | boolean>;

/** Progress tailing of one running attempt (the records' times go to the core, which owns the hang timer). */
interface AttemptWatch {
  attempt: number;
  tails: Array<{ rank: number; tail: LogTail }>;
  /** The last progress record's time and values, for /metrics and views. */
  lastProgressAt: number;
  last?: ProgressValues;
}

export interface ProgressWatchOptions {
  store: StateStore;
  backend: ExecutionBackend;
  feed: EventFeed;
  logger: Logger;
  now: () => number;
  /** Each rank log's size cap (see log-cap.ts); none means logs grow without bound. */
  maxLogBytes?: number;
  /** Feeds an event to the core (and carries out what it answers). */
  dispatch: (event: LifecycleEvent) => void;
  /** Whether the core takes a progress record for the job now (it runs and is not being stopped). */
  acceptsProgress: (jobId: string) => boolean;
  /** Whether `error` passes by itself — a full disk, the database unreachable — (then told once per episode, not logged here). */
  reportTransient: (error: unknown) => boolean;
}

export function toProgressRecord(jobId: string, attempt: number, rank: number, at: number, values: ProgressValues): NewProgressRecord {
  const record: NewProgressRecord = { jobId, attempt, rank, at, values };
  if (typeof values.step === 'number') record.step = values.step;
  if (typeof values.loss === 'number') record.loss = values.loss;
  if (typeof values.checkpoint === 'string') record.checkpoint = values.checkpoint;
  return record;
}

export class ProgressWatch {
  private readonly options: ProgressWatchOptions;
  /** Running attempts whose logs are tailed for progress records. */
  private readonly watches = new Map<string, AttemptWatch>();
  private polling: Promise<void> | undefined;

  constructor(options: ProgressWatchOptions) {
    this.options = options;
  }

  /** Starts tailing an attempt's rank logs: from the start for a fresh launch, from their end for an adoption. */
  watchAttempt(job: Job, attempt: number, handles: readonly RankHandle[], from: 'start' | 'end'): void {
    // Records written while no server watched are not replayed on adoption (their time is unknown).
    const maxBytes = this.options.maxLogBytes;
    const tails = handles.map((h) => ({
      rank: h.rank,
      tail: new LogTail(this.options.backend, { jobId: h.jobId, rank: h.rank, attempt: h.attempt ?? attempt }, from, maxBytes === undefined ? undefined : { maxBytes, onTrim: (trim) => this.logTrimmed(job.id, h.rank, maxBytes, trim) }),
    }));
    this.watches.set(job.id, { attempt, tails, lastProgressAt: this.options.now() });
  }

  /** Reads new records of every watched attempt, unless a poll is still under way (called on each tick). */
  poll(): void {
    this.polling ??= this.pollAll().finally(() => (this.polling = undefined));
  }

  /** Resolves once no poll is under way (for a clean close). */
  async idle(): Promise<void> {
    await this.polling;
  }

  /**
   * A progress record posted to the API (`POST /v1/jobs/:id/progress` with the job's token): stored and counted
   * for hang detection exactly like a record printed on stdout. Only a running job reports progress.
   */
  async recordProgress(jobId: string, rank: number, values: ProgressValues): Promise<'recorded' | 'not_running'> {
    const watch = this.watches.get(jobId);
    if (!watch || !this.options.acceptsProgress(jobId)) return 'not_running';
    await this.storeProgress(jobId, watch, [toProgressRecord(jobId, watch.attempt, rank, this.options.now(), values)]);
    return 'recorded';
  }

  /** The last records of an attempt that just ended, then forget it. */
  async drain(jobId: string): Promise<void> {
    await this.readProgress(jobId).catch(() => undefined);
    this.watches.delete(jobId);
  }

  /** The last progress record of each running attempt (for /metrics and views). */
  lastProgress(): ReadonlyMap<string, { attempt: number; at: number; values: Readonly<ProgressValues> }> {
    const out = new Map<string, { attempt: number; at: number; values: ProgressValues }>();
    for (const [jobId, watch] of this.watches) if (watch.last) out.set(jobId, { attempt: watch.attempt, at: watch.lastProgressAt, values: watch.last });
    return out;
  }

  /** Since when every GPU of each watched job has been idle, where `idleSince` knows (for the core's hang check). */
  gpusIdleSince(idleSince: ((jobId: string) => number | undefined) | undefined): ReadonlyMap<string, number> | undefined {
    if (!idleSince) return undefined;
    const out = new Map<string, number>();
    for (const jobId of this.watches.keys()) {
      const since = idleSince(jobId);
      if (since !== undefined) out.set(jobId, since);
    }
    return out;
  }

  /** A rank's log passed the cap and lost its oldest output: said on the job, so its owner knows why. */
  private logTrimmed(jobId: string, rank: number, maxBytes: number, trim: LogTrim): void {
    const message = `rank ${rank}'s log passed the log cap of ${formatByteSize(maxBytes)}: ${trim.droppedBytes} bytes of its oldest output dropped (${trim.totalDroppedBytes} in all)`;
    void this.options.store
      .appendEvent(jobId, 'log_trimmed', message, this.options.now(), { rank, dropped_bytes: trim.droppedBytes, total_dropped_bytes: trim.totalDroppedBytes, max_log_bytes: maxBytes })
      .then(() => this.options.feed.notify())
      .catch((error: unknown) => {
        if (!this.options.reportTransient(error)) this.options.logger.error(`recording the log trim of job ${jobId} failed`, error);
      });
  }

  /** Reads new progress records of every running attempt and stores them (the core hears of each). */
  private async pollAll(): Promise<void> {
    for (const jobId of [...this.watches.keys()]) {
      await this.readProgress(jobId).catch((error: unknown) => this.options.logger.warn(`reading progress of job ${jobId} failed: ${String(error)}`));
    }
  }

  private async readProgress(jobId: string): Promise<void> {
    const watch = this.watches.get(jobId);
    if (!watch) return;
    const now = this.options.now();
    const records: NewProgressRecord[] = [];
    for (const { rank, tail } of watch.tails) {
      for (const line of await tail.readLines()) {
        const values = parseProgressLine(line);
        if (values) records.push(toProgressRecord(jobId, watch.attempt, rank, now, values));
      }
    }
    await this.storeProgress(jobId, watch, records);
  }

  private async storeProgress(jobId: string, watch: AttemptWatch, records: NewProgressRecord[]): Promise<void> {
    const last = records.at(-1);
    if (!last) return;
    watch.lastProgressAt = last.at;
    watch.last = { ...watch.last, ...(last.values as ProgressValues) };
    this.options.dispatch({ kind: 'progress', jobId, attempt: watch.attempt, at: last.at, values: watch.last });
    await this.options.store.appendProgress(records);
  }
}
