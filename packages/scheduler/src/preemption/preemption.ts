/**
 * The `preemption` plugin (a post-filter): when a job does not fit, stop running jobs to make room for it, whole
 * jobs only (every GPU of a gang is freed together).
 *
 * Who may be a victim of job J:
 *   - reason `priority`: a job of lower priority than J, of J's team, or of a team working beyond its nominal quota
 *     (with no quotas configured: any job of lower priority);
 *   - reason `quota_reclaim`: J's team is within its nominal quota for the GPUs J needs, and the victim's team
 *     works beyond its nominal (on borrowed GPUs) — whatever the victim's priority: a guarantee is a guarantee;
 *   - reason `queue_order` (`order-preemption`, when `ctx.order` is set): the profile's queue order ranks the victim
 *     strictly after J, and its priority is not higher (see order-preemption.ts).
 *
 * Choice (fewest victims, least work lost): candidates are ordered lower priority first, then borrowed work, then
 * the most recently started, then id. For each node, victims are taken in that order until the node has the GPUs;
 * the `numNodes` nodes needing the fewest victims (then the cheapest) are chosen; then each victim is dropped again
 * if J still fits without it. J is placed on the freed view before anything is decided: never preempt for a job
 * that still would not fit.
 */
import type { GpuDevice, Job, PlacedNode, PreemptionReason } from '@tutti/model';
import { computeCandidateTypes, computeMaxMatchingFree, countMatchingGpus } from '../filter/gpu-fit.ts';
import { fitsHost } from '../filter/host-fit.ts';
import { rankOrderVictim, type QueueRank } from './order-preemption.ts';
import { ExtraFreeView, type PlanOverlay } from '../cycle/plan-overlay.ts';
import type { QuotaLedger } from '../admission/quota.ts';
import { hasEnoughMemory, type ResourceShape } from '../cycle/resource-shape.ts';
import type { RunningJob } from '../cycle/running.ts';
import type { CapacityView, SnapshotIndex } from '../cycle/snapshot-index.ts';

export interface Victim {
  readonly running: RunningJob;
  readonly job: Job;
  readonly reason: PreemptionReason;
  /** For `queue_order`: the victim's rank in the queue order (higher goes first as a victim). */
  readonly orderRank?: number;
}

export interface PreemptionChoice {
  readonly victims: readonly Victim[];
  readonly nodes: PlacedNode[];
}

export interface PreemptionContext {
  readonly index: SnapshotIndex;
  readonly overlay: PlanOverlay;
  readonly running: readonly RunningJob[];
  /** Jobs already chosen as victims this cycle, or being stopped already. */
  readonly taken: { has(id: string): boolean };
  /** Quota usage including this cycle's admissions: is the preemptor within its nominal? */
  readonly ledger: QuotaLedger | undefined;
  /** Quota usage of running jobs only: does a victim work on borrowed GPUs? */
  readonly borrowLedger: QuotaLedger | undefined;
  readonly allowPriority: boolean;
  readonly allowReclaim: boolean;
  /** `order-preemption`: the queue order's rank and the preemptor's rank in it. */
  readonly order?: { readonly rank: QueueRank; readonly preemptorRank: number };
  /** The running jobs kept in victim order for the whole cycle (used when `order` is not set). */
  readonly pool?: VictimPool;
  readonly place: (shape: ResourceShape, view: CapacityView) => PlacedNode[] | undefined;
}

const MAX_VICTIMS_TO_MINIMISE = 16;

export function computePreemption(job: Job, shape: ResourceShape, amount: number, ctx: PreemptionContext): PreemptionChoice | undefined {
  const { index, overlay, ledger } = ctx;
  const types = computeCandidateTypes(shape, index.readyGpuTypes);
  // Reclaim is per GPU type: the types the job's team is within its nominal for.
  const withinTypes = ledger === undefined ? [] : types.filter((t) => {
    const c = ledger.check(job.spec.team, t, amount);
    return c.ok && c.withinNominal;
  });

  const order = ctx.order;
  if (ctx.pool && !order) return choosePooled(job, shape, ctx, ctx.pool, types, withinTypes);

  const candidates: (Victim & { borrowed: boolean; rank: number })[] = [];
  for (const running of ctx.running) {
    const victim = running.job;
    if (!victim || ctx.taken.has(running.id) || running.byNode.size === 0) continue;
    const borrowLedger = ctx.borrowLedger;
    let borrowed = false;
    if (borrowLedger) for (const t of running.byType.keys()) if ((borrowed = borrowLedger.isBorrowing(victim.spec.team, t))) break;
    const lower = victim.spec.priority < job.spec.priority;
    if (ctx.allowPriority && lower && (ledger === undefined || victim.spec.team === job.spec.team || borrowed)) candidates.push({ running, job: victim, reason: 'priority', borrowed, rank: 0 });
    else if (ctx.allowReclaim && victim.spec.team !== job.spec.team && borrowsOneOf(running, victim, withinTypes, ctx.borrowLedger)) candidates.push({ running, job: victim, reason: 'quota_reclaim', borrowed, rank: 0 });
    else if (order) {
      const orderRank = rankOrderVictim(job, order.preemptorRank, victim, order.rank);
      if (orderRank !== undefined) candidates.push({ running, job: victim, reason: 'queue_order', borrowed, orderRank, rank: 0 });
    }
  }
  if (candidates.length === 0) return undefined;
  candidates.sort(compareVictimCandidates);
  candidates.forEach((c, i) => (c.rank = i));

  // Per node: the cheapest prefix of its candidates that gives it the GPUs.
  const onNode = new Map<number, (typeof candidates)[number][]>();
  for (const c of candidates) {
    for (const ordinal of c.running.byNode.keys()) {
      const list = onNode.get(ordinal);
      if (list) list.push(c);
      else onNode.set(ordinal, [c]);
    }
  }
  const options: { ordinal: number; victims: (typeof candidates)[number][]; cost: number }[] = [];
  for (const node of index.readyNodes) {
    if (!fitsHost(overlay, node, shape)) continue;
    if (computeMaxMatchingFree(overlay, node, shape, types) >= shape.gpuCount) {
      options.push({ ordinal: node.ordinal, victims: [], cost: 0 });
      continue;
    }
    const list = onNode.get(node.ordinal);
    if (!list) continue;
    // Matching free GPUs per candidate type as victims are added: what `computeMaxMatchingFree` would count on the
    // overlay with their GPUs freed (each GPU once, and not if it is free already), kept as counts.
    const matching = types.map((t) => countMatchingGpus(overlay, node, shape, t));
    const free = overlay.freeGpusByType(node);
    const added = new Set<GpuDevice>();
    const chosen: (typeof candidates)[number][] = [];
    let maxRank = 0;
    for (const c of list) {
      chosen.push(c);
      maxRank = Math.max(maxRank, c.rank);
      let most = 0;
      for (const gpu of c.running.byNode.get(node.ordinal) ?? []) {
        if (added.has(gpu)) continue;
        added.add(gpu);
        const t = types.indexOf(gpu.type);
        if (t >= 0 && hasEnoughMemory(shape, gpu) && !free.get(gpu.type)?.includes(gpu)) matching[t] = (matching[t] as number) + 1;
      }
      for (let t = 0; t < matching.length; t++) most = Math.max(most, matching[t] as number);
      if (most >= shape.gpuCount) {
        options.push({ ordinal: node.ordinal, victims: [...chosen], cost: chosen.length * candidates.length + maxRank });
        break;
      }
    }
  }
  if (options.length < shape.numNodes) return undefined;
  options.sort((a, b) => a.cost - b.cost || a.ordinal - b.ordinal);
  const victims = new Map<string, (typeof candidates)[number]>();
  for (const option of options.slice(0, shape.numNodes)) for (const v of option.victims) victims.set(v.running.id, v);
  if (victims.size === 0) return undefined;

  const placed = placeWithoutVictims(shape, ctx, victims, (v) => v.rank);
  if (!placed) return undefined;
  const { final, nodes } = placed;
  return { victims: final.map(({ running, job: v, reason, orderRank }) => (orderRank === undefined ? { running, job: v, reason } : { running, job: v, reason, orderRank })), nodes };
}

interface PoolEntry {
  readonly running: RunningJob;
  readonly job: Job;
  /** `job.spec.team` and `job.spec.priority`, read once. */
  readonly team: string;
  readonly priority: number;
  readonly startedAt: number;
  /** Whether its team works beyond its nominal for one of its GPU types, as of the last `refresh`. */
  borrowed: boolean;
  /** Orders the pool: smaller goes first as a victim. Only the order means something. */
  position: number;
  /** Its GPUs on each node, by node ordinal (`VictimPool.nodesOf`; made when first asked). */
  nodes: OnNode[] | undefined;
}

/** A pool job on one node, with its GPUs there: the GPUs, how many of each type, and the least GPU memory. */
interface OnNode {
  readonly ordinal: number;
  readonly entry: PoolEntry;
  readonly gpus: readonly GpuDevice[];
  readonly counts: readonly { readonly type: string; readonly n: number }[];
  readonly minMemoryMiB: number;
}

function onNode(ordinal: number, entry: PoolEntry, gpus: readonly GpuDevice[]): OnNode {
  let minMemoryMiB = Infinity;
  let oneType = true;
  const first = gpus[0]?.type;
  for (let g = 0; g < gpus.length; g++) {
    const gpu = gpus[g] as GpuDevice;
    if (gpu.memoryMiB < minMemoryMiB) minMemoryMiB = gpu.memoryMiB;
    if (gpu.type !== first) oneType = false;
  }
  // A node's GPUs are nearly always of one type: one count, no search.
  if (oneType) return { ordinal, entry, gpus, counts: first === undefined ? [] : [{ type: first, n: gpus.length }], minMemoryMiB };
  const counts: { type: string; n: number }[] = [];
  for (const gpu of gpus) {
    const found = counts.find((c) => c.type === gpu.type);
    if (found) found.n++;
    else counts.push({ type: gpu.type, n: 1 });
  }
  return { ordinal, entry, gpus, counts, minMemoryMiB };
}

/**
 * The running jobs that can be victims (listed in `CycleInput.running`, holding whole GPUs), kept in victim order for
 * a whole cycle — lower priority first, then borrowed work, then the most recently started, then id — with, per
 * node, the jobs on it in that order. A preemptor then walks each node's list, taking the jobs that may be its
 * victims, instead of collecting and sorting all candidates (O(R log R) per preemptor). Whose work is borrowed
 * changes when this cycle's victims are charged back; only those teams' jobs are looked at again and moved.
 * The per-node lists are made when first asked for: a one-node preemptor usually finds its victim among the first
 * jobs in victim order, looking at their nodes only.
 */
export class VictimPool {
  private entries: PoolEntry[] = [];
  private readonly byTeam = new Map<string, PoolEntry[]>();
  /** GPU types each team's jobs hold. */
  private readonly typesOfTeam = new Map<string, Set<string>>();
  private readonly seenVersion = new Map<string, number>();
  /** Per node ordinal, the jobs on it in victim order; undefined until asked for (and after a renumbering). */
  private nodeLists: Map<number, OnNode[]> | undefined;
  /** Nodes where two listed jobs name the same GPU (a snapshot with a GPU allocated twice): counted with care. */
  private readonly shared = new Set<number>();
  private fresh = false;

  constructor(running: readonly RunningJob[]) {
    for (const r of running) {
      if (!r.job || r.byNode.size === 0) continue;
      const entry: PoolEntry = { running: r, job: r.job, team: r.job.spec.team, priority: r.job.spec.priority, startedAt: r.job.startedAt ?? 0, borrowed: false, position: 0, nodes: undefined };
      this.entries.push(entry);
      const list = this.byTeam.get(r.job.spec.team);
      if (list) list.push(entry);
      else this.byTeam.set(r.job.spec.team, [entry]);
      let types = this.typesOfTeam.get(entry.team);
      if (!types) this.typesOfTeam.set(entry.team, (types = new Set()));
      for (const type of r.byType.keys()) types.add(type);
    }
  }

  /** Brings `borrowed` up to date with `borrowLedger` (absent: nobody borrows) and the order with it. */
  refresh(borrowLedger: QuotaLedger | undefined): void {
    const moved: PoolEntry[] = [];
    for (const [team, list] of this.byTeam) {
      const version = borrowLedger?.teamVersion(team) ?? 0;
      if (this.fresh && this.seenVersion.get(team) === version) continue;
      this.seenVersion.set(team, version);
      // Asked once per GPU type for the team, not once per job: a team has thousands of jobs and a few types.
      const borrowing = new Map<string, boolean>();
      const isBorrowing = (type: string): boolean => {
        let answer = borrowing.get(type);
        if (answer === undefined) borrowing.set(type, (answer = borrowLedger?.isBorrowing(team, type) ?? false));
        return answer;
      };
      // Most teams borrow none of their types: then none of their jobs works on borrowed GPUs.
      let borrowsAny = false;
      if (borrowLedger) for (const type of this.typesOfTeam.get(team) ?? []) if ((borrowsAny = isBorrowing(type))) break;
      for (const e of list) {
        let borrowed = false;
        if (borrowsAny) for (const t of e.running.byType.keys()) if ((borrowed = isBorrowing(t))) break;
        if (borrowed !== e.borrowed) {
          e.borrowed = borrowed;
          moved.push(e);
        }
      }
    }
    if (!this.fresh) {
      this.fresh = true;
      this.entries.sort(compareVictims);
      this.renumber();
      return;
    }
    if (moved.length === 0) return;
    // The others keep their order: sort the moved ones, merge them back in, and give each a position between its
    // new neighbours; then re-sort only the node lists they are on.
    const isMoved = new Set(moved);
    const rest = this.entries.filter((e) => !isMoved.has(e));
    moved.sort(compareVictims);
    const merged: PoolEntry[] = new Array(this.entries.length);
    let i = 0;
    let j = 0;
    for (let k = 0; k < merged.length; k++) {
      const a = rest[i];
      const b = moved[j];
      merged[k] = b === undefined || (a !== undefined && compareVictims(a, b) < 0) ? (rest[i++] as PoolEntry) : (moved[j++] as PoolEntry);
    }
    this.entries = merged;
    for (let k = 0; k < merged.length; ) {
      if (!isMoved.has(merged[k] as PoolEntry)) {
        k++;
        continue;
      }
      let end = k;
      while (end < merged.length && isMoved.has(merged[end] as PoolEntry)) end++;
      const before = k > 0 ? (merged[k - 1] as PoolEntry).position : -1;
      const after = end < merged.length ? (merged[end] as PoolEntry).position : before + end - k + 1;
      const step = (after - before) / (end - k + 1);
      for (let m = k; m < end; m++) (merged[m] as PoolEntry).position = before + step * (m - k + 1);
      if (!(step > 0) || (merged[end - 1] as PoolEntry).position >= after || (merged[k] as PoolEntry).position <= before) {
        // Out of room between two doubles (only after very many moves): number everything again.
        this.renumber();
        return;
      }
      k = end;
    }
    const touched = new Set<number>();
    for (const e of moved) for (const ordinal of e.running.byNode.keys()) touched.add(ordinal);
    if (this.nodeLists) for (const ordinal of touched) this.nodeLists.get(ordinal)?.sort((a, b) => a.entry.position - b.entry.position);
  }

  /** Positions 0, 1, 2, ... in the current order; the node lists are made again when next asked for. */
  private renumber(): void {
    const { entries } = this;
    for (let position = 0; position < entries.length; position++) (entries[position] as PoolEntry).position = position;
    this.nodeLists = undefined;
  }

  /** The entry's GPUs on each node, by node ordinal. */
  nodesOf(entry: PoolEntry): readonly OnNode[] {
    if (entry.nodes) return entry.nodes;
    const nodes: OnNode[] = [];
    // `forEach`: no [key, value] pair per node, as `for...of` over a map makes.
    entry.running.byNode.forEach((gpus, ordinal) => nodes.push(onNode(ordinal, entry, gpus)));
    if (nodes.length > 1) nodes.sort((a, b) => a.ordinal - b.ordinal);
    return (entry.nodes = nodes);
  }

  /** Every node's list of jobs in victim order, and which nodes have a GPU named twice. */
  private buildNodeLists(): Map<number, OnNode[]> {
    const lists = new Map<number, OnNode[]>();
    for (const entry of this.entries) {
      for (const on of this.nodesOf(entry)) {
        const list = lists.get(on.ordinal);
        if (list) list.push(on);
        else lists.set(on.ordinal, [on]);
      }
    }
    this.shared.clear();
    for (const [ordinal, list] of lists) {
      // One job names each of its GPUs once (running.ts): only a node with two or more can share one. GPU indexes
      // below 31 are marked in a bit mask (no set per node).
      if (list.length < 2) continue;
      let mask = 0;
      let seen: Set<GpuDevice> | undefined;
      for (const { gpus } of list) {
        for (const gpu of gpus) {
          if (gpu.index >= 0 && gpu.index < 31) {
            const bit = 1 << gpu.index;
            if ((mask & bit) !== 0) this.shared.add(ordinal);
            mask |= bit;
          } else if (seen?.size === (seen ??= new Set()).add(gpu).size) this.shared.add(ordinal);
        }
      }
    }
    return (this.nodeLists = lists);
  }

  /** Every job, in victim order (after `refresh`). */
  inOrder(): readonly PoolEntry[] {
    return this.entries;
  }

  /** The jobs on a node with their GPUs there, in victim order (after `refresh`). */
  jobsOn(ordinal: number): readonly OnNode[] | undefined {
    return (this.nodeLists ?? this.buildNodeLists()).get(ordinal);
  }

  /** Whether two jobs on the node name the same GPU (after `refresh`). */
  sharesGpus(ordinal: number): boolean {
    if (!this.nodeLists) this.buildNodeLists();
    return this.shared.has(ordinal);
  }
}

function compareVictims(a: PoolEntry, b: PoolEntry): number {
  if (a.priority !== b.priority) return a.priority < b.priority ? -1 : 1;
  if (a.borrowed !== b.borrowed) return a.borrowed ? -1 : 1;
  if (a.startedAt !== b.startedAt) return a.startedAt > b.startedAt ? -1 : 1;
  return a.running.id < b.running.id ? -1 : a.running.id > b.running.id ? 1 : 0;
}

type PooledVictim = Victim & { readonly position: number };

/** A node's way to room for the job: its victims (none if it fits already) and the position of the last one. */
interface NodeOption {
  readonly ordinal: number;
  readonly victims: readonly PooledVictim[];
  readonly last: number;
}

/** Fewer victims first, then the cheaper most expensive victim, then the node. */
function compareOptions(a: { ordinal: number; count: number; last: number }, b: { ordinal: number; count: number; last: number }): number {
  return a.count - b.count || a.last - b.last || a.ordinal - b.ordinal;
}

/**
 * `computePreemption` over the pool (no queue-order ranks): the same choice, found node by node. The candidates of
 * the plain path are exactly the pool's jobs that may be victims of `job`, in pool order, so "rank among the
 * candidates" and "position in the pool" order them alike, and an option's cost (victims needed, then the rank of the
 * most expensive) compares the same with positions. Only the best `numNodes` options are kept.
 */
function choosePooled(job: Job, shape: ResourceShape, ctx: PreemptionContext, pool: VictimPool, types: readonly string[], withinTypes: readonly string[]): PreemptionChoice | undefined {
  const { index, overlay, ledger } = ctx;
  pool.refresh(ctx.borrowLedger);
  const { team, priority } = job.spec;
  const reasonFor = (e: PoolEntry): PreemptionReason | undefined => {
    if (ctx.allowPriority && e.priority < priority && (ledger === undefined || e.team === team || e.borrowed)) return ctx.taken.has(e.running.id) ? undefined : 'priority';
    if (ctx.allowReclaim && e.borrowed && e.team !== team && borrowsOneOf(e.running, e.job, withinTypes, ctx.borrowLedger)) return ctx.taken.has(e.running.id) ? undefined : 'quota_reclaim';
    return undefined;
  };

  const need = shape.numNodes;
  /** The best options so far, best first, at most `need`. */
  const best: (NodeOption & { count: number })[] = [];
  let optionCount = 0;
  const offer = (ordinal: number, count: number, last: number, victims: () => PooledVictim[]): void => {
    optionCount++;
    const candidate = { ordinal, count, last };
    const worst = best[need - 1];
    if (worst && compareOptions(candidate, worst) >= 0) return;
    let at = best.length;
    while (at > 0 && compareOptions(candidate, best[at - 1] as NodeOption & { count: number }) < 0) at--;
    best.splice(at, 0, { ordinal, count, last, victims: victims() });
    if (best.length > need) best.pop();
  };
  const matching = new Array<number>(types.length).fill(0);
  // One node, and none fits without victims: then the best option needs one victim if any does, and it is the first
  // job in victim order that may be a victim and alone makes room on a node where it is the first such job. Found
  // without visiting every node; otherwise (or when there is none) every node is walked below.
  if (need === 1 && shape.topology?.mode !== 'require' && !ctx.place(shape, overlay)) {
    const seen = new Set<number>();
    const entries = pool.inOrder();
    search: for (let x = 0; x < entries.length; x++) {
      const e = entries[x] as PoolEntry;
      const reason = reasonFor(e);
      if (!reason) continue;
      for (const on of pool.nodesOf(e)) {
        if (seen.has(on.ordinal)) continue;
        seen.add(on.ordinal);
        const node = index.nodes[on.ordinal];
        if (!node?.ready || !fitsHost(overlay, node, shape)) continue;
        for (let t = 0; t < types.length; t++) matching[t] = countMatchingGpus(overlay, node, shape, types[t] as string);
        for (const gpu of on.gpus) {
          const t = types.indexOf(gpu.type);
          if (t >= 0 && hasEnoughMemory(shape, gpu)) matching[t] = (matching[t] as number) + 1;
        }
        if (matching.some((n) => n >= shape.gpuCount)) {
          offer(on.ordinal, 1, e.position, () => [{ running: e.running, job: e.job, reason, position: e.position }]);
          break search;
        }
      }
    }
  }
  const scratch: { entry: PoolEntry; reason: PreemptionReason }[] = [];
  for (const node of best.length > 0 ? [] : index.readyNodes) {
    if (!fitsHost(overlay, node, shape)) continue;
    if (computeMaxMatchingFree(overlay, node, shape, types) >= shape.gpuCount) {
      offer(node.ordinal, 0, -1, () => []);
      continue;
    }
    const list = pool.jobsOn(node.ordinal);
    if (!list) continue;
    // Matching free GPUs per candidate type as victims are added: what `computeMaxMatchingFree` counts on the
    // overlay with their GPUs freed. A victim's GPUs are allocated in the snapshot, so never free already; a GPU
    // two jobs name is counted once.
    for (let t = 0; t < types.length; t++) matching[t] = countMatchingGpus(overlay, node, shape, types[t] as string);
    const added = pool.sharesGpus(node.ordinal) ? new Set<GpuDevice>() : undefined;
    scratch.length = 0;
    for (let x = 0; x < list.length; x++) {
      const { entry: e, gpus, counts, minMemoryMiB } = list[x] as OnNode;
      const reason = reasonFor(e);
      if (!reason) continue;
      scratch.push({ entry: e, reason });
      let most = 0;
      if (!added && (shape.gpuMemoryMiB === undefined || minMemoryMiB >= shape.gpuMemoryMiB)) {
        // Every GPU of it here has the memory: count by type.
        for (let c = 0; c < counts.length; c++) {
          const { type, n } = counts[c] as { type: string; n: number };
          const t = types.indexOf(type);
          if (t >= 0) matching[t] = (matching[t] as number) + n;
        }
      } else {
        for (let g = 0; g < gpus.length; g++) {
          const gpu = gpus[g] as GpuDevice;
          if (added) {
            if (added.has(gpu)) continue;
            added.add(gpu);
          }
          const t = types.indexOf(gpu.type);
          if (t >= 0 && hasEnoughMemory(shape, gpu)) matching[t] = (matching[t] as number) + 1;
        }
      }
      for (let t = 0; t < matching.length; t++) most = Math.max(most, matching[t] as number);
      if (most >= shape.gpuCount) {
        offer(node.ordinal, scratch.length, e.position, () => scratch.map(({ entry, reason: r }) => ({ running: entry.running, job: entry.job, reason: r, position: entry.position })));
        break;
      }
    }
  }
  if (optionCount < need) return undefined;
  const victims = new Map<string, PooledVictim>();
  for (const option of best) for (const v of option.victims) victims.set(v.running.id, v);
  if (victims.size === 0) return undefined;

  const placed = placeWithoutVictims(shape, ctx, victims, (v) => v.position);
  if (!placed) return undefined;
  const { final, nodes } = placed;
  return { victims: final.map(({ running, job: v, reason }) => ({ running, job: v, reason })), nodes };
}

/**
 * Places the job as if `victims` were gone; then, for up to MAX_VICTIMS_TO_MINIMISE victims, drops those it does not
 * need, the most expensive (highest `cost`) first; then places it on what the rest free. `victims` is consumed.
 * Returns the victims kept, cheapest first, and the placement; undefined when even all of them do not make room.
 */
function placeWithoutVictims<V extends { running: RunningJob }>(
  shape: ResourceShape,
  ctx: PreemptionContext,
  victims: Map<string, V>,
  cost: (victim: V) => number,
): { final: V[]; nodes: PlacedNode[] } | undefined {
  const viewWithout = (set: Iterable<V>): CapacityView => viewWithVictimsFreed(ctx.overlay, set);
  if (!ctx.place(shape, viewWithout(victims.values()))) return undefined;
  const ordered = [...victims.values()].sort((a, b) => cost(b) - cost(a));
  if (ordered.length <= MAX_VICTIMS_TO_MINIMISE) {
    for (const v of ordered) {
      victims.delete(v.running.id);
      if (victims.size === 0 || !ctx.place(shape, viewWithout(victims.values()))) victims.set(v.running.id, v);
    }
  }
  const final = [...victims.values()].sort((a, b) => cost(a) - cost(b));
  const nodes = ctx.place(shape, viewWithout(final));
  return nodes ? { final, nodes } : undefined;
}

/** The overlay with the GPUs of `victims` counted free. */
export function viewWithVictimsFreed(overlay: PlanOverlay, victims: Iterable<{ readonly running: RunningJob }>): CapacityView {
  const extra = new Map<number, GpuDevice[]>();
  for (const v of victims) {
    v.running.byNode.forEach((gpus, ordinal) => {
      const list = extra.get(ordinal);
      if (list) list.push(...gpus);
      else extra.set(ordinal, [...gpus]);
    });
  }
  return new ExtraFreeView(overlay, extra);
}

/**
 * Whether the job holds GPUs of one of `types` that its team borrows (works beyond its nominal for): what a team
 * within its nominal for those types may reclaim.
 */
function borrowsOneOf(running: RunningJob, victim: Job, types: readonly string[], borrowLedger: QuotaLedger | undefined): boolean {
  if (!borrowLedger) return false;
  for (const t of types) if (running.byType.has(t) && borrowLedger.isBorrowing(victim.spec.team, t)) return true;
  return false;
}

/**
 * Victim order: lower priority first, then borrowed work, then later in the queue order, then the most recently
 * started (least work lost), then id.
 */
export function compareVictimCandidates(
  a: { readonly job: Job; readonly running: RunningJob; readonly borrowed: boolean; readonly orderRank?: number | undefined },
  b: { readonly job: Job; readonly running: RunningJob; readonly borrowed: boolean; readonly orderRank?: number | undefined },
): number {
  return (
    a.job.spec.priority - b.job.spec.priority ||
    Number(b.borrowed) - Number(a.borrowed) ||
    compareOrderRank(a.orderRank, b.orderRank) ||
    (b.job.startedAt ?? 0) - (a.job.startedAt ?? 0) ||
    (a.running.id < b.running.id ? -1 : a.running.id > b.running.id ? 1 : 0)
  );
}

/** Higher rank first; jobs without one (priority, reclaim) before those with one. */
function compareOrderRank(a: number | undefined, b: number | undefined): number {
  if (a === b) return 0;
  if (a === undefined) return -1;
  if (b === undefined) return 1;
  return a > b ? -1 : 1;
}
