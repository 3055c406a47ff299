/** The teams page's derived figures. */
import type { TeamView } from '@tutti/client';

const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

/**
 * Teams in the order fair share serves them next (the server's `fair_share.position`: GPUs running plus recent use,
 * decayed, per unit of weight, lowest first; ties by name).
 */
export function fairShareOrder(teams: readonly TeamView[]): { team: TeamView; share: number }[] {
  return teams
    .map((team) => ({ team, share: team.fair_share.share }))
    .sort((a, b) => a.team.fair_share.position - b.team.fair_share.position || a.team.name.localeCompare(b.team.name));
}

/** Whether a team's use is beyond its quota (it borrows GPUs that lenders may reclaim). */
export function isBorrowing(team: TeamView): boolean {
  return total(team.borrowed) > 0;
}
