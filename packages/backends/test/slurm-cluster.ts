/**
 * The real Slurm cluster that tests of the Slurm backend run against (scripts/slurm-dev-cluster.sh). `up` is
 * idempotent and serialized by a lock, so test files running at once share one cluster; .ci/run starts it before the
 * tests, and slurm-global-setup.ts stops it after a run that started it. Needs root (namespaces, daemons), as CI has.
 *
 * The cluster's partitions keep tests apart: `one` (node n1) for the backend conformance suite, `two` (n2, n3) for
 * gangs across nodes and the backend's inventory (slurm-dev-cluster.test.ts), `three` (n4-n6) for the server's gangs,
 * `four` (n7, n8) for replicas of a control plane (slurm-replicas.test.ts).
 *
 * `flock --close`: the daemons `up` starts (munged, slurmrestd) would otherwise inherit the lock's descriptor and hold
 * the lock for as long as they run, so that every later `up` waited out its timeout.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const SLURM_DEV_CLUSTER_SCRIPT = path.resolve(__dirname, '../../../scripts/slurm-dev-cluster.sh');
const LOCK = '/tmp/tutti-slurm.lock';

/** Starts the dev cluster unless it is up; answers the environment Slurm's tools need (SLURM_CONF). */
export async function useSlurmDevCluster(): Promise<Record<string, string>> {
  return (await useSlurmDevClusterWithRest()).env;
}

/** The dev cluster's slurmrestd: its URL and the JWT key its tokens are signed with. */
export interface SlurmDevRest {
  url: string;
  jwtKeyFile: string;
}

/** As `useSlurmDevCluster`, with the cluster's slurmrestd too. */
export async function useSlurmDevClusterWithRest(): Promise<{ env: Record<string, string>; rest: SlurmDevRest }> {
  const { stdout } = await run('flock', ['--close', LOCK, 'bash', SLURM_DEV_CLUSTER_SCRIPT, 'up'], { timeout: 300_000 });
  const conf = /export SLURM_CONF=(\S+)/.exec(stdout)?.[1];
  const url = /TUTTI_SLURM_REST_URL=(\S+)/.exec(stdout)?.[1];
  const jwtKeyFile = /TUTTI_SLURM_JWT_KEY=(\S+)/.exec(stdout)?.[1];
  if (!conf || !url || !jwtKeyFile) throw new Error(`scripts/slurm-dev-cluster.sh up printed no SLURM_CONF, slurmrestd URL or JWT key: ${stdout}`);
  return { env: { SLURM_CONF: conf }, rest: { url, jwtKeyFile } };
}

/** Whether the dev cluster is up now. */
export async function slurmDevClusterIsUp(): Promise<boolean> {
  return run('bash', [SLURM_DEV_CLUSTER_SCRIPT, 'status']).then(() => true, () => false);
}

export async function stopSlurmDevCluster(): Promise<void> {
  await run('flock', ['--close', LOCK, 'bash', SLURM_DEV_CLUSTER_SCRIPT, 'down'], { timeout: 60_000 });
}
