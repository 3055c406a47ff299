/**
 * Fluent builders for scheduler tests: `makeNode('n1').gpus(8, 'H100').nvlinkAll()`, `makeJob(3).gpus(4).types('H100')`,
 * `makeCluster(nodeA, nodeB).allocate('r1', 'n1', [0, 1])`. Builders are mutable and return `this`; `build()` makes
 * plain model data.
 */
import type { ClusterSnapshot, CycleResult, GpuAllocation, GpuDevice, Job, JobSpec, NodeInfo, NodeState } from '@tutti/model';
import { GREEDY_PROFILE, runCycle, type CycleInput, type SchedulerProfile } from '../src/index.ts';

const GiB = 1024;

export class NodeBuilder {
  private readonly node: NodeInfo;

  constructor(name: string) {
    this.node = { name, address: `${name}.test`, gpus: [], cpus: 64, memoryMiB: 512 * GiB, labels: {}, state: 'ready' };
  }

  /** Adds `count` GPUs with the next indices. */
  gpus(count: number, type = 'H100', memoryGiB = 80): this {
    for (let i = 0; i < count; i++) {
      const index = this.node.gpus.length;
      this.node.gpus.push({ index, uuid: `GPU-${this.node.name}-${index}`, type, product: `NVIDIA ${type}`, memoryMiB: memoryGiB * GiB, nvlinkPeers: [] });
    }
    return this;
  }

  /** Links every GPU of each group to every other GPU of the group. */
  nvlink(...groups: number[][]): this {
    for (const group of groups) {
      for (const a of group) {
        const gpu = this.gpu(a);
        for (const b of group) if (b !== a && !gpu.nvlinkPeers.includes(b)) gpu.nvlinkPeers.push(b);
      }
    }
    return this;
  }

  /** All GPUs in one NVLink/NVSwitch domain. */
  nvlinkAll(): this {
    return this.nvlink(this.node.gpus.map((g) => g.index));
  }

  cpus(cpus: number): this {
    this.node.cpus = cpus;
    return this;
  }

  memoryGiB(gib: number): this {
    this.node.memoryMiB = gib * GiB;
    return this;
  }

  state(state: NodeState): this {
    this.node.state = state;
    return this;
  }

  rack(rack: string, zone?: string): this {
    this.node.labels['rack'] = rack;
    if (zone !== undefined) this.node.labels['zone'] = zone;
    return this;
  }

  build(): NodeInfo {
    return structuredClone(this.node);
  }

  private gpu(index: number): GpuDevice {
    const gpu = this.node.gpus.find((g) => g.index === index);
    if (!gpu) throw new Error(`test bug: ${this.node.name} has no GPU ${index}`);
    return gpu;
  }
}

export const makeNode = (name: string): NodeBuilder => new NodeBuilder(name);

export class ClusterBuilder {
  private readonly nodes: NodeInfo[];
  private readonly allocations: GpuAllocation[] = [];
  private snapshotVersion = 1;

  constructor(nodes: readonly (NodeBuilder | NodeInfo)[]) {
    this.nodes = nodes.map((n) => (n instanceof NodeBuilder ? n.build() : n));
  }

  /** Marks GPUs as held by a running job. */
  allocate(jobId: string, node: string, gpuIndices: readonly number[]): this {
    for (const gpuIndex of gpuIndices) this.allocations.push({ jobId, node, gpuIndex });
    return this;
  }

  /** Marks a share of a GPU as held by a running fractional job. */
  share(jobId: string, node: string, gpuIndex: number, fraction: number, memoryGiB: number): this {
    this.allocations.push({ jobId, node, gpuIndex, fraction, memoryMiB: memoryGiB * GiB });
    return this;
  }

  version(version: number): this {
    this.snapshotVersion = version;
    return this;
  }

  build(): ClusterSnapshot {
    return structuredClone({ version: this.snapshotVersion, nodes: this.nodes, allocations: this.allocations });
  }
}

export const makeCluster = (...nodes: (NodeBuilder | NodeInfo)[]): ClusterBuilder => new ClusterBuilder(nodes);

export class JobBuilder {
  private readonly job: Job;

  constructor(id: string | number) {
    const n = Number(id);
    this.job = {
      id: String(id),
      status: 'pending',
      createdAt: Number.isFinite(n) ? 1_000 + n : 1_000,
      spec: { name: `job-${id}`, team: 'default', priority: 50, numNodes: 1, env: {}, resources: { gpus: { count: 1, types: [] } }, run: { kind: 'shell', command: 'true' } },
    };
  }

  gpus(count: number): this {
    this.job.spec.resources.gpus.count = count;
    return this;
  }

  types(...types: string[]): this {
    this.job.spec.resources.gpus.types = types;
    return this;
  }

  gpuMemoryGiB(gib: number): this {
    this.job.spec.resources.gpus.memoryMiB = gib * GiB;
    return this;
  }

  nodes(numNodes: number): this {
    this.job.spec.numNodes = numNodes;
    return this;
  }

  priority(priority: number): this {
    this.job.spec.priority = priority;
    return this;
  }

  cpus(cpus: number): this {
    this.job.spec.resources.cpus = cpus;
    return this;
  }

  memoryGiB(gib: number): this {
    this.job.spec.resources.memoryMiB = gib * GiB;
    return this;
  }

  createdAt(at: number): this {
    this.job.createdAt = at;
    return this;
  }

  team(team: string): this {
    this.job.spec.team = team;
    return this;
  }

  fraction(fraction: number, memoryGiB?: number): this {
    this.job.spec.resources.gpus.count = 1;
    this.job.spec.resources.gpus.fraction = fraction;
    if (memoryGiB !== undefined) this.job.spec.resources.gpus.memoryMiB = memoryGiB * GiB;
    return this;
  }

  topology(topology: NonNullable<JobSpec['topology']>): this {
    this.job.spec.topology = topology;
    return this;
  }

  maxDurationMs(ms: number): this {
    this.job.spec.maxDurationMs = ms;
    return this;
  }

  /** Makes it a running job that started at `at`. */
  runningSince(at: number): this {
    this.job.status = 'running';
    this.job.startedAt = at;
    return this;
  }

  build(): Job {
    return structuredClone(this.job);
  }

  spec(): JobSpec {
    return this.build().spec;
  }
}

export const makeJob = (id: string | number): JobBuilder => new JobBuilder(id);

export function buildJob(job: JobBuilder | Job): Job {
  return job instanceof JobBuilder ? job.build() : job;
}

/**
 * Runs one cycle with now = 0 and seed = 0. The placement and diagnosis tables of the first version run with the
 * `greedy` profile (no reservations), which is what they describe; pass another profile to test it.
 */
export function cycle(cluster: ClusterBuilder | ClusterSnapshot, jobs: readonly (JobBuilder | Job)[], profile: SchedulerProfile = GREEDY_PROFILE, extra: Partial<CycleInput> = {}): CycleResult {
  const snapshot = cluster instanceof ClusterBuilder ? cluster.build() : cluster;
  return runCycle({ snapshot, pending: jobs.map(buildJob), now: 0, seed: 0, ...extra }, profile);
}

/** Placements in a compact form for assertions: `{ '3': 'a:0,1 b:0,1' }`; a CPU-only node shows as `a:-`. */
export function placedOf(result: CycleResult): Record<string, string> {
  return Object.fromEntries(
    result.plan.placements.map((p) => [p.jobId, p.nodes.map((n) => `${n.node}:${n.gpuIndices.length > 0 ? n.gpuIndices.join(',') : '-'}`).join(' ')]),
  );
}

/** Diagnoses as `{ id: 'Code: message' }`. */
export function diagnosedOf(result: CycleResult): Record<string, string> {
  return Object.fromEntries([...result.diagnoses].map(([id, d]) => [id, `${d.code}: ${d.message}`]));
}

/** Job ids of the plan, in plan order. */
export function placedIds(result: CycleResult): string[] {
  return result.plan.placements.map((p) => p.jobId);
}
