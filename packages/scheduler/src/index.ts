export { runCycle, type CycleInput } from './run-cycle.ts';
export { CycleCache } from './perf/cycle-cache.ts';
export type { RunningJobInput } from './preemption/stopping.ts';
export { screenPlan, verifyPlan, type PlanViolation, type PlanViolationCode, type ScreenedPlan, type VerifyContext } from './verify/verify-plan.ts';
export { checkFeasibility, type FeasibilityResult } from './filter/feasibility.ts';
export {
  BACKFILL_MODES,
  BUILTIN_PROFILES,
  compileProfile,
  DEFAULT_PROFILE,
  EXTENSION_POINTS,
  FIFO_BACKFILL_PROFILE,
  FIFO_PROFILE,
  getProfile,
  GREEDY_PROFILE,
  parseProfile,
  PLUGIN_ARGS,
  PLUGINS_AT,
  ProfileError,
  TUTTI_PROFILE,
  type BackfillArgs,
  type BackfillMode,
  type CompiledProfile,
  type ExtensionPoint,
  type FairShareArgs,
  type PreemptionArgs,
  type ProfilePlugins,
  type ProfileResult,
  type SchedulerProfile,
  SJF_PROFILE,
  SRTF_PROFILE,
  TIRESIAS_PROFILE,
  TUTTI_LAS_PROFILE,
  type TopologyArgs,
  type WithinTeamOrder,
  readMaxGraceMs,
} from './framework/profile.ts';
export { createDurationEstimator, DEFAULT_DURATION_ESTIMATE_ARGS, durationHistoryKey, recordFinishedDuration, type DurationEstimate, type DurationEstimateArgs, type DurationHistory } from './queue-sort/duration-estimate.ts';
export { computeOracleOrder, computeOracleRankMs } from './queue-sort/oracle-sort.ts';
export { computeAttainedGpuMs, computeLasOrder, computeLasQueue, DEFAULT_LAS_ARGS, type LasArgs } from './queue-sort/las-sort.ts';
export { createQueueRank, type OrderPreemptionArgs, type QueueRank } from './preemption/order-preemption.ts';
export { PLUGIN, type PluginName } from './framework/plugin-names.ts';
export { compareQueueOrder, computeQueueOrder } from './queue-sort/queue-sort.ts';
export { computeFairShareOrder, computeEffectivePriority, computeTeamShares, type TeamShares } from './queue-sort/fair-share.ts';
export { DecayedUsageStep, accumulateDecayedUsage, computeShare, computeTeamWeights, decayUsageTo } from './queue-sort/decayed-usage.ts';
export { applyFairShareHalfLife, readFairShareHalfLifeMs, resolveSchedulerSettings } from './framework/scheduler-settings.ts';
