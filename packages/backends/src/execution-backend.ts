import type { GpuSample, NodeInfo, RunCommand } from '@tutti/model';

/**
 * Runs the ranks of jobs somewhere: local processes, Slurm steps, later Kubernetes pods.
 *
 * What a backend promises:
 * - `launch` starts every rank of one job or none: if any rank cannot start, the ones that did are killed and the
 *   promise rejects (an infrastructure failure, which the server turns into a failed or requeued job).
 * - Ranks keep running when the control plane dies, and their exit status is kept where `adopt` finds it later.
 * - Every rank that was launched or adopted is reported to `onRankExit` exactly once.
 * - `stop` signals every rank's whole process tree and escalates to SIGKILL after the grace period.
 * What it deliberately does not do: decide placement, restart anything, or write to the state store.
 */
export interface ExecutionBackend {
  readonly kind: string;
  /** The nodes and GPUs this backend can run on. */
  inventory(): Promise<NodeInfo[]>;
  /** Starts every rank of one job; resolves with one handle per rank, in rank order. */
  launch(request: LaunchRequest): Promise<RankHandle[]>;
  /**
   * Sends `signal` (default SIGTERM) to every rank's process group, then SIGKILL to whatever is left after
   * `graceMs`. Resolves once every rank has exited (their exits are still reported to `onRankExit`; a rank that
   * had to be SIGKILLed is reported as exit code 137, signal SIGKILL, not as lost). Ranks that already exited are
   * skipped; a handle this instance does not watch yet is adopted first.
   */
  stop(handles: readonly RankHandle[], options: StopOptions): Promise<void>;
  /**
   * After a control-plane restart: reports, for each rank recorded as running, whether it still runs (and is
   * now watched, so its exit will be reported), already exited (with its real exit code), or is lost.
   * A rank found exited or lost is reported only here, not again to `onRankExit`. Adopting a rank this instance
   * already watches is harmless: it is `running`.
   */
  adopt(handles: readonly RankHandle[]): Promise<RankObservation[]>;
  /**
   * After a control-plane restart: the ranks of an attempt that `launch` started although the control plane never
   * recorded their handles (it died between the launch and recording it). Returns a handle for each rank that
   * still runs or left its exit status, ready for `adopt`; a rank that was never started, or whose process is gone
   * without a status, has none. Does not watch anything yet.
   */
  findStarted(jobId: string, attempt: number, ranks: readonly StartedRankQuery[]): Promise<RankHandle[]>;
  /**
   * Reads every GPU's gauges now (utilization, memory, power, temperature). A backend that cannot measure its GPUs
   * (fake GPUs, none) answers no samples; a failed reading is a `warning`, never an exception.
   */
  sampleGpus(): Promise<GpuReading>;
  /** Subscribes to rank exits. Listeners are called synchronously, once per exit, in subscription order. */
  onRankExit(listener: (exit: RankExit) => void): void;
  /**
   * Stops watching. Leaves every process running: they belong to jobs, not to the control plane. Exits that
   * happen afterwards are not reported (a new instance's `adopt` finds them); a `stop` still waiting rejects.
   */
  close(): Promise<void>;
}

export interface LaunchRequest {
  jobId: string;
  jobName: string;
  run: RunCommand;
  workdir?: string;
  /** The job's own environment (from its spec); tutti's per-rank variables are added on top. */
  env: Record<string, string>;
  /**
   * The control plane's per-job variables (TUTTI_CHECKPOINT_DIR, TUTTI_RESUME_FROM, ...): they win over `env`, and
   * the per-rank variables win over them.
   */
  runtimeEnv?: Record<string, string>;
  /**
   * Which attempt of the job this is (1, 2, ...): becomes TUTTI_ATTEMPT, and each attempt's logs and status files
   * live apart (`jobs/<id>/attempt-<n>/` for the local backend). Absent: attempt 1, in the job's own directory.
   */
  attempt?: number;
  ranks: RankLaunch[];
}

export interface RankLaunch {
  rank: number;
  localRank: number;
  nodeRank: number;
  node: string;
  /** GPU indices on `node`: becomes CUDA_VISIBLE_DEVICES for this rank. */
  gpus: number[];
}

/** Enough to find a rank's process again, also after a restart. Stored with the task. */
export interface RankHandle {
  jobId: string;
  rank: number;
  node: string;
  pid: number;
  /**
   * /proc/PID/stat start time, so a reused PID is not mistaken for the rank. 0 when unknown (no /proc); -1 when the
   * process was already gone when the handle was made (`findStarted`), so that no live process matches it.
   */
  pidStartTime: number;
  logPath: string;
  startedAt: number;
  /** The attempt the rank belongs to (see `LaunchRequest.attempt`). */
  attempt?: number;
}

export interface StartedRankQuery {
  rank: number;
  node: string;
}

export interface StopOptions {
  /** @default 'SIGTERM' */
  signal?: NodeJS.Signals;
  /** Time between `signal` and SIGKILL. @default 30000 */
  graceMs: number;
}

export type RankObservation =
  | { jobId: string; rank: number; state: 'running' }
  | { jobId: string; rank: number; state: 'exited'; exitCode: number | null; signal?: string; finishedAt: number }
  | { jobId: string; rank: number; state: 'lost'; detail: string };

export interface RankExit {
  jobId: string;
  rank: number;
  /** The process's exit code, or 128+N when killed by signal N (shell convention); null when unknown (lost). */
  exitCode: number | null;
  /** Set when the rank was killed by a signal (for the local backend: inferred from an exit code of 128+N). */
  signal?: string;
  /** True when the process vanished without leaving an exit status. */
  lost: boolean;
  /** When the exit was seen (epoch ms); for an exit read from a status file, when that file was written. */
  at: number;
  /** The attempt the rank belonged to (its handle's), so a late exit of an earlier attempt is not taken for the current one's. */
  attempt?: number;
}

export interface GpuReading {
  samples: GpuSample[];
  /** Why this reading is missing or partial (nvidia-smi failed), for the operator's log. */
  warning?: string;
}
