/**
 * Recent GPU use per team, for fair share: GPU-seconds with exponential decay, so what a team used an hour ago
 * weighs less than what it uses now (half-life from the scheduler settings). Kept in memory by the controller and
 * advanced once per cycle from the running jobs; a restart starts from zero, which only makes fair share forget
 * the past a little early.
 */
import type { Job, TeamUsage } from '@tutti/model';

export class TeamUsageTracker {
  private readonly decayed = new Map<string, number>();
  private lastAt: number | undefined;

  constructor(private readonly halfLifeMs: number) {}

  /** Adds what `running` used since the last call (each job counted for the whole interval) and decays the rest. */
  advance(now: number, running: readonly Job[]): TeamUsage[] {
    const elapsedMs = this.lastAt === undefined ? 0 : Math.max(0, now - this.lastAt);
    this.lastAt = now;
    if (elapsedMs > 0) {
      const keep = Math.pow(0.5, elapsedMs / this.halfLifeMs);
      for (const [team, value] of this.decayed) this.decayed.set(team, value * keep);
      for (const job of running) {
        const gpus = job.spec.resources.gpus;
        const used = (gpus.fraction ?? gpus.count) * job.spec.numNodes * (elapsedMs / 1000);
        this.decayed.set(job.spec.team, (this.decayed.get(job.spec.team) ?? 0) + used);
      }
    }
    return [...this.decayed].map(([team, decayedGpuSeconds]) => ({ team, decayedGpuSeconds, asOf: now }));
  }
}
