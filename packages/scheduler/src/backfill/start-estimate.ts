/**
 * What a reservation's expected start rests on. A reservation starts when enough running jobs have ended, and each
 * of their ends is known only as well as its source: a max_duration (an upper bound the job declared), run times of
 * similar finished jobs (an estimate), the grace of a stop already under way, or the profile's default run time for a
 * job that declared nothing (a guess). The start is told with its basis; one resting on guesses alone is not told.
 */
import { formatDuration } from '@tutti/model';
import { formatAnd, formatSome } from '../cycle/format.ts';
import type { RunningJob } from '../cycle/running.ts';

/** Where a running job's expected end comes from. */
export type EndBasis = 'max_duration' | 'history' | 'stopping' | 'assumed';

/**
 * "if job 51 takes its max_duration", "if jobs 3 and 4 take their max_duration, assuming 1h for job 5 without
 * max_duration"; undefined when every job it waits for has only the default run time to go by (or there are none):
 * then there is nothing to rest an estimate on.
 */
export function describeStartBasis(freed: readonly RunningJob[], basisOf: (running: RunningJob) => EndBasis, assumedRunMs: number): string | undefined {
  const ids: Record<EndBasis, string[]> = { max_duration: [], history: [], stopping: [], assumed: [] };
  for (const running of freed) ids[basisOf(running)].push(running.id);
  if (ids.assumed.length === freed.length) return undefined;
  const jobs = (list: readonly string[]): string => `${list.length === 1 ? 'job' : 'jobs'} ${formatSome(list)}`;
  const conditions: string[] = [];
  const { max_duration: declared, history, stopping, assumed } = ids;
  if (declared.length > 0) conditions.push(`${jobs(declared)} ${declared.length === 1 ? 'takes its' : 'take their'} max_duration`);
  if (history.length > 0) conditions.push(`${jobs(history)} ${history.length === 1 ? 'runs' : 'run'} as long as similar finished jobs`);
  if (stopping.length > 0) conditions.push(`${jobs(stopping)} ${stopping.length === 1 ? 'stops' : 'stop'} within ${stopping.length === 1 ? 'its' : 'their'} grace`);
  const assumption = assumed.length > 0 ? `, assuming ${formatDuration(assumedRunMs)} for ${jobs(assumed)} without max_duration` : '';
  return `if ${formatAnd(conditions)}${assumption}`;
}
