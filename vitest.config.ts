import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts'],
    // Integration tests start real servers and real processes: give them room on a 2-core machine.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Stops the Slurm dev cluster after a run that started it (see packages/backends/test/slurm-cluster.ts).
    globalSetup: ['packages/backends/test/slurm-global-setup.ts'],
  },
});
