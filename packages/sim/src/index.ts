export { EventQueue, type SimEvent } from './event-queue.ts';
export { readTraceFile, readTraceStream, type TraceJob, type TraceReadOptions, type TraceReadResult } from './trace-reader.ts';
export { computeGangShape, computeNodeFragmentation, computeRequestMix, runSimulation, UNPLACEABLE_REASONS, type GangShape, type JobOutcomes, type SimDecision, type SimOptions, type SimResult, type UnplaceableReason } from './simulator.ts';
export { KNOWN_POLICY_NAMES, resolvePolicies, type CyclePruning, type PolicyResolution, type SimPolicy } from './policies.ts';
export { computeJainIndex, computePolicyMetrics, computeQuantile, SLOWDOWN_BOUND_S, toPolicyJson, type PolicyJson, type PolicyMetrics, type TeamMetrics } from './metrics.ts';
export { computeCdfRows, computeTimelineRows, renderSvg, writeReport, type ReportInput } from './report.ts';
export {
  checkSchedulerBenchOptions,
  formatSchedulerBench,
  makeSchedulerBenchWorld,
  runSchedulerBench,
  type SchedulerBenchGrowthRow,
  type SchedulerBenchOptions,
  type SchedulerBenchResult,
  type SchedulerBenchWorldOptions,
} from './scheduler-bench.ts';
