/**
 * A rank's structured error: the file TORCHELASTIC_ERROR_FILE names, which torch.distributed.elastic's `@record` (and
 * torchrun's agent, for the first of its workers that failed) writes when the program dies of an exception:
 *
 *   {"message": {"message": "RuntimeError: CUDA out of memory ...", "extraInfo": {"py_callstack": "...", "timestamp": "..."}}}
 *
 * Any program may write one (`{"message": "text"}` is read too). Backends read it where the rank ran when the rank
 * fails, and tell it with the exit, so that `tutti show` says why and not only "exited with code 1".
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';

/** Larger files are cut here before parsing: the message comes first, the call stack after it. */
const ERROR_FILE_READ_LIMIT = 64 * 1024;
/** What a job's end reason keeps of the message. */
export const RANK_ERROR_MAX_CHARS = 500;

/** The error's message from an error file's text, on one line and at most RANK_ERROR_MAX_CHARS; undefined when there is none. */
export function parseRankErrorFile(text: string): string | undefined {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    // Cut at the read limit, or half-written: the message may still be whole near its start.
    const match = /"message"\s*:\s*(?:\{\s*"message"\s*:\s*)?("(?:[^"\\]|\\.)*")/.exec(text);
    if (!match?.[1]) return undefined;
    try {
      data = { message: JSON.parse(match[1]) as unknown };
    } catch {
      return undefined;
    }
  }
  if (typeof data !== 'object' || data === null) return undefined;
  const outer = (data as { message?: unknown }).message;
  const message = typeof outer === 'string' ? outer : typeof outer === 'object' && outer !== null ? (outer as { message?: unknown }).message : undefined;
  if (typeof message !== 'string') return undefined;
  const oneLine = message.replace(/\s+/g, ' ').trim();
  if (oneLine === '') return undefined;
  return oneLine.length > RANK_ERROR_MAX_CHARS ? `${oneLine.slice(0, RANK_ERROR_MAX_CHARS - 1)}…` : oneLine;
}

/** Reads and parses a rank's error file; undefined when it is missing, unreadable or says nothing. Never throws. */
export async function readRankErrorFile(path: string): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(path, 'r');
    const buffer = Buffer.alloc(ERROR_FILE_READ_LIMIT);
    const { bytesRead } = await handle.read(buffer, 0, ERROR_FILE_READ_LIMIT, 0);
    return parseRankErrorFile(buffer.subarray(0, bytesRead).toString('utf8'));
  } catch {
    return undefined;
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/** `readRankErrorFile`, synchronously: for a backend that reports an exit in the same tick it sees it. Never throws. */
export function readRankErrorFileSync(path: string): string | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const buffer = Buffer.alloc(ERROR_FILE_READ_LIMIT);
    const bytesRead = readSync(fd, buffer, 0, ERROR_FILE_READ_LIMIT, 0);
    return parseRankErrorFile(buffer.subarray(0, bytesRead).toString('utf8'));
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
