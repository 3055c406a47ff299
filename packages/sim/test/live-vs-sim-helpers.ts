/**
 * Shared by the live-server-versus-simulator tests: the decisions each side made, as the same strings, so that the
 * two lists compare with `toEqual`.
 *
 *   `start a 0,1`              a whole-GPU job started on GPUs 0 and 1 (the node's name left out: one node)
 *   `start h 2x0.5`            a fractional job started on half of GPU 2
 *   `preempt b`                b is being stopped to make room (live: its `stopping` event with cause `preempted`)
 *   `stop x (hung)`            x is being stopped for another cause (`hung`, `cancelled`, `rank_failed`, `max_duration`)
 *   `requeue x (restarting)`   x's attempt is over and it is back in the queue (`preempted`, `restarting`, `requeued`)
 *   `finish x failed`          x ended (`succeeded`, `failed`, `cancelled`)
 *
 * The `placements` scope keeps only starts and preemptions (what the scheduler decided); `lifecycle` keeps every
 * decision of the control core as well.
 */
import { expect } from 'vitest';
import type { TuttiClient } from '@tutti/client';
import { parseRecordedStop } from '@tutti/control';
import type { ClusterConfig, NodeInfo, PlacedNode } from '@tutti/model';
import { resolvePolicies, runSimulation, type SimDecision, type SimOptions, type SimResult, type TraceJob } from '../src/index.ts';

export type Decision = string;

/** `placements`: starts and preemptions only; `lifecycle`: also the other stops, the requeues and the ends. */
export type DecisionScope = 'placements' | 'lifecycle';

const inScope = (scope: DecisionScope) => (decision: Decision): boolean => scope === 'lifecycle' || decision.startsWith('start ') || decision.startsWith('preempt ');

/** A start, from the placement's nodes (GPU indices sorted: rank order is not compared). */
export function formatStart(name: string, nodes: readonly PlacedNode[]): Decision {
  const gpus = nodes.flatMap((node) => node.gpuIndices).sort((x, y) => x - y);
  const fraction = nodes.find((node) => node.gpuFraction !== undefined)?.gpuFraction;
  return `start ${name} ${gpus.join(',')}${fraction !== undefined ? `x${fraction}` : ''}`;
}

/**
 * The live decisions, in the order the server made them: `scheduled` is written when a placement is committed
 * (`started` comes after the processes are spawned, and two launches may finish in either order); `stopping` when a
 * stop is recorded, before any rank is signalled; `preempted` / `restarting` / `requeued` when the attempt is over
 * and the job is pending again; the job's status when it ends. `ids`: job name → job id.
 */
export async function liveDecisions(client: TuttiClient, ids: ReadonlyMap<string, string>, scope: DecisionScope = 'placements'): Promise<Decision[]> {
  const nameOf = new Map([...ids].map(([name, id]) => [id, name]));
  const events = (await Promise.all([...ids.values()].map((id) => client.listJobEvents(id)))).flatMap((r) => r.events);
  const decisions: Decision[] = [];
  for (const event of events.sort((x, y) => x.seq - y.seq)) {
    const name = nameOf.get(event.job_id) as string;
    const data = (event.data ?? undefined) as Record<string, unknown> | undefined;
    switch (event.type) {
      case 'scheduled':
        decisions.push(formatStart(name, (data as { nodes?: PlacedNode[] } | undefined)?.nodes ?? []));
        break;
      case 'stopping': {
        const cause = parseRecordedStop(data)?.cause.kind ?? 'unreadable';
        decisions.push(cause === 'preempted' ? `preempt ${name}` : `stop ${name} (${cause})`);
        break;
      }
      case 'preempted':
      case 'restarting':
      case 'requeued':
        decisions.push(`requeue ${name} (${event.type})`);
        break;
      case 'succeeded':
      case 'failed':
      case 'cancelled':
        decisions.push(`finish ${name} ${event.type}`);
        break;
    }
  }
  return decisions.filter(inScope(scope));
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

/** A decision of the simulator, as the live one reads. */
export function formatSimDecision(d: SimDecision): Decision {
  switch (d.kind) {
    case 'start':
      return formatStart(d.traceId, d.nodes);
    case 'preempt':
      return `preempt ${d.traceId}`;
    case 'stop':
      return `stop ${d.traceId} (${d.cause})`;
    case 'requeue':
      return `requeue ${d.traceId} (${d.event})`;
    case 'finish':
      return `finish ${d.traceId} ${d.status}`;
  }
}

/** The simulator run on `trace` under the named profile (`tutti`, `fifo-backfill`, ...): every decision, and the result. */
export function simulateWithDecisions(trace: readonly TraceJob[], cluster: ClusterConfig, profile: string, options: SimOptions = {}): { decisions: SimDecision[]; result: SimResult } {
  const policy = resolvePolicies([profile]).policies[0];
  if (!policy) throw new Error(`no ${profile} profile`);
  const decisions: SimDecision[] = [];
  const result = runSimulation(trace, cluster, policy, { ...options, onDecision: (d) => decisions.push(d) });
  return { decisions, result };
}

/** The simulator's decisions on `trace`, under the named profile; every job placeable. */
export function simulateDecisions(trace: readonly TraceJob[], cluster: ClusterConfig, profile: string, scope: DecisionScope = 'placements'): Decision[] {
  const { decisions, result } = simulateWithDecisions(trace, cluster, profile);
  expect(result.jobs.unplaceable.every((reason) => reason === 255)).toBe(true);
  return decisions.map(formatSimDecision).filter(inScope(scope));
}
