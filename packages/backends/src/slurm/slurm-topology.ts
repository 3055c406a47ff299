/**
 * Slurm's network topology (`topology.conf`, TopologyPlugin=topology/tree) as tutti's racks: `scontrol show topology`
 * prints one line per switch, e.g.
 *
 *   SwitchName=s1 Level=0 LinkSpeed=1 Nodes=n[1-3]
 *   SwitchName=spine Level=1 LinkSpeed=1 Nodes=n[1-6] Switches=s[1-2]
 *
 * A node's rack is its leaf switch: the lowest-level switch that lists it (upper levels list every node below them).
 * The scheduler's topology-aware placement keeps a multi-node gang within one rack when it fits (`labels.rack`).
 * Pure: the backend runs the command, this reads its output.
 */
import { expandHostlist } from './slurm-hostlist.ts';
import { parseKeyValueLine } from './slurm-nodes.ts';

/** What `scontrol show topology` says when no topology plugin is configured (topology/none): no racks, no error. */
export const NO_SLURM_TOPOLOGY = /No topology information available/i;

/** Each node's leaf switch, by node name. A node no switch lists has no entry. */
export function parseSlurmTopology(output: string): Map<string, string> {
  const leafOf = new Map<string, { name: string; level: number }>();
  for (const line of output.split('\n')) {
    if (line.trim() === '') continue;
    const fields = parseKeyValueLine(line.trim());
    const name = fields.get('SwitchName');
    const nodes = fields.get('Nodes');
    if (!name || !nodes || nodes === '(null)') continue;
    // Without a Level (older output), a switch of switches counts as above every leaf.
    const level = Number(fields.get('Level') ?? (fields.has('Switches') ? Number.MAX_SAFE_INTEGER : 0));
    for (const node of expandHostlist(nodes)) {
      const known = leafOf.get(node);
      if (!known || level < known.level) leafOf.set(node, { name, level });
    }
  }
  return new Map([...leafOf].map(([node, leaf]) => [node, leaf.name]));
}
