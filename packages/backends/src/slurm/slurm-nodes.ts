/**
 * Slurm's nodes as tutti sees them: `scontrol -o show node` (one line per node, `Key=Value` pairs) read into
 * `NodeInfo` — GPUs from the node's gres, CPUs, memory, partitions — and its state into tutti's three: a node
 * that takes work is `ready`; one being drained finishes what it runs (`draining`); one that is down, failed, not
 * responding or misconfigured is `down`. Pure: the backend runs the command, this reads its output.
 *
 * Why scontrol's one-line form rather than `sinfo --json`: it is the same on every Slurm since long before 22.05,
 * while the JSON's fields changed between the OpenAPI versions Slurm ships (see ../shared/STACK.md).
 */
import type { GpuDevice, NodeInfo, NodeState } from '@tutti/model';
import { normalizeGpuType } from '@tutti/model';

/** One node as `scontrol -o show node` prints it, the fields tutti reads. */
export interface SlurmNode {
  name: string;
  /** `NodeAddr`: how other nodes reach it (MASTER_ADDR when it hosts rank 0). */
  address: string;
  cpus: number;
  memoryMiB: number;
  /** The node's GPUs from `Gres`: a type (empty when gres names none) and a count per entry. */
  gpus: Array<{ type: string; count: number }>;
  partitions: string[];
  /** `State`, as Slurm says it (`IDLE`, `MIXED+DRAIN`, `DOWN*+NOT_RESPONDING`, ...). */
  slurmState: string;
  state: NodeState;
  /** Why it is drained or down (`Reason`, without Slurm's `[user@time]` suffix), if Slurm says. */
  reason?: string;
}

/** Splits one `Key=Value Key=Value` line; a value runs to the next ` Key=` (a reason may hold spaces). */
export function parseKeyValueLine(line: string): Map<string, string> {
  const fields = new Map<string, string>();
  const keys = [...line.matchAll(/(?:^|\s)([A-Za-z][A-Za-z0-9_]*)=/g)];
  for (let i = 0; i < keys.length; i++) {
    const match = keys[i] as RegExpMatchArray;
    const start = (match.index ?? 0) + match[0].length;
    const end = i + 1 < keys.length ? ((keys[i + 1] as RegExpMatchArray).index ?? line.length) : line.length;
    fields.set(match[1] as string, line.slice(start, end).trim());
  }
  return fields;
}

/**
 * The GPUs of a `Gres` value: `gpu:2`, `gpu:a100:4`, `gpu:a100:4(S:0-1)`, `gpu:a100:2,gpu:v100:2`, and other gres
 * (`mps:100`, `shard:8`) ignored. `(null)` or empty: none.
 */
export function parseGpuGres(gres: string | undefined): Array<{ type: string; count: number }> {
  const gpus: Array<{ type: string; count: number }> = [];
  if (!gres || gres === '(null)') return gpus;
  // Entries are separated by commas that are not inside a socket list `(S:0,1)`.
  for (const entry of gres.split(/,(?![^(]*\))/)) {
    const parts = entry.replace(/\(.*\)$/, '').split(':');
    if (parts[0] !== 'gpu') continue;
    const count = Number(parts[parts.length - 1]);
    if (!Number.isInteger(count) || count <= 0) continue;
    gpus.push({ type: parts.length >= 3 ? (parts[1] as string) : '', count });
  }
  return gpus;
}

/**
 * tutti's state of a node from Slurm's: a base state and `+`-joined flags, `*` when the node does not respond.
 * DRAIN (draining or drained) → `draining`; DOWN, FAIL, INVAL, UNKNOWN, FUTURE, powered down or not responding →
 * `down`; IDLE, MIXED, ALLOCATED, COMPLETING and the rest → `ready`.
 */
export function toNodeState(slurmState: string): NodeState {
  const words = slurmState.toUpperCase().split('+');
  const base = (words[0] ?? '').replace(/[*~#%!$@^-]+$/, '');
  const notResponding = (words[0] ?? '').includes('*') || words.includes('NOT_RESPONDING');
  const downFlags = ['FAIL', 'POWERED_DOWN', 'POWER_DOWN'];
  if (notResponding || ['DOWN', 'FAIL', 'INVAL', 'UNKNOWN', 'FUTURE'].includes(base) || words.some((w) => downFlags.includes(w))) return 'down';
  if (base === 'DRAIN' || base === 'DRAINED' || base === 'DRAINING' || words.includes('DRAIN')) return 'draining';
  return 'ready';
}

/** Every node of `scontrol -o show node` output; a line without NodeName is skipped. */
export function parseSlurmNodes(output: string): SlurmNode[] {
  const nodes: SlurmNode[] = [];
  for (const line of output.split('\n')) {
    if (line.trim() === '') continue;
    const fields = parseKeyValueLine(line);
    const name = fields.get('NodeName');
    if (!name) continue;
    const slurmState = fields.get('State') ?? 'UNKNOWN';
    const reason = fields.get('Reason')?.replace(/\s*\[[^\]]*\]\s*$/, '');
    const cpus = Number(fields.get('CPUEfctv') ?? fields.get('CPUTot'));
    nodes.push({
      name,
      address: fields.get('NodeAddr') ?? name,
      cpus: Number.isFinite(cpus) ? cpus : 0,
      memoryMiB: Number(fields.get('RealMemory')) || 0,
      gpus: parseGpuGres(fields.get('Gres')),
      partitions: (fields.get('Partitions') ?? '').split(',').filter((p) => p !== '' && p !== '(null)'),
      slurmState,
      state: toNodeState(slurmState),
      ...(reason && reason !== '(null)' && reason !== 'none' ? { reason } : {}),
    });
  }
  return nodes;
}

/** What Slurm says about a node besides `scontrol show node`: its rack, and GPUs other jobs hold on it. */
export interface SlurmNodeContext {
  /** Its leaf switch in Slurm's topology (slurm-topology.ts), if Slurm has a topology. */
  rack?: string;
  /** GPUs that Slurm jobs not this tutti instance's hold on it (slurm-held-gpus.ts), per gres type. */
  heldByOthers?: ReadonlyArray<{ type: string; count: number }>;
  /** GPU indices tutti's own running ranks were placed on there: the last to be left out for others' jobs. */
  ownGpus?: ReadonlySet<number>;
}

/**
 * The node as the scheduler takes it. GPUs are numbered per node in gres order (what CUDA_VISIBLE_DEVICES counts
 * within a job's allocation on it); Slurm does not say their memory, so it is 0 (unknown) unless `gpuMemoryMiB`
 * maps the type to one. Labels: `partitions` (comma-joined), `slurm_state`, `rack` (its leaf switch, when Slurm has
 * a topology), `slurm_gpus_used_by_others` (how many GPUs others hold, when any).
 *
 * GPUs that other jobs hold are left out by count, not by the indices Slurm gave them: tutti asks Slurm for a number
 * of GPUs per node and Slurm binds whichever are free, so tutti's indices are its own bookkeeping. Which ones are
 * left out: of the held type (any type for an untyped hold), the highest indices first, those tutti's own ranks were
 * placed on last; the others keep their index, so that tutti's allocations still name GPUs of the node.
 */
export function toNodeInfo(node: SlurmNode, gpuMemoryMiB: Readonly<Record<string, number>> = {}, context: SlurmNodeContext = {}): NodeInfo {
  const all: Array<{ gpu: GpuDevice; slurmType: string }> = [];
  for (const { type, count } of node.gpus) {
    const shortType = type === '' ? 'GPU' : normalizeGpuType(type);
    for (let i = 0; i < count; i++) {
      const index = all.length;
      all.push({ slurmType: type, gpu: { index, uuid: `SLURM-${node.name}-${index}`, type: shortType, product: type === '' ? 'gpu (Slurm gres without a type)' : type, memoryMiB: gpuMemoryMiB[shortType] ?? 0, nvlinkPeers: [] } });
    }
  }
  const takenByOthers = new Set<number>();
  for (const held of context.heldByOthers ?? []) {
    let left = held.count;
    for (const spareOwn of [true, false]) {
      for (let i = all.length - 1; i >= 0 && left > 0; i--) {
        const { gpu, slurmType } = all[i] as (typeof all)[number];
        if (takenByOthers.has(gpu.index) || (held.type !== '' && slurmType !== held.type) || (spareOwn && context.ownGpus?.has(gpu.index))) continue;
        takenByOthers.add(gpu.index);
        left--;
      }
    }
  }
  return {
    name: node.name,
    address: node.address,
    gpus: all.map((g) => g.gpu).filter((gpu) => !takenByOthers.has(gpu.index)),
    ...(takenByOthers.size > 0 ? { gpusHeldElsewhere: all.map((g) => g.gpu).filter((gpu) => takenByOthers.has(gpu.index)) } : {}),
    cpus: node.cpus,
    memoryMiB: node.memoryMiB,
    labels: {
      partitions: node.partitions.join(','),
      slurm_state: node.slurmState,
      ...(context.rack !== undefined ? { rack: context.rack } : {}),
      ...(takenByOthers.size > 0 ? { slurm_gpus_used_by_others: String(takenByOthers.size) } : {}),
    },
    state: node.state,
    // Why it is drained or down: the node view shows it (`tutti nodes`).
    ...(node.reason !== undefined ? { stateReason: node.reason } : {}),
  };
}
