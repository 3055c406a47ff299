import { describe, expect, it } from 'vitest';
import type { Job } from '@tutti/model';
import { TeamUsageLedger, countGpusByTeam } from '../src/team-usage-ledger.ts';

const HOUR = 3600_000;

function runningJob(team: string, gpus: number, startedAt: number): Job {
  return {
    id: '1', status: 'running', createdAt: startedAt, startedAt,
    spec: { name: 'j', team, priority: 0, numNodes: 1, env: {}, resources: { gpus: { count: gpus, types: [] } }, run: { kind: 'shell', command: 'true' } },
  } as Job;
}

describe('TeamUsageLedger.seed', () => {
  it('weighs history exactly as advancing through it minute by minute does (one accumulator, the exact integral)', () => {
    const now = 100 * HOUR;
    const seeded = new TeamUsageLedger(2 * HOUR);
    seeded.seed(now, [{ team: 'red', gpus: 4, startedAt: now - 5 * HOUR, finishedAt: now - 2 * HOUR }], [runningJob('blue', 2, now - HOUR)]);
    const stepped = new TeamUsageLedger(2 * HOUR);
    stepped.advance((now - 5 * HOUR) / 1000, new Map());
    for (let t = now - 5 * HOUR + 60_000; t <= now; t += 60_000) {
      stepped.advance(t / 1000, countGpusByTeam([...(t <= now - 2 * HOUR ? [runningJob('red', 4, now - 5 * HOUR)] : []), ...(t > now - HOUR ? [runningJob('blue', 2, now - HOUR)] : [])]));
    }
    const usage = (tracker: TeamUsageLedger) => new Map(tracker.peek(now / 1000).map((u) => [u.team, u.decayedGpuSeconds]));
    const [a, b] = [usage(seeded), usage(stepped)];
    expect(a.get('red')! / b.get('red')!).toBeCloseTo(1, 9);
    expect(a.get('blue')! / b.get('blue')!).toBeCloseTo(1, 9);
    // 4 GPUs × 3 h, half-life 2 h, ended 2 h ago: 4 × (2 h / ln 2) × (0.5^1 − 0.5^2.5) in GPU-seconds.
    expect(a.get('red')).toBeCloseTo((4 * (2 * 3600) / Math.LN2) * (0.5 - Math.pow(0.5, 2.5)), 6);
  });

  it('ignores what did not run and replaces earlier tracking', () => {
    const tracker = new TeamUsageLedger(HOUR);
    tracker.advance(0, countGpusByTeam([runningJob('old', 1, 0)]));
    tracker.advance(HOUR / 1000, countGpusByTeam([runningJob('old', 1, 0)]));
    tracker.seed(2 * HOUR, [{ team: 'red', gpus: 1, startedAt: 10, finishedAt: 10 }], []);
    expect(tracker.peek((2 * HOUR) / 1000)).toEqual([]);
  });
});
