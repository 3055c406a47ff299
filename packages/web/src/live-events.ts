/**
 * One event stream per page load (`/v1/events`), shared by every view: it starts with the newest events, and
 * reconnects after a drop with growing pauses, resuming after the last event it delivered so nothing is missed.
 */
import type { EventView, TuttiClient } from '@tutti/client';

export type LiveStatus = 'connecting' | 'live' | 'reconnecting';
type Listener = (event: EventView) => void;

const RECENT = 30;
const MAX_BACKOFF_MS = 10_000;

export class LiveEvents {
  private readonly listeners = new Set<Listener>();
  private readonly statusListeners = new Set<(status: LiveStatus) => void>();
  private readonly abort = new AbortController();
  private lastSeq: number | undefined;
  /** The newest events, newest first (for the overview's list). */
  recent: EventView[] = [];
  status: LiveStatus = 'connecting';

  constructor(private readonly client: TuttiClient) {}

  start(): void {
    void this.run();
  }

  stop(): void {
    this.abort.abort();
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onStatus(listener: (status: LiveStatus) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  private setStatus(status: LiveStatus): void {
    if (this.status === status) return;
    this.status = status;
    for (const listener of this.statusListeners) listener(status);
  }

  private async run(): Promise<void> {
    let backoff = 500;
    while (!this.abort.signal.aborted) {
      try {
        const stream = this.client.events({ signal: this.abort.signal, ...(this.lastSeq !== undefined ? { afterSeq: this.lastSeq } : { last: RECENT }) });
        this.setStatus('live');
        for await (const event of stream) {
          backoff = 500;
          this.lastSeq = event.seq;
          this.recent = [event, ...this.recent].slice(0, 100);
          for (const listener of this.listeners) listener(event);
        }
      } catch {
        if (this.abort.signal.aborted) return;
      }
      // The stream ended or failed (server restarted, network): try again, a little later each time.
      this.setStatus('reconnecting');
      await new Promise((resolve) => setTimeout(resolve, backoff));
      backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
    }
  }
}
