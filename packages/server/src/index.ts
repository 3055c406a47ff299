export * from './tutti-server.ts';
export * from './logger.ts';
export { JobController, decideJobEnd } from './job-controller.ts';
