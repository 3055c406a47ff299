// Starts spec-parse-worker.ts in a worker thread when tutti runs from its TypeScript sources (tests, tsx, a
// checkout whose bundle is stale): a worker does not inherit the loader that compiles TypeScript, so it registers
// tsx itself, as bin/tutti.js does. The bundle runs dist/spec-parse-worker.mjs instead.
const { register } = await import('tsx/esm/api');
register();
await import('./spec-parse-worker.ts');
