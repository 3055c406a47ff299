/**
 * The size cap of rank logs (`tutti up --max-log-bytes`), so that one chatty job cannot fill the disk the data dir
 * (and tutti.db) lives on. The server enforces it each time it reads a log for progress records (`LogTail`), through
 * the backend (`ExecutionBackend.capLog`), which trims the log where it lives: see the local backend's log-trim.ts.
 */

/** One rank log's default cap: 1 GiB. */
export const DEFAULT_MAX_LOG_BYTES = 1024 ** 3;
/** The smallest cap accepted: room for the marker and some output. */
export const MIN_MAX_LOG_BYTES = 64 * 1024;

/** Why `maxBytes` is not a usable cap, or undefined when it is. */
export function checkMaxLogBytes(maxBytes: number): string | undefined {
  if (!Number.isSafeInteger(maxBytes) || maxBytes < MIN_MAX_LOG_BYTES) {
    return `the log cap must be a whole number of bytes of at least ${MIN_MAX_LOG_BYTES} (64 KiB), got ${maxBytes}`;
  }
  return undefined;
}
