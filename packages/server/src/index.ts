export * from './tutti-server.ts';
export * from './logger.ts';
export { JobController } from './job-controller.ts';
export type { LifecyclePoint } from './job-controller.ts';
