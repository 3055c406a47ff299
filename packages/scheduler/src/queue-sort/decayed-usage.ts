/**
 * Decayed team usage and the fair-share share: the one definition, used by the `fair-share` queue sort and
 * `order-preemption`, by the server (its usage tracker, `/v1/teams`, `tutti queues`) and by the simulator.
 *
 *   usage after dt = usage · 2^(−dt/h) + gpus · (h / ln 2) · (1 − 2^(−dt/h))     GPU-seconds, dt and h in seconds
 *   share          = (GPUs running + usage / h) / weight                           h in seconds
 *
 * The first line is the exact integral of 0.5^(age / h) over an interval of constant use: what a team used an hour
 * ago weighs less than what it uses now, and how often the usage is advanced does not change it (advancing twice by
 * dt/2 gives what advancing once by dt gives). `h` is the fair-share plugin's `halfLifeMs`, the one half-life (see
 * `resolveSchedulerSettings`).
 *
 * Pure: no clock, no I/O; the caller keeps the usage and says how much time passed.
 */
import type { TeamConfig, TeamUsage } from '@tutti/model';

/**
 * Usage (GPU-seconds) after `elapsedS` seconds in which the team held `gpus` GPUs throughout, decayed with a
 * half-life of `halfLifeS` seconds. `elapsedS` ≤ 0 returns `gpuSeconds` unchanged.
 */
export function accumulateDecayedUsage(gpuSeconds: number, elapsedS: number, gpus: number, halfLifeS: number): number {
  if (!(elapsedS > 0)) return gpuSeconds;
  const decay = decayOver(elapsedS, halfLifeS);
  return gpus === 0 ? gpuSeconds * decay : gpuSeconds * decay + gpus * gainOver(decay, halfLifeS);
}

/**
 * One interval of `accumulateDecayedUsage` (`elapsedS` > 0), its factors computed once for every team it is applied
 * to: the simulator advances a ledger of every team at each event time of a trace.
 */
export class DecayedUsageStep {
  readonly decay: number;
  readonly gain: number;

  constructor(elapsedS: number, halfLifeS: number) {
    this.decay = decayOver(elapsedS, halfLifeS);
    this.gain = gainOver(this.decay, halfLifeS);
  }

  /** Usage (GPU-seconds) at the end of the interval, of a team that had `gpuSeconds` and held `gpus` throughout. */
  apply(gpuSeconds: number, gpus: number): number {
    return gpus === 0 ? gpuSeconds * this.decay : gpuSeconds * this.decay + gpus * this.gain;
  }
}

// Written as the simulator wrote them before they were shared: its documented results rest on these operations.
function decayOver(elapsedS: number, halfLifeS: number): number {
  return Math.pow(2, -elapsedS / halfLifeS);
}

function gainOver(decay: number, halfLifeS: number): number {
  return (halfLifeS / Math.LN2) * (1 - decay);
}

/** A team's share: (GPUs it runs now + decayed GPU-seconds / half-life in s) / weight. Lower goes first. */
export function computeShare(gpusRunning: number, decayedGpuSeconds: number, halfLifeS: number, weight: number): number {
  return (gpusRunning + decayedGpuSeconds / halfLifeS) / weight;
}

/** A team's weight for fair share: its configured weight; one ≤ 0, or a team not configured, counts as 1. */
export function computeTeamWeights(teams: readonly TeamConfig[]): (team: string) => number {
  const weights = new Map(teams.map((t) => [t.name, t.weight > 0 ? t.weight : 1]));
  return (team) => weights.get(team) ?? 1;
}

/** Each team's usage decayed to `now` (no use added since each record's `asOf`), GPU-seconds, summed by team. */
export function decayUsageTo(usage: readonly TeamUsage[], now: number, halfLifeMs: number): Map<string, number> {
  const decayed = new Map<string, number>();
  for (const u of usage) decayed.set(u.team, (decayed.get(u.team) ?? 0) + accumulateDecayedUsage(u.decayedGpuSeconds, (now - u.asOf) / 1000, 0, halfLifeMs / 1000));
  return decayed;
}
