/**
 * Streams one rank's log, read through the execution backend (`ExecutionBackend.readLog`): the server opens no
 * rank's file itself, so the log reads the same from a node, a Slurm step or another replica. Without `follow` it
 * sends what is there; with `follow` it keeps reading as the log grows and ends once the job has ended and the last
 * bytes are sent. A pending job's log is waited for. `attempt` picks an earlier attempt's log (those are complete:
 * no following).
 */
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { isTerminalJobStatus } from '@tutti/model';
import type { ExecutionBackend } from '@tutti/backends';
import type { StateStore } from '@tutti/store';

const POLL_MS = 150;

interface LogRequest {
  store: StateStore;
  backend: Pick<ExecutionBackend, 'readLog'>;
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
  return Readable.from(options.attempt === undefined ? readCurrentLog(options) : readPastAttempt(options, options.attempt), { objectMode: false });
}

async function* readPastAttempt({ store, backend, jobId, rank, signal }: LogRequest, attempt: number): AsyncGenerator<Uint8Array> {
  const [attempts, job] = await Promise.all([store.listAttempts(jobId), store.getJob(jobId)]);
  const recorded = attempts.some((a) => a.attempt === attempt) || (job?.attempt ?? 1) === attempt;
  if (!recorded) return;
  yield* backend.readLog({ jobId, rank, attempt }, { signal });
}

async function* readCurrentLog({ store, backend, jobId, rank, follow, signal, flushHeaders }: LogRequest): AsyncGenerator<Uint8Array> {
  // The stream is read only once the response is set up, so the headers are complete by now.
  if (follow) flushHeaders?.();
  // Wait for the rank to have started (a pending job has no log yet).
  let attempt: number;
  for (;;) {
    if (signal.aborted) return;
    const [job, tasks] = await Promise.all([store.getJob(jobId), store.getTasks(jobId)]);
    if (job && tasks.some((t) => t.rank === rank && t.startedAt !== undefined)) {
      attempt = job.attempt ?? 1;
      break;
    }
    if (!follow || !job || isTerminalJobStatus(job.status)) return;
    await sleep(POLL_MS, undefined, { signal }).catch(() => undefined);
  }
  // The backend's follow ends when the rank has exited and its last bytes are read.
  yield* backend.readLog({ jobId, rank, attempt }, { follow, signal });
  if (!follow) return;
  // A follow ends with the job, not with one of its ranks (the job's end may be recorded a moment after the exit).
  for (;;) {
    if (signal.aborted) return;
    const job = await store.getJob(jobId);
    if (!job || isTerminalJobStatus(job.status)) return;
    await sleep(POLL_MS, undefined, { signal }).catch(() => undefined);
  }
}
