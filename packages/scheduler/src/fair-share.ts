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
 * Cost: O(J log J) to sort within teams and O(J log T) to merge. Same input → same order.
 */
import type { Job, TeamConfig, TeamUsage } from '@tutti/model';
import type { FairShareArgs } from './profile.ts';
import { compareQueueOrder } from './queue-sort.ts';

export interface FairShareInput {
  readonly teams: readonly TeamConfig[];
  readonly usage: readonly TeamUsage[];
  /** GPUs each team's running jobs hold now. */
  readonly runningGpus: ReadonlyMap<string, number>;
  readonly now: number;
  readonly args: FairShareArgs;
}

export function computeEffectivePriority(job: Job, now: number, agingPerHour: number): number {
  return job.spec.priority + (agingPerHour * Math.max(0, now - job.createdAt)) / 3_600_000;
}

export function jobGpus(job: Job): number {
  const { count, fraction } = job.spec.resources.gpus;
  return job.spec.numNodes * count * (fraction ?? 1);
}

export function computeFairShareOrder(pending: readonly Job[], input: FairShareInput): Job[] {
  const { now, args } = input;
  const weights = new Map(input.teams.map((t) => [t.name, t.weight > 0 ? t.weight : 1]));
  const decayed = new Map<string, number>();
  for (const u of input.usage) {
    const factor = Math.pow(2, -Math.max(0, now - u.asOf) / args.halfLifeMs);
    decayed.set(u.team, (decayed.get(u.team) ?? 0) + u.decayedGpuSeconds * factor);
  }

  const byTeam = new Map<string, { job: Job; key: number }[]>();
  const seen = new Set<string>();
  for (const job of pending) {
    if (seen.has(job.id)) continue;
    seen.add(job.id);
    let list = byTeam.get(job.spec.team);
    if (!list) byTeam.set(job.spec.team, (list = []));
    list.push({ job, key: computeEffectivePriority(job, now, args.agingPerHour) });
  }

  const heads: TeamHead[] = [];
  for (const [team, list] of byTeam) {
    list.sort((a, b) => b.key - a.key || compareQueueOrder(a.job, b.job));
    const weight = weights.get(team) ?? 1;
    const base = (input.runningGpus.get(team) ?? 0) + (decayed.get(team) ?? 0) / (args.halfLifeMs / 1000);
    heads.push({ team, weight, share: base / weight, jobs: list, next: 0 });
  }
  const heap = new MinHeap(heads);
  const order: Job[] = [];
  for (let head = heap.peek(); head; head = heap.peek()) {
    const entry = head.jobs[head.next++] as { job: Job };
    order.push(entry.job);
    if (head.next >= head.jobs.length) heap.pop();
    else {
      head.share += jobGpus(entry.job) / head.weight;
      heap.siftDown(0);
    }
  }
  return order;
}

interface TeamHead {
  readonly team: string;
  readonly weight: number;
  share: number;
  readonly jobs: readonly { job: Job; key: number }[];
  next: number;
}

function less(a: TeamHead, b: TeamHead): boolean {
  return a.share < b.share || (a.share === b.share && a.team < b.team);
}

class MinHeap {
  constructor(private readonly items: TeamHead[]) {
    for (let i = (items.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  peek(): TeamHead | undefined {
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
      if (l < items.length && less(items[l] as TeamHead, items[m] as TeamHead)) m = l;
      if (r < items.length && less(items[r] as TeamHead, items[m] as TeamHead)) m = r;
      if (m === i) return;
      [items[i], items[m]] = [items[m] as TeamHead, items[i] as TeamHead];
      i = m;
    }
  }
}
