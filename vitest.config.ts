import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts'],
    // Integration tests start real servers and real processes: give them room on a 2-core machine.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Stop the Slurm dev cluster and the PostgreSQL dev server after a run that started them (see
    // packages/backends/test/slurm-cluster.ts and packages/store/test/postgres-dev-server.ts).
    globalSetup: ['packages/backends/test/slurm-global-setup.ts', 'packages/store/test/pg-global-setup.ts'],
  },
});
