/**
 * What a cycle reads (`CycleInput`) and the shortcuts it may take (`CycleShortcuts`): shared by the cycle's steps and
 * every plugin, so they live apart from `runCycle`.
 */
import type { ClusterSnapshot, Job, TeamConfig, TeamUsage } from '@tutti/model';
import type { CycleCache } from '../perf/cycle-cache.ts';
import type { RunningJobInput } from '../preemption/stopping.ts';
import type { DurationHistory } from '../queue-sort/duration-estimate.ts';

export interface CycleInput {
  /** The cluster to decide on. Never mutated. */
  snapshot: ClusterSnapshot;
  /** Jobs waiting to run, in any order (the cycle sorts them). Their `status` is not looked at. */
  pending: readonly Job[];
  /**
   * Running jobs (with `startedAt`); their GPUs are in `snapshot.allocations`. Needed for quotas (a job's team),
   * preemption (only these can be victims) and backfill (their expected ends). @default [] (an allocation whose
   * job is not listed is busy until `now` + the backfill estimate and is never preempted)
   */
  running?: readonly RunningJobInput[];
  /** Teams and their quotas. @default [] (no quotas: every job is admitted; fair share treats teams alike) */
  teams?: readonly TeamConfig[];
  /** Recent GPU use per team, for fair share. @default [] */
  usage?: readonly TeamUsage[];
  /** Epoch milliseconds of the cycle: ageing, decay of usage, reservation times. */
  now: number;
  /**
   * The grace of a victim without its own `preemption_grace` (the server's `--grace`), ms; each victim's grace is
   * decided by `decideStopGrace` (@tutti/model), capped by the profile's `maxGraceMs`. @default 60 s
   */
  defaultGraceMs?: number;
  /** Seed for any randomised choice, so that a cycle can be replayed. Every choice is ordered today; kept for plugins. */
  seed: number;
  /**
   * ORACLE input, simulator only: the true remaining run time (ms) of pending and running jobs, by job id, read by
   * the `oracle-shortest` queue sort (`sjf`, `srtf`). The live server never sets it (those profiles then use the
   * declared `max_duration`). No other plugin reads it.
   */
  oracleRemainingMs?: ReadonlyMap<string, number>;
  /**
   * GPU × milliseconds each job has run, summed over all its runs (pending: earlier runs; running: including the
   * current one), by job id; for `las` (`tiresias`). @default a running job's current run only, a pending job 0
   */
  attainedServiceGpuMs?: ReadonlyMap<string, number>;
  /** Recent run times of finished jobs, for run-time estimates (`fair-share` `withinTeam`; see duration-estimate.ts). */
  durationHistory?: DurationHistory;
  /**
   * What this cycle may keep for the next (see cycle-cache.ts): pass the same one to every cycle of a server or a
   * simulation. It changes no result, only the cost of a long queue that changes little between cycles.
   * @default a fresh one
   */
  cache?: CycleCache;
}

/**
 * Shortcuts a cycle takes that never change its result; each can be switched off, so that tests can compare the
 * plain path with the fast one on random inputs.
 */
export interface CycleShortcuts {
  /** Best-fit searches walk free-count buckets instead of every node (`capacity-index.ts`). */
  readonly capacityIndex: boolean;
  /** A job of a kind answered since the cycle last changed gets that answer (`outcome-memo.ts`). */
  readonly sameKindMemo: boolean;
  /** Preemption walks running jobs kept in victim order per node (`VictimPool`) instead of sorting candidates. */
  readonly victimPool: boolean;
  /** The cycle uses `CycleInput.cache` (else a fresh cache, as if it were the first cycle). */
  readonly keepAcrossCycles: boolean;
}

/** A victim's grace when neither it nor the cycle's input says (the simulator's, and the scheduler tests'). */
export const DEFAULT_GRACE_MS = 60_000;

export const FAST_PATHS: CycleShortcuts = { capacityIndex: true, sameKindMemo: true, victimPool: true, keepAcrossCycles: true };
export const PLAIN_PATHS: CycleShortcuts = { capacityIndex: false, sameKindMemo: false, victimPool: false, keepAcrossCycles: false };
