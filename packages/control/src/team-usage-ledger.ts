/**
 * Recent GPU use per team, for fair share: GPU-seconds with exponential decay, so what a team used an hour ago
 * weighs less than what it uses now (half-life: the profile's `fair-share.halfLifeMs`, the one half-life). The one
 * ledger of it: the server advances it once per cycle from its running jobs and rebuilds it on start from the store's
 * attempts (`seed`), so a restart of the control plane does not make fair share forget who used the GPUs; the
 * simulator advances it at every event time from the GPUs each team holds. The arithmetic is the scheduler's
 * `accumulateDecayedUsage`; the views read shares through the scheduler's `computeShare` from what `peek` answers.
 *
 * Time is in seconds (epoch seconds live, trace seconds in the simulator): the simulator's clock is seconds, and the
 * ledger must not turn them into milliseconds and back (its results are compared to the decimal across versions).
 */
import type { Job, TeamUsage } from '@tutti/model';
import { computeGpusHeld } from '@tutti/model';
import { DecayedUsageStep, accumulateDecayedUsage } from '@tutti/scheduler';

/** One interval during which a team held GPUs (epoch ms). */
export interface PastGpuUse {
  team: string;
  gpus: number;
  startedAt: number;
  finishedAt: number;
}

/** How far back `seed` looks: beyond ten half-lives a use weighs under 0.1%. */
export const SEED_HALF_LIVES = 10;

/** GPUs held per team by `running` (a fractional job holds its share). */
export function countGpusByTeam(running: readonly Job[]): Map<string, number> {
  const gpusByTeam = new Map<string, number>();
  for (const job of running) gpusByTeam.set(job.spec.team, (gpusByTeam.get(job.spec.team) ?? 0) + computeGpusHeld(job.spec));
  return gpusByTeam;
}

export class TeamUsageLedger {
  /**
   * Each team's decayed GPU-seconds, side by side with its name, in the order teams entered: a pass over every team
   * at each advance reads and writes numbers in place (a map of numbers boxed a new one per team and advance).
   */
  private readonly teams: string[] = [];
  private readonly gpuSeconds: number[] = [];
  private readonly positionOf = new Map<string, number>();
  private lastS: number | undefined;
  private readonly halfLifeS: number;

  constructor(readonly halfLifeMs: number) {
    this.halfLifeS = halfLifeMs / 1000;
  }

  /**
   * Starts from history (epoch ms): each past interval, and each running job since its start, weighed as `advance`
   * weighs it (accumulated over the interval, then decayed from its end to `nowMs`). Replaces whatever was tracked.
   */
  seed(nowMs: number, past: readonly PastGpuUse[], running: readonly Job[]): void {
    this.teams.length = 0;
    this.gpuSeconds.length = 0;
    this.positionOf.clear();
    const weigh = (gpus: number, from: number, to: number): number => {
      if (to <= from) return 0;
      const used = accumulateDecayedUsage(0, (to - from) / 1000, gpus, this.halfLifeS);
      return accumulateDecayedUsage(used, (nowMs - to) / 1000, 0, this.halfLifeS);
    };
    const add = (team: string, value: number): void => {
      if (!(value > 0)) return;
      const at = this.positionOf.get(team);
      if (at === undefined) this.enter(team, value);
      else this.gpuSeconds[at] = (this.gpuSeconds[at] as number) + value;
    };
    for (const use of past) add(use.team, weigh(use.gpus, use.startedAt, Math.min(use.finishedAt, nowMs)));
    for (const job of running) {
      if (job.startedAt === undefined) continue;
      add(job.spec.team, weigh(computeGpusHeld(job.spec), job.startedAt, nowMs));
    }
    this.lastS = nowMs / 1000;
  }

  /** The decayed use as of `nowS`, without recording anything (use since the last advance not counted). */
  peek(nowS: number): TeamUsage[] {
    const elapsedS = this.lastS === undefined ? 0 : nowS - this.lastS;
    return this.teams.map((team, at) => ({ team, decayedGpuSeconds: accumulateDecayedUsage(this.gpuSeconds[at] as number, elapsedS, 0, this.halfLifeS), asOf: nowS * 1000 }));
  }

  /**
   * Adds what each team held since the last call (`gpusByTeam`: held throughout the interval) and decays the rest.
   * A team enters the ledger once it has held GPUs.
   */
  advance(nowS: number, gpusByTeam: ReadonlyMap<string, number>): void {
    const elapsedS = this.lastS === undefined ? 0 : nowS - this.lastS;
    if (this.lastS !== undefined && elapsedS <= 0) return;
    this.lastS = nowS;
    if (elapsedS <= 0) return;
    // One step for every team: the decay factors are the same for all (the same operations as one
    // `accumulateDecayedUsage` per team, so the same bits).
    const step = new DecayedUsageStep(elapsedS, this.halfLifeS);
    const { teams, gpuSeconds } = this;
    for (let at = 0; at < teams.length; at++) gpuSeconds[at] = step.apply(gpuSeconds[at] as number, gpusByTeam.get(teams[at] as string) ?? 0);
    if (gpusByTeam.size === 0) return;
    gpusByTeam.forEach((gpus, team) => {
      if (gpus > 0 && !this.positionOf.has(team)) this.enter(team, step.apply(0, gpus));
    });
  }

  /** The ledger as the scheduler's `CycleInput.usage` reads it, as of the last advance (`asOfS`). */
  usage(asOfS: number): TeamUsage[] {
    const usage: TeamUsage[] = [];
    for (let at = 0; at < this.teams.length; at++) usage.push({ team: this.teams[at] as string, decayedGpuSeconds: this.gpuSeconds[at] as number, asOf: asOfS * 1000 });
    return usage;
  }

  private enter(team: string, gpuSeconds: number): void {
    this.positionOf.set(team, this.teams.length);
    this.teams.push(team);
    this.gpuSeconds.push(gpuSeconds);
  }
}
