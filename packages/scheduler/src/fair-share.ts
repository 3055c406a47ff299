/**
 * The `fair-share` queue sort. Teams take turns by dominant share, lowest first; within a team, effective priority
 * (priority plus ageing) then submission order.
 *
 *   share(team) = (GPUs it runs now + GPUs of its jobs ahead in this queue + decayed GPU-seconds / half-life in s)
 *                 / weight
 *
 * Decayed usage comes from `TeamUsage` (decayed to `now` with the profile's half-life), so a team that used little
 * lately goes first. Each job taken from a team adds its GPUs to the team's share, so teams interleave in proportion
 * to their weights instead of one team's backlog going first. Ageing: a waiting job gains `agingPerHour` priority
 * points per hour since it was submitted, so a low-priority job is eventually ahead of newer high-priority ones.
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
import type { DurationEstimate } from './duration-estimate.ts';
import type { FairShareArgs } from './profile.ts';
import { CycleCache, type JobRecord } from './cycle-cache.ts';
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
  const records: JobRecord[] = [];
  for (const job of pending) {
    const record = cache.recordOf(job);
    if (record) records.push(record);
  }
  return computeFairShareQueue(records, input, cache).map((entry) => entry.job);
}

/** What the fair-share sort reads of a job (copied once, so the sort does not chase each job's spec). */
export interface FairShareEntry {
  readonly job: Job;
  /** Effective priority. */
  readonly key: number;
  readonly gpus: number;
  readonly priority: number;
  /** The id's value when it is a decimal number of at most 15 digits (exact as a double), else -1. */
  readonly idValue: number;
  readonly createdAt: number;
}

/**
 * The fair-share order of the cycle's records (one per job id, see `CycleCache.recordOf`). Sets each record's `key`
 * (effective priority); each team's sorted order is left in the cache as the next cycle's starting point.
 */
export function computeFairShareQueue(records: readonly JobRecord[], input: FairShareInput, cache: CycleCache): readonly JobRecord[] {
  const { now, args } = input;
  const weights = computeTeamWeights(input.teams);
  const decayed = computeDecayedUsage(input.usage, now, args.halfLifeMs);

  const byTeam = new Map<string, JobRecord[]>();
  for (let i = 0; i < records.length; i++) {
    const record = records[i] as JobRecord;
    // As `computeEffectivePriority`, term for term.
    record.key = record.priority + (args.agingPerHour * Math.max(0, now - record.createdAt)) / 3_600_000;
    let list = byTeam.get(record.team);
    if (!list) byTeam.set(record.team, (list = []));
    list.push(record);
  }

  const heads: TeamHead<JobRecord>[] = [];
  for (const [team, unsorted] of byTeam) {
    const sorted = args.withinTeam === 'least-attained' ? sortByAttained(unsorted, input) : sortByEstimate(unsorted, input);
    const list = sorted ? unsorted : sortTeam(team, unsorted, cache);
    const weight = weights.get(team) ?? 1;
    const base = (input.runningGpus.get(team) ?? 0) + (decayed.get(team) ?? 0) / (args.halfLifeMs / 1000);
    // The merge reads each job's GPUs in this team's order: copied now, while the team's entries are in cache.
    const gpus = new Float64Array(list.length);
    for (let i = 0; i < list.length; i++) gpus[i] = (list[i] as JobRecord).gpus;
    heads.push({ team, weight, share: base / weight, jobs: list, gpus, next: 0 });
  }
  const heap = new MinHeap(heads);
  const order: JobRecord[] = new Array<JobRecord>(records.length);
  let filled = 0;
  for (let head = heap.peek(); head; head = heap.peek()) {
    const at = head.next++;
    order[filled++] = head.jobs[at] as JobRecord;
    if (head.next >= head.jobs.length) heap.pop();
    else {
      head.share += (head.gpus[at] as number) / head.weight;
      heap.siftDown(0);
    }
  }
  return order;
}

/**
 * One team's jobs by effective priority, then submission. The sort decides; what comes before it only makes it
 * cheap. Jobs the last cycle sorted go in that cycle's order (ageing moves every job alike, so that order still
 * holds, but for a job submitted after `now`), newcomers after them in priority bands, highest
 * first (queues list jobs in submission order, and within one priority that is the sorted order). The sort then
 * finds one long run and a short tail: about one comparison per job.
 */
function sortTeam(team: string, list: JobRecord[], cache: CycleCache): JobRecord[] {
  const hint = cache.teamOrders.get(team);
  let ordered: JobRecord[] = list;
  if (hint) {
    const slots = new Array<JobRecord | undefined>(hint.size);
    const newcomers: JobRecord[] = [];
    for (let i = 0; i < list.length; i++) {
      const record = list[i] as JobRecord;
      if (record.rankCycle === hint.cycle && record.rank < hint.size && slots[record.rank] === undefined) slots[record.rank] = record;
      else newcomers.push(record);
    }
    const kept: JobRecord[] = [];
    for (let i = 0; i < slots.length; i++) {
      const record = slots[i];
      if (record !== undefined) kept.push(record);
    }
    // Usually still sorted: then only the newcomers are sorted, and merged in.
    ordered = isSorted(kept) ? mergeSorted(kept, byPriorityBands(newcomers).sort(compareEntries)) : kept.concat(byPriorityBands(newcomers)).sort(compareEntries);
  } else ordered = byPriorityBands(list).sort(compareEntries);
  const cycle = cache.cycle;
  for (let i = 0; i < ordered.length; i++) {
    const record = ordered[i] as JobRecord;
    record.rank = i;
    record.rankCycle = cycle;
  }
  cache.teamOrders.set(team, { cycle, size: ordered.length });
  return ordered;
}

function isSorted(list: readonly JobRecord[]): boolean {
  for (let i = 1; i < list.length; i++) if (compareEntries(list[i - 1] as JobRecord, list[i] as JobRecord) > 0) return false;
  return true;
}

/** Two sorted lists as one (`compareEntries` is a total order on distinct jobs: no ties to break). */
function mergeSorted(a: readonly JobRecord[], b: readonly JobRecord[]): JobRecord[] {
  if (b.length === 0) return a as JobRecord[];
  const out = new Array<JobRecord>(a.length + b.length);
  let i = 0;
  let j = 0;
  for (let k = 0; k < out.length; k++) {
    const x = a[i];
    const y = b[j];
    out[k] = y === undefined || (x !== undefined && compareEntries(x, y) < 0) ? (a[i++] as JobRecord) : (b[j++] as JobRecord);
  }
  return out;
}

/** The records grouped by priority, highest first, each group in input order. */
function byPriorityBands(list: JobRecord[]): JobRecord[] {
  const first = list[0]?.priority;
  let one = true;
  for (let i = 1; i < list.length && one; i++) one = (list[i] as JobRecord).priority === first;
  if (one) return list;
  const bands = new Map<number, JobRecord[]>();
  for (const record of list) {
    let band = bands.get(record.priority);
    if (!band) bands.set(record.priority, (band = []));
    band.push(record);
  }
  return ([] as JobRecord[]).concat(...[...bands.keys()].sort((a, b) => b - a).map((p) => bands.get(p) as JobRecord[]));
}

/**
 * Sorts one team's jobs by band (priority; a lower one ageing up to the team's highest, never past it), then the
 * estimate (shortest first, or highest response ratio first), then submission. False (unsorted) when no job has an
 * estimate or the mode is `priority`.
 */
function sortByEstimate(list: { job: Job; key: number }[], input: FairShareInput): boolean {
  const { args, estimate, now } = input;
  if (args.withinTeam === 'priority' || !estimate) return false;
  const estimates = list.map((e) => estimate(e.job)?.ms);
  if (estimates.every((ms) => ms === undefined)) return false;
  const fallback = input.defaultEstimateMs ?? 3_600_000;
  let top = -Infinity;
  for (const e of list) top = Math.max(top, e.job.spec.priority);
  const keyed = list.map((e, i) => {
    const est = Math.max(1, estimates[i] ?? fallback);
    const band = Math.min(top, e.job.spec.priority + Math.floor((args.agingPerHour * Math.max(0, now - e.job.createdAt)) / 3_600_000));
    const score = args.withinTeam === 'response-ratio' ? -(Math.max(0, now - e.job.createdAt) + est) / est : est;
    return { entry: e, band, score, est };
  });
  keyed.sort((a, b) => b.band - a.band || a.score - b.score || a.est - b.est || compareQueueOrder(a.entry.job, b.entry.job));
  for (let i = 0; i < keyed.length; i++) list[i] = (keyed[i] as (typeof keyed)[number]).entry;
  return true;
}

/**
 * Sorts one team's jobs by band (priority; a lower one ageing up to the team's highest, never past it, as
 * `sortByEstimate`), then least-attained-service queue (`args.lasThresholdsGpuS`; top queue first), then submission.
 * Always sorts (true).
 */
function sortByAttained(list: JobRecord[], input: FairShareInput): boolean {
  const { args, now } = input;
  const attained = input.attainedServiceGpuMs;
  const las = { queueThresholdsGpuS: args.lasThresholdsGpuS };
  let top = -Infinity;
  for (let i = 0; i < list.length; i++) top = Math.max(top, (list[i] as JobRecord).priority);
  const keyed = list.map((entry) => ({
    entry,
    band: Math.min(top, entry.priority + Math.floor((args.agingPerHour * Math.max(0, now - entry.createdAt)) / 3_600_000)),
    queue: computeLasQueue(computeAttainedGpuMs(entry.job, attained, now), las),
  }));
  keyed.sort((a, b) => b.band - a.band || a.queue - b.queue || compareSubmission(a.entry, b.entry));
  for (let i = 0; i < keyed.length; i++) list[i] = (keyed[i] as (typeof keyed)[number]).entry;
  return true;
}

/** Effective priority, then `compareQueueOrder`, from the copied fields when both ids are short decimals. */
function compareEntries(a: FairShareEntry, b: FairShareEntry): number {
  // Compared, not subtracted: a difference of doubles is a new heap number each time the comparator is not inlined.
  if (a.key > b.key) return -1;
  if (a.key < b.key) return 1;
  return compareSubmission(a, b);
}

/** `compareQueueOrder`, from the copied fields when both ids are short decimals. */
function compareSubmission(a: FairShareEntry, b: FairShareEntry): number {
  if (a.idValue < 0 || b.idValue < 0) return compareQueueOrder(a.job, b.job);
  if (a.priority !== b.priority) return a.priority > b.priority ? -1 : 1;
  if (a.idValue !== b.idValue) return a.idValue < b.idValue ? -1 : 1;
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? -1 : 1;
  return a.job.id < b.job.id ? -1 : a.job.id > b.job.id ? 1 : 0;
}

/** Each team's weight (a weight ≤ 0 counts as 1; a team not listed has weight 1, see `weightOf`). */
function computeTeamWeights(teams: readonly TeamConfig[]): Map<string, number> {
  return new Map(teams.map((t) => [t.name, t.weight > 0 ? t.weight : 1]));
}

/** Each team's decayed GPU-seconds, decayed to `now` with the half-life. */
function computeDecayedUsage(usage: readonly TeamUsage[], now: number, halfLifeMs: number): Map<string, number> {
  const decayed = new Map<string, number>();
  for (const u of usage) {
    const factor = Math.pow(2, -Math.max(0, now - u.asOf) / halfLifeMs);
    decayed.set(u.team, (decayed.get(u.team) ?? 0) + u.decayedGpuSeconds * factor);
  }
  return decayed;
}

/** Teams' shares at the start of a cycle, before any waiting job is counted (see the module comment). */
export interface TeamShares {
  /** (GPUs running + decayed GPU-seconds / half-life in s) / weight. */
  readonly shareOf: (team: string) => number;
  readonly weightOf: (team: string) => number;
}

export function computeTeamShares(input: Pick<FairShareInput, 'teams' | 'usage' | 'runningGpus' | 'now' | 'args'>): TeamShares {
  const weights = computeTeamWeights(input.teams);
  const decayed = computeDecayedUsage(input.usage, input.now, input.args.halfLifeMs);
  const weightOf = (team: string): number => weights.get(team) ?? 1;
  return {
    weightOf,
    shareOf: (team) => ((input.runningGpus.get(team) ?? 0) + (decayed.get(team) ?? 0) / (input.args.halfLifeMs / 1000)) / weightOf(team),
  };
}

interface TeamHead<T = FairShareEntry> {
  readonly team: string;
  readonly weight: number;
  share: number;
  readonly jobs: readonly T[];
  /** `jobs[i].gpus`, side by side. */
  readonly gpus: Float64Array;
  next: number;
}

function less<T>(a: TeamHead<T>, b: TeamHead<T>): boolean {
  return a.share < b.share || (a.share === b.share && a.team < b.team);
}

class MinHeap<T> {
  constructor(private readonly items: TeamHead<T>[]) {
    for (let i = (items.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  peek(): TeamHead<T> | undefined {
    return this.items[0];
  }

  pop(): void {
    const last = this.items.pop();
    if (last && this.items.length > 0) {
      this.items[0] = last;
      this.siftDown(0);
    }
  }

  siftDown(i: number): void {
    const items = this.items;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < items.length && less(items[l] as TeamHead<T>, items[m] as TeamHead<T>)) m = l;
      if (r < items.length && less(items[r] as TeamHead<T>, items[m] as TeamHead<T>)) m = r;
      if (m === i) return;
      // A temporary, not a destructuring swap: that allocates an array per swap, millions per cycle.
      const swap = items[i] as TeamHead<T>;
      items[i] = items[m] as TeamHead<T>;
      items[m] = swap;
      i = m;
    }
  }
}
