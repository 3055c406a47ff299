/**
 * Preemption inside a team that is at its quota (what Kueue calls `withinClusterQueue: LowerPriority`): a job that
 * its team's quota refuses may stop running jobs of its own team that rank below it — of lower priority (`preemption`
 * with `priority: true`), or later in the profile's queue order (`order-preemption`) — until the team's usage leaves
 * room for it and it fits on the free GPUs plus theirs. Stopping another team's job gives this team no quota, so only
 * its own jobs are looked at. Without this, a team at its quota could never run an urgent job ahead of its own
 * low-priority work, and least-attained-service order inside a team that fills its quota could preempt nothing.
 *
 * Choice, per GPU type the job accepts: the team's candidates that hold GPUs of that type or of its quota key, in
 * victim order (lower priority, then later in the queue order, then the most recently started, then id), are taken
 * until the quota admits the job and it fits; then each victim it does not need is dropped again, the most expensive
 * first. The type that needs the fewest victims wins, then the one whose most expensive victim is cheapest, then the
 * first in the job's order of types.
 */
import type { Job, PlacedNode, PreemptionReason } from '@tutti/model';
import { computeCandidateTypes } from '../filter/gpu-fit.ts';
import { rankOrderVictim, type QueueRank } from './order-preemption.ts';
import type { PlanOverlay } from '../cycle/plan-overlay.ts';
import { compareVictimCandidates, viewWithVictimsFreed, type PreemptionChoice } from './preemption.ts';
import type { QuotaLedger } from '../admission/quota.ts';
import type { ResourceShape } from '../cycle/resource-shape.ts';
import type { RunningJob } from '../cycle/running.ts';
import type { CapacityView, SnapshotIndex } from '../cycle/snapshot-index.ts';

export interface TeamPreemptionContext {
  readonly index: SnapshotIndex;
  readonly overlay: PlanOverlay;
  readonly running: readonly RunningJob[];
  /** Jobs already chosen as victims this cycle, or being stopped already. */
  readonly taken: { has(id: string): boolean };
  /** Quota usage including this cycle's admissions. */
  readonly ledger: QuotaLedger;
  /** Quota usage of running jobs only: whose work is on borrowed GPUs (taken first). */
  readonly borrowLedger: QuotaLedger | undefined;
  readonly allowPriority: boolean;
  /** `order-preemption`: the queue order's rank and the preemptor's rank in it. */
  readonly order?: { readonly rank: QueueRank; readonly preemptorRank: number };
  /** The shape limited to some GPU types (memoised by the caller). */
  readonly restrict: (shape: ResourceShape, types: readonly string[]) => ResourceShape;
  readonly place: (shape: ResourceShape, view: CapacityView) => PlacedNode[] | undefined;
}

/** Victims beyond this many are not dropped again one by one (each try is a placement). */
const MAX_VICTIMS_TO_MINIMISE = 16;

interface Candidate {
  readonly running: RunningJob;
  readonly job: Job;
  readonly reason: PreemptionReason;
  readonly orderRank: number | undefined;
  readonly borrowed: boolean;
  /** Position in victim order: smaller goes first. */
  rank: number;
}

/**
 * Victims of the job's own team whose stopping lets quota admit it and leaves room to place it, with the placement
 * (on one GPU type); undefined when no set of them does.
 */
export function computeTeamPreemption(job: Job, shape: ResourceShape, amount: number, ctx: TeamPreemptionContext): PreemptionChoice | undefined {
  const { ledger, order } = ctx;
  const team = job.spec.team;
  const candidates: Candidate[] = [];
  for (const running of ctx.running) {
    const victim = running.job;
    if (!victim || victim.spec.team !== team || ctx.taken.has(running.id) || running.byNode.size === 0) continue;
    let borrowed = false;
    if (ctx.borrowLedger) for (const t of running.byType.keys()) if ((borrowed = ctx.borrowLedger.isBorrowing(team, t))) break;
    if (ctx.allowPriority && victim.spec.priority < job.spec.priority) {
      candidates.push({ running, job: victim, reason: 'priority', orderRank: undefined, borrowed, rank: 0 });
    } else if (order) {
      const orderRank = rankOrderVictim(job, order.preemptorRank, victim, order.rank);
      if (orderRank !== undefined) candidates.push({ running, job: victim, reason: 'queue_order', orderRank, borrowed, rank: 0 });
    }
  }
  if (candidates.length === 0) return undefined;
  candidates.sort(compareVictimCandidates);
  candidates.forEach((c, i) => (c.rank = i));

  let best: { victims: Candidate[]; nodes: PlacedNode[]; last: number } | undefined;
  for (const type of computeCandidateTypes(shape, ctx.index.readyGpuTypes)) {
    const key = ledger.keyFor(team, type);
    const typed = ctx.restrict(shape, [type]);
    const admitted = (set: readonly Candidate[]): boolean => ledger.admitsReleasing(team, type, amount, released(set));
    const placed = (set: readonly Candidate[]): PlacedNode[] | undefined => ctx.place(typed, viewWithVictimsFreed(ctx.overlay, set));
    // Candidates that give back GPUs this type's admission counts (its quota key), or GPUs it could run on.
    const chosen: Candidate[] = [];
    let nodes: PlacedNode[] | undefined;
    for (const c of candidates) {
      let helps = false;
      for (const t of c.running.byType.keys()) if ((helps = t === type || ledger.keyFor(team, t) === key)) break;
      if (!helps) continue;
      chosen.push(c);
      if (best && chosen.length > best.victims.length) break;
      if (admitted(chosen) && (nodes = placed(chosen))) break;
    }
    if (!nodes) continue;
    // Drop the victims it does not need, the most expensive first.
    if (chosen.length > 1 && chosen.length <= MAX_VICTIMS_TO_MINIMISE) {
      for (let i = chosen.length - 1; i >= 0 && chosen.length > 1; i--) {
        const without = chosen.filter((_, j) => j !== i);
        const there = admitted(without) ? placed(without) : undefined;
        if (there) {
          chosen.splice(i, 1);
          nodes = there;
        }
      }
    }
    const last = (chosen[chosen.length - 1] as Candidate).rank;
    if (!best || chosen.length < best.victims.length || (chosen.length === best.victims.length && last < best.last)) best = { victims: chosen, nodes, last };
  }
  if (!best) return undefined;
  return {
    victims: best.victims.map(({ running, job: victim, reason, orderRank }) => (orderRank === undefined ? { running, job: victim, reason } : { running, job: victim, reason, orderRank })),
    nodes: best.nodes,
  };
}

/** GPUs by type that the victims hold, given back together. */
function released(victims: readonly Candidate[]): Map<string, number> {
  const byType = new Map<string, number>();
  for (const v of victims) v.running.byType.forEach((n, type) => byType.set(type, (byType.get(type) ?? 0) + n));
  return byType;
}
