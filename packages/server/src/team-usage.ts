/**
 * Recent GPU use per team, for fair share: GPU-seconds with exponential decay, so what a team used an hour ago
 * weighs less than what it uses now (half-life: the profile's `fair-share.halfLifeMs`). Kept in memory by the
 * controller and advanced once per cycle from the running jobs; on start it is rebuilt from the store's attempts
 * (`seed`), so a restart of the control plane does not make fair share forget who used the GPUs. The arithmetic is
 * the scheduler's `accumulateDecayedUsage`, the one the simulator uses too; this class only keeps the per-team values.
 */
import type { Job, TeamUsage } from '@tutti/model';
import { computeGpusHeld } from '@tutti/model';
import { accumulateDecayedUsage } from '@tutti/scheduler';

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

  private readonly halfLifeS: number;

  constructor(readonly halfLifeMs: number) {
    this.halfLifeS = halfLifeMs / 1000;
  }

  /**
   * Starts from history: each past interval, and each running job since its start, weighed as `advance` weighs it
   * (accumulated over the interval, then decayed from its end to `now`). Replaces whatever was tracked.
   */
  seed(now: number, past: readonly PastGpuUse[], running: readonly Job[]): void {
    this.decayed.clear();
    const weigh = (gpus: number, from: number, to: number): number => {
      if (to <= from) return 0;
      const used = accumulateDecayedUsage(0, (to - from) / 1000, gpus, this.halfLifeS);
      return accumulateDecayedUsage(used, (now - to) / 1000, 0, this.halfLifeS);
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
    const elapsedS = this.lastAt === undefined ? 0 : (now - this.lastAt) / 1000;
    return [...this.decayed].map(([team, value]) => ({ team, decayedGpuSeconds: accumulateDecayedUsage(value, elapsedS, 0, this.halfLifeS), asOf: now }));
  }

  /** Adds what `running` used since the last call (each job held its GPUs for the whole interval) and decays the rest. */
  advance(now: number, running: readonly Job[]): TeamUsage[] {
    const elapsedS = this.lastAt === undefined ? 0 : (now - this.lastAt) / 1000;
    this.lastAt = now;
    if (elapsedS > 0) {
      const gpusByTeam = new Map<string, number>();
      for (const job of running) gpusByTeam.set(job.spec.team, (gpusByTeam.get(job.spec.team) ?? 0) + computeGpusHeld(job.spec));
      for (const team of new Set([...this.decayed.keys(), ...gpusByTeam.keys()])) {
        this.decayed.set(team, accumulateDecayedUsage(this.decayed.get(team) ?? 0, elapsedS, gpusByTeam.get(team) ?? 0, this.halfLifeS));
      }
    }
    return [...this.decayed].map(([team, decayedGpuSeconds]) => ({ team, decayedGpuSeconds, asOf: now }));
  }
}
