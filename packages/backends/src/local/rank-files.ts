/**
 * The files of a rank in the data dir, the supervisor script that writes them, and how to read them back.
 *
 *   <dataDir>/bin/rank-supervisor.sh        RANK_SUPERVISOR_SCRIPT
 *   <dataDir>/jobs/<jobId>/rank-<r>.log     stdout + stderr of the rank, appended
 *   <dataDir>/jobs/<jobId>/rank-<r>.pid     the supervisor's pid (= the rank's process group and session id)
 *   <dataDir>/jobs/<jobId>/rank-<r>.exit    the user command's exit status, written once it has exited
 *   <dataDir>/jobs/<jobId>/rank-<r>.error.json  the rank's structured error, if it wrote one (TORCHELASTIC_ERROR_FILE)
 *   <dataDir>/jobs/<jobId>/attempt-<n>/…    the same files, per attempt, for a launch that names its attempt
 */
import { constants as osConstants } from 'node:os';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { RUN_AND_RECORD_EXIT, TRAP_STOP_SIGNALS } from '../rank-exit-script.ts';

/**
 * The POSIX sh process between the backend and the user's command, one per rank. It is the leader of the rank's
 * session and process group (the backend spawns it detached), so signalling the group reaches it, the user's
 * command and everything that command started without leaving the group.
 *
 * Usage: `/bin/sh rank-supervisor.sh PID_FILE EXIT_FILE COMMAND [ARG...]`
 *
 * - It traps the usual termination signals with a no-op handler (not `''`: an ignored signal would stay ignored in
 *   the user's command), so a signal sent to the group reaches the user's command and leaves the supervisor alive
 *   to record how the command reacted. SIGKILL cannot be trapped: then no status is written, and the backend knows
 *   why.
 * - The command runs in the *foreground* in a subshell `( "$@" )`. POSIX defers a trap until the foreground command
 *   has finished, and a foreground command, unlike a background job, keeps SIGINT and SIGQUIT at their defaults,
 *   so `stop(…, {signal: 'SIGINT'})` raises KeyboardInterrupt in Python as expected. The subshell makes a
 *   command named like a builtin (`exit 3`, `cd`) run in a child, never in the supervisor itself.
 * - `$?` is the command's exit code, or 128+N when a signal N killed it (the shell's convention).
 * - The status is written to a temporary file and renamed, so a reader never sees a half-written file. Signals
 *   are ignored from then on, so that `mv` (which inherits the dispositions) is not killed by a late SIGTERM.
 * - The supervisor inherits the job's environment, whose PATH may lack `mv` or be empty: once the command is over
 *   it uses a fixed PATH of its own (the command never sees it), and `echo`, `trap` and `exit` are builtins. Its
 *   files are then made 0600 (umask 077), like every file tutti writes in the data dir; the command keeps the
 *   umask it was started with.
 * - stdin is whatever the backend gave (/dev/null); stdout and stderr are the rank's log.
 */
export const RANK_SUPERVISOR_SCRIPT = [
  '#!/bin/sh',
  "# tutti rank supervisor: runs one rank's command and records its exit status.",
  '# Usage: rank-supervisor.sh PID_FILE EXIT_FILE COMMAND [ARG...]',
  '# Written by the tutti local backend; replaced (by rename) when tutti is upgraded.',
  'pid_file=$1',
  'exit_file=$2',
  'shift 2',
  TRAP_STOP_SIGNALS,
  'echo $$ > "$pid_file"',
  ...RUN_AND_RECORD_EXIT,
  '',
].join('\n');

/** Rank logs, pid files and control files: only the data dir's owner reads them (see @tutti/store's PRIVATE_FILE_MODE). */
export const PRIVATE_FILE_MODE = 0o600;

export function supervisorScriptPath(dataDir: string): string {
  return join(dataDir, 'bin', 'rank-supervisor.sh');
}

export function jobDirectory(dataDir: string, jobId: string): string {
  return join(dataDir, 'jobs', jobId);
}

export interface RankFiles {
  log: string;
  pid: string;
  exit: string;
  /** TORCHELASTIC_ERROR_FILE: written by the rank itself (see rank-error-file.ts). */
  error: string;
}

/** Attempt n of a job keeps its files in `jobs/<id>/attempt-<n>/`; without an attempt, in `jobs/<id>/`. */
export function attemptDirectory(dataDir: string, jobId: string, attempt?: number): string {
  const dir = jobDirectory(dataDir, jobId);
  return attempt === undefined ? dir : join(dir, `attempt-${attempt}`);
}

export function rankFiles(dataDir: string, jobId: string, rank: number, attempt?: number): RankFiles {
  const dir = attemptDirectory(dataDir, jobId, attempt);
  return { log: join(dir, `rank-${rank}.log`), pid: join(dir, `rank-${rank}.pid`), exit: join(dir, `rank-${rank}.exit`), error: join(dir, `rank-${rank}.error.json`) };
}

/** An exit status as the supervisor recorded it. */
export interface RecordedExit {
  exitCode: number;
  /** Inferred from a code of 128+N where N is a known signal (see `signalFromExitCode`). */
  signal?: NodeJS.Signals;
  /** When the status was written (the file's mtime), epoch milliseconds. */
  writtenAt: number;
}

/** Reads a rank's `.exit` file; undefined when it does not exist (yet) or does not hold a status. */
export function readExitFile(path: string): RecordedExit | undefined {
  let text: string;
  let writtenAt: number;
  try {
    text = readFileSync(path, 'utf8');
    writtenAt = statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
  const exitCode = parseExitStatus(text);
  if (exitCode === undefined) return undefined;
  const signal = signalFromExitCode(exitCode);
  return { exitCode, writtenAt: Math.round(writtenAt), ...(signal ? { signal } : {}) };
}

/** The content of an `.exit` file: a whole number 0..255 and a newline. */
export function parseExitStatus(text: string): number | undefined {
  const trimmed = text.trim();
  if (!/^\d{1,3}$/.test(trimmed)) return undefined;
  const code = Number(trimmed);
  return code <= 255 ? code : undefined;
}

/** Signal number → name; the first name wins where two share a number (SIGABRT before SIGIOT). */
const SIGNAL_NAMES = new Map<number, NodeJS.Signals>();
for (const [name, number] of Object.entries(osConstants.signals)) {
  if (!SIGNAL_NAMES.has(number)) SIGNAL_NAMES.set(number, name as NodeJS.Signals);
}

/**
 * The signal a shell exit code of 128+N stands for (143 → SIGTERM, 137 → SIGKILL). A program that exits with such
 * a code on purpose looks the same: POSIX sh cannot tell them apart, and neither can tutti.
 */
export function signalFromExitCode(exitCode: number): NodeJS.Signals | undefined {
  return exitCode > 128 ? SIGNAL_NAMES.get(exitCode - 128) : undefined;
}

/** The shell exit code for a death by `signal`: 128 + its number. */
export function exitCodeForSignal(signal: NodeJS.Signals): number {
  const number = osConstants.signals[signal] as number | undefined;
  return 128 + (number ?? 0);
}
