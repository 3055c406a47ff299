import type { Client } from 'pg';
import type { ChangeWatch } from './state-store.ts';
import { CHANGES_CHANNEL } from './store-dialect.ts';

/** The waits before reconnecting a dropped watch: 1 s, doubling, at most 10 s. */
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 10_000;

/**
 * One dedicated PostgreSQL connection (not the pool's: a LISTEN belongs to its session, and a pooled connection would
 * go back to other queries) that LISTENs on `CHANGES_CHANNEL` and calls `onChange` for each notification.
 *
 * It never throws to the process: the client's 'error' and 'end' both count as a lost connection, after which it
 * reconnects with backoff and calls `onChange` once connected again (notifications sent meanwhile are lost, so the
 * caller must look). An exception of `onChange` itself is the caller's bug and is not allowed to end the watch.
 */
export class PostgresChangeWatch implements ChangeWatch {
  #client: Client | undefined;
  #retry: NodeJS.Timeout | undefined;
  #retryMs = FIRST_RETRY_MS;
  #closed = false;

  private constructor(
    private readonly newClient: () => Client,
    private readonly onChange: () => void,
  ) {}

  /** Resolves after the first attempt to connect; if it failed, the watch is not live and keeps trying. */
  static async open(newClient: () => Client, onChange: () => void): Promise<PostgresChangeWatch> {
    const watch = new PostgresChangeWatch(newClient, onChange);
    await watch.#connect(false);
    return watch;
  }

  get live(): boolean {
    return this.#client !== undefined;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => {});
  }

  async #connect(afterLoss: boolean): Promise<void> {
    const client = this.newClient();
    let gone = false;
    const lost = () => {
      if (gone) return;
      gone = true;
      if (this.#client === client) this.#client = undefined;
      if (this.#closed) return;
      client.end().catch(() => {});
      this.#reconnectLater();
    };
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', (message) => {
      if (message.channel === CHANGES_CHANNEL && !this.#closed) this.#tell();
    });
    try {
      await client.connect();
      await client.query(`listen ${CHANGES_CHANNEL}`);
    } catch {
      lost();
      return;
    }
    if (gone) return;
    if (this.#closed) {
      await client.end().catch(() => {});
      return;
    }
    this.#client = client;
    this.#retryMs = FIRST_RETRY_MS;
    if (afterLoss) this.#tell();
  }

  #reconnectLater(): void {
    if (this.#closed || this.#retry !== undefined) return;
    const wait = this.#retryMs;
    this.#retryMs = Math.min(wait * 2, MAX_RETRY_MS);
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      void this.#connect(true);
    }, wait);
  }

  #tell(): void {
    try {
      this.onChange();
    } catch {
      // The caller's bug; the watch must outlive it (see the class comment).
    }
  }
}
