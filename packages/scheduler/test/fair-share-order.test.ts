/**
 * The fair-share order against a plain reading of its definition (fair-share.ts): teams take turns by share, lowest
 * first, ties by team name; each turn adds the job's GPUs over the team's weight to the team's share; within a team,
 * effective priority (priority + ageing), then submission order. The scheduler computes it with in-place team sorts,
 * a tournament tree and a cache kept across calls; this reference uses none of them.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Job, TeamConfig, TeamUsage } from '@tutti/model';
import { computeGpusHeld } from '@tutti/model';
import { compareQueueOrder, computeEffectivePriority, computeFairShareOrder, getProfile, compileProfile } from '../src/index.ts';
import { makeJob } from './builders.ts';

const HOUR = 3_600_000;
const found = getProfile('tutti');
if (!found.ok) throw new Error(found.error);
const args = compileProfile(found.profile).fairShare;
if (!args) throw new Error('the tutti profile has no fair-share sort');
const fairShareArgs = args;

function referenceOrder(pending: readonly Job[], teams: readonly TeamConfig[], usage: readonly TeamUsage[], runningGpus: ReadonlyMap<string, number>, now: number): string[] {
  const byTeam = new Map<string, Job[]>();
  for (const job of pending) {
    const list = byTeam.get(job.spec.team) ?? [];
    list.push(job);
    byTeam.set(job.spec.team, list);
  }
  const key = (job: Job): number => computeEffectivePriority(job, now, fairShareArgs.agingPerHour);
  const weightOf = (team: string): number => {
    const weight = teams.find((t) => t.name === team)?.weight ?? 1;
    return weight > 0 ? weight : 1;
  };
  const turns = [...byTeam].map(([team, jobs]) => {
    let decayed = 0;
    for (const u of usage) if (u.team === team) decayed += u.decayedGpuSeconds * Math.pow(2, -Math.max(0, now - u.asOf) / fairShareArgs.halfLifeMs);
    const share = ((runningGpus.get(team) ?? 0) + decayed / (fairShareArgs.halfLifeMs / 1000)) / weightOf(team);
    return { team, share, jobs: [...jobs].sort((a, b) => (key(a) > key(b) ? -1 : key(a) < key(b) ? 1 : compareQueueOrder(a, b))), next: 0 };
  });
  const order: string[] = [];
  for (;;) {
    const open = turns.filter((t) => t.next < t.jobs.length);
    if (open.length === 0) return order;
    const first = open.reduce((best, t) => (t.share < best.share || (t.share === best.share && t.team < best.team) ? t : best));
    const job = first.jobs[first.next++] as Job;
    order.push(job.id);
    first.share += computeGpusHeld(job.spec) / weightOf(first.team);
  }
}

const teamNames = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q'];

describe('fair-share order', () => {
  it('equals the plain definition on random queues (many teams, equal shares, ageing, weights, usage)', () => {
    const jobArb = fc.record({
      team: fc.constantFrom(...teamNames),
      priority: fc.constantFrom(10, 50, 90),
      gpus: fc.constantFrom(1, 2, 4, 8),
      nodes: fc.constantFrom(1, 1, 2),
      createdHoursAgo: fc.integer({ min: 0, max: 60 }),
    });
    fc.assert(
      fc.property(
        fc.array(jobArb, { maxLength: 120 }),
        fc.array(fc.record({ team: fc.constantFrom(...teamNames), weight: fc.constantFrom(0, 1, 2, 3) }), { maxLength: 8 }),
        fc.array(fc.record({ team: fc.constantFrom(...teamNames), gpuHours: fc.constantFrom(0, 1, 8, 100) }), { maxLength: 6 }),
        fc.array(fc.record({ team: fc.constantFrom(...teamNames), gpus: fc.constantFrom(0, 4, 8, 16) }), { maxLength: 6 }),
        (specs, weights, used, runningList) => {
          const now = 100 * HOUR;
          // Ids in arrival order, but not every id in numeric order of creation: submission order is not arrival order.
          const pending = specs.map((s, i) => makeJob(i % 7 === 3 ? `x${i}` : 1000 - i).team(s.team).priority(s.priority).gpus(s.gpus).nodes(s.nodes).createdAt(now - s.createdHoursAgo * HOUR).build());
          const teams: TeamConfig[] = [];
          for (const w of weights) if (!teams.some((t) => t.name === w.team)) teams.push({ name: w.team, weight: w.weight, nominal: {} });
          const usage: TeamUsage[] = used.map((u) => ({ team: u.team, decayedGpuSeconds: u.gpuHours * 3600, asOf: now - HOUR }));
          const runningGpus = new Map<string, number>();
          for (const r of runningList) runningGpus.set(r.team, (runningGpus.get(r.team) ?? 0) + r.gpus);
          const order = computeFairShareOrder(pending, { teams, usage, runningGpus, now, args: fairShareArgs }).map((j) => j.id);
          expect(order).toEqual(referenceOrder(pending, teams, usage, runningGpus, now));
        },
      ),
      { numRuns: 150 },
    );
  });
});
