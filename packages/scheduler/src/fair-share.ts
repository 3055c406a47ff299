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
 * Cost: O(J log J) to sort within teams and O(J log T) to merge. Same input → same order.
 */
import type { Job, TeamConfig, TeamUsage } from '@tutti/model';
import { computeGpusHeld } from '@tutti/model';
import type { DurationEstimate } from './duration-estimate.ts';
import type { FairShareArgs } from './profile.ts';
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
  return computeFairShareQueue(pending, input, (job, key, gpus, priority, idValue, createdAt) => ({ job, key, gpus, priority, idValue, createdAt })).map((entry) => entry.job);
}

/** What the fair-share sort reads of a job, copied into its entry once per cycle. */
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
 * The fair-share order as entries made by `make`, which gets what the sort reads and may add what its caller reads
 * of each job: all of it is read in one pass over the input (in input order, which is how the jobs lie in memory),
 * so neither the sort nor the caller chases each job's spec again in queue order.
 */
export function computeFairShareQueue<E extends FairShareEntry>(
  pending: readonly Job[],
  input: FairShareInput,
  make: (job: Job, key: number, gpus: number, priority: number, idValue: number, createdAt: number) => E,
): readonly E[] {
  const { now, args } = input;
  const weights = new Map(input.teams.map((t) => [t.name, t.weight > 0 ? t.weight : 1]));
  const decayed = new Map<string, number>();
  for (const u of input.usage) {
    const factor = Math.pow(2, -Math.max(0, now - u.asOf) / args.halfLifeMs);
    decayed.set(u.team, (decayed.get(u.team) ?? 0) + u.decayedGpuSeconds * factor);
  }

  // Each team's jobs, by priority. Queues usually list jobs in submission order, and within one priority that is
  // already the sorted order (older jobs have aged more), so the bands put together highest first are sorted or
  // nearly: the sort below then costs about one comparison per job. Whatever the input order, the sort decides.
  const byTeam = new Map<string, Map<number, E[]>>();
  // A job id listed twice counts once (its first entry). Ids are nearly always distinct decimal numbers: checked
  // with one numeric sort instead of a hash set of 100,000 strings, which is used only when that check fails.
  const seen = hasDistinctDecimalIds(pending) ? undefined : new Set<string>();
  for (const job of pending) {
    if (seen) {
      if (seen.has(job.id)) continue;
      seen.add(job.id);
    }
    const { spec } = job;
    let bands = byTeam.get(spec.team);
    if (!bands) byTeam.set(spec.team, (bands = new Map()));
    let band = bands.get(spec.priority);
    if (!band) bands.set(spec.priority, (band = []));
    band.push(make(job, computeEffectivePriority(job, now, args.agingPerHour), jobGpus(job), spec.priority, decimalIdValue(job.id), job.createdAt));
  }

  const heads: TeamHead<E>[] = [];
  for (const [team, bands] of byTeam) {
    const list: E[] = ([] as E[]).concat(...[...bands.keys()].sort((a, b) => b - a).map((p) => bands.get(p) as E[]));
    if (!sortByEstimate(list, input)) list.sort(compareEntries);
    const weight = weights.get(team) ?? 1;
    const base = (input.runningGpus.get(team) ?? 0) + (decayed.get(team) ?? 0) / (args.halfLifeMs / 1000);
    // The merge reads each job's GPUs in this team's order: copied now, while the team's entries are in cache.
    const gpus = new Float64Array(list.length);
    for (let i = 0; i < list.length; i++) gpus[i] = (list[i] as E).gpus;
    heads.push({ team, weight, share: base / weight, jobs: list, gpus, next: 0 });
  }
  const heap = new MinHeap(heads);
  const order: E[] = [];
  for (let head = heap.peek(); head; head = heap.peek()) {
    const at = head.next++;
    order.push(head.jobs[at] as E);
    if (head.next >= head.jobs.length) heap.pop();
    else {
      head.share += (head.gpus[at] as number) / head.weight;
      heap.siftDown(0);
    }
  }
  return order;
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

/** Whether every id is a decimal of at most 15 digits and no two have the same value (so no two are equal). */
function hasDistinctDecimalIds(pending: readonly Job[]): boolean {
  const values = new Float64Array(pending.length);
  for (let i = 0; i < pending.length; i++) {
    const value = decimalIdValue((pending[i] as Job).id);
    if (value < 0) return false;
    values[i] = value;
  }
  values.sort();
  for (let i = 1; i < values.length; i++) if (values[i] === values[i - 1]) return false;
  return true;
}

/** Parsed by hand: once per pending job per cycle. */
function decimalIdValue(id: string): number {
  if (id.length === 0 || id.length > 15) return -1;
  let value = 0;
  for (let i = 0; i < id.length; i++) {
    const digit = id.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return -1;
    value = value * 10 + digit;
  }
  return value;
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
