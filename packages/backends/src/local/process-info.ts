/**
 * What /proc says about a process: enough to tell "our rank, still running" from "gone" or "someone else who got
 * the same PID later".
 */
import { readFileSync, readdirSync } from 'node:fs';

export interface ProcStat {
  /** One letter: R running, S sleeping, D disk wait, Z zombie, T stopped, X dead, ... */
  state: string;
  /** The process group id (field 5). */
  processGroup: number;
  /** Clock ticks since boot when the process started (field 22): unchanged for the process's life. */
  startTime: number;
}

/**
 * Parses the text of /proc/PID/stat. The command name (field 2) is in parentheses and may itself contain spaces and
 * parentheses, so fields are counted from the *last* ')'. Returns undefined for text that does not look like one.
 */
export function parseProcStat(text: string): ProcStat | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  // After ") " come fields 3, 4, 5, ...: index 0 is field 3 (state), so field N is index N - 3.
  const fields = text.slice(close + 1).trim().split(/\s+/);
  const state = fields[0];
  const processGroup = Number(fields[5 - 3]);
  const startTime = Number(fields[22 - 3]);
  if (state === undefined || !/^[A-Za-z]$/.test(state)) return undefined;
  if (!Number.isSafeInteger(processGroup) || !Number.isSafeInteger(startTime)) return undefined;
  return { state, processGroup, startTime };
}

/** Reads and parses /proc/PID/stat; undefined when there is no such process (or no /proc). */
export function readProcStat(pid: number): ProcStat | undefined {
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * The process's start time in clock ticks since boot (/proc/PID/stat field 22), or undefined when the process does
 * not exist or /proc is not available (not Linux).
 */
export function readProcessStartTime(pid: number): number | undefined {
  return readProcStat(pid)?.startTime;
}

/** The process's argv (/proc/PID/cmdline), or undefined when there is no such process (or no /proc). */
export function readProcessArgs(pid: number): string[] | undefined {
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  try {
    const text = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return text.endsWith('\u0000') ? text.slice(0, -1).split('\u0000') : text.split('\u0000');
  } catch {
    return undefined;
  }
}

let procAvailable: boolean | undefined;
function hasProc(): boolean {
  procAvailable ??= readProcStat(process.pid) !== undefined;
  return procAvailable;
}

/**
 * True when `pid` runs and is the process that started at `startTime` (a PID reused by another process does not
 * count). Zombies count as gone: they have exited and only wait to be reaped.
 *
 * Where there is no /proc, or when `startTime` is 0 (unknown), this falls back to "some process has this PID"
 * (`kill(pid, 0)`), which cannot detect PID reuse.
 */
export function isProcessAlive(pid: number, startTime: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  if (hasProc()) {
    const stat = readProcStat(pid);
    if (stat === undefined || stat.state === 'Z' || stat.state === 'X' || stat.state === 'x') return false;
    return startTime === 0 || stat.startTime === startTime;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Sends `signal` to the process group `pgid`. Returns false, without throwing, when there is no such group (ESRCH)
 * or it is not ours to signal (EPERM).
 */
export function signalProcessGroup(pgid: number, signal: NodeJS.Signals): boolean {
  if (!Number.isSafeInteger(pgid) || pgid <= 1) return false;
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ESRCH' || code === 'EPERM') return false;
    throw error;
  }
}

/**
 * True while some process (a zombie not yet reaped included) is in process group `pgid`, as far as this process may
 * know: a group that is not ours to signal (EPERM) counts as gone.
 */
export function processGroupExists(pgid: number): boolean {
  if (!Number.isSafeInteger(pgid) || pgid <= 1) return false;
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * The process groups that still have a live (not zombie) member, from a scan of /proc; undefined without /proc.
 * A zombie has released its memory and devices; it only waits for its parent (often init, sometimes slow) to reap it.
 */
export function listLiveProcessGroups(): Set<number> | undefined {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return undefined;
  }
  const groups = new Set<number>();
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readProcStat(Number(entry));
    if (stat !== undefined && stat.state !== 'Z' && stat.state !== 'X') groups.add(stat.processGroup);
  }
  return groups;
}
