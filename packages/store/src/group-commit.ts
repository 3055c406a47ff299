/**
 * Group commit: requests that arrive close together are written by one transaction, so they share one fsync.
 *
 * With synchronous durability one commit costs an fsync (~0.15 ms on a fast disk, far more on a slow one), which
 * caps one-at-a-time writes at a few thousand per second whatever the CPU. Submissions that arrive in the same
 * event-loop turn, or while the previous batch is being committed, are collected and flushed together.
 *
 * Invariants:
 * - at most one flush runs at a time, and batches flush in arrival order, so anything the flush assigns in
 *   order (ids) follows call order;
 * - a flush result maps to its items by position; if the flush throws, every item of that batch is rejected
 *   with that error, and later batches still run;
 * - `drain()` resolves once everything submitted before it has been flushed.
 */
export class GroupCommitQueue<TItem, TResult> {
  readonly #flush: (items: TItem[]) => Promise<TResult[]>;
  readonly #maxBatch: number;
  #queue: Array<{ item: TItem; resolve: (r: TResult) => void; reject: (e: unknown) => void }> = [];
  #scheduled = false;
  #inFlight: Promise<void> | undefined;
  #idleWaiters: Array<() => void> = [];

  /**
   * @param flush writes a batch in one transaction; returns one result per item, in order.
   * @param options.maxBatch the most items one transaction takes (bounds a commit's latency). @default 1000
   */
  constructor(flush: (items: TItem[]) => Promise<TResult[]>, options: { maxBatch?: number } = {}) {
    this.#flush = flush;
    this.#maxBatch = Math.max(1, options.maxBatch ?? 1000);
  }

  submit(item: TItem): Promise<TResult> {
    return new Promise<TResult>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      this.#schedule();
    });
  }

  /** Items waiting for the next flush (not counting the one in flight). */
  get pending(): number {
    return this.#queue.length;
  }

  /** Resolves once the queue is empty and no flush is in flight. */
  drain(): Promise<void> {
    if (this.#queue.length === 0 && !this.#inFlight && !this.#scheduled) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #schedule(): void {
    // While a flush is in flight, new items wait for it; its completion schedules the next batch.
    if (this.#scheduled || this.#inFlight) return;
    this.#scheduled = true;
    // setImmediate, not a microtask: it runs after the I/O callbacks of this loop turn, so every HTTP request
    // parsed in the same turn joins the batch.
    setImmediate(() => {
      this.#scheduled = false;
      this.#inFlight = this.#runBatch().finally(() => {
        this.#inFlight = undefined;
        if (this.#queue.length > 0) this.#schedule();
        else this.#notifyIdle();
      });
    });
  }

  async #runBatch(): Promise<void> {
    const batch = this.#queue.splice(0, this.#maxBatch);
    if (batch.length === 0) return;
    let results: TResult[];
    try {
      results = await this.#flush(batch.map((e) => e.item));
      if (results.length !== batch.length) throw new Error(`group commit: flush returned ${results.length} results for ${batch.length} items`);
    } catch (error) {
      for (const entry of batch) entry.reject(error);
      return;
    }
    batch.forEach((entry, i) => entry.resolve(results[i] as TResult));
  }

  #notifyIdle(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }
}
