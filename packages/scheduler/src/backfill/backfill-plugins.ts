/**
 * The `backfill` extension point's plugins: what a job that is blocked for capacity does to the jobs behind it.
 *
 *   greedy  nothing: a job that does not fit is skipped
 *   strict  nothing passes it: every later job waits with `BlockedByQueueHead` (strict FIFO)
 *   easy    it gets a reservation (up to `reservations` per cycle: backfill.ts); later jobs use the GPUs held for it
 *           only if they end before it starts
 *
 * All three tell a job that would fit only on held GPUs (a backfill or preemption reservation) that it waits for
 * them (`WaitingForReservation`). Per-cycle data, under `PLUGIN.backfill`: reservations made, the blocked head, which
 * shapes fit only on held GPUs or get no reservation.
 */
import { formatApproxDuration, type Diagnosis, type GpuDevice, type Job } from '@tutti/model';
import { formatSome } from '../cycle/format.ts';
import { ExtraFreeView, type PlanOverlay } from '../cycle/plan-overlay.ts';
import type { ResourceShape } from '../cycle/resource-shape.ts';
import type { RunningJob } from '../cycle/running.ts';
import type { CapacityView } from '../cycle/snapshot-index.ts';
import type { CycleDataKey, CycleState } from '../framework/cycle-state.ts';
import type { BackfillCycle, BackfillPlugin } from '../framework/extension-points.ts';
import { PLUGIN } from '../framework/plugin-names.ts';
import type { BackfillArgs, BackfillMode } from '../framework/profile.ts';
import { PREEMPTION_DATA } from '../preemption/preemption-step.ts';
import { withStoppingEnds } from '../preemption/stopping.ts';
import { computeReservation } from './backfill.ts';
import { describeStartBasis, type EndBasis } from './start-estimate.ts';

/** Where the backfill plugin keeps its per-cycle data. */
export const BACKFILL_DATA: CycleDataKey<HeldCapacityCycle> = { name: PLUGIN.backfill };

export class GreedyBackfill implements BackfillPlugin {
  readonly name: BackfillMode = 'greedy';
  constructor(readonly args: BackfillArgs) {}
  beginCycle(state: CycleState): BackfillCycle {
    return keep(state, new HeldCapacityCycle(state));
  }
}

export class StrictBackfill implements BackfillPlugin {
  readonly name: BackfillMode = 'strict';
  constructor(readonly args: BackfillArgs) {}
  beginCycle(state: CycleState): BackfillCycle {
    return keep(state, new StrictCycle(state));
  }
}

export class EasyBackfill implements BackfillPlugin {
  readonly name: BackfillMode = 'easy';
  constructor(readonly args: BackfillArgs) {}
  beginCycle(state: CycleState): BackfillCycle {
    return keep(state, new EasyCycle(state, this.args));
  }
}

function keep(state: CycleState, cycle: HeldCapacityCycle): HeldCapacityCycle {
  state.write(BACKFILL_DATA, cycle);
  return cycle;
}

/** `greedy`, and what every mode does: tell a job that fits only on held GPUs that it waits for them. */
class HeldCapacityCycle implements BackfillCycle {
  /** By memo key: whether the shape would fit were the held GPUs free. */
  private readonly waitingForHold = new Map<string, boolean>();
  constructor(protected readonly state: CycleState) {}

  get version(): number {
    return 0;
  }

  blocking(): Diagnosis | undefined {
    return undefined;
  }

  explainHeld(job: Job, shape: ResourceShape, memoKey: string): Diagnosis | undefined {
    const { state } = this;
    if (state.overlay.nodesWithHolds.size === 0) return undefined;
    let held = this.waitingForHold.get(memoKey);
    if (held === undefined) this.waitingForHold.set(memoKey, (held = state.place(shape, viewWithHoldsReleased(state.overlay)) !== undefined));
    if (!held) return undefined;
    const { reservations } = state;
    const holders = formatSome(reservations.map((r) => r.jobId));
    return {
      plugin: PLUGIN.backfill,
      code: 'WaitingForReservation',
      message: `the free GPUs it could use are held for ${reservations.length === 1 ? 'job' : 'jobs'} ${holders}, and it would delay ${reservations.length === 1 ? 'it' : 'them'}${job.spec.maxDurationMs === undefined ? ' (a max_duration short enough would let it backfill)' : ''}`,
    };
  }

  noteBlocked(_job: Job, _shape: ResourceShape, _memoKey: string): void {}
}

/** `strict`: once a job is blocked, nothing passes it. */
class StrictCycle extends HeldCapacityCycle {
  private blockedHead: Job | undefined;

  override get version(): number {
    return this.blockedHead ? 1 : 0;
  }

  override blocking(): Diagnosis | undefined {
    const head = this.blockedHead;
    return head ? { plugin: PLUGIN.backfill, code: 'BlockedByQueueHead', message: `job ${head.id} ahead of it does not fit yet, and in strict FIFO order nothing passes it` } : undefined;
  }

  override noteBlocked(job: Job): void {
    this.blockedHead = job;
  }
}

/** `easy`: the first blocked jobs (up to `reservations`) get a reservation. */
class EasyCycle extends HeldCapacityCycle {
  private reservationsMade = 0;
  /** Shapes (by memo key) that got no reservation: capacity only shrinks during a cycle, so none later either. */
  private readonly noReservation = new Set<string>();
  /** Running jobs by expected end: sorted when the first reservation is looked for. */
  private ending: RunningJob[] | undefined;

  constructor(
    state: CycleState,
    private readonly args: BackfillArgs,
  ) {
    super(state);
  }

  override get version(): number {
    return this.reservationsMade;
  }

  override noteBlocked(job: Job, shape: ResourceShape, memoKey: string): void {
    if (this.reservationsMade >= this.args.reservations || this.noReservation.has(memoKey)) return;
    const { state } = this;
    const { now } = state;
    const victims = state.read(PREEMPTION_DATA)?.victims;
    const candidates = victims && victims.size > 0 ? this.endingInOrder().filter((r) => !victims.has(r.id)) : this.endingInOrder().slice();
    const reservation = computeReservation(shape, state.overlay, candidates, now, state.place);
    if (!reservation) {
      this.noReservation.add(memoKey);
      return;
    }
    this.reservationsMade++;
    state.reserve(job.id, reservation.startAt, reservation.nodes);
    // The time is told only with what it rests on, and not at all when that is the default run time alone.
    const basis = describeStartBasis(candidates.slice(0, reservation.freed), (r) => this.endBasisOf(r), this.args.estimatedRuntimeMs);
    const waitsFor = `${reservation.waitsFor.length === 1 ? 'job' : 'jobs'} ${formatSome([...reservation.waitsFor])} ${reservation.waitsFor.length === 1 ? 'ends' : 'end'}`;
    if (basis !== undefined) {
      state.estimatedStart.set(job.id, reservation.startAt);
      state.estimateBasis.set(job.id, basis);
      const when = reservation.startAt <= now ? 'any moment now' : `in ${formatApproxDuration(reservation.startAt - now)}`;
      state.reservedNote.set(job.id, `; reserved: expected to start ${when}, when ${waitsFor} (${basis}); smaller jobs start only where they do not delay it`);
    } else {
      state.reservedNote.set(job.id, `; reserved: starts when ${waitsFor} (no max_duration to estimate when); smaller jobs start only where they do not delay it`);
    }
  }

  private endingInOrder(): RunningJob[] {
    const { state } = this;
    const graceMsOf = (job: Job) => state.graceOf(job).graceMs;
    return (this.ending ??= withStoppingEnds(state.running, state.input.running ?? [], graceMsOf, state.now).sort((a, b) => a.endAt - b.endAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)));
  }

  private endBasisOf(r: RunningJob): EndBasis {
    if (this.state.stopping.ids.has(r.id)) return 'stopping';
    if (!r.job) return 'assumed';
    const estimate = this.state.estimate?.(r.job);
    if (estimate) return estimate.basis === 'max_duration' ? 'max_duration' : 'history';
    return r.job.spec.maxDurationMs !== undefined ? 'max_duration' : 'assumed';
  }
}

/** The overlay with the GPUs held for reservations counted free: for a job that ends before they start. */
export function viewWithHoldsReleased(overlay: PlanOverlay): CapacityView {
  const extra = new Map<number, readonly GpuDevice[]>();
  for (const ordinal of overlay.nodesWithHolds) {
    const node = overlay.index.nodes[ordinal];
    if (node) extra.set(ordinal, overlay.heldGpus(node));
  }
  return new ExtraFreeView(overlay, extra);
}
