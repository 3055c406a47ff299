/**
 * The Slurm backend's `ref` in a rank handle: the Slurm job that runs the rank's attempt.
 *
 *   { "slurmJobId": "4242" }
 *
 * One tutti attempt is one Slurm job, and its ranks are the tasks of its one step (`srun`); rank r is task r. The
 * rank's files are found from the handle's job and attempt, in the backend's data dir, not from the ref. The control
 * plane stores the ref as JSON and hands it back: `readSlurmRankRef` checks it, so that a handle of another backend
 * or a damaged one is refused with its reason; and the backend checks the Slurm job's name before it signals it.
 */
import type { JsonObject } from '@tutti/model';
import { RankHandleError, checkRankHandle, describeHandleValue, type RankDetails, type RankHandle } from '../execution-backend.ts';

export const SLURM_BACKEND_KIND = 'slurm';

export interface SlurmRankRef {
  /** Slurm's job id (digits; a string, as Slurm prints it). */
  slurmJobId: string;
}

export function slurmRankRef(ref: SlurmRankRef): JsonObject {
  return { slurmJobId: ref.slurmJobId };
}

/** The Slurm ref of `handle`, checked: throws RankHandleError naming the rank and the field. */
export function readSlurmRankRef(handle: RankHandle): SlurmRankRef {
  const { which, ref } = checkRankHandle(handle, SLURM_BACKEND_KIND, '{slurmJobId}');
  const { slurmJobId } = ref;
  if (typeof slurmJobId !== 'string' || !/^\d+$/.test(slurmJobId)) {
    throw new RankHandleError(`the handle of ${which}: ref.slurmJobId must be Slurm's job id (digits, as a string), got ${describeHandleValue(slurmJobId)}`);
  }
  return { slurmJobId };
}

/** What users see of a Slurm rank: its Slurm job (what `squeue`, `scontrol` and the site's admins know it by). */
export function slurmRankDetails(ref: JsonObject): RankDetails {
  const { slurmJobId } = ref;
  return typeof slurmJobId === 'string' && /^\d+$/.test(slurmJobId) ? { slurm_job: slurmJobId } : {};
}
