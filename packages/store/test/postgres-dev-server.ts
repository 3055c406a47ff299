/**
 * The PostgreSQL server the PostgreSQL store's tests run against, and a fresh database per test on it.
 *
 * With TUTTI_TEST_POSTGRES_URL set (a superuser's URL: the tests CREATE and DROP databases), that server is used and
 * never stopped. Without it, the throwaway dev server of scripts/pg-dev.sh is started (idempotent, serialised by the
 * script's own lock, so test files running at once share one server); .ci/run starts it before the tests, and
 * pg-global-setup.ts stops it after a run that started it.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);
// From the module's URL rather than __dirname, so that plain Node (measure-create-job.ts) can load it too.
export const PG_DEV_SCRIPT = fileURLToPath(new URL('../../../scripts/pg-dev.sh', import.meta.url));

let adminUrl: Promise<string> | undefined;

/** A superuser's URL on the test server, starting the dev server when no TUTTI_TEST_POSTGRES_URL is given. */
export function usePostgresTestServer(): Promise<string> {
  adminUrl ??= (async () => {
    const given = process.env.TUTTI_TEST_POSTGRES_URL;
    if (given) return given;
    const { stdout } = await run('bash', [PG_DEV_SCRIPT, 'up'], { timeout: 300_000 });
    const url = /export TUTTI_TEST_POSTGRES_URL=(\S+)/.exec(stdout)?.[1];
    if (!url) throw new Error(`scripts/pg-dev.sh up printed no TUTTI_TEST_POSTGRES_URL: ${stdout}`);
    return url;
  })();
  return adminUrl;
}

export async function postgresDevServerIsUp(): Promise<boolean> {
  return run('bash', [PG_DEV_SCRIPT, 'status']).then(() => true, () => false);
}

export async function stopPostgresDevServer(): Promise<void> {
  await run('bash', [PG_DEV_SCRIPT, 'down'], { timeout: 60_000 });
}

export interface TestDatabase {
  /** The new database's URL (the admin URL with another database name). */
  url: string;
  name: string;
  /** Drops the database, ending any session still connected to it. */
  drop(): Promise<void>;
}

/** A new, empty database `tutti_test_<random>` on the test server. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const admin = await usePostgresTestServer();
  const name = `tutti_test_${randomBytes(6).toString('hex')}`;
  await asAdmin(admin, `create database ${name}`);
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return { url: url.toString(), name, drop: () => asAdmin(admin, `drop database if exists ${name} with (force)`) };
}

async function asAdmin(adminUrl: string, statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}
