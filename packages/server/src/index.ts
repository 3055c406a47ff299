export * from './tutti-server.ts';
export * from './logger.ts';
export { JobController, decideAttemptOutcome, decideJobEnd } from './job-controller.ts';
export type { AttemptOutcome, LifecyclePoint, StopCause } from './job-controller.ts';
