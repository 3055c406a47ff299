export * from './api-types.ts';
export * from './client.ts';
export * from './gpu-metrics.ts';
export * from './job-gpus.ts';
export * from './start-estimate.ts';
export * from './history-trace.ts';
export * from './rank-backend.ts';
