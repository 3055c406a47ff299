import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ClusterSnapshot, Job, JobSpec, Placement } from '@tutti/model';
import { checkFeasibility, GREEDY_PROFILE, PLUGIN, runCycle, verifyPlan } from '../src/index.ts';
import { clusterArb, emptied, fitsBruteForce, pendingArb, shuffled } from './arbitraries.ts';

const RUNS = { numRuns: 300 };
/** The first version's invariants hold for the `greedy` profile (no reservations); `policy-properties.test.ts` covers the others. */
const run = (snapshot: ClusterSnapshot, pending: readonly Job[], seed = 0) => runCycle({ snapshot, pending, now: 1_000, seed }, GREEDY_PROFILE);
const specsOf = (jobs: readonly Job[]) => new Map<string, JobSpec>(jobs.map((j) => [j.id, j.spec]));

/** The queue order, written independently of the scheduler: priority descending, then id (1..n here) ascending. */
const queueOrder = (jobs: readonly Job[]): Job[] => [...jobs].sort((a, b) => b.spec.priority - a.spec.priority || Number(a.id) - Number(b.id));

/** For each job in queue order: the placements made for jobs ahead of it. */
function placementsAhead(pending: readonly Job[], placements: readonly Placement[]): Map<string, { spec: JobSpec; placement: Placement }[]> {
  const byId = new Map(placements.map((p) => [p.jobId, p]));
  const ahead = new Map<string, { spec: JobSpec; placement: Placement }[]>();
  const sofar: { spec: JobSpec; placement: Placement }[] = [];
  for (const job of queueOrder(pending)) {
    ahead.set(job.id, [...sofar]);
    const placement = byId.get(job.id);
    if (placement) sofar.push({ spec: job.spec, placement });
  }
  return ahead;
}

describe('runCycle properties', () => {
  it('never over-commits a GPU: verifyPlan accepts every plan, and no GPU is held twice', () => {
    fc.assert(
      fc.property(clusterArb, pendingArb, (snapshot, pending) => {
        const { plan } = run(snapshot, pending);
        expect(verifyPlan(snapshot, plan, specsOf(pending))).toEqual([]);
        // Independently of verifyPlan: every GPU exists and is held at most once.
        const held = new Set(snapshot.allocations.map((a) => `${a.node}/${a.gpuIndex}`));
        for (const p of plan.placements) {
          for (const n of p.nodes) {
            const node = snapshot.nodes.find((x) => x.name === n.node);
            expect(node?.state).toBe('ready');
            for (const gpu of n.gpuIndices) {
              expect(node?.gpus.some((g) => g.index === gpu)).toBe(true);
              expect(held.has(`${n.node}/${gpu}`)).toBe(false);
              held.add(`${n.node}/${gpu}`);
            }
          }
        }
      }),
      RUNS,
    );
  });

  it('places gangs all-or-nothing: numNodes distinct nodes, each with exactly gpus.count GPUs of one type', () => {
    fc.assert(
      fc.property(clusterArb, pendingArb, (snapshot, pending) => {
        const specs = specsOf(pending);
        for (const p of run(snapshot, pending).plan.placements) {
          const spec = specs.get(p.jobId) as JobSpec;
          expect(p.nodes).toHaveLength(spec.numNodes);
          expect(new Set(p.nodes.map((n) => n.node)).size).toBe(spec.numNodes);
          for (const n of p.nodes) {
            expect(new Set(n.gpuIndices).size).toBe(spec.resources.gpus.count);
            const gpus = snapshot.nodes.find((x) => x.name === n.node)?.gpus.filter((g) => n.gpuIndices.includes(g.index)) ?? [];
            expect(new Set(gpus.map((g) => g.type)).size).toBeLessThanOrEqual(1);
          }
        }
      }),
      RUNS,
    );
  });

  it('gives every pending job exactly one outcome: placed once, or a diagnosis', () => {
    fc.assert(
      fc.property(clusterArb, pendingArb, (snapshot, pending) => {
        const { plan, diagnoses } = run(snapshot, pending);
        const placed = plan.placements.map((p) => p.jobId);
        expect(new Set(placed).size).toBe(placed.length);
        for (const job of pending) expect(placed.includes(job.id)).not.toBe(diagnoses.has(job.id));
        expect(placed.length + diagnoses.size).toBe(pending.length);
        const plugins = new Set<string>(Object.values(PLUGIN));
        for (const d of diagnoses.values()) {
          expect(plugins.has(d.plugin)).toBe(true);
          expect(d.message.length).toBeGreaterThan(0);
        }
      }),
      RUNS,
    );
  });

  /*
   * Greedy in queue order may place a lower-priority job where a higher one did not fit (a small job behind a big
   * one). What must never happen is the reverse: a job left waiting although it would have fitted the capacity that
   * was left when its turn came, i.e. the snapshot minus the placements of the jobs ahead of it in queue order.
   * Equivalently: no job behind it took anything it needed, because the jobs behind it only get what is left after.
   */
  it('leaves a job waiting only when it did not fit what the jobs ahead of it left (checked by brute force)', () => {
    fc.assert(
      fc.property(clusterArb, pendingArb, (snapshot, pending) => {
        const { plan, diagnoses } = run(snapshot, pending);
        const ahead = placementsAhead(pending, plan.placements);
        for (const job of pending) {
          const fits = fitsBruteForce(snapshot, job.spec, ahead.get(job.id) ?? []);
          expect(fits, `job ${job.id}: ${diagnoses.get(job.id)?.message ?? 'placed'}`).toBe(!diagnoses.has(job.id));
        }
        // And the plan lists placements in queue order.
        const order = queueOrder(pending).map((j) => j.id);
        const placed = plan.placements.map((p) => p.jobId);
        expect(placed).toEqual(order.filter((id) => placed.includes(id)));
      }),
      RUNS,
    );
  });

  it('diagnosis codes agree with brute force: NeverFits iff infeasible; QueuedBehindHigherPriority iff it fitted at the start', () => {
    fc.assert(
      fc.property(clusterArb, pendingArb, (snapshot, pending) => {
        const { diagnoses } = run(snapshot, pending);
        for (const job of pending) {
          const d = diagnoses.get(job.id);
          if (!d) continue;
          const feasible = checkFeasibility(snapshot.nodes, job.spec).ok;
          expect(d.code === 'NeverFits', d.message).toBe(!feasible);
          if (feasible) expect(d.code === 'QueuedBehindHigherPriority', d.message).toBe(fitsBruteForce(snapshot, job.spec, []));
        }
      }),
      RUNS,
    );
  });

  it('is deterministic: same input → same result, whatever the order of pending jobs, nodes and allocations', () => {
    fc.assert(
      fc.property(clusterArb, pendingArb, fc.integer(), (snapshot, pending, shuffleSeed) => {
        const first = run(snapshot, pending, 7);
        expect(run(snapshot, pending, 7)).toEqual(first);
        const reordered = { ...snapshot, nodes: shuffled(snapshot.nodes, shuffleSeed), allocations: shuffled(snapshot.allocations, shuffleSeed + 1) };
        expect(run(reordered, shuffled(pending, shuffleSeed + 2), 7)).toEqual(first);
      }),
      RUNS,
    );
  });

  it('never mutates its input', () => {
    fc.assert(
      fc.property(clusterArb, pendingArb, (snapshot, pending) => {
        const before = structuredClone({ snapshot, pending });
        run(snapshot, pending);
        expect({ snapshot, pending }).toEqual(before);
      }),
      { numRuns: 100 },
    );
  });
});

describe('checkFeasibility properties', () => {
  it('says ok exactly when the job alone would be placed on the emptied cluster', () => {
    fc.assert(
      fc.property(clusterArb, pendingArb, (snapshot, pending) => {
        const empty = emptied(snapshot.nodes);
        for (const job of pending) {
          const result = checkFeasibility(snapshot.nodes, job.spec);
          const placed = run(empty, [job]).plan.placements.length === 1;
          expect(result.ok, result.ok ? 'ok' : result.message).toBe(placed);
        }
      }),
      RUNS,
    );
  });
});

describe('verifyPlan catches broken plans', () => {
  const planned = fc
    .tuple(clusterArb, pendingArb)
    .map(([snapshot, pending]) => ({ snapshot, pending, plan: run(snapshot, pending).plan }));

  it('a gang missing a node', () => {
    fc.assert(
      fc.property(planned, ({ snapshot, pending, plan }) => {
        const victim = plan.placements.find((p) => p.nodes.length > 1);
        fc.pre(victim !== undefined);
        const broken = { ...plan, placements: plan.placements.map((p) => (p === victim ? { ...p, nodes: p.nodes.slice(1) } : p)) };
        expect(verifyPlan(snapshot, broken, specsOf(pending)).map((v) => v.code)).toContain('GangSizeMismatch');
      }),
      { numRuns: 100 },
    );
  });

  it('a node-rank missing a GPU', () => {
    fc.assert(
      fc.property(planned, ({ snapshot, pending, plan }) => {
        const victim = plan.placements.find((p) => (p.nodes[0]?.gpuIndices.length ?? 0) > 0);
        fc.pre(victim !== undefined);
        const broken = { ...plan, placements: plan.placements.map((p) => (p === victim ? { ...p, nodes: p.nodes.map((n, i) => (i === 0 ? { ...n, gpuIndices: n.gpuIndices.slice(1) } : n)) } : p)) };
        expect(verifyPlan(snapshot, broken, specsOf(pending)).map((v) => v.code)).toContain('GpuCountMismatch');
      }),
      { numRuns: 100 },
    );
  });

  it('a GPU given twice in the plan, or one the snapshot allocates', () => {
    fc.assert(
      fc.property(planned, ({ snapshot, pending, plan }) => {
        const victim = plan.placements.find((p) => (p.nodes[0]?.gpuIndices.length ?? 0) > 0);
        fc.pre(victim !== undefined);
        const specs = specsOf(pending);
        specs.set('copy', specs.get(victim.jobId) as JobSpec);
        const doubled = { ...plan, placements: [...plan.placements, { ...victim, jobId: 'copy' }] };
        expect(verifyPlan(snapshot, doubled, specs).map((v) => v.code)).toContain('GpuDoubleBooked');
        // Once the plan is applied, the same placement again collides with the allocations.
        const applied = { ...snapshot, allocations: [...snapshot.allocations, ...plan.placements.flatMap((p) => p.nodes.flatMap((n) => n.gpuIndices.map((gpuIndex) => ({ jobId: p.jobId, node: n.node, gpuIndex }))))] };
        expect(verifyPlan(applied, { ...plan, placements: [victim] }, specs).map((v) => v.code)).toContain('GpuAlreadyAllocated');
      }),
      { numRuns: 100 },
    );
  });

  it('a GPU of a type the job does not accept', () => {
    fc.assert(
      fc.property(planned, ({ snapshot, pending, plan }) => {
        const victim = plan.placements.find((p) => (p.nodes[0]?.gpuIndices.length ?? 0) > 0);
        fc.pre(victim !== undefined);
        const node = snapshot.nodes.find((n) => n.name === victim.nodes[0]?.node);
        const used = snapshot.nodes.find((n) => n.name === victim.nodes[0]?.node)?.gpus.find((g) => g.index === victim.nodes[0]?.gpuIndices[0]);
        fc.pre(node !== undefined && used !== undefined);
        const specs = specsOf(pending);
        const spec = structuredClone(specs.get(victim.jobId) as JobSpec);
        spec.resources.gpus.types = ['NOT-' + (used as { type: string }).type];
        specs.set(victim.jobId, spec);
        expect(verifyPlan(snapshot, plan, specs).map((v) => v.code)).toContain('GpuTypeMismatch');
      }),
      { numRuns: 100 },
    );
  });
});
