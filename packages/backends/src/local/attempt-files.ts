/**
 * The local backend's side of what ranks and the control plane share through files on the node:
 *
 *   <dataDir>/checkpoints/<jobId>/          the default checkpoint dir (TUTTI_CHECKPOINT_DIR)
 *   <dataDir>/jobs/<jobId>/control/         TUTTI_CONTROL_DIR: `preempt-deadline` (epoch seconds) before a stop
 *   <dataDir>/jobs/<jobId>/attempt-<n>/rank-<r>.log   read back by `readLog`
 *
 * The control plane reaches these only through `ExecutionBackend` (prepareAttempt, writeStopDeadline, readLog).
 */
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { AttemptDirectories, PrepareAttemptRequest, RankHandle, RankLogRef, ReadLogOptions } from '../execution-backend.ts';
import { readRankLog } from '../rank-log.ts';
import { isProcessAlive, readProcessArgs } from './process-info.ts';
import { PRIVATE_FILE_MODE, jobDirectory, rankFiles, readExitFile, supervisorScriptPath } from './rank-files.ts';

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

export function readLocalLog(dataDir: string, ref: RankLogRef, options: ReadLogOptions = {}): AsyncGenerator<Uint8Array> {
  return readRankLog(rankFiles(dataDir, ref.jobId, ref.rank, ref.attempt).log, options, () => rankHasEnded(dataDir, ref));
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
