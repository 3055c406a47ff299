export * from './api-types.ts';
export * from './client.ts';
