/**
 * `npm run bench:cycle-db` — the scheduling cycle at 10,000 GPUs × 50,000 pending with the state in a database,
 * reads and commits included, on SQLite and on PostgreSQL in the same run (issue 16's figure).
 *
 * The world is `tutti bench scheduler`'s (packages/sim/src/scheduler-bench.ts, `makeSchedulerBenchWorld`): 1,250
 * nodes × 8 GPUs in racks of 16 and zones of 8 racks, running jobs of 1–8 GPUs on about 90% of the GPUs, 50,000
 * pending gangs of mixed sizes for 100 teams with priorities 10–90. Each database gets the same world through the
 * store itself: `replaceNodes`, the running jobs submitted (`createJob`) and placed (`applyPlacements`), then the
 * pending jobs submitted.
 *
 * Each cycle is scheduling-loop.ts's `runSchedulingCycle`, step by step, timed in parts:
 *   - read: `store.snapshot()` (nodes and allocations) and `store.listJobsByStatus(['running'])`, as every cycle reads;
 *   - decide: `buildCycleInput` (with one `JobLifecycle` and one `CycleCache` kept across cycles), `runCycle` with
 *     the `tutti` profile, `applyCycleResult`;
 *   - commit: `store.applyPlacements` of the placements (one transaction each) and `store.getJob` of each committed
 *     job (the server reads the attempt number before handing the job to its launcher).
 * No ranks are launched: the cluster is synthetic. Between cycles a busy cluster changes, and so does the bench's:
 * the victims the plan named stop and go back to the queue (`requeueJob`; in the server that takes their grace
 * period, during which the core marks them so no cycle names them again — here the core knows no attempts, since no
 * job is launched, so they are stopped before the next cycle instead), 1% of the running jobs end (`finishJob`,
 * succeeded), and new jobs are submitted until 50,000 are pending again. That work is timed apart, not in the cycle.
 *
 * The databases are driven in alternation, one cycle each in turn, so that drift of the machine (other processes,
 * the collector) hits them alike. `postgres-fenced` is PostgreSQL as the leader of several replicas writes it:
 * through the fenced view of lease `control` (`withFence`), whose every write checks and share-locks the lease row.
 *
 * Environment: BENCH_CYCLE_DATABASES (default `sqlite,postgres,postgres-fenced`), BENCH_CYCLE_ROUNDS (timed cycles
 * per database, default 30), BENCH_CYCLE_WARMUP (untimed cycles first, default 10), BENCH_CYCLE_PENDING (default
 * 50000), BENCH_CYCLE_NODES (default 1250). PostgreSQL: a fresh database on the server of TUTTI_TEST_POSTGRES_URL,
 * or on scripts/pg-dev.sh's (started if needed), dropped at the end. `--json` prints the result as JSON.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { applyCycleResult, buildCycleInput, JobLifecycle, lifecycleSettingsFor } from '@tutti/control';
import { computeTasksForPlacement } from '@tutti/model';
import type { Job, JobSpec, Placement, TeamConfig } from '@tutti/model';
import { CycleCache, getProfile, runCycle } from '@tutti/scheduler';
import type { SchedulerProfile } from '@tutti/scheduler';
import { computeQuantile, makeSchedulerBenchWorld } from '@tutti/sim';
import { createPostgresStateStore, createSqliteStateStore } from '@tutti/store';
import type { PlacementWithTasks, StateStore } from '@tutti/store';
import { createTestDatabase, type TestDatabase } from '../packages/store/test/postgres-dev-server.ts';

type DatabaseKind = 'sqlite' | 'postgres' | 'postgres-fenced';
const KINDS: readonly DatabaseKind[] = ['sqlite', 'postgres', 'postgres-fenced'];

function wholeEnv(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  const value = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isInteger(value) || value < min) {
    process.stderr.write(`bench:cycle-db: ${name} must be a whole number ≥ ${min}, got ${raw}\n`);
    process.exit(2);
  }
  return value;
}

const kinds = (process.env.BENCH_CYCLE_DATABASES ?? KINDS.join(',')).split(',').map((k) => k.trim());
for (const kind of kinds) {
  if (!(KINDS as readonly string[]).includes(kind)) {
    process.stderr.write(`bench:cycle-db: BENCH_CYCLE_DATABASES names ${JSON.stringify(kind)}; use a comma-separated list of ${KINDS.join(', ')}\n`);
    process.exit(2);
  }
}
const ROUNDS = wholeEnv('BENCH_CYCLE_ROUNDS', 30, 1);
const WARMUP = wholeEnv('BENCH_CYCLE_WARMUP', 10, 0);
const PENDING = wholeEnv('BENCH_CYCLE_PENDING', 50_000, 1);
const NODES = wholeEnv('BENCH_CYCLE_NODES', 1250, 1);
const GPUS_PER_NODE = 8;
const TEAMS = 100;
/** The share of running jobs that end between two cycles (as the scheduler bench's "changing" cluster). */
const ENDING_PER_CYCLE = 0.01;
/** The lease the leader of several replicas holds (packages/server's leadership: `control`). */
const CONTROL_LEASE = 'control';

const found = getProfile('tutti');
if (!found.ok) throw new Error(found.error);
const profile: SchedulerProfile = found.profile;

interface CycleTimes {
  totalMs: number;
  snapshotMs: number;
  runningReadMs: number;
  decideMs: number;
  commitMs: number;
  /** Of `commitMs`: reading back each committed job (`getJob`), as the server does before handing it to its launcher. */
  placedReadMs: number;
  placed: number;
  /** Placements the store refused (a GPU taken meanwhile: none expected, nobody else writes). */
  refused: number;
  /** The running jobs the plan names as victims (stopped between cycles, see `betweenCycles`). */
  victims: string[];
}

/** One database with its own copy of the world, driven as one server drives its store. */
interface Setup {
  kind: DatabaseKind;
  label: string;
  store: StateStore;
  /** The store the cycle writes through (the fenced view for `postgres-fenced`). */
  writer: StateStore;
  close: () => Promise<void>;
  queue: Map<string, Job>;
  lifecycle: JobLifecycle;
  cache: CycleCache;
  seed: number;
  cycles: CycleTimes[];
  betweenMs: number[];
  seedMs: number;
  random: () => number;
}

/** Deterministic LCG in [0, 1) (the same churn on every database). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

const world = makeSchedulerBenchWorld({ nodes: NODES, gpusPerNode: GPUS_PER_NODE, pending: PENDING, teams: TEAMS });
const teams: readonly TeamConfig[] = world.teams ?? [];
const runningInWorld = world.running ?? [];

async function openStore(kind: DatabaseKind, temp: string, databases: TestDatabase[]): Promise<{ store: StateStore; writer: StateStore; close: () => Promise<void> }> {
  if (kind === 'sqlite') {
    const store = await createSqliteStateStore({ path: join(temp, `${kind}.db`) });
    return { store, writer: store, close: () => store.close() };
  }
  const database = await createTestDatabase();
  databases.push(database);
  const store = await createPostgresStateStore({ url: database.url });
  if (kind === 'postgres') return { store, writer: store, close: () => store.close() };
  const holder = 'bench-leader';
  const lease = await store.acquireLease(CONTROL_LEASE, holder, Date.now(), 24 * 3_600_000);
  return { store, writer: store.withFence({ lease: CONTROL_LEASE, holder, epoch: lease.epoch }), close: () => store.close() };
}

/** Submits `specs` as concurrent callers do (the store group-commits them), in submission order. */
async function submitAll(store: StateStore, specs: readonly JobSpec[], now: number): Promise<Job[]> {
  const jobs: Job[] = [];
  for (let at = 0; at < specs.length; at += 5000) jobs.push(...(await Promise.all(specs.slice(at, at + 5000).map((spec) => store.createJob(spec, now)))));
  return jobs;
}

/** The world into the store: nodes, the running jobs placed where the world has them, the pending jobs. */
async function seedWorld(store: StateStore, writer: StateStore): Promise<void> {
  const now = Date.now();
  await writer.replaceNodes(world.snapshot.nodes, now);
  const running = await submitAll(store, runningInWorld.map((job) => job.spec), now);
  const idOf = new Map(runningInWorld.map((job, i) => [job.id, (running[i] as Job).id]));
  const placements = new Map<string, Placement>();
  for (const allocation of world.snapshot.allocations) {
    const jobId = idOf.get(allocation.jobId) as string;
    let placement = placements.get(jobId);
    if (!placement) placements.set(jobId, (placement = { jobId, nodes: [] }));
    let placed = placement.nodes.find((n) => n.node === allocation.node);
    if (!placed) placement.nodes.push((placed = { node: allocation.node, gpuIndices: [] }));
    placed.gpuIndices.push(allocation.gpuIndex);
  }
  const specOf = new Map(running.map((job) => [job.id, job.spec]));
  const withTasks = [...placements.values()].map((placement) => ({ placement, tasks: computeTasksForPlacement(specOf.get(placement.jobId) as JobSpec, placement) }));
  const outcomes = await writer.applyPlacements(withTasks, now);
  const refused = outcomes.filter((o) => !o.applied).length;
  if (refused > 0) throw new Error(`seeding: ${refused} of the world's running jobs could not be placed`);
  await submitAll(store, world.pending.map((job) => job.spec), now);
}

/** One cycle as scheduling-loop.ts's `runSchedulingCycle` runs it, timed in parts. */
async function runOneCycle(setup: Setup): Promise<CycleTimes> {
  const { store, writer, queue, lifecycle } = setup;
  const t0 = performance.now();
  const snapshot = await store.snapshot();
  const t1 = performance.now();
  const now = Date.now();
  const running = await store.listJobsByStatus(['running']);
  const t2 = performance.now();
  const input = buildCycleInput(lifecycle, { snapshot, queue: queue.values(), running, teams, now, seed: setup.seed++, cache: setup.cache });
  const result = runCycle(input, profile);
  const specs = new Map<string, JobSpec>();
  for (const jobId of [...result.plan.placements.map((p) => p.jobId), ...result.plan.preemptions.map((p) => p.forJobId)]) {
    const job = queue.get(jobId);
    if (job) specs.set(job.id, job.spec);
  }
  const applied = applyCycleResult(lifecycle, { snapshot, plan: result.plan, specs, running, teams, now });
  if (applied.violations.length > 0) throw new Error(`the scheduler produced an invalid plan: ${applied.violations.map((v) => `${v.jobId}: ${v.message}`).join('; ')}`);
  const t3 = performance.now();
  let placed = 0;
  let refused = 0;
  let placedReadMs = 0;
  if (applied.placements.length > 0) {
    const withTasks: PlacementWithTasks[] = applied.placements.map((placement) => ({ placement, tasks: computeTasksForPlacement(specs.get(placement.jobId) as JobSpec, placement) }));
    const outcomes = await writer.applyPlacements(withTasks, now);
    const committed: string[] = [];
    outcomes.forEach((outcome) => {
      if (outcome.applied || outcome.reason === 'job_not_pending') queue.delete(outcome.jobId);
      if (outcome.applied) committed.push(outcome.jobId);
      else refused++;
    });
    const readStarted = performance.now();
    for (const jobId of committed) await store.getJob(jobId);
    placedReadMs = performance.now() - readStarted;
    placed = committed.length;
  }
  const t4 = performance.now();
  const victims = [...new Set(result.plan.preemptions.map((p) => p.jobId))];
  return { totalMs: t4 - t0, snapshotMs: t1 - t0, runningReadMs: t2 - t1, decideMs: t3 - t2, commitMs: t4 - t3, placedReadMs, placed, refused, victims };
}

/**
 * What a busy cluster does between two cycles: the victims the plan named stop and go back to the queue (in the server
 * that takes their grace period; the core marks them meanwhile, so no cycle names them twice), 1% of the running jobs
 * end, and new jobs arrive for those placed.
 */
async function betweenCycles(setup: Setup, cycle: CycleTimes): Promise<number> {
  const started = performance.now();
  const now = Date.now();
  for (const jobId of cycle.victims) {
    if (!(await setup.writer.requeueJob(jobId, 'preempted by a higher-priority job', now, { event: 'preempted' }))) continue;
    const job = await setup.store.getJob(jobId);
    if (job) setup.queue.set(job.id, job);
  }
  const running = await setup.store.listJobsByStatus(['running']);
  const ending = new Set<string>();
  const count = Math.max(1, Math.round(running.length * ENDING_PER_CYCLE));
  while (ending.size < Math.min(count, running.length)) ending.add((running[Math.floor(setup.random() * running.length)] as Job).id);
  for (const jobId of ending) await setup.writer.finishJob(jobId, { status: 'succeeded', exitCode: 0, endReason: 'exited 0' }, now);
  const arrivals = world.pending.slice(0, Math.max(0, PENDING - setup.queue.size)).map((job) => job.spec);
  for (const job of await submitAll(setup.store, arrivals, now)) setup.queue.set(job.id, job);
  return performance.now() - started;
}

/** Nearest rank, as the simulator's figures: over 30 cycles p99 is the slowest one. */
function quantile(values: readonly number[], p: number): number {
  return computeQuantile([...values].sort((a, b) => a - b), p);
}

const round = (x: number, digits = 1): number => Math.round(x * 10 ** digits) / 10 ** digits;

async function postgresConditions(url: string): Promise<Record<string, string>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const settings: Record<string, string> = {};
    for (const name of ['server_version', 'fsync', 'synchronous_commit', 'shared_buffers', 'wal_sync_method']) {
      const row = (await client.query<Record<string, string>>(`show ${name}`)).rows[0];
      settings[name] = row ? String(Object.values(row)[0]) : '?';
    }
    return settings;
  } finally {
    await client.end();
  }
}

async function main(): Promise<void> {
  const json = process.argv.includes('--json');
  const say = (line: string): void => {
    if (!json) process.stderr.write(`${line}\n`);
  };
  const temp = mkdtempSync(join(tmpdir(), 'tutti-bench-cycle-db-'));
  const databases: TestDatabase[] = [];
  const setups: Setup[] = [];
  const loadAtStart = loadavg();
  try {
    for (const kind of kinds as DatabaseKind[]) {
      const opened = await openStore(kind, temp, databases);
      const setup: Setup = {
        kind,
        label: kind === 'sqlite' ? 'SQLite' : kind === 'postgres' ? 'PostgreSQL' : 'PostgreSQL, fenced',
        ...opened,
        queue: new Map(),
        lifecycle: new JobLifecycle(lifecycleSettingsFor(profile)),
        cache: new CycleCache(),
        seed: 1,
        cycles: [],
        betweenMs: [],
        seedMs: 0,
        random: lcg(7),
      };
      setups.push(setup);
      say(`[${setup.label}] seeding ${NODES} nodes × ${GPUS_PER_NODE} GPUs, ${runningInWorld.length} running jobs, ${PENDING} pending jobs...`);
      const started = performance.now();
      await seedWorld(setup.store, setup.writer);
      setup.seedMs = performance.now() - started;
      // As the server's start: the queue is read once, then kept in step.
      for (const job of await setup.store.listJobsByStatus(['pending'])) setup.queue.set(job.id, job);
      say(`[${setup.label}] seeded in ${round(setup.seedMs / 1000)} s`);
    }
    const total = WARMUP + ROUNDS;
    for (let i = 0; i < total; i++) {
      for (const setup of setups) {
        const cycle = await runOneCycle(setup);
        if (i >= WARMUP) setup.cycles.push(cycle);
        const between = await betweenCycles(setup, cycle);
        if (i >= WARMUP) setup.betweenMs.push(between);
      }
      if ((i + 1) % 10 === 0) say(`cycle ${i + 1} of ${total} on each (${WARMUP} untimed first)`);
    }
    const pgUrl = databases[0]?.url;
    const postgres = pgUrl ? await postgresConditions(pgUrl) : undefined;
    const figures = setups.map((setup) => {
      const of = (pick: (c: CycleTimes) => number) => ({ p50: round(quantile(setup.cycles.map(pick), 0.5)), p99: round(quantile(setup.cycles.map(pick), 0.99)) });
      return {
        database: setup.kind,
        label: setup.label,
        cycle_ms: of((c) => c.totalMs),
        snapshot_ms: of((c) => c.snapshotMs),
        running_read_ms: of((c) => c.runningReadMs),
        decide_ms: of((c) => c.decideMs),
        commit_ms: of((c) => c.commitMs),
        placed_read_ms: of((c) => c.placedReadMs),
        placements_per_cycle: { p50: quantile(setup.cycles.map((c) => c.placed), 0.5), min: Math.min(...setup.cycles.map((c) => c.placed)), max: Math.max(...setup.cycles.map((c) => c.placed)) },
        commit_ms_per_placement: round(quantile(setup.cycles.filter((c) => c.placed > 0).map((c) => c.commitMs / c.placed), 0.5), 2),
        refused_placements: setup.cycles.reduce((sum, c) => sum + c.refused, 0),
        victims_per_cycle_p50: quantile(setup.cycles.map((c) => c.victims.length), 0.5),
        between_cycles_ms_p50: round(quantile(setup.betweenMs, 0.5)),
        seed_s: round(setup.seedMs / 1000),
        pending_at_end: setup.queue.size,
      };
    });
    const result = {
      conditions: {
        nodes: NODES,
        gpus: NODES * GPUS_PER_NODE,
        pending: PENDING,
        running_jobs: runningInWorld.length,
        busy_gpus: world.snapshot.allocations.length,
        teams: TEAMS,
        profile: profile.name,
        timed_cycles_per_database: ROUNDS,
        warmup_cycles: WARMUP,
        ending_per_cycle: ENDING_PER_CYCLE,
        node: process.version,
        cpus: cpus().length,
        memory_gib: round(totalmem() / 2 ** 30),
        load_average_start: loadAtStart.map((x) => round(x, 2)),
        load_average_end: loadavg().map((x) => round(x, 2)),
        ...(postgres ? { postgres } : {}),
        launched: 'no ranks launched: the cluster is synthetic',
      },
      figures,
    };
    if (json) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
      return;
    }
    process.stdout.write(`${formatResult(result.conditions, figures)}\n`);
  } finally {
    for (const setup of setups) await setup.close().catch(() => {});
    for (const database of databases) await database.drop().catch(() => {});
    rmSync(temp, { recursive: true, force: true });
  }
}

type Figures = Array<{
  label: string;
  database: string;
  cycle_ms: { p50: number; p99: number };
  snapshot_ms: { p50: number; p99: number };
  running_read_ms: { p50: number; p99: number };
  decide_ms: { p50: number; p99: number };
  commit_ms: { p50: number; p99: number };
  placed_read_ms: { p50: number; p99: number };
  placements_per_cycle: { p50: number; min: number; max: number };
  commit_ms_per_placement: number;
  refused_placements: number;
  victims_per_cycle_p50: number;
  between_cycles_ms_p50: number;
  seed_s: number;
  pending_at_end: number;
}>;

function formatResult(c: Record<string, unknown> & { postgres?: Record<string, string> }, figures: Figures): string {
  const lines = [
    `scheduling cycle on a database: ${String(c.nodes)} nodes × ${GPUS_PER_NODE} GPUs = ${String(c.gpus)} GPUs (${String(c.busy_gpus)} held by ${String(c.running_jobs)} running jobs), ${String(c.pending)} pending, ${String(c.teams)} teams, profile ${String(c.profile)}`,
    `${String(c.timed_cycles_per_database)} timed cycles per database after ${String(c.warmup_cycles)} untimed, databases in alternation; between cycles the plan's victims are requeued, ${Number(c.ending_per_cycle) * 100}% of running jobs end and new jobs arrive up to ${String(c.pending)} pending`,
    `Node ${String(c.node)}, ${String(c.cpus)} CPUs, ${String(c.memory_gib)} GiB, load average ${JSON.stringify(c.load_average_start)} at start, ${JSON.stringify(c.load_average_end)} at end`,
    ...(c.postgres ? [`PostgreSQL ${c.postgres.server_version ?? '?'}: fsync ${c.postgres.fsync ?? '?'}, synchronous_commit ${c.postgres.synchronous_commit ?? '?'}, shared_buffers ${c.postgres.shared_buffers ?? '?'}, wal_sync_method ${c.postgres.wal_sync_method ?? '?'}`] : []),
    String(c.launched),
    '',
  ];
  const rows: Array<[string, (f: Figures[number]) => string]> = [
    ['cycle, p50 / p99 (ms)', (f) => `${f.cycle_ms.p50} / ${f.cycle_ms.p99}`],
    ['  read snapshot (nodes + allocations)', (f) => `${f.snapshot_ms.p50} / ${f.snapshot_ms.p99}`],
    ['  read running jobs', (f) => `${f.running_read_ms.p50} / ${f.running_read_ms.p99}`],
    ['  decide (build, runCycle, apply)', (f) => `${f.decide_ms.p50} / ${f.decide_ms.p99}`],
    ['  commit (applyPlacements + getJob)', (f) => `${f.commit_ms.p50} / ${f.commit_ms.p99}`],
    ['    of which getJob of the placed', (f) => `${f.placed_read_ms.p50} / ${f.placed_read_ms.p99}`],
    ['placements per cycle, p50 (min–max)', (f) => `${f.placements_per_cycle.p50} (${f.placements_per_cycle.min}–${f.placements_per_cycle.max})`],
    ['commit per placement, p50 (ms)', (f) => String(f.commit_ms_per_placement)],
    ['placements refused', (f) => String(f.refused_placements)],
    ['victims per cycle, p50 (requeued after it)', (f) => String(f.victims_per_cycle_p50)],
    ['between cycles: stops, ends, arrivals, p50 (ms)', (f) => String(f.between_cycles_ms_p50)],
    ['seeding the world (s)', (f) => String(f.seed_s)],
  ];
  const sqlite = figures.find((f) => f.database === 'sqlite');
  const ratio = (f: Figures[number], pick: (g: Figures[number]) => number): string => (sqlite && f !== sqlite && pick(sqlite) > 0 ? ` (×${round(pick(f) / pick(sqlite), 2)})` : '');
  const ratioRows: Record<string, (g: Figures[number]) => number> = {
    'cycle, p50 / p99 (ms)': (g) => g.cycle_ms.p50,
    '  read snapshot (nodes + allocations)': (g) => g.snapshot_ms.p50,
    '  read running jobs': (g) => g.running_read_ms.p50,
    '  decide (build, runCycle, apply)': (g) => g.decide_ms.p50,
    '  commit (applyPlacements + getJob)': (g) => g.commit_ms.p50,
  };
  const table = rows.map(([name, cell]) => [name, ...figures.map((f) => `${cell(f)}${ratioRows[name] ? ratio(f, ratioRows[name]) : ''}`)]);
  const head = ['', ...figures.map((f) => f.label)];
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((row) => (row[i] ?? '').length)));
  const render = (row: readonly string[]): string => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');
  lines.push(render(head), ...table.map(render));
  if (sqlite && figures.length > 1) lines.push('', '(×n): p50 against SQLite\'s in the same run');
  return lines.join('\n');
}

await main();
