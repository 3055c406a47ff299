/**
 * The one grace rule, for every stop of a gang (cancel, preemption, restart after a failed rank, max_duration, a
 * hang) and for the `TUTTI_PREEMPT_GRACE_S` a rank is told at launch, live and in the simulator alike: the job's own
 * `preemption_grace`, else the site's default (`tutti up --grace`), never more than the scheduler profile's maximum
 * (`maxGraceMs` of its preemption plugin) when it sets one. The job knows best how long it needs to checkpoint; a
 * site that cannot wait that long says so with a maximum, and the stop's event says which of the three applied.
 */

/** The site's default grace when `tutti up --grace` does not set one (and the simulator's): a minute. */
export const DEFAULT_STOP_GRACE_MS = 60_000;

/** Which setting decided a stop's grace. */
export type GraceSource = 'job' | 'default' | 'max';

export interface StopGrace {
  /** Time between the stop signal and SIGKILL, ms. */
  graceMs: number;
  /** `job`: the job's `preemption_grace`; `default`: the site's default; `max`: the profile's maximum cut it short. */
  source: GraceSource;
}

/** `jobGraceMs`: the job's `preemption_grace`; `maxGraceMs`: the profile's maximum, undefined when it sets none. */
export function decideStopGrace(jobGraceMs: number | undefined, defaultGraceMs: number, maxGraceMs?: number): StopGrace {
  const asked: StopGrace = jobGraceMs !== undefined ? { graceMs: jobGraceMs, source: 'job' } : { graceMs: defaultGraceMs, source: 'default' };
  return maxGraceMs !== undefined && asked.graceMs > maxGraceMs ? { graceMs: maxGraceMs, source: 'max' } : asked;
}

/** Says where a stop's grace came from, for its event: "the job's preemption_grace". */
export function describeGraceSource(source: GraceSource): string {
  switch (source) {
    case 'job':
      return "the job's preemption_grace";
    case 'default':
      return "the server's default grace";
    case 'max':
      return "the scheduler profile's maxGraceMs";
  }
}
