/** The cluster's GPUs as the overview and the nodes page draw them: counts by type, colours, topology groups. */
import type { NodeView, GpuView } from '@tutti/client';

export interface GpuTypeSummary {
  type: string;
  total: number;
  /** Held by a job on a healthy node. */
  allocated: number;
  /** Neither held nor unhealthy. */
  free: number;
  /** On a node that is down or draining (held or not): not schedulable. */
  unhealthy: number;
}

/** Every GPU is counted once: unhealthy when its node is not ready, else allocated or free. Sorted by type. */
export function summarizeGpusByType(nodes: readonly NodeView[]): GpuTypeSummary[] {
  const byType = new Map<string, GpuTypeSummary>();
  for (const node of nodes) {
    for (const gpu of node.gpus) {
      const row = byType.get(gpu.type) ?? { type: gpu.type, total: 0, allocated: 0, free: 0, unhealthy: 0 };
      row.total += 1;
      if (node.state !== 'ready') row.unhealthy += 1;
      else if (gpu.job_id !== null) row.allocated += 1;
      else row.free += 1;
      byType.set(gpu.type, row);
    }
  }
  return [...byType.values()].sort((a, b) => a.type.localeCompare(b.type));
}

/** A stable, distinct colour per job: neighbouring ids land far apart on the colour wheel (golden angle). */
export function jobColor(jobId: string): string {
  let n = Number(jobId);
  if (!Number.isSafeInteger(n)) n = [...jobId].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7);
  const hue = Math.round((n * 137.508) % 360);
  return `hsl(${hue} 62% 52%)`;
}

export type TopologyLevel = 'rack' | 'node' | 'nvlink';

export interface NodeLayout {
  node: NodeView;
  /** The node's GPUs in NVLink domains (one group per domain), or one group of all, by index. */
  gpuGroups: GpuView[][];
}

export interface TopologyGroup {
  label: string;
  nodes: NodeLayout[];
}

/** GPUs connected through NVLink (transitively), each domain sorted by index; a GPU without peers is its own. */
export function nvlinkDomains(gpus: readonly GpuView[]): GpuView[][] {
  const byIndex = new Map(gpus.map((g) => [g.index, g]));
  const seen = new Set<number>();
  const domains: GpuView[][] = [];
  for (const gpu of [...gpus].sort((a, b) => a.index - b.index)) {
    if (seen.has(gpu.index)) continue;
    const domain: GpuView[] = [];
    const stack = [gpu.index];
    seen.add(gpu.index);
    while (stack.length > 0) {
      const current = byIndex.get(stack.pop()!);
      if (!current) continue;
      domain.push(current);
      for (const peer of current.nvlink_peers) {
        if (!seen.has(peer) && byIndex.has(peer)) {
          seen.add(peer);
          stack.push(peer);
        }
      }
    }
    domains.push(domain.sort((a, b) => a.index - b.index));
  }
  return domains;
}

/**
 * Nodes grouped for drawing: by their `rack` label (nodes without one together), one group per node, or per node
 * with its GPUs split into NVLink domains.
 */
export function groupTopology(nodes: readonly NodeView[], level: TopologyLevel): TopologyGroup[] {
  const sorted = [...nodes].sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
  const layout = (node: NodeView): NodeLayout => ({
    node,
    gpuGroups: level === 'nvlink' ? nvlinkDomains(node.gpus) : [[...node.gpus].sort((a, b) => a.index - b.index)],
  });
  if (level !== 'rack') return sorted.map((node) => ({ label: node.name, nodes: [layout(node)] }));
  const racks = new Map<string, NodeLayout[]>();
  for (const node of sorted) {
    const rack = node.labels.rack ?? '';
    racks.set(rack, [...(racks.get(rack) ?? []), layout(node)]);
  }
  return [...racks.entries()]
    .sort(([a], [b]) => (a === '' ? 1 : b === '' ? -1 : a.localeCompare(b, undefined, { numeric: true })))
    .map(([rack, members]) => ({ label: rack === '' ? 'no rack label' : `rack ${rack}`, nodes: members }));
}
