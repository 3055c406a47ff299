/**
 * Rank 0 on the node Slurm lists first. Pure: the Slurm backend would apply it to a pinned launch before it writes the
 * host file and the shim.
 *
 * Why: programs that detect Slurm themselves take the first node of Slurm's node list for the coordinator — JAX's
 * `SlurmCluster` (jax/_src/clusters/slurm_cluster.py) answers `<first host of SLURM_STEP_NODELIST>:<61440 + job id mod
 * 4096>` and makes SLURM_PROCID 0 the process that listens there. Slurm writes a node list sorted by host name (its
 * `bitmap2node_name` sorts the hostlist), whatever order the nodes were asked in, also for a step in arbitrary
 * distribution. tutti pins rank r with `srun --distribution=arbitrary` and a host file whose line r+1 is rank r's
 * node, so task 0 runs on the node tutti gave node rank 0, which need not be the first of the list: on the dev
 * cluster, ranks placed n6, n6, n4, n5 ran task 0 on n6 while SLURM_STEP_NODELIST was `n[4-6]`, and JAX's own
 * detection (without JAX_COORDINATOR_ADDRESS) then had every process wait for a coordinator on n4 that never came.
 *
 * The renumbering keeps the placement (every rank's node and GPUs) and changes only the numbers: the job's node that
 * Slurm lists first becomes node rank 0, the other nodes follow in their own node-rank order (or, with `allNodes`, in
 * Slurm's order too, so that NODE_RANK is SLURM_NODEID on every node), and ranks are numbered node by node in that
 * order (within a node in their old order, local ranks 0, 1, … as Slurm's SLURM_LOCALID numbers them). A launch whose
 * rank 0 already runs on that node, numbered node by node, is left as it is.
 *
 * Slurm's order is taken to be its host-name sort (`slurmNodeListOrder`), as Slurm 22.05 on the dev cluster lists and
 * numbers a step's nodes. Two cases may differ, neither seen here: zero-padded names mixed with unpadded ones of the
 * same prefix (Slurm's width rules are subtler than `compareSlurmHostNames`), and a site whose topology reorders node
 * ranks (`TopologyParam=SwitchAsNodeRank`), where SLURM_NODEID may follow the switches while the list stays sorted.
 */
import type { RankLaunch } from '../execution-backend.ts';

/** A host name as Slurm's hostlist splits it: the prefix, and the number its name ends in (if any) with its digits. */
interface HostName {
  prefix: string;
  suffix?: { value: number; width: number };
}

function splitHostName(name: string): HostName {
  const match = /^(.*?)(\d+)$/.exec(name);
  if (!match) return { prefix: name };
  const digits = match[2] as string;
  return { prefix: match[1] as string, suffix: { value: Number(digits), width: digits.length } };
}

/**
 * Orders two host names as Slurm's `hostlist_sort` does: by prefix (byte order, as `strcmp`); for the same prefix, a
 * name without a number first, then by the number, then by its width (`n01` after `n1`). So `n2` comes before `n10`
 * and `gpu-a9` before `gpu-b1`.
 */
export function compareSlurmHostNames(a: string, b: string): number {
  const left = splitHostName(a);
  const right = splitHostName(b);
  if (left.prefix !== right.prefix) return left.prefix < right.prefix ? -1 : 1;
  if (!left.suffix || !right.suffix) return (left.suffix ? 1 : 0) - (right.suffix ? 1 : 0);
  return left.suffix.value - right.suffix.value || left.suffix.width - right.suffix.width;
}

/**
 * `nodes` (each once) in the order Slurm lists them in a job's or step's node list (SLURM_JOB_NODELIST,
 * SLURM_STEP_NODELIST), and, on the dev cluster, numbers them (SLURM_NODEID): sorted by host name as
 * `compareSlurmHostNames` says.
 */
export function slurmNodeListOrder(nodes: Iterable<string>): string[] {
  return [...new Set(nodes)].sort(compareSlurmHostNames);
}

/** What `renumberForSlurmNodeOrder` answers. */
export interface SlurmNodeOrderRenumbering {
  /**
   * The launch's ranks with their new numbers, in rank order: each on the same node with the same GPUs as before,
   * with its new rank, node rank and local rank.
   */
  ranks: RankLaunch[];
  /** `rankOf.get(r)`: the new number of the rank that `ranks` numbered r before. */
  rankOf: Map<number, number>;
  /** Whether any rank's rank, node rank or local rank changed (when not, the launch can go as it was placed). */
  changed: boolean;
}

/**
 * Renumbers a launch's ranks so that rank 0 runs on the node of the launch that comes first in `slurmOrder` (the
 * nodes in Slurm's order: `slurmNodeListOrder` of the launch's nodes, or `expandHostlist` of Slurm's own node list),
 * as the file's comment says (`allNodes`: every node in Slurm's order). Refuses, naming it, a node that `slurmOrder` lacks, a node under two node ranks, and a
 * rank number given twice.
 */
export function renumberForSlurmNodeOrder(
  ranks: readonly RankLaunch[],
  slurmOrder: readonly string[],
  options: { allNodes?: boolean } = {},
): SlurmNodeOrderRenumbering | { error: string } {
  const byNode = new Map<string, { nodeRank: number; ranks: RankLaunch[] }>();
  const seen = new Set<number>();
  for (const rank of ranks) {
    if (seen.has(rank.rank)) return { error: `rank ${rank.rank} is given twice` };
    seen.add(rank.rank);
    const entry = byNode.get(rank.node);
    if (entry && entry.nodeRank !== rank.nodeRank) return { error: `node ${rank.node} has ranks of node ranks ${entry.nodeRank} and ${rank.nodeRank}` };
    if (entry) entry.ranks.push(rank);
    else byNode.set(rank.node, { nodeRank: rank.nodeRank, ranks: [rank] });
  }
  const position = new Map(slurmOrder.map((node, index) => [node, index] as const));
  const missing = [...byNode.keys()].filter((node) => !position.has(node));
  if (missing.length > 0) return { error: `node${missing.length === 1 ? '' : 's'} ${missing.join(', ')} of the launch ${missing.length === 1 ? 'is' : 'are'} not in Slurm's node order (${slurmOrder.join(', ') || 'empty'})` };

  const nodes = [...byNode.entries()].sort(([, a], [, b]) => a.nodeRank - b.nodeRank);
  const inSlurmOrder = [...nodes].sort(([a], [b]) => (position.get(a) as number) - (position.get(b) as number));
  const firstInSlurm = inSlurmOrder[0];
  const newNodeOrder = options.allNodes || firstInSlurm === undefined ? inSlurmOrder : [firstInSlurm, ...nodes.filter((entry) => entry !== firstInSlurm)];

  const renumbered: RankLaunch[] = [];
  const rankOf = new Map<number, number>();
  newNodeOrder.forEach(([node, entry], nodeRank) => {
    [...entry.ranks].sort((a, b) => a.rank - b.rank).forEach((old, localRank) => {
      const rank = renumbered.length;
      rankOf.set(old.rank, rank);
      renumbered.push({ rank, localRank, nodeRank, node, gpus: [...old.gpus] });
    });
  });
  const changed = ranks.some((old) => {
    const now = renumbered[rankOf.get(old.rank) as number] as RankLaunch;
    return now.rank !== old.rank || now.nodeRank !== old.nodeRank || now.localRank !== old.localRank;
  });
  return { ranks: renumbered, rankOf, changed };
}
