/** What a scheduling cycle decides. Pure data: the server applies it, the simulator replays it. */
import type { Diagnosis } from './job.ts';
import type { GraceSource } from './stop-grace.ts';

/** Where each node-rank of a gang goes. `nodes[i]` is node-rank i; rank 0 lives on `nodes[0]`. */
export interface Placement {
  jobId: string;
  nodes: PlacedNode[];
}

export interface PlacedNode {
  node: string;
  /** GPU indices on that node, in the order ranks use them. */
  gpuIndices: number[];
  /** For a fractional job: its share of the (one) GPU, 0 < fraction < 1. Absent: whole GPUs. */
  gpuFraction?: number;
  /** For a fractional job: the GPU memory its share may use, MiB. */
  gpuMemoryMiB?: number;
}

export interface Plan {
  /** The snapshot version the plan was computed on; the applier rejects a stale plan. */
  snapshotVersion: number;
  placements: Placement[];
  /**
   * Running jobs to stop so that pending ones can start: whole jobs, never single ranks. The backend signals each
   * victim, waits `graceMs` for it to checkpoint and exit, and the job returns to `pending`.
   */
  preemptions: Preemption[];
  /** Where and when blocked jobs are expected to start (backfill keeps these). */
  reservations: Reservation[];
}

export type PreemptionReason =
  /** A higher-priority job of any team needs the GPUs. */
  | 'priority'
  /** The victim runs on GPUs borrowed from a team that now needs its guarantee back. */
  | 'quota_reclaim'
  /**
   * The profile's queue order ranks the waiting job strictly ahead of the victim (`order-preemption`: shorter
   * remaining time under `srtf`, a higher least-attained-service queue under `tiresias`).
   */
  | 'queue_order';

export interface Preemption {
  /** The running job to stop. */
  jobId: string;
  /** The pending job the room is made for. */
  forJobId: string;
  reason: PreemptionReason;
  /** Time to checkpoint and exit before SIGKILL: the victim's own grace, capped (see `decideStopGrace`). */
  graceMs: number;
  /** Which setting decided `graceMs`: the job's `preemption_grace`, the default, or the profile's maximum. */
  graceSource: GraceSource;
  /** A sentence for the victim's history: "preempted for job 42 (priority 900 > 50)". */
  message: string;
}

export interface Reservation {
  jobId: string;
  /** Epoch ms at which the job is expected to start. */
  startAt: number;
  /** The GPUs held for it then. */
  nodes: PlacedNode[];
}

export interface CycleResult {
  plan: Plan;
  /** One diagnosis for every pending job that was not placed, keyed by job id. */
  diagnoses: ReadonlyMap<string, Diagnosis>;
}
