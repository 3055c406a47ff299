/**
 * The `quota` admission plugin, Kueue style, with the whole cluster as one cohort:
 *
 *   - each team has a guaranteed (nominal) number of GPUs per quota key; the key of a GPU type for a team is the type
 *     itself when the team's `nominal` names it, else `*` (any type);
 *   - a team may use more than its nominal by borrowing, at most `borrowingLimit[key]` beyond it (absent: no limit);
 *   - what all teams borrow together must fit the lending pool: GPUs in no team's nominal, plus what each team lends
 *     of its nominal (`lendingLimit`, absent: all of it). The pool is counted over all types together;
 *   - work beyond a team's nominal is borrowed, and reclaimable: a team within its nominal may preempt it.
 *
 * Usage is counted from running jobs (their `spec.team` and the GPUs the snapshot gives them; a fractional GPU counts
 * its fraction) and from what the cycle admits. Jobs of teams absent from the configuration have no guarantee and
 * borrow. Without any team configured the plugin admits everything.
 */
import type { TeamConfig } from '@tutti/model';
import { formatOr } from './format.ts';

export type QuotaCheck =
  | { ok: true; withinNominal: boolean }
  | { ok: false; message: string };

export class QuotaLedger {
  private readonly teams = new Map<string, TeamConfig>();
  private readonly used = new Map<string, Map<string, number>>();
  private borrowedTotal = 0;
  /** GPUs the teams together may borrow. */
  readonly pool: number;

  constructor(teams: readonly TeamConfig[], clusterGpus: number) {
    let nominalTotal = 0;
    let lendable = 0;
    for (const team of teams) {
      if (this.teams.has(team.name)) continue;
      this.teams.set(team.name, team);
      for (const [key, n] of Object.entries(team.nominal)) {
        nominalTotal += n;
        lendable += Math.min(n, team.lendingLimit?.[key] ?? n);
      }
    }
    this.pool = Math.max(0, clusterGpus - nominalTotal) + lendable;
  }

  /** The quota key a GPU type counts against for a team. */
  keyFor(team: string, type: string): string {
    const config = this.teams.get(team);
    return config && Object.hasOwn(config.nominal, type) ? type : '*';
  }

  nominal(team: string, key: string): number {
    return this.teams.get(team)?.nominal[key] ?? 0;
  }

  usedOf(team: string, key: string): number {
    return this.used.get(team)?.get(key) ?? 0;
  }

  /** Whether the team uses more than its nominal for the key of `type`: its work there is reclaimable. */
  isBorrowing(team: string, type: string): boolean {
    const key = this.keyFor(team, type);
    return this.usedOf(team, key) > this.nominal(team, key) + 1e-9;
  }

  /** Could the team start `amount` more GPUs of `type`? */
  check(team: string, type: string, amount: number): QuotaCheck {
    const key = this.keyFor(team, type);
    const nominal = this.nominal(team, key);
    const used = this.usedOf(team, key);
    const after = used + amount;
    if (after <= nominal + 1e-9) return { ok: true, withinNominal: true };
    const borrowAfter = after - nominal;
    const limit = this.teams.get(team)?.borrowingLimit?.[key];
    const what = key === '*' ? 'GPUs' : `${key} GPUs`;
    if (limit !== undefined && borrowAfter > limit + 1e-9) {
      return { ok: false, message: `team ${team} would use ${fmt(after)} ${what}; its quota is ${fmt(nominal)} nominal + ${fmt(limit)} borrowable (${fmt(used)} in use)` };
    }
    const extra = borrowAfter - Math.max(0, used - nominal);
    if (this.borrowedTotal + extra > this.pool + 1e-9) {
      return { ok: false, message: `team ${team} would borrow ${fmt(borrowAfter)} ${what} beyond its nominal ${fmt(nominal)}; other teams lend ${fmt(this.pool)} GPUs in all and ${fmt(this.borrowedTotal)} are borrowed` };
    }
    return { ok: true, withinNominal: false };
  }

  /** Counts `amount` GPUs of `type` to the team (negative to give back). */
  charge(team: string, type: string, amount: number): void {
    const key = this.keyFor(team, type);
    const nominal = this.nominal(team, key);
    let byKey = this.used.get(team);
    if (!byKey) this.used.set(team, (byKey = new Map()));
    const before = byKey.get(key) ?? 0;
    const after = before + amount;
    byKey.set(key, after);
    this.borrowedTotal += Math.max(0, after - nominal) - Math.max(0, before - nominal);
  }
}

/** The first failure message among types, for a diagnosis: "team a would use ... (types tried: H100 or A100)". */
export function describeQuotaFailure(messages: readonly string[], types: readonly string[]): string {
  const first = messages[0] ?? 'over quota';
  return types.length > 1 ? `${first} (also over quota for ${formatOr(types.slice(1))})` : first;
}

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : String(Math.round(n * 100) / 100);
}
