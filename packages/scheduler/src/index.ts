export { runCycle, type CycleInput } from './run-cycle.ts';
export { verifyPlan, type PlanViolation, type PlanViolationCode } from './verify-plan.ts';
export { checkFeasibility, type FeasibilityResult } from './feasibility.ts';
export { DEFAULT_PROFILE, type SchedulerProfile } from './profile.ts';
export { PLUGIN, type PluginName } from './plugin-names.ts';
export { compareQueueOrder, computeQueueOrder } from './queue-sort.ts';
