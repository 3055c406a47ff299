/**
 * The `quota` admission plugin, Kueue style, with the whole cluster as one cohort and GPU types as flavors:
 *
 *   - each team has a guaranteed (nominal) number of GPUs per quota key; the key of a GPU type for a team is the type
 *     itself when the team's `nominal` names it, else `*` (any type);
 *   - a team may use more than its nominal by borrowing, at most `borrowingLimit[key]` beyond it (absent: no limit);
 *   - borrowing is per GPU type: what all teams borrow of type T together must fit T's lending pool — the GPUs of
 *     type T in no team's nominal, plus what each team lends of its nominal for T (`lendingLimit`, absent: all of
 *     it). A `*` nominal is a guarantee of no particular type: it claims, and lends, a share of each type's GPUs
 *     that no per-type nominal names, in proportion to how many each type has. So idle H100s never let a team
 *     borrow A100s;
 *   - the GPUs a team borrows are of the type of the jobs that took it beyond its nominal (for a `*` key, the type
 *     of the GPUs that crossed it; when it gives back, that type's borrowing goes first);
 *   - work beyond a team's nominal is borrowed, and reclaimable: a team within its nominal for a type may preempt
 *     work that borrows that type (see preemption.ts).
 *
 * A lending pool as large as its type's whole ready capacity (nothing claimed, or everything claimed lent: the
 * default) cannot refuse anyone before the GPUs run out, so it is not checked: a job of a full cluster then waits
 * for GPUs (with a reservation, under EASY backfill), not for quota. Teams listed only for their fair-share weight
 * (no `nominal`) used to see every wait reported as `QuotaExceeded` and their big jobs passed by small ones for ever.
 *
 * Usage is counted from running jobs (their `spec.team` and the GPUs the snapshot gives them; a fractional GPU counts
 * its fraction) and from what the cycle admits. Jobs of teams absent from the configuration have no guarantee and
 * borrow. Without any team configured the plugin admits everything.
 */
import type { TeamConfig } from '@tutti/model';
import { formatOr } from '../cycle/format.ts';

export type QuotaCheck =
  | { ok: true; withinNominal: boolean }
  | { ok: false; message: string };

/** What `check` answers, as a number (ordered: the first two admit). */
const VERDICT_WITHIN_NOMINAL = 0;
const VERDICT_BORROWS = 1;
const VERDICT_OVER_LIMIT = 2;
const VERDICT_POOL_EXHAUSTED = 3;

/** A team as the ledger reads it: configuration, usage by quota key (empty until charged), quota key by GPU type. */
interface TeamState {
  readonly config: TeamConfig | undefined;
  readonly used: Map<string, number>;
  readonly keyOfType: Map<string, string>;
}

export class QuotaLedger {
  private readonly teams = new Map<string, TeamConfig>();
  /** GPUs borrowed, by GPU type. */
  private readonly borrowed = new Map<string, number>();
  /** Per team and quota key: its borrowing by GPU type (so that giving back takes it off the right type). */
  private readonly borrowedAs = new Map<string, Map<string, Map<string, number>>>();
  /** Grows with every charge: equal values mean the same usage. */
  version = 0;
  private readonly teamVersions = new Map<string, number>();
  /** Per team: its configuration, usage by quota key and the quota key of each GPU type. */
  private readonly states = new Map<string, TeamState>();
  /** GPUs of each type the teams together may borrow. */
  private readonly pools = new Map<string, number>();
  /** Types whose pool is smaller than their ready capacity: the only ones whose pool can refuse a job. */
  private readonly limitedPools = new Set<string>();

  /** @param readyGpus GPUs of each type on ready nodes. */
  constructor(teams: readonly TeamConfig[], readyGpus: ReadonlyMap<string, number>) {
    const claimed = new Map<string, number>();
    const lent = new Map<string, number>();
    for (const team of teams) {
      if (this.teams.has(team.name)) continue;
      this.teams.set(team.name, team);
      for (const [key, n] of Object.entries(team.nominal)) {
        claimed.set(key, (claimed.get(key) ?? 0) + n);
        lent.set(key, (lent.get(key) ?? 0) + Math.min(n, team.lendingLimit?.[key] ?? n));
      }
    }
    // GPUs of each type that no per-type nominal names; `*` nominals claim and lend shares of these.
    const unnamed = new Map<string, number>();
    let unnamedTotal = 0;
    for (const [type, n] of readyGpus) {
      const free = Math.max(0, n - (claimed.get(type) ?? 0));
      unnamed.set(type, free);
      unnamedTotal += free;
    }
    const starClaimed = Math.min(unnamedTotal, claimed.get('*') ?? 0);
    const starLent = lent.get('*') ?? 0;
    for (const [key, n] of lent) if (key !== '*') this.pools.set(key, n);
    for (const [type, free] of unnamed) {
      const share = unnamedTotal > 0 ? free / unnamedTotal : 0;
      this.pools.set(type, (this.pools.get(type) ?? 0) + free - share * starClaimed + share * starLent);
    }
    for (const [type, pool] of this.pools) if (pool < (readyGpus.get(type) ?? 0) - 1e-9) this.limitedPools.add(type);
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
    return this.states.get(team)?.used.get(key) ?? 0;
  }

  /** GPUs of `type` the teams together may borrow. */
  poolOf(type: string): number {
    return this.pools.get(type) ?? 0;
  }

  /** GPUs of `type` borrowed now. */
  borrowedOf(type: string): number {
    return this.borrowed.get(type) ?? 0;
  }

  /** Grows with every charge to the team: equal values mean the team's usage is unchanged. */
  teamVersion(team: string): number {
    return this.teamVersions.get(team) ?? 0;
  }

  /** Whether the team uses more than its nominal for the key of `type`: its work there is reclaimable. */
  isBorrowing(team: string, type: string): boolean {
    const key = this.keyFor(team, type);
    return this.usedOf(team, key) > this.nominal(team, key) + 1e-9;
  }

  private stateOf(team: string): TeamState {
    let state = this.states.get(team);
    if (!state) this.states.set(team, (state = { config: this.teams.get(team), used: new Map(), keyOfType: new Map() }));
    return state;
  }

  /** Could the team start `amount` more GPUs of `type`? */
  check(team: string, type: string, amount: number): QuotaCheck {
    const verdict = this.verdict(team, type, amount);
    if (verdict === VERDICT_WITHIN_NOMINAL) return { ok: true, withinNominal: true };
    if (verdict === VERDICT_BORROWS) return { ok: true, withinNominal: false };
    const key = this.keyFor(team, type);
    const nominal = this.nominal(team, key);
    const used = this.usedOf(team, key);
    const after = used + amount;
    const borrowAfter = after - nominal;
    /** "1 GPU", "2.5 H100 GPUs". */
    const gpus = (n: number, of?: string): string => `${fmt(n)} ${of === undefined ? '' : `${of} `}GPU${n === 1 ? '' : 's'}`;
    const ofKey = key === '*' ? undefined : key;
    if (verdict === VERDICT_OVER_LIMIT) {
      const limit = this.teams.get(team)?.borrowingLimit?.[key] ?? 0;
      return { ok: false, message: `team ${team} would use ${gpus(after, ofKey)}; its quota is ${fmt(nominal)} nominal + ${fmt(limit)} borrowable (${fmt(used)} in use)` };
    }
    const extra = borrowAfter - Math.max(0, used - nominal);
    const pool = this.poolOf(type);
    const borrowed = this.borrowedOf(type);
    const beyond = key === '*' ? `${gpus(borrowAfter)} beyond its nominal ${fmt(nominal)}, ${fmt(extra)} of them ${type}` : `${gpus(borrowAfter, ofKey)} beyond its nominal ${fmt(nominal)}`;
    return { ok: false, message: `team ${team} would borrow ${beyond}; other teams lend ${gpus(pool, type)} in all and ${fmt(borrowed)} ${borrowed === 1 ? 'is' : 'are'} borrowed` };
  }

  /** `check(...).ok`, with nothing built: asked for every type of every job a cycle reads. */
  admits(team: string, type: string, amount: number): boolean {
    return this.verdict(team, type, amount) <= VERDICT_BORROWS;
  }

  private verdict(team: string, type: string, amount: number): number {
    // One look-up for the team's configuration, usage and quota keys: asked for every type of thousands of jobs.
    const state = this.stateOf(team);
    let key = state.keyOfType.get(type);
    if (key === undefined) state.keyOfType.set(type, (key = this.keyFor(team, type)));
    const nominal = state.config?.nominal[key] ?? 0;
    const used = state.used.get(key) ?? 0;
    const after = used + amount;
    if (after <= nominal + 1e-9) return VERDICT_WITHIN_NOMINAL;
    const borrowAfter = after - nominal;
    const limit = state.config?.borrowingLimit?.[key];
    if (limit !== undefined && borrowAfter > limit + 1e-9) return VERDICT_OVER_LIMIT;
    const extra = borrowAfter - Math.max(0, used - nominal);
    if (this.limitedPools.has(type) && this.borrowedOf(type) + extra > this.poolOf(type) + 1e-9) return VERDICT_POOL_EXHAUSTED;
    return VERDICT_BORROWS;
  }

  /**
   * Whether the team could start `amount` GPUs of `type` once `released` (GPUs by type, of its own running jobs) were
   * given back. Leaves the ledger exactly as it was, version numbers included: a question, not a decision.
   */
  admitsReleasing(team: string, type: string, amount: number, released: Iterable<readonly [string, number]>): boolean {
    const state = this.stateOf(team);
    const used = new Map(state.used);
    const teamBorrowing = this.borrowedAs.get(team);
    const borrowedAs = teamBorrowing && new Map([...teamBorrowing].map(([key, byType]) => [key, new Map(byType)]));
    const borrowed = new Map(this.borrowed);
    const version = this.version;
    const teamVersion = this.teamVersions.get(team);
    for (const [t, n] of released) this.charge(team, t, -n);
    const answer = this.admits(team, type, amount);
    // Put back what giving back changed (taking it again could leave the borrowing on other types).
    state.used.clear();
    used.forEach((n, key) => state.used.set(key, n));
    if (borrowedAs) this.borrowedAs.set(team, borrowedAs);
    else this.borrowedAs.delete(team);
    this.borrowed.clear();
    borrowed.forEach((n, t) => this.borrowed.set(t, n));
    this.version = version;
    if (teamVersion === undefined) this.teamVersions.delete(team);
    else this.teamVersions.set(team, teamVersion);
    return answer;
  }

  /** Counts `amount` GPUs of `type` to the team (negative to give back). */
  charge(team: string, type: string, amount: number): void {
    const key = this.keyFor(team, type);
    const nominal = this.nominal(team, key);
    const byKey = this.stateOf(team).used;
    const before = byKey.get(key) ?? 0;
    const after = before + amount;
    byKey.set(key, after);
    this.version++;
    this.teamVersions.set(team, (this.teamVersions.get(team) ?? 0) + 1);
    const delta = Math.max(0, after - nominal) - Math.max(0, before - nominal);
    if (delta === 0) return;
    let keys = this.borrowedAs.get(team);
    if (!keys) this.borrowedAs.set(team, (keys = new Map()));
    let byType = keys.get(key);
    if (!byType) keys.set(key, (byType = new Map()));
    if (delta > 0) {
      this.addBorrowed(byType, type, delta);
      return;
    }
    // Giving back: off this type's borrowing first, then off the others' (by name, so that it is deterministic).
    let left = -delta;
    for (const t of [type, ...[...byType.keys()].filter((t) => t !== type).sort()]) {
      const take = Math.min(left, byType.get(t) ?? 0);
      if (take > 0) this.addBorrowed(byType, t, -take);
      left -= take;
      if (left <= 1e-12) break;
    }
  }

  private addBorrowed(byType: Map<string, number>, type: string, amount: number): void {
    byType.set(type, (byType.get(type) ?? 0) + amount);
    this.borrowed.set(type, this.borrowedOf(type) + amount);
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
