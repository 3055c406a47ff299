/**
 * The `preemption` extension point's plugins. Each says which running jobs it lets a waiting job stop and within
 * which limits; the preemption step (preemption-step.ts) merges the listed plugins into one search per job.
 *
 *   preemption        lower priority (same team or a borrowing team) and quota reclaim (preemption.ts, and inside a
 *                     team at its quota: team-preemption.ts)
 *   order-preemption  jobs the queue order ranks strictly after the waiting one, never of higher priority
 *                     (order-preemption.ts); needs a queue sort that ranks
 */
import type { CycleInput } from '../framework/cycle-input.ts';
import type { PreemptionPlugin, VictimRules } from '../framework/extension-points.ts';
import { PLUGIN } from '../framework/plugin-names.ts';
import type { PreemptionArgs } from '../framework/profile.ts';
import { createQueueRank, type OrderPreemptionArgs, type QueueRank, type QueueRankConfig } from './order-preemption.ts';

export class PriorityPreemption implements PreemptionPlugin {
  readonly name = PLUGIN.preemption;
  readonly victims: VictimRules;
  readonly maxPreemptorsPerCycle: number;
  readonly maxGraceMs: number | undefined;
  constructor(args: PreemptionArgs) {
    this.victims = { priority: args.priority, reclaim: args.reclaim, queueOrder: false };
    this.maxPreemptorsPerCycle = args.maxPreemptorsPerCycle;
    this.maxGraceMs = args.maxGraceMs;
  }
}

export class OrderPreemption implements PreemptionPlugin {
  readonly name = PLUGIN.orderPreemption;
  readonly victims: VictimRules = { priority: false, reclaim: false, queueOrder: true };
  readonly maxPreemptorsPerCycle: number;
  readonly maxGraceMs: number | undefined;
  /** `queueSort`: what the profile's queue sort ranks by (with this plugin's `acrossTeams`). */
  constructor(
    args: OrderPreemptionArgs,
    private readonly queueSort: QueueRankConfig,
  ) {
    this.maxPreemptorsPerCycle = args.maxPreemptorsPerCycle;
    this.maxGraceMs = args.maxGraceMs;
  }
  createRank(input: CycleInput): QueueRank | undefined {
    return createQueueRank(this.queueSort, input);
  }
}
