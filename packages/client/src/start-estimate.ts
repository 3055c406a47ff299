/** A pending job's expected start in words, for the dashboard and the CLI: an estimate, with what it rests on. */
import { formatApproxDuration } from '@tutti/model';
import type { JobView } from './api-types.ts';

/**
 * "in about 1 h, if job 51 takes its max_duration"; "any moment now, ..." once the time has come; undefined when the
 * server gave no estimate (no reservation, or one resting on the default run time alone).
 */
export function describeEstimatedStart(diagnosis: Pick<NonNullable<JobView['pending_diagnosis']>, 'estimated_start_at' | 'estimated_start_basis'>, nowMs: number): string | undefined {
  if (!diagnosis.estimated_start_at) return undefined;
  const inMs = Date.parse(diagnosis.estimated_start_at) - nowMs;
  const when = inMs <= 0 ? 'any moment now' : `in ${formatApproxDuration(inMs)}`;
  return diagnosis.estimated_start_basis ? `${when}, ${diagnosis.estimated_start_basis}` : when;
}
