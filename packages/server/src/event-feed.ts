/**
 * Fans the store's append-only event log out to live subscribers (SSE clients, `submit --watch`).
 * The store is the source of truth: `notify()` only says "there may be new events", and the feed reads them
 * from the store after the last sequence number it delivered, so nothing is lost or reordered.
 */
import type { JobEvent } from '@tutti/model';
import type { StateStore } from '@tutti/store';
import type { Logger } from './logger.ts';

export type EventListener = (event: JobEvent) => void;

export class EventFeed {
  private readonly listeners = new Set<EventListener>();
  private lastSeq = 0;
  private reading: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly store: StateStore,
    private readonly logger: Logger,
  ) {}

  /** Starts after the newest event already stored (subscribers catch up from the store themselves). */
  async start(): Promise<void> {
    for (;;) {
      const batch = await this.store.listEvents({ afterSeq: this.lastSeq, limit: 10_000 });
      const last = batch.at(-1);
      if (!last) return;
      this.lastSeq = last.seq;
    }
  }

  get latestSeq(): number {
    return this.lastSeq;
  }

  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  notify(): void {
    if (this.reading) {
      this.again = true;
      return;
    }
    this.reading = (async () => {
      try {
        do {
          this.again = false;
          await this.deliverNew();
        } while (this.again);
      } catch (error) {
        this.logger.error('reading the event log failed', error);
      } finally {
        this.reading = undefined;
      }
    })();
  }

  private async deliverNew(): Promise<void> {
    for (;;) {
      const batch = await this.store.listEvents({ afterSeq: this.lastSeq, limit: 1000 });
      for (const event of batch) {
        this.lastSeq = event.seq;
        for (const listener of this.listeners) listener(event);
      }
      if (batch.length < 1000) return;
    }
  }
}
