/**
 * `verifyPlan` re-checks a plan against a snapshot without trusting the code that made it: the server's plan
 * applier runs it before committing, and the simulator and the property tests run it on every plan. It shares no
 * placement code with `runCycle` on purpose.
 *
 * It does not compare `plan.snapshotVersion` with `snapshot.version`: a plan made on an older snapshot may still be
 * valid on a newer one, and this check is what decides that.
 */
import type { ClusterSnapshot, GpuDevice, JobSpec, NodeInfo, Plan } from '@tutti/model';
import { formatMemoryMiB, formatOr } from './format.ts';

export type PlanViolationCode =
  /** The plan places a job that is not in the `jobs` map. */
  | 'UnknownJob'
  /** The plan places the same job twice. */
  | 'DuplicateJob'
  /** `nodes.length !== numNodes`: part of a gang (or too much of it). */
  | 'GangSizeMismatch'
  /** One gang uses the same node twice. */
  | 'DuplicateNode'
  | 'UnknownNode'
  /** The node is draining or down. */
  | 'NodeNotReady'
  /** A node-rank has more or fewer GPUs than `resources.gpus.count`, or lists one twice. */
  | 'GpuCountMismatch'
  | 'UnknownGpu'
  /** The snapshot already allocates the GPU (to any job). */
  | 'GpuAlreadyAllocated'
  /** Two placements of the plan take the same GPU. */
  | 'GpuDoubleBooked'
  | 'GpuTypeMismatch'
  /** One node-rank mixes GPU types. */
  | 'MixedGpuTypes'
  | 'GpuMemoryTooSmall'
  /** The plan's jobs together ask more CPUs or host memory of a node than it has (running jobs not counted). */
  | 'HostResourcesExceeded';

export interface PlanViolation {
  /** The placement at fault (for double-booking: the later one in the plan). */
  jobId: string;
  code: PlanViolationCode;
  message: string;
}

/** Returns every violation found; an empty array means the plan is valid. */
export function verifyPlan(snapshot: ClusterSnapshot, plan: Plan, jobs: ReadonlyMap<string, JobSpec>): PlanViolation[] {
  const violations: PlanViolation[] = [];
  const nodes = new Map<string, NodeInfo>();
  for (const node of snapshot.nodes) if (!nodes.has(node.name)) nodes.set(node.name, node);
  const allocated = new Map<string, string>();
  for (const a of snapshot.allocations) allocated.set(gpuKey(a.node, a.gpuIndex), a.jobId);
  const bookedInPlan = new Map<string, string>();
  const hostUse = new Map<string, { cpus: number; memoryMiB: number; jobs: string[] }>();
  const placedJobs = new Set<string>();

  for (const placement of plan.placements) {
    const { jobId } = placement;
    const fail = (code: PlanViolationCode, message: string): void => {
      violations.push({ jobId, code, message: `job ${jobId}: ${message}` });
    };
    if (placedJobs.has(jobId)) fail('DuplicateJob', 'placed more than once in the plan');
    placedJobs.add(jobId);
    const spec = jobs.get(jobId);
    if (!spec) {
      fail('UnknownJob', 'not among the jobs the plan was checked against');
      continue;
    }
    const { count, types, memoryMiB: minMemory } = spec.resources.gpus;
    if (placement.nodes.length !== spec.numNodes) fail('GangSizeMismatch', `placed on ${placement.nodes.length} nodes but the gang spans ${spec.numNodes}`);

    const seenNodes = new Set<string>();
    for (const placed of placement.nodes) {
      const where = `node ${placed.node}`;
      if (seenNodes.has(placed.node)) fail('DuplicateNode', `${where} is used twice by the gang`);
      seenNodes.add(placed.node);
      const node = nodes.get(placed.node);
      if (!node) {
        fail('UnknownNode', `${where} is not in the cluster`);
        continue;
      }
      if (node.state !== 'ready') fail('NodeNotReady', `${where} is ${node.state}`);

      const distinct = new Set(placed.gpuIndices);
      if (distinct.size !== placed.gpuIndices.length) fail('GpuCountMismatch', `${where}: a GPU is listed twice (${placed.gpuIndices.join(', ')})`);
      if (placed.gpuIndices.length !== count) fail('GpuCountMismatch', `${where} gets ${placed.gpuIndices.length} GPUs but the job asks ${count} per node`);

      const gpus: GpuDevice[] = [];
      for (const gpuIndex of distinct) {
        const gpu = node.gpus.find((g) => g.index === gpuIndex);
        if (!gpu) {
          fail('UnknownGpu', `${where} has no GPU ${gpuIndex}`);
          continue;
        }
        gpus.push(gpu);
        const key = gpuKey(node.name, gpuIndex);
        const holder = allocated.get(key);
        if (holder !== undefined) fail('GpuAlreadyAllocated', `GPU ${gpuIndex} on ${where} is already allocated to job ${holder}`);
        const booked = bookedInPlan.get(key);
        if (booked !== undefined && booked !== jobId) fail('GpuDoubleBooked', `GPU ${gpuIndex} on ${where} is also given to job ${booked} in this plan`);
        else bookedInPlan.set(key, jobId);
        if (types.length > 0 && !types.includes(gpu.type)) fail('GpuTypeMismatch', `GPU ${gpuIndex} on ${where} is ${gpu.type}, the job accepts ${formatOr(types)}`);
        if (minMemory !== undefined && gpu.memoryMiB < minMemory) {
          fail('GpuMemoryTooSmall', `GPU ${gpuIndex} on ${where} has ${formatMemoryMiB(gpu.memoryMiB)}, the job needs at least ${formatMemoryMiB(minMemory)}`);
        }
      }
      const kinds = [...new Set(gpus.map((g) => g.type))];
      if (kinds.length > 1) fail('MixedGpuTypes', `${where} mixes GPU types (${kinds.join(', ')})`);

      const use = hostUse.get(node.name) ?? { cpus: 0, memoryMiB: 0, jobs: [] };
      use.cpus += spec.resources.cpus ?? 0;
      use.memoryMiB += spec.resources.memoryMiB ?? 0;
      use.jobs.push(jobId);
      hostUse.set(node.name, use);
      if (use.cpus > node.cpus || use.memoryMiB > node.memoryMiB) {
        const over = use.cpus > node.cpus ? `${use.cpus} CPUs of ${node.cpus}` : `${formatMemoryMiB(use.memoryMiB)} memory of ${formatMemoryMiB(node.memoryMiB)}`;
        fail('HostResourcesExceeded', `jobs ${use.jobs.join(', ')} together take ${over} on ${where}`);
      }
    }
  }
  return violations;
}

function gpuKey(node: string, gpuIndex: number): string {
  return `${node}\u0000${gpuIndex}`;
}
