/**
 * vitest's global setup: a test run that found the PostgreSQL dev server down and started it (through
 * `usePostgresTestServer`) stops it at the end, leaving the machine as it found it. One that found it up (CI starts
 * it first, a developer may keep it up) leaves it up; so does a run given another server in TUTTI_TEST_POSTGRES_URL.
 */
import { postgresDevServerIsUp, stopPostgresDevServer } from './postgres-dev-server.ts';

export default async function setup(): Promise<() => Promise<void>> {
  const upBefore = await postgresDevServerIsUp();
  return async () => {
    if (!upBefore && !process.env.TUTTI_TEST_POSTGRES_URL && (await postgresDevServerIsUp())) await stopPostgresDevServer();
  };
}
