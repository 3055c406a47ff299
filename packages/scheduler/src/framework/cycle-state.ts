/**
 * What one cycle shares between its steps and plugins (Kubernetes' `CycleState`): the input, the indexed snapshot,
 * the overlay of what the cycle has placed, the running jobs, the plan being built — and each plugin's own per-cycle
 * data, kept under the plugin's name (`write(key, data)`, `read(key)`), so that one plugin reads another's (preemption
 * reads the quota ledgers) by name rather than through a flag in `runCycle`.
 *
 * Made once per cycle after the running jobs are known (step 3 of `runCycle`); never kept across cycles (that is
 * `CycleCache`'s job).
 */
import type { Job, PlacedNode, Preemption, Reservation, StopGrace, TeamConfig } from '@tutti/model';
import type { PlanOverlay } from '../cycle/plan-overlay.ts';
import type { ResourceShape } from '../cycle/resource-shape.ts';
import type { RunningJob } from '../cycle/running.ts';
import type { CapacityView, SnapshotIndex } from '../cycle/snapshot-index.ts';
import type { CycleCache } from '../perf/cycle-cache.ts';
import type { StoppingVictims } from '../preemption/stopping.ts';
import type { DurationEstimator } from '../queue-sort/duration-estimate.ts';
import type { CycleInput, CycleShortcuts } from './cycle-input.ts';
import type { DIAGNOSIS, PluginName } from './plugin-names.ts';

/** Places a shape on a view of the cluster: the profile's gang placement with its filters and scores. */
export type Placer = (shape: ResourceShape, view: CapacityView) => PlacedNode[] | undefined;

/** The name a plugin keeps its per-cycle data under, typed with that data. */
export interface CycleDataKey<T> {
  readonly name: PluginName | typeof DIAGNOSIS;
  /** Never set: carries the data's type. */
  readonly data?: T;
}

/** What `runCycle` has worked out when it makes the state (step 3). */
export type CycleStateParts = Pick<CycleState, 'input' | 'shortcuts' | 'cache' | 'index' | 'overlay' | 'running' | 'stopping' | 'place' | 'estimate' | 'assumedRunMs' | 'graceOf'>;

export class CycleState {
  readonly input: CycleInput;
  readonly now: number;
  readonly shortcuts: CycleShortcuts;
  readonly cache: CycleCache;
  /** The snapshot's lookup tables (never mutated). */
  readonly index: SnapshotIndex;
  /** What this cycle placed and holds so far, over the index: the only mutable view of capacity. */
  readonly overlay: PlanOverlay;
  /** Running jobs with their GPUs and expected ends. */
  readonly running: readonly RunningJob[];
  /** Victims of earlier cycles still within their grace. */
  readonly stopping: StoppingVictims;
  /** The profile's gang placement (filters and scores compiled in). */
  readonly place: Placer;
  /** Run-time estimates the queue sort reads (fair share by estimated run time); undefined: none this cycle. */
  readonly estimate: DurationEstimator | undefined;
  /** Run time assumed for a running job that declares none and has no estimate (`backfill.estimatedRuntimeMs`). */
  readonly assumedRunMs: number;
  /** The grace a victim gets: the rule the server stops jobs with (`decideStopGrace`), capped by the profile. */
  readonly graceOf: (job: Job) => StopGrace;
  /** `input.teams`, or none. */
  readonly teams: readonly TeamConfig[];

  /** The plan's preemptions, in the order they were decided. */
  readonly preemptions: Preemption[] = [];
  /** The plan's reservations (preemptors and backfill heads), in the order they were made. */
  readonly reservations: Reservation[] = [];
  /** The earliest start among `reservations` (Infinity: none): a job that ends before it may use held GPUs. */
  earliestReservation = Infinity;
  /** Jobs with an expected start, and what each rests on (start-estimate.ts). */
  readonly estimatedStart = new Map<string, number>();
  readonly estimateBasis = new Map<string, string>();
  /** Jobs with a backfill reservation: what their diagnosis adds. */
  readonly reservedNote = new Map<string, string>();
  /** Shapes limited to some GPU types, by key and types: one object per restriction, for admission and preemption. */
  readonly restrictedShapes = new Map<string, ResourceShape>();

  private readonly data = new Map<string, unknown>();

  constructor(parts: CycleStateParts) {
    this.input = parts.input;
    this.now = parts.input.now;
    this.shortcuts = parts.shortcuts;
    this.cache = parts.cache;
    this.index = parts.index;
    this.overlay = parts.overlay;
    this.running = parts.running;
    this.stopping = parts.stopping;
    this.place = parts.place;
    this.estimate = parts.estimate;
    this.assumedRunMs = parts.assumedRunMs;
    this.graceOf = parts.graceOf;
    this.teams = parts.input.teams ?? [];
  }

  /** Holds `nodes` for `jobId` from `startAt`: later jobs place around them unless they end before it. */
  reserve(jobId: string, startAt: number, nodes: PlacedNode[]): void {
    this.reservations.push({ jobId, startAt, nodes });
    this.overlay.hold(nodes);
    this.earliestReservation = Math.min(this.earliestReservation, startAt);
  }

  /** Keeps a plugin's per-cycle data under its name. */
  write<T>(key: CycleDataKey<T>, data: T): void {
    this.data.set(key.name, data);
  }

  /** A plugin's per-cycle data, or undefined when that plugin is not in the profile (or keeps none this cycle). */
  read<T>(key: CycleDataKey<T>): T | undefined {
    return this.data.get(key.name) as T | undefined;
  }
}
