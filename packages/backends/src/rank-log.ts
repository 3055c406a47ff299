/**
 * Reading a rank's log file, once or following it as it grows: shared by every backend whose ranks write their
 * output to a file the control plane can open (the local backend's data dir; on Slurm, the shared file system).
 */
import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ReadLogOptions } from './execution-backend.ts';

/** How often a followed log is read again. */
const FOLLOW_POLL_MS = 150;
const READ_CHUNK_BYTES = 64 * 1024;

/**
 * The bytes of the log at `path` from `options.offset`, as `ExecutionBackend.readLog` promises them. `hasEnded`
 * says whether the rank is over (its backend knows how): a follow ends once it is and its last bytes are sent, and a
 * log that does not exist yet is waited for only while it is not.
 */
export async function* readRankLog(path: string, options: ReadLogOptions, hasEnded: () => Promise<boolean>): AsyncGenerator<Uint8Array> {
  const { follow = false, signal } = options;
  let file = await open(path, 'r').catch(() => undefined);
  while (!file) {
    if (!follow || signal?.aborted || (await hasEnded())) return;
    await sleep(FOLLOW_POLL_MS, undefined, { signal }).catch(() => undefined);
    file = await open(path, 'r').catch(() => undefined);
  }
  try {
    let position = Math.max(0, options.offset ?? 0);
    const buffer = Buffer.alloc(READ_CHUNK_BYTES);
    const readAvailable = async function* (): AsyncGenerator<Uint8Array> {
      for (;;) {
        const { bytesRead } = await file.read(buffer, 0, READ_CHUNK_BYTES, position);
        if (bytesRead === 0) return;
        position += bytesRead;
        yield Buffer.from(buffer.subarray(0, bytesRead));
      }
    };
    for (;;) {
      // A log trimmed to its cap is now shorter than what was sent: go on from its start, where its marker line is.
      if (follow && (await file.stat()).size < position) position = 0;
      // Whether it had ended is asked before the read: what it wrote before exiting is then all in this read.
      const ended = follow && (await hasEnded());
      yield* readAvailable();
      if (!follow || ended || signal?.aborted) return;
      await sleep(FOLLOW_POLL_MS, undefined, { signal }).catch(() => undefined);
      if (signal?.aborted) return;
    }
  } finally {
    await file.close();
  }
}
