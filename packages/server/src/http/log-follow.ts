/**
 * Streams one rank's log file. Without `follow` it sends what is there; with `follow` it keeps reading as the
 * file grows and ends once the job has ended and the last bytes are sent. A pending job's log is waited for.
 * `attempt` picks an earlier attempt's log (those files are complete: no following).
 */
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { isTerminalJobStatus } from '@tutti/model';
import type { StateStore } from '@tutti/store';

const POLL_MS = 150;
const CHUNK = 64 * 1024;

interface LogRequest {
  store: StateStore;
  jobId: string;
  rank: number;
  follow: boolean;
  signal: AbortSignal;
  attempt?: number;
  /**
   * Sends the response headers before any log bytes: a follow may wait long (a pending job has no log yet), and a
   * client should know meanwhile that its request was accepted.
   */
  flushHeaders?: () => void;
}

export function followLog(options: LogRequest): Readable {
  return Readable.from(options.attempt === undefined ? readLog(options) : readPastAttempt(options, options.attempt), { objectMode: false });
}

async function* readPastAttempt({ store, jobId, rank }: LogRequest, attempt: number): AsyncGenerator<Buffer> {
  const past = (await store.listAttempts(jobId)).find((a) => a.attempt === attempt);
  const current = past ? undefined : (await store.getTasks(jobId)).find((t) => t.rank === rank);
  const logPath = past ? past.tasks.find((t) => t.rank === rank)?.logPath : current?.logPath;
  const file = logPath ? await open(logPath, 'r').catch(() => undefined) : undefined;
  if (!file) return;
  try {
    for await (const chunk of file.createReadStream({ autoClose: false })) yield chunk as Buffer;
  } finally {
    await file.close();
  }
}

async function* readLog({ store, jobId, rank, follow, signal, flushHeaders }: LogRequest): AsyncGenerator<Buffer> {
  // The stream is read only once the response is set up, so the headers are complete by now.
  if (follow) flushHeaders?.();
  let logPath: string | undefined;
  // Wait for the rank to exist (a pending job has no log yet).
  for (;;) {
    if (signal.aborted) return;
    const task = (await store.getTasks(jobId)).find((t) => t.rank === rank);
    logPath = task?.logPath;
    if (logPath) break;
    const job = await store.getJob(jobId);
    if (!follow || !job || isTerminalJobStatus(job.status)) return;
    await sleep(POLL_MS, undefined, { signal }).catch(() => undefined);
  }
  const file = await open(logPath, 'r').catch(() => undefined);
  if (!file) return;
  try {
    let position = 0;
    const buffer = Buffer.alloc(CHUNK);
    for (;;) {
      // A log trimmed to its cap (see log-cap.ts) is now shorter than what was sent: go on from its marker line.
      if (follow && (await file.stat()).size < position) position = 0;
      // Read everything available now.
      for (;;) {
        const { bytesRead } = await file.read(buffer, 0, CHUNK, position);
        if (bytesRead === 0) break;
        position += bytesRead;
        yield Buffer.from(buffer.subarray(0, bytesRead));
      }
      if (!follow || signal.aborted) return;
      const job = await store.getJob(jobId);
      if (!job || isTerminalJobStatus(job.status)) {
        // The job ended: whatever its ranks wrote before exiting is in the file now; send the rest and stop.
        for (;;) {
          const { bytesRead } = await file.read(buffer, 0, CHUNK, position);
          if (bytesRead === 0) return;
          position += bytesRead;
          yield Buffer.from(buffer.subarray(0, bytesRead));
        }
      }
      await sleep(POLL_MS, undefined, { signal }).catch(() => undefined);
    }
  } finally {
    await file.close();
  }
}
