/**
 * A full disk, told once. While the data dir's filesystem is full every write fails — each tick, each submission,
 * each sample — and logging each would bury the one line the operator needs (and, on the same disk, add to the
 * problem). The first failure of an episode is logged as an error; the rest are counted silently until a write
 * succeeds again, which is logged once too.
 */
import { DiskFullError, asDiskFull } from '@tutti/store';
import type { DiskFullListener } from '@tutti/store';
import type { Logger } from './logger.ts';

export class DiskFullLog implements DiskFullListener {
  readonly #logger: Logger;
  #current: DiskFullError | undefined;
  #refused = 0;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  /** The full disk of the episode under way, if one is. */
  get current(): DiskFullError | undefined {
    return this.#current;
  }

  /**
   * True when `error` is a full disk (logged only when it starts an episode); false for any other error. A
   * DiskFullError from the store was told already (the store calls `full` itself), so it is not counted twice.
   */
  report(error: unknown): boolean {
    if (error instanceof DiskFullError) return true;
    const full = asDiskFull(error);
    if (!full) return false;
    this.full(full);
    return true;
  }

  full(error: DiskFullError): void {
    this.#refused += 1;
    if (this.#current) return;
    this.#current = error;
    this.#logger.error(`${error.message}. Writes there are refused until space is freed (the API answers them 507 disk_full); reads keep working`);
  }

  /** A write succeeded where the episode's refusals were (the store's first commit after them, a job's files). */
  recovered(path: string): void {
    if (!this.#current) return;
    this.#logger.info(`space is back at ${path}: writes succeed again (${this.#refused} refused while the disk was full)`);
    this.#current = undefined;
    this.#refused = 0;
  }
}
