/**
 * The preemption step of a cycle (Kubernetes' PostFilter): for a job that does not fit, either wait for the victims
 * already being stopped for it, or look for running jobs to stop under the profile's preemption plugins merged (their
 * victim rules together; the limits of `preemption` when it is listed, else of `order-preemption`). A job refused by
 * its team's quota may also take the place of its own team's jobs (team-preemption.ts). It runs with no preemption
 * plugin too: victims of earlier cycles are still being stopped for their jobs.
 *
 * Per-cycle data, kept under `PLUGIN.preemption`: the victims chosen, the victim pool, the searches that found
 * nothing, the counters that bound the cost.
 */
import { formatDuration, type Diagnosis, type Job } from '@tutti/model';
import { ExtraFreeView } from '../cycle/plan-overlay.ts';
import { restrictShapeTypes, type ResourceShape } from '../cycle/resource-shape.ts';
import { formatAnd, formatSome } from '../cycle/format.ts';
import type { AdmissionCycle, PreemptionPlugin, VictimRules } from '../framework/extension-points.ts';
import type { CycleDataKey, CycleState } from '../framework/cycle-state.ts';
import { PLUGIN } from '../framework/plugin-names.ts';
import { QUOTA_DATA } from '../admission/quota-admission.ts';
import type { QueueRank } from './order-preemption.ts';
import { computePreemption, VictimPool, type PreemptionChoice } from './preemption.ts';
import { computeTeamPreemption } from './team-preemption.ts';

/** Where the preemption step keeps its per-cycle data. */
export const PREEMPTION_DATA: CycleDataKey<PreemptionStep> = { name: PLUGIN.preemption };

/** The listed plugins' rules together, and the limits a cycle uses (`preemption`'s when both are listed). */
export interface PreemptionPolicy {
  readonly victims: VictimRules;
  /** Undefined: no preemption plugin listed, no search. */
  readonly maxPreemptorsPerCycle: number | undefined;
  readonly maxGraceMs: number | undefined;
  readonly ranked: PreemptionPlugin | undefined;
}

export function mergePreemptionPlugins(plugins: readonly PreemptionPlugin[]): PreemptionPolicy {
  const primary = plugins.find((p) => p.name === PLUGIN.preemption) ?? plugins[0];
  return {
    victims: { priority: plugins.some((p) => p.victims.priority), reclaim: plugins.some((p) => p.victims.reclaim), queueOrder: plugins.some((p) => p.victims.queueOrder) },
    maxPreemptorsPerCycle: primary?.maxPreemptorsPerCycle,
    maxGraceMs: primary?.maxGraceMs,
    ranked: plugins.find((p) => p.createRank !== undefined),
  };
}

export class PreemptionStep {
  /** The queue order's rank (`order-preemption`): a job's outcome then depends on more than its kind. */
  readonly rank: QueueRank | undefined;
  /** Chosen this cycle. */
  readonly victims = new Set<string>();
  /** Waiting jobs room was made for this cycle. */
  private preemptors = 0;
  /** Preemption searches cost a placement each: at most 4 × maxPreemptorsPerCycle per cycle, found or not. */
  private searches = 0;
  /** The same bound for searches inside a team at its quota, kept apart so that they never use up the others'. */
  private teamSearches = 0;
  /** Shape, team and priority whose search found nothing: victims only get fewer during a cycle. */
  private readonly noVictims = new Set<string>();
  /** Made when the first search needs it: most cycles of a quiet cluster have none. */
  private victimPool: VictimPool | undefined;
  /** Per team, the lowest priority among its running jobs (made when first asked). */
  private lowestPriorities: Map<string, number> | undefined;
  /** Chosen this cycle or being stopped already: never a victim (again). */
  private readonly notVictims: { has(id: string): boolean };

  constructor(
    private readonly state: CycleState,
    private readonly policy: PreemptionPolicy,
    private readonly admissions: readonly AdmissionCycle[],
  ) {
    this.rank = policy.ranked?.createRank?.(state.input);
    const { victims } = this;
    const stopping = state.stopping.ids;
    this.notVictims = stopping.size === 0 ? victims : { has: (id: string): boolean => victims.has(id) || stopping.has(id) };
    state.write(PREEMPTION_DATA, this);
  }

  /** Grows with every preemption decided (the outcome memo compares it). */
  get version(): number {
    return this.preemptors + this.victims.size;
  }

  /**
   * A feasible job did not fit: a reservation on the GPUs of the victims being stopped for it, or victims to stop
   * now and a reservation from the end of their grace (`WaitingForReclaim`); undefined when neither.
   */
  decideUnplaced(job: Job, shape: ResourceShape, amount: number, memoKey: string): Diagnosis | undefined {
    const { state, policy } = this;
    const { now, stopping, running } = state;
    let decided: Diagnosis | undefined;
    // Victims already being stopped for it: it waits for their GPUs and preempts nothing more.
    const waitingOn = stopping.forJob.size > 0 ? stopping.forJob.get(job.id) : undefined;
    if (waitingOn && shape.gpuCount > 0) {
      const nodes = state.place(shape, new ExtraFreeView(state.overlay, waitingOn.gpus));
      if (nodes) {
        const startAt = Math.max(now, waitingOn.goneBy);
        for (const a of this.admissions) a.charge(job, nodes);
        state.reserve(job.id, startAt, nodes);
        state.estimatedStart.set(job.id, startAt);
        state.estimateBasis.set(job.id, `when the jobs being stopped for it have exited (within their grace, ${formatDuration(startAt - now)} from now)`);
        const one = waitingOn.victims.length === 1;
        decided = {
          plugin: PLUGIN.preemption,
          code: 'WaitingForReclaim',
          message: `${one ? 'job' : 'jobs'} ${formatSome(waitingOn.victims)} ${one ? 'is' : 'are'} being stopped to make room; starts when ${one ? 'it has' : 'they have'} exited (within ${formatDuration(startAt - now)})`,
        };
      }
    }
    const max = policy.maxPreemptorsPerCycle;
    const mayPreempt = !waitingOn && max !== undefined && this.preemptors < max && shape.fractionParts === undefined && shape.gpuCount > 0 && running.length > 0 && this.searches < 4 * max;
    if (!mayPreempt) return decided;
    const { rank } = this;
    // Keyed only when a search may run: most jobs of a long queue come after the searches are spent.
    const preemptorRank = rank?.of(job);
    const preemptKey = `${memoKey}|${job.spec.team}|${job.spec.priority}${preemptorRank === undefined ? '' : `|${preemptorRank}`}`;
    if (this.noVictims.has(preemptKey)) return decided;
    this.searches++;
    const quota = state.read(QUOTA_DATA);
    const choice = computePreemption(job, shape, amount, {
      ...this.searchContext(),
      ledger: quota?.ledger,
      allowReclaim: policy.victims.reclaim,
      ...(rank && preemptorRank !== undefined ? { order: { rank, preemptorRank } } : {}),
      ...(state.shortcuts.victimPool ? { pool: (this.victimPool ??= new VictimPool(running)) } : {}),
    });
    if (!choice) {
      this.noVictims.add(preemptKey);
      return decided;
    }
    return this.apply(job, choice, preemptorRank, false);
  }

  /**
   * A job its team's quota refuses: victims of its own team that rank below it, so that the quota admits it and it
   * fits (`WaitingForReclaim`); undefined when there are none or the limits are spent.
   */
  decideInTeam(job: Job, shape: ResourceShape, amount: number): Diagnosis | undefined {
    if (!this.mayPreemptInTeam(job, shape)) return undefined;
    const { rank, state } = this;
    const ledger = state.read(QUOTA_DATA)?.ledger;
    const preemptorRank = rank?.of(job);
    const key = `${shape.key}|${job.spec.team}|${job.spec.priority}${preemptorRank === undefined ? '' : `|${preemptorRank}`}|quota`;
    if (!ledger || this.noVictims.has(key)) return undefined;
    this.teamSearches++;
    const choice = computeTeamPreemption(job, shape, amount, {
      ...this.searchContext(),
      ledger,
      ...(rank && preemptorRank !== undefined ? { order: { rank, preemptorRank } } : {}),
      restrict: (s, types) => restrictShapeTypes(s, types, state.restrictedShapes),
    });
    if (!choice) {
      this.noVictims.add(key);
      return undefined;
    }
    return this.apply(job, choice, preemptorRank, true);
  }

  /** What every search reads. */
  private searchContext() {
    const { state } = this;
    return { index: state.index, overlay: state.overlay, running: state.running, taken: this.notVictims, borrowLedger: state.read(QUOTA_DATA)?.runningLedger, allowPriority: this.policy.victims.priority, place: state.place };
  }

  /** Whether a job its team's quota refuses may look for victims in its own team (the limits of `decideUnplaced`). */
  private mayPreemptInTeam(job: Job, shape: ResourceShape): boolean {
    const max = this.policy.maxPreemptorsPerCycle;
    return (
      max !== undefined &&
      this.preemptors < max &&
      this.teamSearches < 4 * max &&
      shape.fractionParts === undefined &&
      shape.gpuCount > 0 &&
      this.state.running.length > 0 &&
      !this.state.stopping.forJob.has(job.id) &&
      // Without a queue order only lower priority makes a victim: most teams at their quota have none running.
      (this.rank !== undefined || (this.policy.victims.priority && this.lowestRunningPriority(job.spec.team) < job.spec.priority))
    );
  }

  private lowestRunningPriority(team: string): number {
    if (!this.lowestPriorities) {
      const lowest = (this.lowestPriorities = new Map());
      for (const r of this.state.running) {
        if (!r.job) continue;
        const { team: t, priority } = r.job.spec;
        if (priority < (lowest.get(t) ?? Infinity)) lowest.set(t, priority);
      }
    }
    return this.lowestPriorities.get(team) ?? Infinity;
  }

  /**
   * Carries out a preemption choice for `job`: the victims leave the quota ledgers, the job is charged and holds its
   * placement from the end of the victims' grace. Returns the job's diagnosis. `inQuota`: the victims make room in
   * its team's quota (team-preemption.ts), not only on the GPUs.
   */
  private apply(job: Job, choice: PreemptionChoice, preemptorRank: number | undefined, inQuota: boolean): Diagnosis {
    const { state, rank } = this;
    this.preemptors++;
    let graceMs = 0;
    for (const v of choice.victims) {
      this.victims.add(v.running.id);
      const grace = state.graceOf(v.job);
      graceMs = Math.max(graceMs, grace.graceMs);
      state.preemptions.push({
        jobId: v.running.id,
        forJobId: job.id,
        reason: v.reason,
        graceMs: grace.graceMs,
        graceSource: grace.source,
        message:
          v.reason === 'priority'
            ? `preempted for job ${job.id} (priority ${job.spec.priority} > ${v.job.spec.priority})${inQuota ? `: team ${job.spec.team} is at its quota` : ''}`
            : v.reason === 'queue_order' && rank && preemptorRank !== undefined
              ? rank.explain(job, preemptorRank, v.orderRank ?? rank.of(v.job))
              : `preempted for job ${job.id}: team ${job.spec.team} reclaims GPUs team ${v.job.spec.team} borrowed`,
      });
      for (const a of this.admissions) a.release(v.running);
    }
    for (const a of this.admissions) a.charge(job, choice.nodes);
    const startAt = state.now + graceMs;
    state.reserve(job.id, startAt, choice.nodes);
    state.estimatedStart.set(job.id, startAt);
    state.estimateBasis.set(job.id, `when the jobs being stopped for it have exited (within their ${formatDuration(graceMs)} grace)`);
    const names = formatSome(choice.victims.map((v) => v.running.id));
    const reasons = [...new Set(choice.victims.map((v) => (v.reason === 'priority' ? 'lower priority' : v.reason === 'queue_order' ? 'later in the queue order' : 'borrowed quota')))];
    const one = choice.victims.length === 1;
    return {
      plugin: PLUGIN.preemption,
      code: 'WaitingForReclaim',
      message: `${one ? 'job' : 'jobs'} ${names} (${formatAnd(reasons)}) ${one ? 'is' : 'are'} being stopped to make room${inQuota ? ` in team ${job.spec.team}'s quota` : ''}; starts after their ${Math.round(graceMs / 1000)} s grace`,
    };
  }
}
