/**
 * The `preemption` plugin (a post-filter): when a job does not fit, stop running jobs to make room for it, whole
 * jobs only (every GPU of a gang is freed together).
 *
 * Who may be a victim of job J:
 *   - reason `priority`: a job of lower priority than J, of J's team, or of a team working beyond its nominal quota
 *     (with no quotas configured: any job of lower priority);
 *   - reason `quota_reclaim`: J's team is within its nominal quota for the GPUs J needs, and the victim's team
 *     works beyond its nominal (on borrowed GPUs) — whatever the victim's priority: a guarantee is a guarantee.
 *
 * Choice (fewest victims, least work lost): candidates are ordered lower priority first, then borrowed work, then
 * the most recently started, then id. For each node, victims are taken in that order until the node has the GPUs;
 * the `numNodes` nodes needing the fewest victims (then the cheapest) are chosen; then each victim is dropped again
 * if J still fits without it. J is placed on the freed view before anything is decided: never preempt for a job
 * that still would not fit.
 */
import type { GpuDevice, Job, PlacedNode, PreemptionReason } from '@tutti/model';
import { computeCandidateTypes, computeMaxMatchingFree } from './gpu-fit.ts';
import { fitsHost } from './host-fit.ts';
import { ExtraFreeView, type PlanOverlay } from './plan-overlay.ts';
import type { QuotaLedger } from './quota.ts';
import type { ResourceShape } from './resource-shape.ts';
import type { RunningJob } from './running.ts';
import type { CapacityView, SnapshotIndex } from './snapshot-index.ts';

export interface Victim {
  readonly running: RunningJob;
  readonly job: Job;
  readonly reason: PreemptionReason;
}

export interface PreemptionChoice {
  readonly victims: readonly Victim[];
  readonly nodes: PlacedNode[];
}

export interface PreemptionContext {
  readonly index: SnapshotIndex;
  readonly overlay: PlanOverlay;
  readonly running: readonly RunningJob[];
  /** Jobs already chosen as victims this cycle. */
  readonly taken: ReadonlySet<string>;
  /** Quota usage including this cycle's admissions: is the preemptor within its nominal? */
  readonly ledger: QuotaLedger | undefined;
  /** Quota usage of running jobs only: does a victim work on borrowed GPUs? */
  readonly borrowLedger: QuotaLedger | undefined;
  readonly allowPriority: boolean;
  readonly allowReclaim: boolean;
  readonly place: (shape: ResourceShape, view: CapacityView) => PlacedNode[] | undefined;
}

const MAX_VICTIMS_TO_MINIMISE = 16;

export function computePreemption(job: Job, shape: ResourceShape, amount: number, ctx: PreemptionContext): PreemptionChoice | undefined {
  const { index, overlay, ledger } = ctx;
  const types = computeCandidateTypes(shape, index.readyGpuTypes);
  const withinNominal = ledger !== undefined && types.some((t) => {
    const c = ledger.check(job.spec.team, t, amount);
    return c.ok && c.withinNominal;
  });

  const candidates: (Victim & { borrowed: boolean })[] = [];
  for (const running of ctx.running) {
    const victim = running.job;
    if (!victim || ctx.taken.has(running.id) || running.byNode.size === 0) continue;
    const borrowLedger = ctx.borrowLedger;
    const borrowed = borrowLedger !== undefined && [...running.byType.keys()].some((t) => borrowLedger.isBorrowing(victim.spec.team, t));
    const lower = victim.spec.priority < job.spec.priority;
    if (ctx.allowPriority && lower && (ledger === undefined || victim.spec.team === job.spec.team || borrowed)) candidates.push({ running, job: victim, reason: 'priority', borrowed });
    else if (ctx.allowReclaim && withinNominal && borrowed && victim.spec.team !== job.spec.team) candidates.push({ running, job: victim, reason: 'quota_reclaim', borrowed });
  }
  if (candidates.length === 0) return undefined;
  candidates.sort(
    (a, b) =>
      a.job.spec.priority - b.job.spec.priority ||
      Number(b.borrowed) - Number(a.borrowed) ||
      (b.job.startedAt ?? 0) - (a.job.startedAt ?? 0) ||
      (a.running.id < b.running.id ? -1 : a.running.id > b.running.id ? 1 : 0),
  );
  const rank = new Map(candidates.map((c, i) => [c.running.id, i]));

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
    const chosen: (typeof candidates)[number][] = [];
    const extra: GpuDevice[] = [];
    for (const c of list) {
      chosen.push(c);
      extra.push(...(c.running.byNode.get(node.ordinal) ?? []));
      const view = new ExtraFreeView(overlay, new Map([[node.ordinal, extra]]));
      if (computeMaxMatchingFree(view, node, shape, types) >= shape.gpuCount) {
        options.push({ ordinal: node.ordinal, victims: [...chosen], cost: chosen.length * candidates.length + Math.max(...chosen.map((v) => rank.get(v.running.id) ?? 0)) });
        break;
      }
    }
  }
  if (options.length < shape.numNodes) return undefined;
  options.sort((a, b) => a.cost - b.cost || a.ordinal - b.ordinal);
  const victims = new Map<string, (typeof candidates)[number]>();
  for (const option of options.slice(0, shape.numNodes)) for (const v of option.victims) victims.set(v.running.id, v);
  if (victims.size === 0) return undefined;

  const viewWithout = (set: Iterable<(typeof candidates)[number]>): CapacityView => {
    const extra = new Map<number, GpuDevice[]>();
    for (const v of set) {
      for (const [ordinal, gpus] of v.running.byNode) {
        const list = extra.get(ordinal);
        if (list) list.push(...gpus);
        else extra.set(ordinal, [...gpus]);
      }
    }
    return new ExtraFreeView(overlay, extra);
  };
  if (!ctx.place(shape, viewWithout(victims.values()))) return undefined;

  // Drop victims that are not needed, most expensive first.
  const ordered = [...victims.values()].sort((a, b) => (rank.get(b.running.id) ?? 0) - (rank.get(a.running.id) ?? 0));
  if (ordered.length <= MAX_VICTIMS_TO_MINIMISE) {
    for (const v of ordered) {
      victims.delete(v.running.id);
      if (victims.size === 0 || !ctx.place(shape, viewWithout(victims.values()))) victims.set(v.running.id, v);
    }
  }
  const final = [...victims.values()].sort((a, b) => (rank.get(a.running.id) ?? 0) - (rank.get(b.running.id) ?? 0));
  const nodes = ctx.place(shape, viewWithout(final));
  if (!nodes) return undefined;
  return { victims: final.map(({ running, job: v, reason }) => ({ running, job: v, reason })), nodes };
}
