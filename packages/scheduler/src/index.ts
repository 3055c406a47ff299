export { runCycle, type CycleInput } from './run-cycle.ts';
export { verifyPlan, type PlanViolation, type PlanViolationCode, type VerifyContext } from './verify-plan.ts';
export { checkFeasibility, type FeasibilityResult } from './feasibility.ts';
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
  type TopologyArgs,
} from './profile.ts';
export { PLUGIN, type PluginName } from './plugin-names.ts';
export { compareQueueOrder, computeQueueOrder } from './queue-sort.ts';
export { computeFairShareOrder, computeEffectivePriority } from './fair-share.ts';
