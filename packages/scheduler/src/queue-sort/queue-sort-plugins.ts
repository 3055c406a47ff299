/**
 * The `queueSort` extension point's plugins: `queue-sort` (priority, then submission), `fair-share` (teams by
 * decayed share), `oracle-shortest` (true remaining time: simulator references) and `las` (least attained service).
 * Each turns the cycle's records into the queue order; only `fair-share` keeps records across cycles (its teams'
 * last order, in the cycle cache) and may read run-time estimates.
 */
import type { Job } from '@tutti/model';
import type { CycleInput } from '../framework/cycle-input.ts';
import type { CycleState } from '../framework/cycle-state.ts';
import type { QueueSortPlugin } from '../framework/extension-points.ts';
import { PLUGIN } from '../framework/plugin-names.ts';
import type { FairShareArgs } from '../framework/profile.ts';
import type { CycleCache } from '../perf/cycle-cache.ts';
import { createDurationEstimator, type DurationEstimator } from './duration-estimate.ts';
import { computeFairShareQueue } from './fair-share.ts';
import { computeLasOrder, type LasArgs } from './las-sort.ts';
import { computeOracleOrder } from './oracle-sort.ts';
import { computeQueueOrder } from './queue-sort.ts';

/** `queue-sort`: priority, then job id as a number, then submission. */
export class PriorityQueueSort implements QueueSortPlugin {
  readonly name = PLUGIN.queueSort;
  createEstimator(): undefined {
    return undefined;
  }
  order(state: CycleState): Int32Array {
    return inQueueOrder(computeQueueOrder(state.input.pending), state.cache);
  }
}

/** `oracle-shortest`: priority, then the true remaining time (`CycleInput.oracleRemainingMs`), shortest first. */
export class OracleQueueSort implements QueueSortPlugin {
  readonly name = PLUGIN.oracleShortest;
  createEstimator(): undefined {
    return undefined;
  }
  order(state: CycleState): Int32Array {
    return inQueueOrder(computeOracleOrder(state.input.pending, state.input.oracleRemainingMs), state.cache);
  }
}

/** `las`: priority, then the two-dimensional least-attained-service queue, FIFO within one. */
export class LasQueueSort implements QueueSortPlugin {
  readonly name = PLUGIN.las;
  constructor(readonly args: LasArgs) {}
  createEstimator(): undefined {
    return undefined;
  }
  order(state: CycleState): Int32Array {
    return inQueueOrder(computeLasOrder(state.input.pending, state.input.attainedServiceGpuMs, state.now, this.args), state.cache);
  }
}

/** `fair-share`: teams by decayed dominant share / weight; within a team by `withinTeam`. */
export class FairShareQueueSort implements QueueSortPlugin {
  readonly name = PLUGIN.fairShare;
  constructor(readonly args: FairShareArgs) {}
  createEstimator(input: CycleInput): DurationEstimator | undefined {
    const { args } = this;
    return args.withinTeam === 'priority' ? undefined : createDurationEstimator(input.durationHistory, { window: args.estimateWindow, minSamples: args.estimateMinSamples });
  }
  order(state: CycleState, records: Int32Array, runningGpus: ReadonlyMap<string, number>): Int32Array {
    const { input } = state;
    return computeFairShareQueue(
      records,
      { teams: state.teams, usage: input.usage ?? [], runningGpus, now: state.now, args: this.args, estimate: state.estimate, defaultEstimateMs: state.assumedRunMs, attainedServiceGpuMs: input.attainedServiceGpuMs },
      state.cache,
    );
  }
}

/**
 * The cycle's records in the order of `ordered`, a sort of the pending jobs that lists each id once. A record stands
 * for its id's first entry in the input; the sorts keep an id's first entry in their own order, which differs only
 * for an id listed twice with different contents.
 */
function inQueueOrder(ordered: readonly Job[], cache: CycleCache): Int32Array {
  const queue = new Int32Array(ordered.length);
  let count = 0;
  for (const job of ordered) {
    const no = cache.peek(job.id);
    if (no >= 0) queue[count++] = no;
  }
  return queue.subarray(0, count);
}
