/**
 * The local backend's side of what ranks and the control plane share through files on the node:
 *
 *   <dataDir>/checkpoints/<jobId>/          the default checkpoint dir (TUTTI_CHECKPOINT_DIR)
 *   <dataDir>/jobs/<jobId>/control/         TUTTI_CONTROL_DIR: `preempt-deadline` (epoch seconds) before a stop
 *   <dataDir>/jobs/<jobId>/attempt-<n>/rank-<r>.log   read back by `readLog`
 *
 * The control plane reaches these only through `ExecutionBackend` (prepareAttempt, writeStopDeadline, readLog).
 */
import { mkdir, open, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AttemptDirectories, PrepareAttemptRequest, RankHandle, RankLogRef, ReadLogOptions } from '../execution-backend.ts';
import { isProcessAlive, readProcessArgs } from './process-info.ts';
import { PRIVATE_FILE_MODE, jobDirectory, rankFiles, readExitFile, supervisorScriptPath } from './rank-files.ts';

/** How often a followed log is read again. */
const FOLLOW_POLL_MS = 150;
const READ_CHUNK_BYTES = 64 * 1024;
const STOP_DEADLINE_FILE = 'preempt-deadline';

export function controlDirectory(dataDir: string, jobId: string): string {
  return join(jobDirectory(dataDir, jobId), 'control');
}

/** A job's checkpoint dir: its own (relative to its workdir, else its job dir), or `<dataDir>/checkpoints/<jobId>`. */
export function checkpointDirectory(dataDir: string, request: Pick<PrepareAttemptRequest, 'jobId' | 'checkpointDir' | 'workdir'>): string {
  if (request.checkpointDir === undefined) return join(dataDir, 'checkpoints', request.jobId);
  return resolve(request.workdir ?? jobDirectory(dataDir, request.jobId), request.checkpointDir);
}

export async function prepareLocalAttempt(dataDir: string, request: PrepareAttemptRequest): Promise<AttemptDirectories> {
  const checkpointDir = checkpointDirectory(dataDir, request);
  const controlDir = controlDirectory(dataDir, request.jobId);
  await makeDirectory(checkpointDir);
  await makeDirectory(controlDir);
  // The previous attempt's deadline would tell this attempt's ranks a stop is under way.
  await rm(join(controlDir, STOP_DEADLINE_FILE), { force: true });
  const newestCheckpoint = await newestEntry(checkpointDir);
  return { checkpointDir, controlDir, ...(newestCheckpoint !== undefined ? { newestCheckpoint } : {}) };
}

export async function writeLocalStopDeadline(dataDir: string, handles: readonly RankHandle[], deadline: number): Promise<void> {
  const jobIds = new Set(handles.map((h) => h.jobId));
  await Promise.all(
    [...jobIds].map((jobId) =>
      writeFile(join(controlDirectory(dataDir, jobId), STOP_DEADLINE_FILE), `${Math.floor(deadline / 1000)}\n`, { mode: PRIVATE_FILE_MODE }).catch(() => undefined),
    ),
  );
}

/**
 * Whether a rank is over: its supervisor recorded the exit, or no longer runs (SIGKILLed, lost). A rank whose
 * supervisor has not written its pid file yet is not over: it is starting.
 */
async function rankHasEnded(dataDir: string, ref: RankLogRef): Promise<boolean> {
  const files = rankFiles(dataDir, ref.jobId, ref.rank, ref.attempt);
  if (readExitFile(files.exit) !== undefined) return true;
  const pidText = await readFile(files.pid, 'utf8').catch(() => undefined);
  if (pidText === undefined) return false;
  const pid = Number(pidText.trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  // Checked on its argv, so that a reused PID is not taken for the rank (as in `findStarted`).
  const args = readProcessArgs(pid);
  const running = args === undefined ? isProcessAlive(pid, 0) : args[1] === supervisorScriptPath(dataDir) && args[2] === files.pid;
  return !running;
}

export async function* readLocalLog(dataDir: string, ref: RankLogRef, options: ReadLogOptions = {}): AsyncGenerator<Uint8Array> {
  const { follow = false, signal } = options;
  const path = rankFiles(dataDir, ref.jobId, ref.rank, ref.attempt).log;
  let file = await open(path, 'r').catch(() => undefined);
  while (!file) {
    // Not there yet: a follow waits for the rank to start (or to have ended without one).
    if (!follow || signal?.aborted || (await rankHasEnded(dataDir, ref))) return;
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
      const ended = follow && (await rankHasEnded(dataDir, ref));
      yield* readAvailable();
      if (!follow || ended || signal?.aborted) return;
      await sleep(FOLLOW_POLL_MS, undefined, { signal }).catch(() => undefined);
      if (signal?.aborted) return;
    }
  } finally {
    await file.close();
  }
}

/**
 * `mkdir -p`, failing with the real reason. Node's recursive mkdir reports ENOENT for a directory it could not make
 * under an existing parent whatever the cause (no space, a read-only file system); asked again without recursion,
 * mkdir says which (ENOSPC, EROFS, EACCES), so that a full disk is told as one.
 */
async function makeDirectory(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    await mkdir(dir).catch((direct: NodeJS.ErrnoException) => {
      throw direct.code === 'ENOENT' || direct.code === 'EEXIST' ? error : direct;
    });
  }
}

/** The newest entry of a directory by modification time, skipping hidden and half-written ('.tmp') ones. */
async function newestEntry(dir: string): Promise<string | undefined> {
  const names = await readdir(dir).catch(() => [] as string[]);
  let best: { path: string; mtimeMs: number } | undefined;
  for (const name of names) {
    if (name.startsWith('.') || name.endsWith('.tmp')) continue;
    const full = join(dir, name);
    const info = await stat(full).catch(() => undefined);
    if (info && (!best || info.mtimeMs > best.mtimeMs || (info.mtimeMs === best.mtimeMs && full > best.path))) best = { path: full, mtimeMs: info.mtimeMs };
  }
  return best?.path;
}
