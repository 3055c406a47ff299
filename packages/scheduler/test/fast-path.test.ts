/**
 * The cycle's shortcuts (free-count buckets for best-fit searches, one outcome per kind of job while nothing
 * changes, victims kept in order per node) must never change a decision: with them on or off, every profile gives the same plan and the same
 * diagnoses, in the same order, on random clusters and queues and on a busy synthetic cluster with a long queue.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ClusterSnapshot, CycleResult, GpuAllocation, Job, JobSpec, NodeInfo, TeamConfig } from '@tutti/model';
import { BUILTIN_PROFILES, compileProfile, CycleCache, verifyPlan, type CycleInput } from '../src/index.ts';
import { FAST_PATHS, PLAIN_PATHS, runCycleWith, type CycleShortcuts } from '../src/run-cycle.ts';
import { cycleInputArb } from './world-arbitraries.ts';

const SOME_SHORTCUTS: readonly CycleShortcuts[] = [
  FAST_PATHS,
  { capacityIndex: true, sameKindMemo: false, victimPool: false, keepAcrossCycles: false },
  { capacityIndex: false, sameKindMemo: true, victimPool: false, keepAcrossCycles: false },
  { capacityIndex: false, sameKindMemo: false, victimPool: true, keepAcrossCycles: false },
];

function expectSameDecisions(input: CycleInput, profile: Parameters<typeof runCycleWith>[1]): CycleResult {
  const plain = runCycleWith(input, profile, PLAIN_PATHS);
  for (const shortcuts of SOME_SHORTCUTS) {
    const fast = runCycleWith(input, profile, shortcuts);
    expect(fast.plan).toEqual(plain.plan);
    expect([...fast.diagnoses]).toEqual([...plain.diagnoses]);
  }
  return plain;
}

/** A busy cluster (racks, two GPU types, ~85% of GPUs held by running jobs of 12 teams) and a long mixed queue. */
function busyWorld(seed: number, nodes: number, pending: number): CycleInput {
  let s = seed >>> 0;
  const r = (): number => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  const pick = <T,>(items: readonly T[]): T => items[Math.floor(r() * items.length)] as T;
  const spec = (team: string, priority: number, gpus: number, numNodes: number, maxDurationMs?: number): JobSpec => ({
    name: 'j',
    team,
    priority,
    numNodes,
    env: {},
    resources: { gpus: { count: gpus, types: r() < 0.1 ? ['A100'] : [] } },
    run: { kind: 'shell', command: 'true' },
    ...(maxDurationMs ? { maxDurationMs } : {}),
  });
  const teamNames = Array.from({ length: 12 }, (_, i) => `team-${i}`);
  const infos: NodeInfo[] = [];
  const allocations: GpuAllocation[] = [];
  const running: Job[] = [];
  for (let n = 0; n < nodes; n++) {
    const name = `node-${String(n).padStart(3, '0')}`;
    infos.push({
      name,
      address: name,
      cpus: 128,
      memoryMiB: 1 << 20,
      state: 'ready',
      labels: { rack: `rack-${Math.floor(n / 4)}`, zone: `zone-${Math.floor(n / 16)}` },
      gpus: Array.from({ length: 8 }, (_, i) => ({ index: i, uuid: `${name}-${i}`, type: n % 4 === 0 ? 'A100' : 'H100', product: '', memoryMiB: 81_920, nvlinkPeers: [] })),
    });
    let g = 0;
    while (g < 8 && r() < 0.85) {
      const size = Math.min(8 - g, pick([1, 2, 4, 8]));
      const id = `r${n}-${g}`;
      for (let k = 0; k < size; k++) allocations.push({ jobId: id, node: name, gpuIndex: g + k });
      g += size;
      running.push({ id, status: 'running', createdAt: 0, startedAt: Math.floor(r() * 1_000), spec: spec(pick(teamNames), pick([10, 30, 60]), size, 1, r() < 0.5 ? 5_000 : undefined) });
    }
  }
  const jobs: Job[] = [];
  for (let i = 0; i < pending; i++) {
    const [gpus, numNodes] = pick<[number, number]>([[1, 1], [1, 1], [2, 1], [4, 1], [8, 1], [8, 2]]);
    jobs.push({ id: String(1_000 + i), status: 'pending', createdAt: 500 + i, spec: spec(pick(teamNames), pick([10, 50, 90]), gpus, numNodes, r() < 0.3 ? 2_000 : undefined) });
  }
  const teams: TeamConfig[] = teamNames.map((name, i) => ({ name, weight: 1 + (i % 3), nominal: (i % 4 === 0 ? { A100: 4, '*': 8 } : { '*': Math.floor((nodes * 8 * 0.7) / 12) }) as Record<string, number> }));
  const snapshot: ClusterSnapshot = { version: 1, nodes: infos, allocations };
  return { snapshot, pending: jobs, running, teams, usage: teamNames.map((team, i) => ({ team, decayedGpuSeconds: i * 1_000, asOf: 0 })), now: 2_000, seed: 1 };
}

describe.each([...BUILTIN_PROFILES.values()])('profile $name: shortcuts on or off decide alike', (profile) => {
  it('on random clusters, queues, teams and running jobs: same plan, same diagnoses, and verifyPlan accepts it', () => {
    fc.assert(
      fc.property(cycleInputArb, (input) => {
        expectSameDecisions(input, profile);
        const { plan } = runCycleWith(input, profile, FAST_PATHS);
        const specs = new Map<string, JobSpec>([...input.pending, ...(input.running ?? [])].map((j) => [j.id, j.spec]));
        // Quotas are checked only where the profile enforces them.
        expect(verifyPlan(input.snapshot, plan, specs, { running: input.running ?? [], teams: compileProfile(profile).quota ? (input.teams ?? []) : [] })).toEqual([]);
      }),
      { numRuns: 80 },
    );
  });

  it('on a busy cluster of 48 nodes with 2,500 pending jobs (many of one kind; placements, preemptions, reservations)', () => {
    for (const seed of [1, 2]) {
      const { plan } = expectSameDecisions(busyWorld(seed, 48, 2_500), profile);
      expect(plan.placements.length).toBeGreaterThan(0);
      if (profile.name === 'tutti') {
        expect(plan.preemptions.length).toBeGreaterThan(0);
        expect(plan.reservations.length).toBeGreaterThan(0);
      }
    }
  });
});

/**
 * The cache a server keeps across cycles (`CycleInput.cache`) must never change a decision: a run of cycles in which
 * jobs leave, arrive, come back as new objects with other specs, or are listed twice, and the clock moves, decides
 * each cycle exactly as a fresh cache does, and each cycle's diagnoses answer look-ups by id after later cycles ran.
 */
describe.each(['tutti', 'fifo-backfill', 'tiresias'])('profile %s: a cache kept across cycles decides as a fresh one', (name) => {
  const profile = BUILTIN_PROFILES.get(name) as Parameters<typeof runCycleWith>[1];
  const FRESH: CycleShortcuts = { ...FAST_PATHS, keepAcrossCycles: false };

  it('over 12 cycles of a changing queue on a busy cluster', () => {
    for (const seed of [3, 4]) {
      const world = busyWorld(seed, 24, 600);
      let s = seed * 7919;
      const r = (): number => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
      const cache = new CycleCache();
      let pending = [...world.pending];
      let nextId = 50_000;
      const earlier: { result: CycleResult; expected: [string, unknown][] }[] = [];
      for (let cycle = 0; cycle < 12; cycle++) {
        const now = world.now + cycle * 600_000;
        // Some jobs leave; some arrive (some of them listed twice); some come back as new objects with another priority.
        pending = pending.filter(() => r() > 0.15);
        for (let k = 0; k < 40; k++) {
          const template = world.pending[Math.floor(r() * world.pending.length)] as Job;
          const job: Job = { ...template, id: String(nextId++), createdAt: now - Math.floor(r() * 1_000) };
          pending.push(job);
          if (r() < 0.1) pending.push({ ...job });
        }
        pending = pending.map((job) => (r() < 0.05 ? { ...job, spec: { ...job.spec, priority: job.spec.priority + 20 } } : job));
        const input: CycleInput = { ...world, pending, now };
        const fresh = runCycleWith(input, profile, FRESH);
        const kept = runCycleWith({ ...input, cache }, profile, FAST_PATHS);
        expect(kept.plan).toEqual(fresh.plan);
        const entries = [...kept.diagnoses];
        expect(entries).toEqual([...fresh.diagnoses]);
        for (const [id, d] of entries.slice(0, 50)) expect(kept.diagnoses.get(id)).toEqual(d);
        for (const placement of kept.plan.placements) expect(kept.diagnoses.has(placement.jobId)).toBe(false);
        earlier.push({ result: kept, expected: entries });
        // Placed jobs start and leave the queue.
        const placed = new Set(kept.plan.placements.map((p) => p.jobId));
        pending = pending.filter((job) => !placed.has(job.id));
      }
      // The first cycles' diagnoses, read after the later cycles ran.
      for (const { result, expected } of earlier.slice(0, 3)) {
        expect(result.diagnoses.size).toBe(expected.length);
        for (const [id, d] of expected.slice(-20)) expect(result.diagnoses.get(id)).toEqual(d);
        expect(result.diagnoses.get('no-such-job')).toBeUndefined();
      }
    }
  });
});
