export * from './assert-never.ts';
export * from './cluster.ts';
export * from './errors.ts';
export * from './job.ts';
export * from './plan.ts';
export * from './tasks.ts';
export * from './job-spec.ts';
export * from './units.ts';
