/**
 * fast-check generators of whole cycle inputs for the plugin path: racks and zones, several GPU types and memory
 * sizes, draining and down nodes, running jobs of random teams and priorities (some already being stopped for a
 * pending job), shared GPUs, teams with `*` and per-type quotas and limits, and queues where many jobs share a
 * shape, a team and a priority (so that whatever a cycle remembers per kind of job is exercised, not only the first
 * job of each kind).
 */
import fc from 'fast-check';
import type { ClusterSnapshot, GpuAllocation, Job, JobSpec, NodeInfo, NodeState, TeamConfig } from '@tutti/model';
import type { CycleInput, RunningJobInput } from '../src/index.ts';

const TYPES = ['H100', 'A100', 'T4'] as const;
const TEAMS = ['red', 'blue', 'green', 'grey'] as const;
const GiB = 1024;

const nodeArb = fc.record({
  type: fc.constantFrom(...TYPES),
  second: fc.option(fc.constantFrom(...TYPES), { nil: undefined, freq: 4 }),
  count: fc.constantFrom(2, 4, 8, 8),
  memoryGiB: fc.constantFrom(40, 80, 80),
  nvlink: fc.constantFrom('none', 'pairs', 'all'),
  cpus: fc.constantFrom(32, 64, 128),
  state: fc.constantFrom<NodeState>('ready', 'ready', 'ready', 'ready', 'ready', 'draining', 'down'),
  rack: fc.integer({ min: 0, max: 3 }),
  /** Sizes of the running jobs filling the node from GPU 0; what does not fit is dropped. */
  running: fc.array(fc.record({ size: fc.constantFrom(1, 1, 2, 2, 4), team: fc.constantFrom(...TEAMS, 'outsider'), priority: fc.constantFrom(10, 50, 90), startedAt: fc.integer({ min: 0, max: 900 }), maxDurationMs: fc.option(fc.integer({ min: 100, max: 20_000 }), { nil: undefined }), stopping: fc.option(fc.record({ since: fc.integer({ min: 0, max: 1_000 }), forJob: fc.integer({ min: 1, max: 24 }) }), { nil: undefined, freq: 4 }) }), { maxLength: 6, size: 'large' }),
  /** A fractional job on the last GPU. */
  share: fc.option(fc.constantFrom(0.25, 0.5), { nil: undefined, freq: 5 }),
});

const kindArb = fc.record({
  count: fc.oneof({ arbitrary: fc.constantFrom(1, 1, 2, 4, 8), weight: 8 }, { arbitrary: fc.constant(0), weight: 1 }, { arbitrary: fc.constant(16), weight: 1 }),
  types: fc.oneof({ arbitrary: fc.constant<string[]>([]), weight: 3 }, { arbitrary: fc.shuffledSubarray([...TYPES], { minLength: 1, maxLength: 2 }), weight: 2 }),
  gpuMemoryGiB: fc.option(fc.constantFrom(40, 80), { nil: undefined, freq: 4 }),
  numNodes: fc.oneof({ arbitrary: fc.constant(1), weight: 4 }, { arbitrary: fc.integer({ min: 2, max: 3 }), weight: 1 }),
  cpus: fc.option(fc.constantFrom(8, 48), { nil: undefined, freq: 4 }),
  topology: fc.option(fc.constantFrom<NonNullable<JobSpec['topology']>>({ require: 'rack' }, { prefer: 'rack' }, { require: 'nvlink' }, { require: 'zone' }), { nil: undefined, freq: 5 }),
  fraction: fc.option(fc.constantFrom(0.25, 0.5), { nil: undefined, freq: 8 }),
  team: fc.constantFrom(...TEAMS, 'outsider'),
  priority: fc.constantFrom(10, 50, 90),
  maxDurationMs: fc.option(fc.constantFrom(100, 5_000, 50_000), { nil: undefined, freq: 3 }),
});

const teamArb = fc.record({
  weight: fc.integer({ min: 1, max: 3 }),
  star: fc.option(fc.integer({ min: 0, max: 16 }), { nil: undefined, freq: 4 }),
  perType: fc.option(fc.record({ type: fc.constantFrom(...TYPES), n: fc.integer({ min: 0, max: 12 }) }), { nil: undefined, freq: 2 }),
  borrowingLimit: fc.option(fc.integer({ min: 0, max: 8 }), { nil: undefined, freq: 3 }),
  lendingLimit: fc.option(fc.integer({ min: 0, max: 8 }), { nil: undefined, freq: 3 }),
});

/** A cycle input with 1–12 nodes, up to ~60 pending jobs of up to 8 kinds, and 0–4 configured teams. */
export const cycleInputArb: fc.Arbitrary<CycleInput> = fc
  .record({
    nodes: fc.array(nodeArb, { minLength: 1, maxLength: 12, size: 'medium' }),
    kinds: fc.array(kindArb, { minLength: 1, maxLength: 8 }),
    /** Queue: indices into kinds, with repeats. */
    queue: fc.array(fc.nat(), { minLength: 4, maxLength: 60, size: 'large' }),
    teams: fc.array(teamArb, { minLength: 4, maxLength: 4 }),
    configured: fc.integer({ min: 0, max: 4 }),
    usage: fc.array(fc.integer({ min: 0, max: 50_000 }), { minLength: 4, maxLength: 4 }),
    /** Fill every GPU left with low-priority running jobs, so that preemption has work to do. */
    crowded: fc.boolean(),
  })
  .map(({ nodes, kinds, queue, teams, configured, usage, crowded }) => {
    const infos: NodeInfo[] = [];
    const allocations: GpuAllocation[] = [];
    const running: RunningJobInput[] = [];
    nodes.forEach((n, i) => {
      const name = `n${String(i).padStart(2, '0')}`;
      const gpus = Array.from({ length: n.count }, (_, g) => ({
        index: g,
        uuid: `${name}-${g}`,
        type: n.second !== undefined && g >= n.count / 2 ? n.second : n.type,
        product: '',
        memoryMiB: n.memoryGiB * GiB,
        nvlinkPeers: n.nvlink === 'none' ? [] : n.nvlink === 'pairs' ? [g ^ 1].filter((p) => p < n.count) : Array.from({ length: n.count }, (_, p) => p).filter((p) => p !== g),
      }));
      infos.push({ name, address: name, cpus: n.cpus, memoryMiB: 512 * GiB, state: n.state, labels: { rack: `rack-${n.rack}`, zone: `zone-${n.rack >> 1}` }, gpus });
      let next = 0;
      const last = n.share !== undefined ? n.count - 1 : n.count;
      n.running.forEach((r, k) => {
        if (next + r.size > last) return;
        const id = `r${i}-${k}`;
        for (let g = next; g < next + r.size; g++) allocations.push({ jobId: id, node: name, gpuIndex: g });
        next += r.size;
        const spec: JobSpec = { name: id, team: r.team, priority: r.priority, numNodes: 1, env: {}, resources: { gpus: { count: r.size, types: [] } }, run: { kind: 'shell', command: 'true' }, ...(r.maxDurationMs !== undefined ? { maxDurationMs: r.maxDurationMs } : {}) };
        running.push({ id, spec, status: 'running', createdAt: 0, startedAt: r.startedAt, ...(r.stopping ? { stopping: { since: r.stopping.since, forJobId: String(r.stopping.forJob) } } : {}) });
      });
      for (let g = next; crowded && g < last; g++) {
        const id = `c${i}-${g}`;
        allocations.push({ jobId: id, node: name, gpuIndex: g });
        const spec: JobSpec = { name: id, team: (i + g) % 3 === 0 ? (TEAMS[(i + g) % TEAMS.length] as string) : 'outsider', priority: 10, numNodes: 1, env: {}, resources: { gpus: { count: 1, types: [] } }, run: { kind: 'shell', command: 'true' } };
        running.push({ id, spec, status: 'running', createdAt: 0, startedAt: 10 * g });
      }
      if (n.share !== undefined) allocations.push({ jobId: `s${i}`, node: name, gpuIndex: n.count - 1, fraction: n.share, memoryMiB: Math.floor(n.share * n.memoryGiB * GiB) });
    });
    const pending: Job[] = queue.map((q, i) => {
      const k = kinds[q % kinds.length] as (typeof kinds)[number];
      const fractional = k.fraction !== undefined;
      const spec: JobSpec = {
        name: `p${i}`,
        team: k.team,
        priority: k.priority,
        numNodes: fractional ? 1 : k.numNodes,
        env: {},
        resources: {
          gpus: { count: fractional ? 1 : k.count, types: k.types, ...(k.gpuMemoryGiB !== undefined && !fractional ? { memoryMiB: k.gpuMemoryGiB * GiB } : {}), ...(fractional ? { fraction: k.fraction } : {}) },
          ...(k.cpus !== undefined ? { cpus: k.cpus } : {}),
        },
        run: { kind: 'shell', command: 'true' },
        ...(k.topology !== undefined && !fractional ? { topology: k.topology } : {}),
        ...(k.maxDurationMs !== undefined ? { maxDurationMs: k.maxDurationMs } : {}),
      };
      return { id: String(i + 1), spec, status: 'pending', createdAt: 100 + i };
    });
    const teamConfigs: TeamConfig[] = TEAMS.slice(0, configured).map((name, i) => {
      const t = teams[i] as (typeof teams)[number];
      const nominal: Record<string, number> = {};
      if (t.star !== undefined) nominal['*'] = t.star;
      if (t.perType) nominal[t.perType.type] = t.perType.n;
      const key = t.perType?.type ?? '*';
      return {
        name,
        weight: t.weight,
        nominal,
        ...(t.borrowingLimit !== undefined ? { borrowingLimit: { [key]: t.borrowingLimit } } : {}),
        ...(t.lendingLimit !== undefined ? { lendingLimit: { [key]: t.lendingLimit } } : {}),
      };
    });
    const snapshot: ClusterSnapshot = { version: 3, nodes: infos, allocations };
    return { snapshot, pending, running, teams: teamConfigs, usage: TEAMS.map((team, i) => ({ team, decayedGpuSeconds: usage[i] ?? 0, asOf: 0 })), now: 1_000, seed: 1 };
  });
