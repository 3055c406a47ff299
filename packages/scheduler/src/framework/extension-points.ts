/**
 * The scheduler's extension points, one interface each, in the order a cycle calls them (see run-cycle.ts for the
 * numbered steps). A profile names the plugins at each point (`ProfilePlugins`); `compileProfile` builds them once
 * per profile from the registry (registry.ts), with their arguments validated; a cycle calls them and never asks
 * which plugin it runs.
 *
 * Conventions (from the Kubernetes scheduler framework):
 *   - a plugin object holds only its validated arguments and lives as long as its profile; what it works out for one
 *     cycle it keeps in a per-cycle object, stored in the `CycleState` under its own name (`CycleDataKey`), where
 *     other plugins may read it by that name (preemption reads the quota ledgers);
 *   - expected outcomes are values: a job that waits gets a `Diagnosis` naming the plugin, never an exception;
 *   - every name is a `PLUGIN` constant, shared by the registry, profiles and diagnoses.
 *
 * Filters and scores run inside the gang placement's node search, compiled into its `PlacementOptions` once per
 * profile, not called once per node: the search walks free-count buckets (capacity-index.ts) rather than nodes,
 * and a call per node and job would cost more than the placement.
 */
import type { Diagnosis, Job, PlacedNode } from '@tutti/model';
import type { ResourceShape } from '../cycle/resource-shape.ts';
import type { RunningJob } from '../cycle/running.ts';
import type { SnapshotIndex } from '../cycle/snapshot-index.ts';
import type { FeasibilityResult } from '../filter/feasibility.ts';
import type { PlacementOptions } from '../gang/placement.ts';
import type { QueueRank } from '../preemption/order-preemption.ts';
import type { DurationEstimator } from '../queue-sort/duration-estimate.ts';
import type { CycleInput } from './cycle-input.ts';
import type { CycleState, Placer } from './cycle-state.ts';
import type { DIAGNOSIS, PluginName } from './plugin-names.ts';
import type { BackfillArgs, BackfillMode } from './profile.ts';

/** `queueSort` (exactly one): the order in which pending jobs get their turn. */
export interface QueueSortPlugin {
  readonly name: PluginName;
  /**
   * The run-time estimates the order reads (fair share by estimated run time), or undefined. Made at step 2,
   * before running jobs are resolved: their expected ends, and whether a job ends before a reservation, read the
   * same estimates.
   */
  createEstimator(input: CycleInput): DurationEstimator | undefined;
  /**
   * The cycle's records (`CycleCache` numbers, one per job id) in queue order. `runningGpus`: GPUs each team's
   * running jobs hold (fair share).
   */
  order(state: CycleState, records: Int32Array, runningGpus: ReadonlyMap<string, number>): Int32Array;
}

/** `admission` (any number, in order): may the job start now, and on which GPU types (Kueue's admission). */
export interface AdmissionPlugin {
  readonly name: PluginName;
  /**
   * Counts what running jobs use and keeps the result under the plugin's name; undefined when it admits every job
   * this cycle (quota without teams configured).
   */
  beginCycle(state: CycleState): AdmissionCycle | undefined;
}

/** An admission plugin's work in one cycle. */
export interface AdmissionCycle {
  /** Grows with every change to what it would admit (the outcome memo compares it). */
  readonly version: number;
  /** Whether `job` (of `team`, asking `amount` GPUs of `shape`) may start now; `shape` limited to the admitted GPU types. */
  admit(job: Job, team: string, shape: ResourceShape, amount: number): Admission;
  /** The cycle placed `job` on `nodes`, or reserved them for it: it counts from now on. */
  charge(job: Job, nodes: readonly PlacedNode[]): void;
  /** A running job chosen as a victim this cycle no longer counts. */
  release(victim: RunningJob): void;
}

/** An admission decision: a status value, not an exception. */
export type Admission = { readonly admitted: true; readonly shape: ResourceShape } | { readonly admitted: false; readonly diagnosis: Diagnosis };

/** `filter` (any number): nodes a job may not use, beyond the GPU, host and gang checks that always run. */
export interface FilterPlugin {
  readonly name: PluginName;
  /** What the gang placement enforces for this filter (`topology`: `require` constraints). */
  readonly placement: Partial<PlacementOptions>;
  /** The filter's per-cycle data, kept under its name. */
  beginCycle(state: CycleState): FilterCycle;
}

/** A filter plugin's work in one cycle. */
export interface FilterCycle {
  /**
   * A feasible job was not placed: this filter's diagnosis when it is what keeps the job out (used when no later
   * step decides), else undefined. Asked before reservations hold the GPUs that are free.
   */
  explainUnplaced(shape: ResourceShape): Diagnosis | undefined;
}

/** `score` (any number): how placement chooses among the nodes that pass the filters. */
export interface ScorePlugin {
  readonly name: PluginName;
  /** What the gang placement prefers for this score (`packing` strategy; `topology`: tightest domain first). */
  readonly placement: Partial<PlacementOptions>;
}

/** `gang` (exactly one): places every node-rank of a job at once, or none. */
export interface GangPlacementPlugin {
  readonly name: PluginName;
  /** The cycle's placer over `index`, with the filters' and scores' options. */
  createPlacer(index: SnapshotIndex, options: PlacementOptions): Placer;
}

/** Which running jobs a preemption plugin may stop. */
export interface VictimRules {
  /** Lower-priority jobs of the same team or of a borrowing team; also inside a team at its quota. */
  readonly priority: boolean;
  /** Jobs on GPUs their team borrowed beyond its nominal, for a team within its nominal. */
  readonly reclaim: boolean;
  /** Jobs the queue order ranks strictly after the waiting one (`createRank`). */
  readonly queueOrder: boolean;
}

/**
 * `preemption` (any number): whose running jobs a job that does not fit may stop (Kubernetes' PostFilter). The
 * plugins listed are merged into one search per job (preemption-step.ts): their victim rules together, and the
 * limits of `preemption` when both it and `order-preemption` are listed.
 */
export interface PreemptionPlugin {
  readonly name: PluginName;
  readonly victims: VictimRules;
  /** At most this many waiting jobs get room made per cycle (bounds the cost). */
  readonly maxPreemptorsPerCycle: number;
  /** The most any victim's grace may be, ms; undefined: no maximum. */
  readonly maxGraceMs: number | undefined;
  /** The queue order as a rank for this cycle (`queueOrder` rules only); undefined when the order ranks by nothing but priority. */
  createRank?(input: CycleInput): QueueRank | undefined;
}

/** `backfill` (exactly one: greedy, strict or easy): what a blocked job does to the jobs behind it. */
export interface BackfillPlugin {
  readonly name: BackfillMode;
  /** `backfill`'s arguments (its assumed run time also sets when running jobs are expected to end). */
  readonly args: BackfillArgs;
  /** Its per-cycle data (reservations made, the blocked head), kept under `PLUGIN.backfill`. */
  beginCycle(state: CycleState): BackfillCycle;
}

/** A backfill plugin's work in one cycle. */
export interface BackfillCycle {
  /** Grows with every decision it makes (the outcome memo compares it). */
  readonly version: number;
  /** Before admission: the diagnosis of every job when nothing may pass a blocked one (strict FIFO), else undefined. */
  blocking(): Diagnosis | undefined;
  /**
   * A feasible job that did not fit and was not given victims: `WaitingForReservation` when it would fit on the
   * GPUs held for reservations (it would delay them), else undefined.
   */
  explainHeld(job: Job, shape: ResourceShape, memoKey: string): Diagnosis | undefined;
  /** A feasible job that nothing else decided for: `easy` may reserve for it, `strict` blocks the rest. */
  noteBlocked(job: Job, shape: ResourceShape, memoKey: string): void;
}

/** The diagnosis step (one, not named in profiles): why each job left waiting waits. */
export interface DiagnosisPlugin {
  readonly name: typeof DIAGNOSIS;
  /** Its per-cycle record of unplaced jobs, for a queue of `queueLength`, kept under its name. */
  beginCycle(state: CycleState, queueLength: number): DiagnosisCycle;
}

/** The diagnosis step's work in one cycle (diagnose.ts's `Diagnoser`). */
export interface DiagnosisCycle {
  /** Jobs noted so far. */
  readonly notedCount: number;
  /** A job's turn came and it did not fit; `decided`: what another step said (used unless it could never fit). */
  noteUnplaced(no: number, job: Job, shape: ResourceShape, decided?: Diagnosis): void;
  /** Notes a job with an answer an earlier job of its kind got in the same state (the outcome memo). */
  noteUnplacedAs(no: number, kind: number, atTurn: Diagnosis | undefined): void;
  /** What the last noted job got at its turn. */
  lastAtTurn(): Diagnosis | undefined;
  /** Could the shape ever fit the inventory (cached per shape). */
  feasibilityOf(shape: ResourceShape): FeasibilityResult;
  /** After the last placement: every noted job's diagnosis, in queue order. */
  finish(): { readonly numbers: Int32Array; readonly diagnoses: readonly Diagnosis[] };
}

/** A compiled profile's plugins, one entry per extension point. */
export interface CyclePlugins {
  readonly queueSort: QueueSortPlugin;
  readonly admission: readonly AdmissionPlugin[];
  readonly filter: readonly FilterPlugin[];
  readonly score: readonly ScorePlugin[];
  readonly gang: GangPlacementPlugin;
  readonly preemption: readonly PreemptionPlugin[];
  readonly backfill: BackfillPlugin;
  readonly diagnosis: DiagnosisPlugin;
  /** The filters' and scores' placement options, merged once. */
  readonly placement: PlacementOptions;
}
