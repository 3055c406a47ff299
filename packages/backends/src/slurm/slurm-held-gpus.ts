/**
 * GPUs that Slurm jobs not submitted by this tutti instance hold (other users' jobs, another tutti's): capacity tutti
 * sees as used. Read from one `squeue --json`: of every job that holds its allocation (running, suspended or
 * completing), its nodes (`job_resources.allocated_nodes`, else the `nodes` hostlist) and, per node, the GPUs of its
 * `gres_detail` (`gpu:3(IDX:0-2)`, `gpu:a100:1(IDX:3)`).
 *
 * Why `--json` and not squeue's text formats: only the JSON says how many GPUs a job holds on each of its nodes.
 * `%b` (tres-per-node) is `N/A` for a job that asked `--gpus=3` over two nodes (Slurm split it 1 + 2), and
 * `tres-alloc` names no GPU unless the site's AccountingStorageTRES counts them. 22.05's `--json` ignores `-t` and
 * `-j` (see ../shared/STACK.md): states are filtered here. Pure: the backend runs squeue, this reads its output.
 */
import { expandHostlist } from './slurm-hostlist.ts';
import { parseGpuGres } from './slurm-nodes.ts';

/** States in which a job keeps its nodes' GPUs allocated in Slurm. */
const HOLDING_STATES = new Set(['RUNNING', 'SUSPENDED', 'COMPLETING', 'STOPPED']);

/** The GPUs others hold on a node, per gres type ('' when the gres names none). */
export type HeldGpus = Map<string, Array<{ type: string; count: number }>>;

interface SqueueJsonJob {
  name?: unknown;
  job_state?: unknown;
  nodes?: unknown;
  gres_detail?: unknown;
  job_resources?: { allocated_nodes?: unknown; nodes?: unknown };
}

/**
 * Per node, the GPUs held by jobs whose name does not start with `ownJobNamePrefix` (this instance's `tutti.<id>.`).
 * Throws when the output is not squeue's JSON.
 */
export function parseGpusHeldByOthers(squeueJson: string, ownJobNamePrefix: string): HeldGpus {
  const parsed = JSON.parse(squeueJson) as { jobs?: unknown };
  if (!Array.isArray(parsed.jobs)) throw new Error('squeue --json printed no "jobs" list');
  const held: HeldGpus = new Map();
  for (const job of parsed.jobs as SqueueJsonJob[]) {
    const states = (Array.isArray(job.job_state) ? job.job_state : [job.job_state]).map(String);
    if (!states.some((s) => HOLDING_STATES.has(s))) continue;
    if (typeof job.name === 'string' && job.name.startsWith(ownJobNamePrefix)) continue;
    const details = Array.isArray(job.gres_detail) ? job.gres_detail.map(String) : [];
    if (details.length === 0) continue;
    const nodes = nodesOf(job);
    // gres_detail has one entry per allocated node, in the job's node order.
    nodes.forEach((node, i) => {
      const gpus = parseGpuGres(details[i]);
      if (gpus.length === 0) return;
      const entries = held.get(node) ?? [];
      for (const gpu of gpus) {
        const same = entries.find((e) => e.type === gpu.type);
        if (same) same.count += gpu.count;
        else entries.push({ ...gpu });
      }
      held.set(node, entries);
    });
  }
  return held;
}

/** A job's allocated nodes in order: 22.05's `allocated_nodes[].nodename`, newer `nodes.allocation[].name`, else `nodes`. */
function nodesOf(job: SqueueJsonJob): string[] {
  const resources = job.job_resources;
  if (Array.isArray(resources?.allocated_nodes)) {
    const names = (resources.allocated_nodes as Array<{ nodename?: unknown }>).map((n) => n.nodename).filter((n): n is string => typeof n === 'string');
    if (names.length > 0) return names;
  }
  const allocation = (resources?.nodes as { allocation?: unknown } | undefined)?.allocation;
  if (Array.isArray(allocation)) {
    const names = (allocation as Array<{ name?: unknown }>).map((n) => n.name).filter((n): n is string => typeof n === 'string');
    if (names.length > 0) return names;
  }
  return typeof job.nodes === 'string' && job.nodes !== '' ? expandHostlist(job.nodes) : [];
}
