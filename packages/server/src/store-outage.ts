/**
 * The database unreachable for a while (a PostgreSQL restart, a network cut): a failure that passes by itself, like a
 * full disk. The API answers 503 for it (http/errors.ts); the controller keeps the records it could not write and
 * writes them once the database answers again (command-executor.ts), saying so once per outage, not per write.
 */
import type { Logger } from './logger.ts';

/** node-postgres' and PostgreSQL's ways of saying the server is not there (SQLSTATE class 08, and 57P01-57P03). */
const OUTAGE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', '57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006']);
const OUTAGE_MESSAGES = /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection closed/i;

/**
 * What is wrong when `error` says the database cannot be reached now (a PostgreSQL restart, a network cut), so that
 * the API answers 503 and the client retries, and the controller writes it again later; undefined for any other error.
 */
export function describeStoreOutage(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  const code = (error as { code?: unknown }).code;
  if ((typeof code === 'string' && OUTAGE_CODES.has(code)) || OUTAGE_MESSAGES.test(error.message)) return error.message;
  return undefined;
}

/** How long after the last failure an outage counts as over (the next failure is then told again). */
const OUTAGE_QUIET_MS = 30_000;

/** Tells an outage of the store once, and again only after it had been quiet for a while. */
export class StoreOutageLog {
  private lastFailureAt: number | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly now: () => number,
  ) {}

  /** Whether `error` is an outage of the store (then told, once per episode). */
  report(error: unknown): boolean {
    const outage = describeStoreOutage(error);
    if (outage === undefined) return false;
    const at = this.now();
    if (this.lastFailureAt === undefined || at - this.lastFailureAt > OUTAGE_QUIET_MS) {
      this.logger.warn(`the database does not answer (${outage}); what could not be recorded is kept and written once it does`);
    }
    this.lastFailureAt = at;
    return true;
  }
}
