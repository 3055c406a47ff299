/** Clusters and traces the simulator tests build from: small ones by hand, random ones from a fixed seed. */
import { parseClusterConfigYaml, type ClusterConfig } from '@tutti/model';
import type { TraceJob } from '@tutti/sim';

export function cluster(yaml: string): ClusterConfig {
  const parsed = parseClusterConfigYaml(yaml);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  return parsed.value;
}

/** `[submit, duration, gpus]` or `[submit, duration, gpus, queue]`. */
export function trace(rows: Array<[number, number, number, string?]>): TraceJob[] {
  return rows.map(([submitS, durationS, numGpus, queue], i) => ({ traceId: `j${i}`, submitS, durationS, numGpus, gpuType: '', user: '', queue: queue ?? '', status: '' }));
}

export const oneNode = (gpus: number): ClusterConfig => cluster(`nodes: [{name: box, gpus: {count: ${gpus}, type: A100}}]`);

/** Three groups of nodes, two teams' labels: room for mixed sizes, partitions and borrowing. */
export const mixedCluster = (): ClusterConfig =>
  cluster(`
nodes:
  - {group: x, count: 3, gpus: {count: 8, type: A100}, labels: {team: qa}}
  - {group: y, count: 2, gpus: {count: 4, type: A100}, labels: {team: qa}}
  - {group: z, count: 2, gpus: {count: 8, type: A100}, labels: {team: qb}}
`);

/**
 * A random trace from a small deterministic generator (no Math.random: the same trace every run). `heavyTail`: one
 * job in five runs 2,000–22,000 s, so that preemptive policies have something to preempt for.
 */
export function randomTrace(seed: number, count: number, queues: string[], options: { heavyTail?: boolean } = {}): TraceJob[] {
  let state = seed >>> 0;
  const next = (): number => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const sizes = [1, 1, 1, 1, 2, 4, 8, 16, 3];
  let t = 0;
  const rows: Array<[number, number, number, string]> = [];
  for (let i = 0; i < count; i++) {
    t += Math.floor(next() * 40);
    const duration = options.heavyTail && next() < 0.2 ? 2000 + Math.floor(next() * 20000) : 1 + Math.floor(next() * 600);
    rows.push([t, duration, sizes[Math.floor(next() * sizes.length)] ?? 1, queues[Math.floor(next() * queues.length)] ?? '']);
  }
  return trace(rows);
}
