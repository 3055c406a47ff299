/**
 * The `fair-share` queue sort. Teams take turns by dominant share, lowest first; within a team, effective priority
 * (priority plus ageing) then submission order.
 *
 *   share(team) = (GPUs it runs now + GPUs of its jobs ahead in this queue + decayed GPU-seconds / half-life in s)
 *                 / weight
 *
 * Decayed usage comes from `TeamUsage` (decayed to `now` with the profile's half-life; the formulas live in
 * decayed-usage.ts, shared with the server and the simulator), so a team that used little lately goes first. Each
 * job taken from a team adds its GPUs to the team's share, so teams interleave in proportion to their weights
 * instead of one team's backlog going first. Ageing: a waiting job gains `agingPerHour` priority points per hour
 * since it was submitted, so a low-priority job is eventually ahead of newer high-priority ones.
 *
 * Within a team, `withinTeam` (see `FairShareArgs`) may order by estimated run time instead (`shortest-estimated`,
 * `response-ratio`), the estimates learned from finished jobs (`duration-estimate.ts`); a team none of whose jobs has
 * an estimate keeps the priority order. Or by least attained service (`least-attained`, Tiresias within a team):
 * priority band, then the discretized LAS queue of the job's GPU-time so far (las-sort.ts), then submission; teams
 * still take turns by share as above, so a team's long jobs wait behind its own short ones, not behind everyone's.
 *
 * Cost: O(J log J) to sort within teams (about O(J) when the cache holds the last cycle's order) and O(J log T) to
 * merge. Same input → same order, whatever the cache holds.
 */
import type { Job, TeamConfig, TeamUsage } from '@tutti/model';
import { computeGpusHeld } from '@tutti/model';
import { computeShare, computeTeamWeights, decayUsageTo } from './decayed-usage.ts';
import type { DurationEstimate } from './duration-estimate.ts';
import type { FairShareArgs } from '../framework/profile.ts';
import { CycleCache } from '../perf/cycle-cache.ts';
import { computeAttainedGpuMs, computeLasQueue } from './las-sort.ts';
import { compareQueueOrder } from './queue-sort.ts';

export interface FairShareInput {
  readonly teams: readonly TeamConfig[];
  readonly usage: readonly TeamUsage[];
  /** GPUs each team's running jobs hold now. */
  readonly runningGpus: ReadonlyMap<string, number>;
  readonly now: number;
  readonly args: FairShareArgs;
  /** Run-time estimates (history, `max_duration`), for `withinTeam` other than `priority`. */
  readonly estimate?: (job: Job) => DurationEstimate | undefined;
  /** Estimate for a job without one, ms. @default 1 h */
  readonly defaultEstimateMs?: number;
  /** GPU-ms each job has run (`CycleInput.attainedServiceGpuMs`), for `withinTeam: least-attained`. */
  readonly attainedServiceGpuMs?: ReadonlyMap<string, number>;
}

export function computeEffectivePriority(job: Job, now: number, agingPerHour: number): number {
  return job.spec.priority + (agingPerHour * Math.max(0, now - job.createdAt)) / 3_600_000;
}

export function jobGpus(job: Job): number {
  return computeGpusHeld(job.spec);
}

export function computeFairShareOrder(pending: readonly Job[], input: FairShareInput): Job[] {
  const cache = new CycleCache();
  cache.begin();
  const numbers = cache.readPending(pending);
  return Array.from(computeFairShareQueue(numbers, input, cache), (no) => cache.jobs[no] as Job);
}

/**
 * The fair-share order of the cycle's records (record numbers of `cache`, one per job id, see
 * `CycleCache.readPending`). Sets each record's `keyOf` (effective priority); each team's sorted order is left in the
 * cache as the next cycle's starting point.
 */
export function computeFairShareQueue(numbers: Int32Array, input: FairShareInput, cache: CycleCache): Int32Array {
  const { now, args } = input;
  const teamWeight = computeTeamWeights(input.teams);
  const decayed = decayUsageTo(input.usage, now, args.halfLifeMs);
  const halfLifeS = args.halfLifeMs / 1000;
  const { teamOf, priorityOf, createdAtOf, keyOf, gpusOf } = cache;
  const teamCount = cache.teamCount;

  // Grouped by team with a counting sort, each team in input order.
  const perTeam = new Int32Array(teamCount + 1);
  for (let i = 0; i < numbers.length; i++) {
    const no = numbers[i] as number;
    // As `computeEffectivePriority`, term for term.
    keyOf[no] = (priorityOf[no] as number) + (args.agingPerHour * Math.max(0, now - (createdAtOf[no] as number))) / 3_600_000;
    (perTeam[(teamOf[no] as number) + 1] as number)++;
  }
  for (let t = 0; t < teamCount; t++) (perTeam[t + 1] as number) += perTeam[t] as number;
  const grouped = new Int32Array(numbers.length);
  const cursor = perTeam.slice(0, teamCount);
  for (let i = 0; i < numbers.length; i++) {
    const no = numbers[i] as number;
    grouped[(cursor[teamOf[no] as number] as number)++] = no;
  }

  // Each team's jobs sorted in place, in its stretch of `grouped`.
  const compare = compareRecords(cache);
  const heads: { team: string; share: number; weight: number; from: number; to: number }[] = [];
  for (let t = 0; t < teamCount; t++) {
    const from = perTeam[t] as number;
    const to = perTeam[t + 1] as number;
    if (from === to) continue;
    const team = cache.teamNames[t] as string;
    if (args.withinTeam === 'least-attained' || (args.withinTeam !== 'priority' && input.estimate)) {
      const list = copyOut(grouped, from, to);
      const sorted = args.withinTeam === 'least-attained' ? sortByAttained(list, input, cache) : sortByEstimate(list, input, cache);
      if (sorted) grouped.set(list, from);
      else sortTeam(t, grouped, from, to, cache, compare);
    } else sortTeam(t, grouped, from, to, cache, compare);
    const weight = teamWeight(team);
    heads.push({ team, share: computeShare(input.runningGpus.get(team) ?? 0, decayed.get(team) ?? 0, halfLifeS, weight), weight, from, to });
  }
  // Ties of share go by team name: ranked once here, so that the merge compares numbers.
  heads.sort((a, b) => (a.team < b.team ? -1 : a.team > b.team ? 1 : 0));
  const tournament = new ShareTournament(heads.map((head) => head.share));
  const next = Int32Array.from(heads, (head) => head.from);
  const order = new Int32Array(numbers.length);
  let filled = 0;
  const ends = Int32Array.from(heads, (head) => head.to);
  const weightOf = Float64Array.from(heads, (head) => head.weight);
  for (let t = tournament.winner(); t >= 0; t = tournament.winner()) {
    const no = grouped[(next[t] as number)++] as number;
    order[filled++] = no;
    if (next[t] === ends[t]) tournament.retire(t);
    else tournament.raise(t, (gpusOf[no] as number) / (weightOf[t] as number));
  }
  return order;
}

function copyOut(from: Int32Array, start: number, end: number): number[] {
  const list = new Array<number>(end - start);
  for (let i = start; i < end; i++) list[i - start] = from[i] as number;
  return list;
}

/**
 * One team's jobs by effective priority, then submission. The sort decides; what comes before it only makes it
 * cheap. Jobs the last cycle sorted go in that cycle's order (ageing moves every job alike, so that order still
 * holds, but for a job submitted after `now`), newcomers after them in priority bands, highest
 * first (queues list jobs in submission order, and within one priority that is the sorted order). The sort then
 * finds one long run and a short tail: about one comparison per job.
 */
function sortTeam(team: number, grouped: Int32Array, from: number, to: number, cache: CycleCache, compare: (a: number, b: number) => number): void {
  const hintCycle = cache.teamHintCycle[team] as number;
  const hintSize = cache.teamHintSize[team] as number;
  const { rankOf, rankCycleOf, priorityOf } = cache;
  const count = to - from;
  let sorted = false;
  if (hintCycle >= 0) {
    const slots = new Int32Array(hintSize).fill(-1);
    const newcomers: number[] = [];
    for (let i = from; i < to; i++) {
      const no = grouped[i] as number;
      const rank = rankOf[no] as number;
      if (rankCycleOf[no] === hintCycle && rank < hintSize && slots[rank] === -1) slots[rank] = no;
      else newcomers.push(no);
    }
    // The kept jobs in last cycle's order at the start of the stretch, the newcomers after them.
    let kept = from;
    for (let i = 0; i < slots.length; i++) {
      const no = slots[i] as number;
      if (no >= 0) grouped[kept++] = no;
    }
    if (isSorted(grouped, from, kept, compare)) {
      // Usually still sorted: then only the newcomers are sorted, and merged in from the back.
      const arrivals = byPriorityBands(newcomers, priorityOf).sort(compare);
      let i = kept - 1;
      let j = arrivals.length - 1;
      for (let k = to - 1; j >= 0; k--) grouped[k] = i >= from && compare(grouped[i] as number, arrivals[j] as number) > 0 ? (grouped[i--] as number) : (arrivals[j--] as number);
      sorted = true;
    } else {
      for (let i = 0; i < newcomers.length; i++) grouped[kept + i] = newcomers[i] as number;
    }
  }
  if (!sorted) {
    const list = byPriorityBands(copyOut(grouped, from, to), priorityOf).sort(compare);
    grouped.set(list, from);
  }
  const cycle = cache.cycle;
  for (let i = from; i < to; i++) {
    const no = grouped[i] as number;
    rankOf[no] = i - from;
    rankCycleOf[no] = cycle;
  }
  cache.teamHintCycle[team] = cycle;
  cache.teamHintSize[team] = count;
}

function isSorted(list: Int32Array, from: number, to: number, compare: (a: number, b: number) => number): boolean {
  for (let i = from + 1; i < to; i++) if (compare(list[i - 1] as number, list[i] as number) > 0) return false;
  return true;
}

/** The records grouped by priority, highest first, each group in input order. */
function byPriorityBands(list: number[], priorityOf: Float64Array): number[] {
  const first = list.length > 0 ? priorityOf[list[0] as number] : undefined;
  let one = true;
  for (let i = 1; i < list.length && one; i++) one = priorityOf[list[i] as number] === first;
  if (one) return list;
  const bands = new Map<number, number[]>();
  for (const no of list) {
    const priority = priorityOf[no] as number;
    let band = bands.get(priority);
    if (!band) bands.set(priority, (band = []));
    band.push(no);
  }
  return ([] as number[]).concat(...[...bands.keys()].sort((a, b) => b - a).map((p) => bands.get(p) as number[]));
}

/**
 * Sorts one team's jobs by band (priority; a lower one ageing up to the team's highest, never past it), then the
 * estimate (shortest first, or highest response ratio first), then submission. False (unsorted) when no job has an
 * estimate or the mode is `priority`.
 */
function sortByEstimate(list: number[], input: FairShareInput, cache: CycleCache): boolean {
  const { args, estimate, now } = input;
  if (args.withinTeam === 'priority' || !estimate) return false;
  const jobs = list.map((no) => cache.jobs[no] as Job);
  const estimates = jobs.map((job) => estimate(job)?.ms);
  if (estimates.every((ms) => ms === undefined)) return false;
  const fallback = input.defaultEstimateMs ?? 3_600_000;
  let top = -Infinity;
  for (const job of jobs) top = Math.max(top, job.spec.priority);
  const keyed = list.map((no, i) => {
    const job = jobs[i] as Job;
    const est = Math.max(1, estimates[i] ?? fallback);
    const band = Math.min(top, job.spec.priority + Math.floor((args.agingPerHour * Math.max(0, now - job.createdAt)) / 3_600_000));
    const score = args.withinTeam === 'response-ratio' ? -(Math.max(0, now - job.createdAt) + est) / est : est;
    return { no, job, band, score, est };
  });
  keyed.sort((a, b) => b.band - a.band || a.score - b.score || a.est - b.est || compareQueueOrder(a.job, b.job));
  for (let i = 0; i < keyed.length; i++) list[i] = (keyed[i] as (typeof keyed)[number]).no;
  return true;
}

/**
 * Sorts one team's jobs by band (priority; a lower one ageing up to the team's highest, never past it, as
 * `sortByEstimate`), then least-attained-service queue (`args.lasThresholdsGpuS`; top queue first), then submission.
 * Always sorts (true).
 */
function sortByAttained(list: number[], input: FairShareInput, cache: CycleCache): boolean {
  const { args, now } = input;
  const attained = input.attainedServiceGpuMs;
  const las = { queueThresholdsGpuS: args.lasThresholdsGpuS };
  const { priorityOf, createdAtOf } = cache;
  let top = -Infinity;
  for (let i = 0; i < list.length; i++) top = Math.max(top, priorityOf[list[i] as number] as number);
  const submission = compareSubmission(cache);
  const keyed = list.map((no) => ({
    no,
    band: Math.min(top, (priorityOf[no] as number) + Math.floor((args.agingPerHour * Math.max(0, now - (createdAtOf[no] as number))) / 3_600_000)),
    queue: computeLasQueue(computeAttainedGpuMs(cache.jobs[no] as Job, attained, now), las),
  }));
  keyed.sort((a, b) => b.band - a.band || a.queue - b.queue || submission(a.no, b.no));
  for (let i = 0; i < keyed.length; i++) list[i] = (keyed[i] as (typeof keyed)[number]).no;
  return true;
}

/** Effective priority (`keyOf`), then `compareQueueOrder`, over record numbers. */
function compareRecords(cache: CycleCache): (a: number, b: number) => number {
  const { keyOf } = cache;
  const submission = compareSubmission(cache);
  return (a, b) => {
    // Compared, not subtracted: a difference of doubles is a new heap number each time the comparator is not inlined.
    const ka = keyOf[a] as number;
    const kb = keyOf[b] as number;
    if (ka > kb) return -1;
    if (ka < kb) return 1;
    return submission(a, b);
  };
}

/** `compareQueueOrder` over record numbers, from the copied fields when both ids are short decimals. */
function compareSubmission(cache: CycleCache): (a: number, b: number) => number {
  const { priorityOf, idValueOf, createdAtOf, jobs } = cache;
  return (a, b) => {
    const ia = idValueOf[a] as number;
    const ib = idValueOf[b] as number;
    if (ia < 0 || ib < 0) return compareQueueOrder(jobs[a] as Job, jobs[b] as Job);
    const pa = priorityOf[a] as number;
    const pb = priorityOf[b] as number;
    if (pa !== pb) return pa > pb ? -1 : 1;
    if (ia !== ib) return ia < ib ? -1 : 1;
    const ca = createdAtOf[a] as number;
    const cb = createdAtOf[b] as number;
    if (ca !== cb) return ca < cb ? -1 : 1;
    const ida = (jobs[a] as Job).id;
    const idb = (jobs[b] as Job).id;
    return ida < idb ? -1 : ida > idb ? 1 : 0;
  };
}

/** Teams' shares at the start of a cycle, before any waiting job is counted (see the module comment). */
export interface TeamShares {
  /** (GPUs running + decayed GPU-seconds / half-life in s) / weight. */
  readonly shareOf: (team: string) => number;
  readonly weightOf: (team: string) => number;
}

export function computeTeamShares(input: Pick<FairShareInput, 'teams' | 'usage' | 'runningGpus' | 'now'> & { readonly args: Pick<FairShareArgs, 'halfLifeMs'> }): TeamShares {
  const weightOf = computeTeamWeights(input.teams);
  const decayed = decayUsageTo(input.usage, input.now, input.args.halfLifeMs);
  const halfLifeS = input.args.halfLifeMs / 1000;
  return {
    weightOf,
    shareOf: (team) => computeShare(input.runningGpus.get(team) ?? 0, decayed.get(team) ?? 0, halfLifeS, weightOf(team)),
  };
}

/**
 * The teams' turns: which team has the smallest share (ties: the earlier team, here by name), as a tournament tree of
 * losers over the teams. Raising the winner's share replays one path to the root, log2(teams) comparisons of numbers;
 * a binary heap of objects costs about twice the comparisons and a pointer chase each.
 */
class ShareTournament {
  /** Leaves: a power of two ≥ the teams (the rest are padding, retired from the start). */
  private readonly size: number;
  /** Each team's share; +Infinity once retired. */
  private readonly share: Float64Array;
  /** Retired (no jobs left) or padding: after every team still in, whatever its share. */
  private readonly retired: Uint8Array;
  /** losers[i] for internal node i ≥ 1: the leaf that lost there; losers[0]: the overall winner. */
  private readonly losers: Int32Array;

  constructor(shares: readonly number[]) {
    let size = 1;
    while (size < shares.length) size *= 2;
    this.size = size;
    this.share = new Float64Array(size).fill(Infinity);
    this.retired = new Uint8Array(size).fill(1);
    for (let i = 0; i < shares.length; i++) {
      this.share[i] = shares[i] as number;
      this.retired[i] = 0;
    }
    this.losers = new Int32Array(size);
    // Winners of each subtree, bottom up; the losers stay at the internal nodes.
    const winners = new Int32Array(2 * size);
    for (let i = 0; i < size; i++) winners[size + i] = i;
    for (let node = size - 1; node >= 1; node--) {
      const a = winners[2 * node] as number;
      const b = winners[2 * node + 1] as number;
      const aFirst = this.before(a, b);
      winners[node] = aFirst ? a : b;
      this.losers[node] = aFirst ? b : a;
    }
    this.losers[0] = size > 1 ? (winners[1] as number) : 0;
  }

  /** The team to take the next job from, or -1 when every team is retired. */
  winner(): number {
    const leaf = this.losers[0] as number;
    return this.retired[leaf] === 1 ? -1 : leaf;
  }

  /** Adds `delta` to the team's share (as `share += delta`, so that sums are those of taking jobs one by one). */
  raise(leaf: number, delta: number): void {
    this.share[leaf] = (this.share[leaf] as number) + delta;
    this.replay(leaf);
  }

  retire(leaf: number): void {
    this.retired[leaf] = 1;
    this.share[leaf] = Infinity;
    this.replay(leaf);
  }

  /** Whether team a goes before team b: the smaller share; on a tie, not retired, then the earlier team. */
  private before(a: number, b: number): boolean {
    const sa = this.share[a] as number;
    const sb = this.share[b] as number;
    if (sa !== sb) return sa < sb;
    const ra = this.retired[a] as number;
    const rb = this.retired[b] as number;
    return ra !== rb ? ra < rb : a < b;
  }

  private replay(leaf: number): void {
    const { losers } = this;
    let current = leaf;
    for (let node = (leaf + this.size) >> 1; node >= 1; node >>= 1) {
      const loser = losers[node] as number;
      if (this.before(loser, current)) {
        losers[node] = current;
        current = loser;
      }
    }
    losers[0] = current;
  }
}
