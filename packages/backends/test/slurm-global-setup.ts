/**
 * vitest's global setup: a test run that found the Slurm dev cluster down and started it (through
 * `useSlurmDevCluster`) stops it at the end, leaving the machine as it found it. One that found it up (CI starts it
 * first, a developer may keep it up) leaves it up.
 */
import { slurmDevClusterIsUp, stopSlurmDevCluster } from './slurm-cluster.ts';

export default async function setup(): Promise<() => Promise<void>> {
  const upBefore = await slurmDevClusterIsUp();
  return async () => {
    if (!upBefore && (await slurmDevClusterIsUp())) await stopSlurmDevCluster();
  };
}
