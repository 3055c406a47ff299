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
 * an estimate keeps the priority order.
 *
 * Cost: O(J log J) to sort within teams (about O(J) when the cache holds the last cycle's order) and O(J log T) to
 * merge. Same input → same order, whatever the cache holds.
 */
import type { Job, TeamConfig, TeamUsage } from '@tutti/model';
import { computeGpusHeld } from '@tutti/model';
import type { DurationEstimate } from './duration-estimate.ts';
import type { FairShareArgs } from './profile.ts';
import { CycleCache, type JobRecord } from './cycle-cache.ts';
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
  const weights = new Map(input.teams.map((t) => [t.name, t.weight > 0 ? t.weight : 1]));
  const decayed = new Map<string, number>();
  for (const u of input.usage) {
    const factor = Math.pow(2, -Math.max(0, now - u.asOf) / args.halfLifeMs);
    decayed.set(u.team, (decayed.get(u.team) ?? 0) + u.decayedGpuSeconds * factor);
  }

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
    const list = sortByEstimate(unsorted, input) ? unsorted : sortTeam(team, unsorted, cache);
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
    ordered = [];
    for (let i = 0; i < slots.length; i++) {
      const record = slots[i];
      if (record !== undefined) ordered.push(record);
    }
    if (newcomers.length > 0) for (const record of byPriorityBands(newcomers)) ordered.push(record);
  } else ordered = byPriorityBands(list);
  ordered.sort(compareEntries);
  const cycle = cache.cycle;
  for (let i = 0; i < ordered.length; i++) {
    const record = ordered[i] as JobRecord;
    record.rank = i;
    record.rankCycle = cycle;
  }
  cache.teamOrders.set(team, { cycle, size: ordered.length });
  return ordered;
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

/** Effective priority, then `compareQueueOrder`, from the copied fields when both ids are short decimals. */
function compareEntries(a: FairShareEntry, b: FairShareEntry): number {
  const byKey = b.key - a.key;
  if (byKey) return byKey;
  if (a.idValue < 0 || b.idValue < 0) return compareQueueOrder(a.job, b.job);
  return b.priority - a.priority || a.idValue - b.idValue || a.createdAt - b.createdAt || (a.job.id < b.job.id ? -1 : a.job.id > b.job.id ? 1 : 0);
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
