export { JobLifecycle, isEligible, type LifecycleSettings } from './job-lifecycle.ts';
export type { LifecycleCommand, LifecycleEvent, PlacedRank, RestoredRank } from './lifecycle-events.ts';
export { decideAttemptOutcome, decideJobEnd, findFirstFailedRank, isPreemptionReason, type AttemptOutcome, type RankEnd } from './attempt-outcome.ts';
export { describeRankExit, describeStop, parseRecordedStop, type RecordedStop, type StopCause, type StopCauseKind } from './stop.ts';
export { TeamUsageLedger, countGpusByTeam, SEED_HALF_LIVES, type PastGpuUse } from './team-usage-ledger.ts';
export { applyCycleResult, buildCycleInput, type AppliedCycle, type ApplyCycleArgs, type CycleInputArgs } from './cycle.ts';
export { lifecycleSettingsFor } from './lifecycle-settings.ts';
