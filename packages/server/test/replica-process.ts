/**
 * A replica of a control plane on PostgreSQL as a real process (fixtures/replica.ts), for the failover tests
 * (replicas-failover.test.ts on the local backend, slurm-replicas.test.ts on Slurm).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TuttiClient } from '@tutti/client';
import type { HealthView } from '@tutti/client';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../../..');
const REPLICA = path.join(here, 'fixtures', 'replica.ts');

export interface ReplicaProcess {
  url: string;
  child: ChildProcess;
  client: TuttiClient;
  /** What the replica logged so far. */
  log(): string;
  exited: Promise<void>;
  /** Kills it (resumed first if stopped) and waits for its end; nothing when it has ended already. */
  kill(): Promise<void>;
}

export interface ReplicaSpec {
  dataDir: string;
  database: string;
  leaseTtlMs: number;
  /** Fake GPUs (the local backend); none on Slurm. */
  gpus?: string;
  /** More server options, e.g. `{ backend: 'slurm', slurm: { partition } }`. */
  options?: Record<string, unknown>;
  /** More environment (Slurm's SLURM_CONF). */
  env?: Record<string, string>;
}

/** Starts a replica; resolves once it serves the API (as leader or follower). */
export async function startReplicaProcess(spec: ReplicaSpec): Promise<ReplicaProcess> {
  const args = [REPLICA, spec.dataDir, spec.database, spec.gpus ?? '-', String(spec.leaseTtlMs), ...(spec.options ? [JSON.stringify(spec.options)] : [])];
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...spec.env } });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    }
    await exited;
  };
  let out = '';
  let err = '';
  child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /tutti is up at (\S+)/.exec(out);
      if (match) resolve(match[1]!);
    });
    child.once('exit', (code) => reject(new Error(`a replica exited with ${code} before it served: ${out}${err}`)));
  });
  return { url, child, client: new TuttiClient({ baseUrl: url }), log: () => err, exited, kill };
}

/** Polls `probe` until it answers something, for at most `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A probe for `waitFor`: the replica leads and has re-adopted what ran before (its term's recovery is over). */
export const leading = (replica: { client: TuttiClient }) => async (): Promise<HealthView | undefined> => {
  const health = await replica.client.health();
  return health.role === 'leader' && !health.recovering ? health : undefined;
};
