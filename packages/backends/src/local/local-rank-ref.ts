/**
 * The local backend's `ref` in a rank handle: how it finds the rank's process again, also after a restart.
 *
 *   { "pid": 4242, "pidStartTime": 123456, "logPath": "/data/jobs/7/attempt-1/rank-0.log", "host": "gpu-box" }
 *
 * Stored by the control plane as JSON and handed back: `readLocalRankRef` checks it field by field, so that a
 * handle of another backend or a damaged one is refused with its reason, never used to signal some process.
 */
import type { JsonObject } from '@tutti/model';
import { RankHandleError, checkRankHandle, describeHandleValue, type RankDetails, type RankHandle } from '../execution-backend.ts';

export const LOCAL_BACKEND_KIND = 'local';

export interface LocalRankRef {
  /** The rank's supervisor: the leader of its process group and session, so the group id is the pid too. */
  pid: number;
  /**
   * /proc/PID/stat start time, so a reused PID is not mistaken for the rank. 0 when unknown (no /proc); -1 when the
   * process was already gone when the handle was made (`findStarted`), so that no live process matches it.
   */
  pidStartTime: number;
  /** Where its stdout and stderr go, on `host`. For people reading the store: the backend finds the log itself. */
  logPath?: string;
  /** The machine the process runs on (os.hostname()): a pid means something only there. */
  host?: string;
}

export function localRankRef(ref: LocalRankRef): JsonObject {
  return { pid: ref.pid, pidStartTime: ref.pidStartTime, ...(ref.logPath !== undefined ? { logPath: ref.logPath } : {}), ...(ref.host !== undefined ? { host: ref.host } : {}) };
}

/**
 * The local ref of `handle`, checked: throws RankHandleError (naming the rank and the field) for a handle another
 * backend made or whose ref is not a local one. Checks the handle itself too, as it may come from a damaged store.
 */
export function readLocalRankRef(handle: RankHandle): LocalRankRef {
  const { which, ref } = checkRankHandle(handle, LOCAL_BACKEND_KIND, '{pid, pidStartTime, logPath, host}');
  const { pid, pidStartTime, logPath, host } = ref;
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) {
    throw new RankHandleError(`the handle of ${which}: ref.pid must be a positive whole number (the rank's process id), got ${describeHandleValue(pid)}`);
  }
  if (typeof pidStartTime !== 'number' || !Number.isSafeInteger(pidStartTime) || pidStartTime < -1) {
    throw new RankHandleError(`the handle of ${which}: ref.pidStartTime must be a whole number from -1 (the process's start time from /proc), got ${describeHandleValue(pidStartTime)}`);
  }
  if (logPath !== undefined && typeof logPath !== 'string') throw new RankHandleError(`the handle of ${which}: ref.logPath must be a string, got ${describeHandleValue(logPath)}`);
  if (host !== undefined && typeof host !== 'string') throw new RankHandleError(`the handle of ${which}: ref.host must be a string, got ${describeHandleValue(host)}`);
  return { pid, pidStartTime, ...(logPath !== undefined ? { logPath } : {}), ...(host !== undefined ? { host } : {}) };
}

/** What users see of a local rank: its pid and, when known, the machine it runs on. Nothing for a ref it cannot read. */
export function localRankDetails(ref: JsonObject): RankDetails {
  const { pid, host } = ref;
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) return {};
  return { pid, ...(typeof host === 'string' ? { host } : {}) };
}
