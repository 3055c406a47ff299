/**
 * `npm run bench:scheduler -- --nodes 1250 --gpus-per-node 8 --pending 50000 --teams 100 --json`
 *
 * Full scheduling cycles (the `tutti` profile: fair share, quotas, topology, preemption, EASY backfill) on a busy
 * synthetic cluster: racks of 16 nodes in zones of 8 racks, ~90% of GPUs held by running jobs of random teams,
 * a queue of mixed 1–64-GPU gangs (mostly small), teams with nominal quotas. Prints p50/p99 cycle time and
 * placements per second (placements of an unloaded cycle ÷ its time), the incremental cost of one arrival (a cycle
 * with one more pending job, minus the base), and how cycle time grows with nodes and with pending jobs.
 */
import type { ClusterSnapshot, GpuAllocation, Job, JobSpec, NodeInfo, TeamConfig } from '@tutti/model';
import { getProfile, runCycle, type CycleInput, type SchedulerProfile } from '@tutti/scheduler';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
const NODES = arg('nodes', 1250);
const GPUS = arg('gpus-per-node', 8);
const PENDING = arg('pending', 50_000);
const TEAMS = arg('teams', 100);
const ROUNDS = arg('rounds', 15);
const JSON_OUT = process.argv.includes('--json');
const profileName = process.argv.includes('--profile') ? (process.argv[process.argv.indexOf('--profile') + 1] ?? 'tutti') : 'tutti';
const found = getProfile(profileName);
if (!found.ok) throw new Error(found.error);
const PROFILE: SchedulerProfile = found.profile;

/** Deterministic LCG. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

function spec(team: string, priority: number, gpus: number, numNodes: number, maxDurationMs?: number): JobSpec {
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

function makeWorld(nodes: number, pending: number, busy: number, seed = 1): CycleInput {
  const r = rng(seed);
  const infos: NodeInfo[] = [];
  for (let n = 0; n < nodes; n++) {
    const name = `node-${String(n).padStart(5, '0')}`;
    const rack = Math.floor(n / 16);
    infos.push({
      name, address: name, cpus: 128, memoryMiB: 1 << 20, state: 'ready',
      labels: { rack: `rack-${rack}`, zone: `zone-${Math.floor(rack / 8)}` },
      gpus: Array.from({ length: GPUS }, (_, i) => ({ index: i, uuid: `${name}-${i}`, type: n % 5 === 0 ? 'A100' : 'H100', product: '', memoryMiB: 81_920, nvlinkPeers: Array.from({ length: GPUS }, (_, j) => j).filter((j) => j !== i) })),
    });
  }
  const teamNames = Array.from({ length: TEAMS }, (_, i) => `team-${i}`);
  const perTeam = Math.floor((nodes * GPUS * 0.8) / TEAMS);
  const teams: TeamConfig[] = teamNames.map((name, i) => ({ name, weight: 1 + (i % 3), nominal: { '*': perTeam } }));
  // Running jobs fill `busy` of the GPUs, node by node (1-8 GPU jobs).
  const allocations: GpuAllocation[] = [];
  const running: Job[] = [];
  let id = 1;
  for (const node of infos) {
    let g = 0;
    while (g < GPUS && r() < busy) {
      const size = Math.min(GPUS - g, [1, 2, 4, 8][Math.floor(r() * 4)] ?? 1);
      const jobId = `r${id++}`;
      for (let k = 0; k < size; k++) allocations.push({ jobId, node: node.name, gpuIndex: g + k });
      g += size;
      running.push({ id: jobId, status: 'running', createdAt: 0, startedAt: Math.floor(r() * 3_600_000), spec: spec(teamNames[Math.floor(r() * TEAMS)] as string, 10 + Math.floor(r() * 80), size, 1, r() < 0.5 ? 4 * 3_600_000 : undefined) });
    }
  }
  const jobs: Job[] = [];
  for (let i = 0; i < pending; i++) {
    const shape = gangShape(r);
    jobs.push({ id: String(100_000 + i), status: 'pending', createdAt: 1_000_000 + i, spec: spec(teamNames[Math.floor(r() * TEAMS)] as string, [10, 50, 50, 90][Math.floor(r() * 4)] ?? 50, shape.gpus, shape.nodes, r() < 0.3 ? 3_600_000 : undefined) });
  }
  const snapshot: ClusterSnapshot = { version: 1, nodes: infos, allocations };
  return { snapshot, pending: jobs, running, teams, usage: teamNames.map((team, i) => ({ team, decayedGpuSeconds: (i % 7) * 1e6, asOf: 0 })), now: 4_000_000, seed: 1 };
}

function time(input: CycleInput, rounds: number): { times: number[]; placements: number } {
  const times: number[] = [];
  let placements = 0;
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    const out = runCycle(input, PROFILE);
    times.push(performance.now() - t0);
    placements = out.plan.placements.length;
  }
  return { times: times.sort((a, b) => a - b), placements };
}

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * p))] ?? NaN;
const round = (x: number): number => Math.round(x * 100) / 100;

// Warm-up, then the headline: busy cluster.
const busyWorld = makeWorld(NODES, PENDING, 0.9);
time(busyWorld, 3);
const busy = time(busyWorld, ROUNDS);

// Placements per second: the same queue on an idle cluster, where the cycle places as much as fits.
const idleWorld = makeWorld(NODES, PENDING, 0);
time(idleWorld, 2);
const idle = time(idleWorld, Math.max(3, Math.floor(ROUNDS / 3)));

// One arrival: the busy world plus one pending job.
const arrival = { ...busyWorld, pending: [...busyWorld.pending, { id: '999999999', status: 'pending' as const, createdAt: 2_000_000, spec: spec('team-0', 50, 1, 1) }] };
const withArrival = time(arrival, ROUNDS);

const result: Record<string, unknown> = {
  cycle_ms_p50: round(pct(busy.times, 0.5)),
  cycle_ms_p99: round(pct(busy.times, 0.99)),
  placements_per_s: Math.round(idle.placements / (pct(idle.times, 0.5) / 1000)),
  busy_placements_per_cycle: busy.placements,
  idle_cycle_ms_p50: round(pct(idle.times, 0.5)),
  idle_placements_per_cycle: idle.placements,
  arrival_incremental_ms: round(pct(withArrival.times, 0.5) - pct(busy.times, 0.5)),
  conditions: { profile: PROFILE.name, nodes: NODES, gpus: NODES * GPUS, pending: PENDING, teams: TEAMS, busy_fraction: 0.9, rounds: ROUNDS, node: process.version },
};

if (process.argv.includes('--scaling')) {
  const byNodes: Record<string, number> = {};
  for (const n of [Math.floor(NODES / 4), Math.floor(NODES / 2), NODES, NODES * 2]) byNodes[n] = round(pct(time(makeWorld(n, PENDING, 0.9), 5).times, 0.5));
  const byPending: Record<string, number> = {};
  for (const p of [Math.floor(PENDING / 10), Math.floor(PENDING / 2), PENDING, PENDING * 2]) byPending[p] = round(pct(time(makeWorld(NODES, p, 0.9), 5).times, 0.5));
  result['cycle_ms_p50_by_nodes'] = byNodes;
  result['cycle_ms_p50_by_pending'] = byPending;
}

if (JSON_OUT) console.log(JSON.stringify(result));
else console.log(result);
