/**
 * The scheduler benchmark behind `tutti bench scheduler` and `npm run bench:scheduler`: full cycles of the pure
 * `runCycle` on a synthetic busy cluster, timed in-process.
 *
 * The world: racks of 16 nodes in zones of 8 racks, every fifth node A100, the others H100 (80 GiB, NVLink between
 * all GPUs of a node); running jobs of 1–8 GPUs fill about 90% of the GPUs, node by node, for random teams and
 * priorities; a queue of mixed gangs (55% 1 GPU, 20% 2, 12% 4, 8% 8, 3% 2×8, 1.5% 4×8, 0.5% 8×8 GPUs), 30% of them
 * with a max duration; teams with nominal quotas (80% of the cluster shared equally) and weights 1–3.
 *
 * Cycles are timed as the server runs them: with one `CycleCache` kept across the cycles of a run (what a cycle
 * derives from each pending job, each team's last order, each node's indexed form and each running job's GPUs), which
 * changes no decision. The first cycle of a server has no cache: that is the cold figure. The busy figure gives every
 * cycle the same cluster, which is the cache's best case on the cluster side; the "changing" figure gives each cycle
 * a cluster where 1% of the running jobs have ended since the last one and new jobs hold their GPUs (new allocation
 * and job objects; the nodes' own objects stay, as the store keeps a node whose description did not change), which is
 * what a busy server sees between cycles.
 *
 * Figures (medians unless named otherwise):
 *   - cycle time on the busy cluster, p50 and p99, and cold (a fresh cache every cycle);
 *   - placements per second: the same queue on an idle cluster, where a cycle places as much as fits, divided by
 *     that cycle's time;
 *   - the incremental cost of one arrival: a cycle with one more pending job minus the base cycle, measured in
 *     alternation (median of the paired differences), and the slope per pending job between the base queue and
 *     one 10% longer, measured the same way. Each is a difference of two noisy timings: at small sizes the true
 *     difference is below the noise and the median may come out negative. A cost is never negative, so a median
 *     below zero is reported as 0 with the noise beside it (half the interquartile range of the differences): "under
 *     0.02 ms" says what the measurement can tell;
 *   - growth: busy-cycle time at a quarter, half, all and twice the nodes (same queue), and at a tenth, half, all
 *     and twice the queue (same nodes).
 * Everything is deterministic but the clock: the same options build the same worlds.
 */
import type { ClusterSnapshot, GpuAllocation, Job, JobSpec, NodeInfo, TeamConfig } from '@tutti/model';
import { CycleCache, getProfile, runCycle, type CycleInput } from '@tutti/scheduler';

export interface SchedulerBenchWorldOptions {
  readonly nodes: number;
  readonly gpusPerNode: number;
  readonly pending: number;
  readonly teams: number;
  /** Chance that each next GPU slot of a node is taken by a running job (0: an idle cluster). @default 0.9 */
  readonly busyFraction?: number;
  /** @default 1 */
  readonly seed?: number;
}

export interface SchedulerBenchOptions extends SchedulerBenchWorldOptions {
  /** A built-in scheduler profile name. @default "tutti" */
  readonly profile?: string;
  /** Timed cycles per figure (after warm-up). @default 15 */
  readonly rounds?: number;
  /** Measure the growth tables. @default true */
  readonly growth?: boolean;
  /** Milliseconds, monotonic. @default performance.now */
  readonly clock?: () => number;
}

export interface SchedulerBenchGrowthRow {
  readonly nodes: number;
  readonly gpus: number;
  readonly pending: number;
  readonly cycle_ms_p50: number;
  readonly placements: number;
}

export interface SchedulerBenchResult {
  readonly cycle_ms_p50: number;
  readonly cycle_ms_p99: number;
  /** The busy cycle with a fresh cache: the first cycle after the server starts. */
  readonly cold_cycle_ms_p50: number;
  /** The busy cycle when 1% of the running jobs were replaced since the last cycle (see the file comment). */
  readonly changing_cycle_ms_p50: number;
  readonly placements_per_s: number;
  readonly busy_placements_per_cycle: number;
  readonly idle_cycle_ms_p50: number;
  readonly idle_placements_per_cycle: number;
  /** Median of (cycle with one more pending job − base cycle), measured in alternation; never below 0. */
  readonly arrival_incremental_ms: number;
  /** The noise of that figure: half the interquartile range of the paired differences. */
  readonly arrival_noise_ms: number;
  /** Median of (cycle with 10% more pending jobs − base cycle), measured in alternation, per added job, in µs; never below 0. */
  readonly per_pending_job_us: number;
  /** The noise of that figure, in µs per added job. */
  readonly per_pending_job_noise_us: number;
  readonly growth: { readonly by_nodes: readonly SchedulerBenchGrowthRow[]; readonly by_pending: readonly SchedulerBenchGrowthRow[] };
  readonly conditions: {
    readonly profile: string;
    readonly nodes: number;
    readonly gpus_per_node: number;
    readonly gpus: number;
    readonly pending: number;
    readonly teams: number;
    readonly busy_fraction: number;
    readonly running_jobs: number;
    readonly rounds: number;
    readonly node: string;
  };
}

/** Deterministic LCG in [0, 1). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

function benchSpec(team: string, priority: number, gpus: number, numNodes: number, maxDurationMs?: number): JobSpec {
  return { name: 'j', team, priority, numNodes, env: {}, resources: { gpus: { count: gpus, types: [] } }, run: { kind: 'shell', command: 'true' }, ...(maxDurationMs ? { maxDurationMs } : {}) };
}

function gangShape(r: () => number): { gpus: number; nodes: number } {
  const x = r();
  if (x < 0.55) return { gpus: 1, nodes: 1 };
  if (x < 0.75) return { gpus: 2, nodes: 1 };
  if (x < 0.87) return { gpus: 4, nodes: 1 };
  if (x < 0.95) return { gpus: 8, nodes: 1 };
  if (x < 0.98) return { gpus: 8, nodes: 2 };
  if (x < 0.995) return { gpus: 8, nodes: 4 };
  return { gpus: 8, nodes: 8 };
}

/** The cycle input of the benchmark's world (see the file comment). */
export function makeSchedulerBenchWorld(options: SchedulerBenchWorldOptions): CycleInput {
  const { nodes, gpusPerNode, pending, teams: teamCount } = options;
  const busy = options.busyFraction ?? 0.9;
  const r = lcg(options.seed ?? 1);
  const infos: NodeInfo[] = [];
  const peers = Array.from({ length: gpusPerNode }, (_, i) => Array.from({ length: gpusPerNode }, (_, j) => j).filter((j) => j !== i));
  for (let n = 0; n < nodes; n++) {
    const name = `node-${String(n).padStart(5, '0')}`;
    const rack = Math.floor(n / 16);
    infos.push({
      name,
      address: name,
      cpus: 128,
      memoryMiB: 1 << 20,
      state: 'ready',
      labels: { rack: `rack-${rack}`, zone: `zone-${Math.floor(rack / 8)}` },
      gpus: Array.from({ length: gpusPerNode }, (_, i) => ({ index: i, uuid: `${name}-${i}`, type: n % 5 === 0 ? 'A100' : 'H100', product: '', memoryMiB: 81_920, nvlinkPeers: peers[i] ?? [] })),
    });
  }
  const teamNames = Array.from({ length: teamCount }, (_, i) => `team-${i}`);
  const perTeam = Math.floor((nodes * gpusPerNode * 0.8) / teamCount);
  const teams: TeamConfig[] = teamNames.map((name, i) => ({ name, weight: 1 + (i % 3), nominal: { '*': perTeam } }));
  const teamOf = (): string => teamNames[Math.floor(r() * teamCount)] as string;
  const allocations: GpuAllocation[] = [];
  const running: Job[] = [];
  let id = 1;
  for (const node of infos) {
    let g = 0;
    while (g < gpusPerNode && r() < busy) {
      const size = Math.min(gpusPerNode - g, [1, 2, 4, 8][Math.floor(r() * 4)] ?? 1);
      const jobId = `r${id++}`;
      for (let k = 0; k < size; k++) allocations.push({ jobId, node: node.name, gpuIndex: g + k });
      g += size;
      running.push({ id: jobId, status: 'running', createdAt: 0, startedAt: Math.floor(r() * 3_600_000), spec: benchSpec(teamOf(), 10 + Math.floor(r() * 80), size, 1, r() < 0.5 ? 4 * 3_600_000 : undefined) });
    }
  }
  const jobs: Job[] = [];
  for (let i = 0; i < pending; i++) {
    const shape = gangShape(r);
    jobs.push({ id: String(100_000 + i), status: 'pending', createdAt: 1_000_000 + i, spec: benchSpec(teamOf(), [10, 50, 50, 90][Math.floor(r() * 4)] ?? 50, shape.gpus, shape.nodes, r() < 0.3 ? 3_600_000 : undefined) });
  }
  const snapshot: ClusterSnapshot = { version: 1, nodes: infos, allocations };
  return { snapshot, pending: jobs, running, teams, usage: teamNames.map((team, i) => ({ team, decayedGpuSeconds: (i % 7) * 1e6, asOf: 0 })), now: 4_000_000, seed: 1 };
}

/**
 * The world after `count` of its running jobs (chosen at random) ended and a new job of the same size, team and
 * priority took their GPUs: new allocation and job objects where something changed, the rest shared (node objects
 * too: a node's description does not change when jobs come and go on it).
 */
function withReplacedJobs(world: CycleInput, count: number, r: () => number, step: number): CycleInput {
  const running = [...(world.running ?? [])];
  const replaced = new Map<string, string>();
  for (let k = 0; k < count && running.length > 0; k++) {
    const at = Math.floor(r() * running.length);
    const old = running[at] as Job;
    if (replaced.has(old.id)) continue;
    const id = `c${step}-${k}`;
    replaced.set(old.id, id);
    running[at] = { ...old, id, startedAt: world.now - 1_000 };
  }
  const allocations = world.snapshot.allocations.map((a) => {
    const id = replaced.get(a.jobId);
    return id === undefined ? a : { ...a, jobId: id };
  });
  return { ...world, snapshot: { version: world.snapshot.version + 1, nodes: world.snapshot.nodes, allocations }, running };
}

/** A problem with the options, naming the option and the fix, or undefined. */
export function checkSchedulerBenchOptions(options: SchedulerBenchOptions): string | undefined {
  const whole = (name: string, value: number | undefined, min: number): string | undefined =>
    value === undefined || (Number.isInteger(value) && value >= min) ? undefined : `--${name} must be a whole number ≥ ${min}, got ${value}`;
  const problem =
    whole('nodes', options.nodes, 1) ?? whole('gpus-per-node', options.gpusPerNode, 1) ?? whole('pending', options.pending, 0) ?? whole('teams', options.teams, 1) ?? whole('rounds', options.rounds, 1);
  if (problem) return problem;
  if (options.profile !== undefined && !getProfile(options.profile).ok) return `--profile: ${(getProfile(options.profile) as { error: string }).error}`;
  return undefined;
}

/** Runs the benchmark. Throws on invalid options (check them first with `checkSchedulerBenchOptions`). */
export function runSchedulerBench(options: SchedulerBenchOptions): SchedulerBenchResult {
  const problem = checkSchedulerBenchOptions(options);
  if (problem) throw new Error(problem);
  const found = getProfile(options.profile ?? 'tutti');
  if (!found.ok) throw new Error(found.error);
  const profile = found.profile;
  const clock = options.clock ?? (() => performance.now());
  const rounds = options.rounds ?? 15;
  const busyFraction = options.busyFraction ?? 0.9;
  const world = (nodes: number, pending: number, busy = busyFraction): CycleInput => makeSchedulerBenchWorld({ ...options, nodes, pending, busyFraction: busy });
  /** One cache per world, as one server keeps one. */
  const caches = new WeakMap<CycleInput, CycleCache>();
  const timeOne = (input: CycleInput, cold = false): { ms: number; placements: number } => {
    let cache = caches.get(input);
    if (!cache || cold) caches.set(input, (cache = new CycleCache()));
    const t0 = clock();
    const out = runCycle({ ...input, cache }, profile);
    return { ms: clock() - t0, placements: out.plan.placements.length };
  };
  const timeMany = (input: CycleInput, n: number, warmUp: number, cold = false): { times: number[]; placements: number } => {
    for (let i = 0; i < warmUp; i++) timeOne(input, cold);
    const times: number[] = [];
    let placements = 0;
    for (let i = 0; i < n; i++) {
      const t = timeOne(input, cold);
      times.push(t.ms);
      placements = t.placements;
    }
    return { times: times.sort((a, b) => a - b), placements };
  };

  const busyWorld = world(options.nodes, options.pending);
  // A server runs cycles back to back: warm up until the JIT and the heap have settled (30 cycles; with 12 the figure
  // still held the first second of the process, ~1.6× slower here, and with 3, ~2×).
  const busy = timeMany(busyWorld, rounds, 30);
  const cold = timeMany(busyWorld, Math.max(3, Math.floor(rounds / 3)), 1, true);
  // A cluster that changes between cycles: a sequence of worlds, each 1% of the running jobs on from the one before,
  // built before timing, run with one cache.
  const changingCache = new CycleCache();
  const changes = Math.max(1, Math.round((busyWorld.running?.length ?? 0) / 100));
  const churnRandom = lcg(7);
  const changingWorlds: CycleInput[] = [busyWorld];
  for (let i = 0; i < rounds + 12; i++) changingWorlds.push(withReplacedJobs(changingWorlds[changingWorlds.length - 1] as CycleInput, changes, churnRandom, i));
  const changingTimes: number[] = [];
  for (let i = 0; i < changingWorlds.length; i++) {
    const t0 = clock();
    runCycle({ ...(changingWorlds[i] as CycleInput), cache: changingCache }, profile);
    if (i >= 12) changingTimes.push(clock() - t0);
  }
  changingTimes.sort((a, b) => a - b);
  const idle = timeMany(world(options.nodes, options.pending, 0), Math.max(3, Math.floor(rounds / 3)), 2);

  // One arrival, timed in alternation with the base cycle so that drift of the machine hits both alike.
  const arrivalJob: Job = { id: '999999999', status: 'pending', createdAt: 2_000_000, spec: benchSpec('team-0', 50, 1, 1) };
  // Both share the base world's cache, as one server's cycles do when a job arrives and another starts.
  const arrival: CycleInput = { ...busyWorld, pending: [...busyWorld.pending, arrivalJob] };
  caches.set(arrival, caches.get(busyWorld) ?? new CycleCache());
  timeOne(arrival);
  const arrivalCost = pairedDifference(() => timeOne(busyWorld).ms, () => timeOne(arrival).ms, rounds);
  // The slope per pending job: 10% more jobs (at least one) from the same generator, also timed in alternation with
  // the base cycle (timed apart, after fewer warm-up cycles, it read slower for that alone).
  const more = Math.max(1, Math.round(options.pending / 10));
  const longerWorld = world(options.nodes, options.pending + more);
  timeMany(longerWorld, 0, 3);
  const longerCost = pairedDifference(() => timeOne(busyWorld).ms, () => timeOne(longerWorld).ms, rounds);

  const growth = { by_nodes: [] as SchedulerBenchGrowthRow[], by_pending: [] as SchedulerBenchGrowthRow[] };
  if (options.growth ?? true) {
    const growthRounds = Math.max(3, Math.ceil(rounds / 3));
    const row = (nodes: number, pending: number): SchedulerBenchGrowthRow => {
      const t = timeMany(world(nodes, pending), growthRounds, 8);
      return { nodes, gpus: nodes * options.gpusPerNode, pending, cycle_ms_p50: round(quantile(t.times, 0.5)), placements: t.placements };
    };
    for (const nodes of distinct([options.nodes / 4, options.nodes / 2, options.nodes, options.nodes * 2])) growth.by_nodes.push(row(nodes, options.pending));
    for (const pending of distinct([options.pending / 10, options.pending / 2, options.pending, options.pending * 2])) growth.by_pending.push(row(options.nodes, pending));
  }

  const busyP50 = quantile(busy.times, 0.5);
  const idleP50 = quantile(idle.times, 0.5);
  return {
    cycle_ms_p50: round(busyP50),
    cycle_ms_p99: round(quantile(busy.times, 0.99)),
    cold_cycle_ms_p50: round(quantile(cold.times, 0.5)),
    changing_cycle_ms_p50: round(quantile(changingTimes, 0.5)),
    placements_per_s: Math.round(idle.placements / (Math.max(idleP50, 1e-6) / 1000)),
    busy_placements_per_cycle: busy.placements,
    idle_cycle_ms_p50: round(idleP50),
    idle_placements_per_cycle: idle.placements,
    arrival_incremental_ms: round(Math.max(0, arrivalCost.median), 3),
    arrival_noise_ms: round(arrivalCost.noise, 3),
    per_pending_job_us: round((Math.max(0, longerCost.median) * 1000) / more, 3),
    per_pending_job_noise_us: round((longerCost.noise * 1000) / more, 3),
    growth,
    conditions: {
      profile: profile.name,
      nodes: options.nodes,
      gpus_per_node: options.gpusPerNode,
      gpus: options.nodes * options.gpusPerNode,
      pending: options.pending,
      teams: options.teams,
      busy_fraction: busyFraction,
      running_jobs: busyWorld.running?.length ?? 0,
      rounds,
      node: process.version,
    },
  };
}

/** The result for people: headline figures, then the growth tables. */
export function formatSchedulerBench(result: SchedulerBenchResult): string {
  const c = result.conditions;
  const lines = [
    `scheduler benchmark: profile ${c.profile}, ${c.nodes} nodes × ${c.gpus_per_node} GPUs = ${c.gpus} GPUs, ${c.pending} pending jobs, ${c.teams} teams, ${c.running_jobs} running jobs (${Math.round(c.busy_fraction * 100)}% busy), ${c.rounds} rounds, Node ${c.node}`,
    '',
    `  busy cycle           p50 ${result.cycle_ms_p50} ms, p99 ${result.cycle_ms_p99} ms (${result.busy_placements_per_cycle} placed per cycle)`,
    `  busy cycle, cold     p50 ${result.cold_cycle_ms_p50} ms (a fresh cache: the first cycle after a start)`,
    `  busy cycle, changing p50 ${result.changing_cycle_ms_p50} ms (1% of running jobs replaced since the last cycle)`,
    `  idle cycle           p50 ${result.idle_cycle_ms_p50} ms (${result.idle_placements_per_cycle} placed per cycle)`,
    `  placements/s         ${result.placements_per_s}`,
    `  one arrival          ${describeCost(result.arrival_incremental_ms, result.arrival_noise_ms, 'ms')} per cycle (median of paired differences)`,
    `  per pending job      ${describeCost(result.per_pending_job_us, result.per_pending_job_noise_us, 'µs')} (slope over 10% more pending jobs)`,
  ];
  const table = (title: string, rows: readonly SchedulerBenchGrowthRow[], column: (row: SchedulerBenchGrowthRow) => string): void => {
    if (rows.length === 0) return;
    const head = [title, ...rows.map(column)];
    const values = ['cycle p50 (ms)', ...rows.map((row) => String(row.cycle_ms_p50))];
    const widths = head.map((h, i) => Math.max(h.length, (values[i] ?? '').length));
    lines.push('', `  ${head.map((h, i) => h.padStart(widths[i] ?? 0)).join('  ')}`, `  ${values.map((v, i) => v.padStart(widths[i] ?? 0)).join('  ')}`);
  };
  table(`nodes (${c.pending} pending)`, result.growth.by_nodes, (row) => String(row.nodes));
  table(`pending (${c.nodes} nodes)`, result.growth.by_pending, (row) => String(row.pending));
  return lines.join('\n');
}

/**
 * `b() − a()`, timed in alternation `rounds` times so that drift of the machine hits both alike: the median of the
 * differences, and their noise (half the interquartile range).
 */
function pairedDifference(a: () => number, b: () => number, rounds: number): { median: number; noise: number } {
  const differences: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const first = a();
    differences.push(b() - first);
  }
  differences.sort((x, y) => x - y);
  return { median: quantile(differences, 0.5), noise: (quantile(differences, 0.75) - quantile(differences, 0.25)) / 2 };
}

/** "+0.012 ms (noise ±0.004)"; a cost within the noise (or measured at 0) as "under 0.02 ms (within the noise)". */
function describeCost(cost: number, noise: number, unit: string): string {
  if (cost <= noise) return `under ${Math.max(noise, 0.001)} ${unit} (within the noise)`;
  return `+${cost} ${unit} (noise ±${noise})`;
}

function quantile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * p))] ?? Number.NaN;
}

function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Whole, positive, distinct sizes in the order given. */
function distinct(sizes: readonly number[]): number[] {
  const out: number[] = [];
  for (const s of sizes) {
    const n = Math.max(1, Math.round(s));
    if (!out.includes(n)) out.push(n);
  }
  return out;
}
