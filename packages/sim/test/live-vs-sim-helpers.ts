/**
 * Shared by the live-server-versus-simulator tests: the decisions each side made, as the same strings, so that the
 * two lists compare with `toEqual`.
 *
 *   `start a 0,1`     a whole-GPU job started on GPUs 0 and 1 (the node's name left out: one node)
 *   `start h 2x0.5`   a fractional job started on half of GPU 2
 *   `preempt b`       b was preempted
 */
import { expect } from 'vitest';
import type { TuttiClient } from '@tutti/client';
import type { ClusterConfig, NodeInfo, PlacedNode } from '@tutti/model';
import { resolvePolicies, runSimulation, type SimDecision, type TraceJob } from '../src/index.ts';

export type Decision = string;

/** A start, from the placement's nodes (GPU indices sorted: rank order is not compared). */
export function formatStart(name: string, nodes: readonly PlacedNode[]): Decision {
  const gpus = nodes.flatMap((node) => node.gpuIndices).sort((x, y) => x - y);
  const fraction = nodes.find((node) => node.gpuFraction !== undefined)?.gpuFraction;
  return `start ${name} ${gpus.join(',')}${fraction !== undefined ? `x${fraction}` : ''}`;
}

/**
 * The live decisions, in the order the server made them: `scheduled` is written when a placement is committed
 * (`started` comes after the processes are spawned, and two launches may finish in either order). `ids`: job name →
 * job id.
 */
export async function liveDecisions(client: TuttiClient, ids: ReadonlyMap<string, string>): Promise<Decision[]> {
  const nameOf = new Map([...ids].map(([name, id]) => [id, name]));
  const events = (await Promise.all([...ids.values()].map((id) => client.listJobEvents(id)))).flatMap((r) => r.events);
  const decisions: Decision[] = [];
  for (const event of events.sort((x, y) => x.seq - y.seq)) {
    const name = nameOf.get(event.job_id) as string;
    if (event.type === 'preempted') decisions.push(`preempt ${name}`);
    if (event.type === 'scheduled') decisions.push(formatStart(name, (event.data as { nodes?: PlacedNode[] } | null)?.nodes ?? []));
  }
  return decisions;
}

/** The live server's one node, as the simulator's cluster lists nodes. */
export async function liveNode(client: TuttiClient): Promise<NodeInfo> {
  const [node] = (await client.listNodes()).nodes;
  if (!node) throw new Error('the live server has no node');
  return {
    name: node.name,
    address: node.address,
    cpus: node.cpus,
    memoryMiB: node.memory_mib,
    labels: node.labels,
    state: 'ready',
    gpus: node.gpus.map((g) => ({ index: g.index, uuid: g.uuid, type: g.type, product: g.product, memoryMiB: g.memory_mib, nvlinkPeers: g.nvlink_peers })),
  };
}

/** The simulator's decisions on `trace`, under the named profile (`tutti`, `fifo-backfill`, ...); every job placeable. */
export function simulateDecisions(trace: readonly TraceJob[], cluster: ClusterConfig, profile: string): Decision[] {
  const policy = resolvePolicies([profile]).policies[0];
  if (!policy) throw new Error(`no ${profile} profile`);
  const decisions: Decision[] = [];
  const onDecision = (d: SimDecision): void => {
    if (d.kind === 'start') decisions.push(formatStart(d.traceId, d.nodes));
    if (d.kind === 'preempt') decisions.push(`preempt ${d.traceId}`);
  };
  const result = runSimulation(trace, cluster, policy, { onDecision });
  expect(result.jobs.unplaceable.every((reason) => reason === 255)).toBe(true);
  return decisions;
}
