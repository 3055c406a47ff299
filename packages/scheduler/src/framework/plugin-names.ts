/**
 * Names of the scheduler's plugins and steps. Each `Diagnosis` names the plugin that stopped a job, and profiles
 * name the plugins they enable, so these strings are part of the API (the CLI and web show them, tests match on
 * them, profile files spell them): rename one only with a changelog entry.
 */
export const PLUGIN = {
  /** Orders the queue: priority, then submission order (`queue-sort.ts`). */
  queueSort: 'queue-sort',
  /** Orders the queue by team fair share, then priority with ageing, then submission (`fair-share.ts`). */
  fairShare: 'fair-share',
  /**
   * Orders the queue by the true remaining run time, shortest first (`oracle-sort.ts`): the simulator's `sjf` and
   * `srtf` references. Reads `CycleInput.oracleRemainingMs`, which only the simulator sets; live it falls back to
   * the declared `max_duration`.
   */
  oracleShortest: 'oracle-shortest',
  /** Orders the queue by two-dimensional least attained service in discretized queues, FIFO within one (`las-sort.ts`). */
  las: 'las',
  /** Preempts running jobs that the queue order ranks strictly after a waiting job, whole gangs (`order-preemption.ts`). */
  orderPreemption: 'order-preemption',
  /** Admission: team quotas, borrowing and lending (`quota.ts`). */
  quota: 'quota',
  /** Could the job ever fit the inventory, were the cluster empty (`feasibility.ts`). */
  feasibility: 'feasibility',
  /** Free GPUs of an accepted type and memory on one node (`gpu-fit.ts`). */
  gpuFit: 'gpu-fit',
  /** Free CPUs and host memory on one node (`host-fit.ts`). */
  hostResources: 'host-resources',
  /** Filter and score: NVLink domain / node / rack / zone (`placement.ts`). */
  topology: 'topology',
  /** Score: fewest free matching GPUs first, keeping whole nodes for big gangs (`best-fit.ts`). */
  bestFit: 'best-fit',
  /** Score: how nodes are chosen among those that fit: best fit, first fit by name, or spread (`packing.ts`). */
  packing: 'packing',
  /** Enough distinct nodes for every node-rank of a gang (`gang-placement.ts`). */
  gang: 'gang',
  /** Post-filter: stop lower-priority or borrowed work to make room (`preemption.ts`). */
  preemption: 'preemption',
  /** Reservations for the blocked head of the queue; smaller jobs start only if they do not delay it (`backfill.ts`). */
  backfill: 'backfill',
} as const;

export type PluginName = (typeof PLUGIN)[keyof typeof PLUGIN];

/**
 * The diagnosis step's name (its per-cycle data is kept under it). Not a `PluginName`: a diagnosis names the plugin
 * that stopped the job (feasibility, gpu-fit, …), and profiles cannot replace this step.
 */
export const DIAGNOSIS = 'diagnose';
