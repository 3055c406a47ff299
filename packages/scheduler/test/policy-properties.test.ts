/** Property tests of every built-in profile over random clusters, running jobs, teams and queues. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ClusterSnapshot, Job, JobSpec, TeamConfig } from '@tutti/model';
import { BUILTIN_PROFILES, runCycle, TUTTI_PROFILE, verifyPlan } from '../src/index.ts';
import { clusterArb, pendingArb } from './arbitraries.ts';

const RUNS = { numRuns: 150 };
const TEAMS = ['red', 'blue', 'green'] as const;

/** Running jobs for the snapshot's allocations (one job per `r<i>` id), with random team, priority, start and duration. */
const worldArb = fc
  .tuple(clusterArb, pendingArb, fc.array(fc.record({ team: fc.constantFrom(...TEAMS), priority: fc.constantFrom(10, 50, 90), startedAt: fc.integer({ min: 0, max: 900 }), maxDurationMs: fc.option(fc.integer({ min: 100, max: 10_000 }), { nil: undefined }) }), { minLength: 8, maxLength: 8 }), fc.array(fc.constantFrom(...TEAMS), { minLength: 16, maxLength: 16 }), fc.array(fc.integer({ min: 0, max: 12 }), { minLength: 3, maxLength: 3 }))
  .map(([snapshot, pending, runMeta, pendingTeams, nominals]) => {
    const ids = [...new Set(snapshot.allocations.map((a) => a.jobId))];
    const running: Job[] = ids.map((id, i) => {
      const m = runMeta[i % runMeta.length] as (typeof runMeta)[number];
      const gpus = snapshot.allocations.filter((a) => a.jobId === id).length;
      const spec: JobSpec = { name: `run-${i}`, team: m.team, priority: m.priority, numNodes: 1, env: {}, resources: { gpus: { count: gpus, types: [] } }, run: { kind: 'shell', command: 'true' }, ...(m.maxDurationMs !== undefined ? { maxDurationMs: m.maxDurationMs } : {}) };
      return { id, spec, status: 'running', createdAt: 0, startedAt: m.startedAt };
    });
    const withTeams = pending.map((j, i) => ({ ...j, spec: { ...j.spec, team: pendingTeams[i % pendingTeams.length] as string } }));
    const teams: TeamConfig[] = TEAMS.map((name, i) => ({ name, weight: 1 + i, nominal: { '*': nominals[i] ?? 0 } }));
    return { snapshot, pending: withTeams, running, teams };
  });

const specsOf = (...jobs: (readonly Job[])[]) => new Map<string, JobSpec>(jobs.flat().map((j) => [j.id, j.spec]));
const cycleOf = (w: { snapshot: ClusterSnapshot; pending: Job[]; running: Job[]; teams: TeamConfig[] }, profile = TUTTI_PROFILE, seed = 0) =>
  runCycle({ snapshot: w.snapshot, pending: w.pending, running: w.running, teams: w.teams, now: 1_000, seed }, profile);

describe.each([...BUILTIN_PROFILES.values()])('profile $name', (profile) => {
  it('verifyPlan accepts every plan (no GPU double-booked, gangs whole, quotas, victims), and every job has one outcome', () => {
    fc.assert(
      fc.property(worldArb, (w) => {
        const { plan, diagnoses } = cycleOf(w, profile);
        expect(verifyPlan(w.snapshot, plan, specsOf(w.pending, w.running), { running: w.running, teams: w.teams })).toEqual([]);
        for (const job of w.pending) expect(plan.placements.some((p) => p.jobId === job.id)).not.toBe(diagnoses.has(job.id));
        for (const d of diagnoses.values()) expect(d.position?.index).toBeGreaterThanOrEqual(1);
      }),
      RUNS,
    );
  });

  it('same input and seed → same plan', () => {
    fc.assert(
      fc.property(worldArb, (w) => {
        const a = cycleOf(w, profile, 7);
        const b = cycleOf({ ...w, pending: [...w.pending].reverse(), running: [...w.running].reverse() }, profile, 7);
        expect(b.plan).toEqual(a.plan);
        expect([...b.diagnoses].sort()).toEqual([...a.diagnoses].sort());
      }),
      RUNS,
    );
  });
});

describe('tutti profile', () => {
  it('preempts whole running jobs only, never a higher-priority one for priority, and only for a job that then fits', () => {
    fc.assert(
      fc.property(worldArb, (w) => {
        const { plan } = cycleOf(w);
        const running = new Map(w.running.map((j) => [j.id, j]));
        const pending = new Map(w.pending.map((j) => [j.id, j]));
        for (const p of plan.preemptions) {
          const victim = running.get(p.jobId);
          const forJob = pending.get(p.forJobId);
          expect(victim).toBeDefined();
          expect(forJob).toBeDefined();
          if (p.reason === 'priority') expect(victim?.spec.priority).toBeLessThan(forJob?.spec.priority ?? 0);
          expect(plan.reservations.some((r) => r.jobId === p.forJobId)).toBe(true);
        }
      }),
      RUNS,
    );
  });

  it('guaranteed quota is reachable by reclaim: a job within its nominal that fits the cluster minus borrowed work is placed or makes room', () => {
    fc.assert(
      fc.property(worldArb, (w) => {
        // One pending 1-GPU job of a team with a nominal and no running work: it must start or get victims.
        const team: TeamConfig = { name: 'owner', weight: 1, nominal: { '*': 1_000 } };
        const job: Job = { id: '9999', status: 'pending', createdAt: 0, spec: { name: 'own', team: 'owner', priority: 0, numNodes: 1, env: {}, resources: { gpus: { count: 1, types: [] } }, run: { kind: 'shell', command: 'true' } } };
        const ready = w.snapshot.nodes.filter((n) => n.state === 'ready' && n.gpus.length > 0);
        const teams = w.teams.map((t) => ({ ...t, nominal: { '*': 0 } }));
        const everyoneBorrows = w.running.every((r) => w.snapshot.allocations.some((a) => a.jobId === r.id));
        fc.pre(ready.length > 0 && everyoneBorrows);
        const result = runCycle({ snapshot: w.snapshot, pending: [job], running: w.running, teams: [...teams, team], now: 1_000, seed: 0 }, TUTTI_PROFILE);
        const placed = result.plan.placements.some((p) => p.jobId === job.id);
        const reclaimed = result.plan.preemptions.some((p) => p.forJobId === job.id);
        expect(placed || reclaimed, result.diagnoses.get(job.id)?.message).toBe(true);
      }),
      RUNS,
    );
  });

  it('verifyPlan rejects corrupted plans: a GPU booked twice, a gang short of a node', () => {
    fc.assert(
      fc.property(worldArb, (w) => {
        const { plan } = cycleOf(w);
        const specs = specsOf(w.pending, w.running);
        const first = plan.placements.find((p) => p.nodes[0] && (p.nodes[0].gpuIndices.length > 0) && p.nodes[0].gpuFraction === undefined);
        fc.pre(first !== undefined);
        const doubled = { ...plan, placements: [...plan.placements, { jobId: w.running[0]?.id ?? 'x', nodes: first?.nodes ?? [] }] };
        expect(verifyPlan(w.snapshot, doubled, specs).length).toBeGreaterThan(0);
        const short = { ...plan, placements: plan.placements.map((p) => (p === first ? { ...p, nodes: [] } : p)) };
        expect(verifyPlan(w.snapshot, short, specs).map((v) => v.code)).toContain('GangSizeMismatch');
      }),
      RUNS,
    );
  });
});
