/**
 * Recent GPU use per team, for fair share: GPU-seconds with exponential decay, so what a team used an hour ago
 * weighs less than what it uses now (half-life from the scheduler settings). Kept in memory by the controller and
 * advanced once per cycle from the running jobs; on start it is rebuilt from the store's attempts (`seed`), so a
 * restart of the control plane does not make fair share forget who used the GPUs.
 */
import type { Job, TeamUsage } from '@tutti/model';
import { computeGpusHeld } from '@tutti/model';

/** One interval during which a team held GPUs. */
export interface PastGpuUse {
  team: string;
  gpus: number;
  startedAt: number;
  finishedAt: number;
}

/** How far back `seed` looks: beyond ten half-lives a use weighs under 0.1%. */
export const SEED_HALF_LIVES = 10;

export class TeamUsageTracker {
  private readonly decayed = new Map<string, number>();
  private lastAt: number | undefined;

  constructor(private readonly halfLifeMs: number) {}

  /**
   * Starts from history: each past interval, and each running job since its start, weighed by the same decay as
   * `advance` (the integral of 0.5^(age / half-life) over the interval). Replaces whatever was tracked.
   */
  seed(now: number, past: readonly PastGpuUse[], running: readonly Job[]): void {
    this.decayed.clear();
    const weigh = (gpus: number, from: number, to: number): number => {
      if (to <= from) return 0;
      const decayAt = (t: number) => Math.pow(0.5, Math.max(0, now - t) / this.halfLifeMs);
      return (gpus * (this.halfLifeMs / Math.LN2) * (decayAt(to) - decayAt(from))) / 1000;
    };
    const add = (team: string, value: number) => value > 0 && this.decayed.set(team, (this.decayed.get(team) ?? 0) + value);
    for (const use of past) add(use.team, weigh(use.gpus, use.startedAt, Math.min(use.finishedAt, now)));
    for (const job of running) {
      if (job.startedAt === undefined) continue;
      add(job.spec.team, weigh(computeGpusHeld(job.spec), job.startedAt, now));
    }
    this.lastAt = now;
  }

  /** The decayed use as of `now`, without recording anything (jobs running since the last advance not counted). */
  peek(now: number): TeamUsage[] {
    const keep = this.lastAt === undefined ? 1 : Math.pow(0.5, Math.max(0, now - this.lastAt) / this.halfLifeMs);
    return [...this.decayed].map(([team, value]) => ({ team, decayedGpuSeconds: value * keep, asOf: now }));
  }

  /** Adds what `running` used since the last call (each job counted for the whole interval) and decays the rest. */
  advance(now: number, running: readonly Job[]): TeamUsage[] {
    const elapsedMs = this.lastAt === undefined ? 0 : Math.max(0, now - this.lastAt);
    this.lastAt = now;
    if (elapsedMs > 0) {
      const keep = Math.pow(0.5, elapsedMs / this.halfLifeMs);
      for (const [team, value] of this.decayed) this.decayed.set(team, value * keep);
      for (const job of running) {
        const used = computeGpusHeld(job.spec) * (elapsedMs / 1000);
        this.decayed.set(job.spec.team, (this.decayed.get(job.spec.team) ?? 0) + used);
      }
    }
    return [...this.decayed].map(([team, decayedGpuSeconds]) => ({ team, decayedGpuSeconds, asOf: now }));
  }
}
