import { findClosestMatch } from './closest-match.ts';

/**
 * Teams share the cluster through quotas, Kueue style: a team is guaranteed its nominal GPUs, may borrow idle GPUs
 * of other teams up to a limit, and may cap how much of its own guarantee it lends. Work on borrowed GPUs can be
 * reclaimed (preempted) when the lender needs its guarantee back.
 */

/** GPU counts per GPU type. The key `*` means "any type" (a quota not tied to a model). */
export type GpuAmounts = Record<string, number>;

export interface TeamConfig {
  /** Same charset as job names. Jobs name their team in `spec.team`. */
  name: string;
  /** Fair-share weight: a team of weight 2 is entitled to twice the share of a team of weight 1. @default 1 */
  weight: number;
  /** Guaranteed GPUs per type. A team absent from the config has no guarantee and only borrows. */
  nominal: GpuAmounts;
  /** At most this many GPUs per type beyond `nominal` (absent: unlimited; 0: borrowing off). */
  borrowingLimit?: GpuAmounts;
  /** At most this many of its nominal GPUs per type lent to others (absent: all idle ones). */
  lendingLimit?: GpuAmounts;
  /** On the Slurm backend: the partition and account the team's jobs are submitted with (absent: the server's). */
  slurm?: { partition?: string; account?: string };
}

/**
 * Recent GPU use of one team, for fair share: GPU-seconds with exponential decay (half-life set by the profile).
 * An input to the scheduler, kept by whoever runs it (the server's store, the simulator's clock).
 */
export interface TeamUsage {
  team: string;
  /** Decayed GPU-seconds as of `asOf`. */
  decayedGpuSeconds: number;
  /** Epoch ms. */
  asOf: number;
}

/**
 * Whether a cluster configured with `teams` admits jobs of `team` (the one answer, live at submit and in `tutti sim`):
 * every team when no team is configured (one pool, fair share among whoever submits); otherwise only the configured
 * ones, so that no job runs outside every quota. `default`, the team of a spec that names none, is no exception: a
 * configuration with teams lists it to admit such jobs.
 */
export function isTeamAdmitted(teams: readonly TeamConfig[], team: string): boolean {
  return teams.length === 0 || teams.some((t) => t.name === team);
}

/** Why a job of `team` is refused by a cluster configured with `teams`, and how to fix it (see `isTeamAdmitted`). */
export function describeUnknownTeam(teams: readonly TeamConfig[], team: string): string {
  const names = teams.map((t) => t.name).sort();
  const suggestion = findClosestMatch(team, names);
  const fix = team === 'default' ? `name one of them in \`team:\` (a spec without \`team:\` is in team 'default')` : suggestion !== undefined ? `did you mean '${suggestion}'?` : 'name one of them, or add the team to the cluster config (`tutti up --config`)';
  return `team '${team}' is not configured on this cluster; the configured teams are ${names.map((n) => `'${n}'`).join(', ')}: ${fix}`;
}
