/** The teams page's derived figures. */
import type { TeamView } from '@tutti/client';

const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

/**
 * Teams in fair-share order as the current allocation suggests it: the lowest share of GPUs in use per unit of
 * weight first (the scheduler also weighs recent use, decayed; this view sees only the present). Ties by name.
 */
export function fairShareOrder(teams: readonly TeamView[]): { team: TeamView; share: number }[] {
  return teams
    .map((team) => ({ team, share: total(team.used) / Math.max(team.weight, 1e-9) }))
    .sort((a, b) => a.share - b.share || a.team.name.localeCompare(b.team.name));
}

/** Whether a team's use is beyond its quota (it borrows GPUs that lenders may reclaim). */
export function isBorrowing(team: TeamView): boolean {
  return total(team.borrowed) > 0;
}
