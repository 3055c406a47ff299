import type { GpuSample, JsonObject, Launcher, NodeInfo, NodeState, RunCommand } from '@tutti/model';

/** The backends `tutti up --backend` can run ranks with (the first is the default). */
export const EXECUTION_BACKEND_KINDS = ['local', 'slurm'] as const;
export type ExecutionBackendKind = (typeof EXECUTION_BACKEND_KINDS)[number];

/** Whether `name` is a backend this build knows (see EXECUTION_BACKEND_KINDS). */
export function isExecutionBackendKind(name: string): name is ExecutionBackendKind {
  return (EXECUTION_BACKEND_KINDS as readonly string[]).includes(name);
}

/**
 * Runs the ranks of jobs somewhere: local processes, Slurm steps, later Kubernetes pods.
 *
 * What a backend promises:
 * - `launch` starts every rank of one job or none: if any rank cannot start, the ones that did are killed and the
 *   promise rejects (an infrastructure failure, which the server turns into a failed or requeued job).
 * - Ranks keep running when the control plane dies, and their exit status is kept where `adopt` finds it later.
 * - Every rank that was launched or adopted is reported to `onRankExit` exactly once.
 * - `stop` signals every rank's whole process tree and escalates to SIGKILL after the grace period.
 * - Everything on the nodes where ranks run goes through it: their logs (`readLog`), their checkpoint and control
 *   directories (`prepareAttempt`) and the stop deadline the ranks read (`writeStopDeadline`). The control plane
 *   opens no file of a rank itself, so it may run elsewhere (another host, a second replica).
 * What it deliberately does not do: decide placement, restart anything, or write to the state store.
 */
export interface ExecutionBackend {
  readonly kind: string;
  /**
   * The longest a rank's exit may be reported after the rank ended (0 when at once, the default): the Slurm backend
   * reports a job's last exits once Slurm has released the job's nodes. The control plane waits that much more before
   * it takes a silent gang for a hung one.
   */
  readonly exitReportDelayMs?: number;
  /** The nodes and GPUs this backend can run on. */
  inventory(): Promise<NodeInfo[]>;
  /**
   * Starts every rank of one job; resolves with one handle per rank, in rank order, each naming the node the rank
   * runs on (see `RankHandle.node`).
   */
  launch(request: LaunchRequest): Promise<RankHandle[]>;
  /**
   * Sends `signal` (default SIGTERM) to every rank's process group, then SIGKILL to whatever is left after
   * `graceMs`. Resolves once every rank has exited (their exits are still reported to `onRankExit`; a rank that
   * had to be SIGKILLed is reported as exit code 137, signal SIGKILL, not as lost). Ranks that already exited are
   * skipped; a handle this instance does not watch yet is adopted first. A handle this backend refuses (another
   * backend's, a malformed `ref`) rejects the whole call with a `RankHandleError` before any rank is signalled.
   */
  stop(handles: readonly RankHandle[], options: StopOptions): Promise<void>;
  /**
   * After a control-plane restart: reports, for each rank recorded as running, whether it still runs (and is
   * now watched, so its exit will be reported), already exited (with its real exit code), or is lost.
   * A rank found exited or lost is reported only here, not again to `onRankExit`. Adopting a rank this instance
   * already watches is harmless: it is `running`. A handle this backend refuses (another backend's, a malformed
   * `ref`) is reported `lost`, its detail saying why; the other handles are adopted as usual.
   */
  adopt(handles: readonly RankHandle[]): Promise<RankObservation[]>;
  /**
   * After a control-plane restart: the ranks of an attempt that `launch` started although the control plane never
   * recorded their handles (it died between the launch and recording it). Returns a handle for each rank that
   * still runs or left its exit status, ready for `adopt`; a rank that was never started, or whose process is gone
   * without a status, has none. Does not watch anything yet. When not every rank asked for is found, the caller
   * launches the gang anew: a backend that could still start the others later (Slurm, whose job may still be queued)
   * makes sure it will not.
   */
  findStarted(jobId: string, attempt: number, ranks: readonly StartedRankQuery[]): Promise<RankHandle[]>;
  /**
   * Reads every GPU's gauges now (utilization, memory, power, temperature). A backend that cannot measure its GPUs
   * (fake GPUs, none) answers no samples; a failed reading is a `warning`, never an exception.
   */
  sampleGpus(): Promise<GpuReading>;
  /**
   * Before an attempt's launch: makes the job's checkpoint directory and its control directory on the nodes where its
   * ranks will run, removes the previous attempt's stop deadline, and finds the checkpoint to resume from (the newest
   * entry of the checkpoint directory; names starting with '.' or ending in '.tmp' are half-written and skipped).
   * Rejects with the file system's own error (ENOSPC, EROFS, EACCES), so that a full disk is told as one.
   */
  prepareAttempt(request: PrepareAttemptRequest): Promise<AttemptDirectories>;
  /**
   * Tells the ranks when SIGKILL comes: `deadline` (epoch ms) is written, as whole epoch seconds and a newline, to
   * `<control dir>/preempt-deadline` on every node of `handles`, before the stop signal is sent. Best effort: never
   * rejects (a rank that cannot read it still has TUTTI_PREEMPT_GRACE_S, which is the same grace); a handle of
   * another backend is skipped. Only the handles' jobs and nodes matter: the deadline is the job's, not a rank's.
   */
  writeStopDeadline(handles: readonly RankHandle[], deadline: number): Promise<void>;
  /**
   * A rank's output (stdout and stderr together), as chunks of bytes from `offset`. Without `follow` it ends at what
   * is there now; with `follow` it keeps reading as the log grows, and ends once the rank has exited (its exit
   * recorded, or its process gone) and its last bytes are sent. A log that does not exist yet is waited for when
   * following, and is empty otherwise. Aborting `signal` ends it at once (no error). A log that shrank under a
   * follow (trimmed to its cap) is read again from its start, where its marker line is.
   */
  readLog(rank: RankLogRef, options?: ReadLogOptions): AsyncIterable<Uint8Array>;
  /** A rank's log size in bytes now; 0 when it has none (yet). */
  logSize(rank: RankLogRef): Promise<number>;
  /**
   * Keeps a rank's log within `maxBytes`: when larger, its newest output (from a line start) is kept behind a marker
   * line `[tutti: N bytes of earlier output dropped: log cap SIZE]`, and later output goes on after it. Answers what
   * the trim did, or undefined when the log is within the cap or missing. The rank keeps writing meanwhile.
   */
  capLog(rank: RankLogRef, maxBytes: number): Promise<LogTrim | undefined>;
  /** Subscribes to rank exits. Listeners are called synchronously, once per exit, in subscription order. */
  onRankExit(listener: (exit: RankExit) => void): void;
  /**
   * Subscribes to node state changes: a node becoming `ready` (its inventory is known and ranks may run there),
   * `draining` (its ranks run on, nothing new should start) or `down` (its ranks are gone or unreachable). A
   * listener is first told, synchronously, the current state of every node already known, so that one subscribing
   * late misses nothing; then once per change, in subscription order. A backend reports only what it observes: it
   * never invents a state it cannot see (the local backend reports its one node `ready` once its inventory is
   * known, and nothing else: the machine that runs it cannot report itself down).
   */
  onNodeState(listener: (change: NodeStateChange) => void): void;
  /**
   * Optional, for a backend whose inventory changes while it runs beyond node states (the Slurm backend: GPUs that
   * other Slurm jobs take or free, racks): subscribes to the whole inventory, as `inventory()` answers it, each time
   * it differs from the one last told (the first one a listener gets may be the one `inventory()` just answered).
   * Called in subscription order. A backend without it has an inventory that only `onNodeState` changes.
   */
  onInventoryChange?(listener: (nodes: NodeInfo[]) => void): void;
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
  /**
   * Who starts the ranks (see `JobSpec.launcher`): `per-gpu` and `per-node`, the backend, one process per rank (a
   * per-node rank holds its node's GPUs and gets torchrun's `PET_*` settings); `mpi`, the MPI runtime (`mpirun` on
   * the local backend, `srun --mpi` on Slurm), one MPI process per rank. @default 'per-gpu'
   */
  launcher?: Launcher;
  /** A virtualenv or conda environment the ranks run in (see `JobSpec.pythonEnv`). */
  pythonEnv?: string;
  /**
   * The job's restarts so far (counted against max_restarts: preemptions do not count) and its max_restarts:
   * TORCHELASTIC_RESTART_COUNT and TORCHELASTIC_MAX_RESTARTS. @default {count: 0, max: 0}
   */
  restarts?: { count: number; max: number };
  /** How often the job was preempted before this attempt: TUTTI_PREEMPTIONS. @default 0 */
  preemptions?: number;
  /**
   * The CPUs the job asked for on each node (`resources.cpus`): OMP_NUM_THREADS is them ÷ the node's ranks. Absent:
   * the node's CPUs as the rank sees them.
   */
  cpus?: number;
  /** The job's team: a backend may map it to where the job runs (on Slurm: its partition and account). */
  team?: string;
  /**
   * A limit the backend may enforce by itself, in ms from the start (Slurm's `--time`): the job's max_duration plus
   * its stop grace and a margin, so that the control plane's own stop, with its grace, always comes first.
   */
  timeLimitMs?: number;
}

export interface RankLaunch {
  rank: number;
  localRank: number;
  nodeRank: number;
  node: string;
  /** GPU indices on `node`: becomes CUDA_VISIBLE_DEVICES for this rank. */
  gpus: number[];
}

/**
 * Names one rank to the backend that runs it, also after a control-plane restart. The control plane stores it as the
 * backend made it (the store's tasks table: `backend` and `backend_ref_json`, beside the rank's job, number, node
 * and start) and hands it back unchanged to `stop`, `adopt`, `writeStopDeadline` and `readLog`. It never looks
 * inside `ref`: what users see of a rank (the pid and host of a local one) comes from `rankDetails`.
 *
 * A handle must survive JSON: stored and read back (`JSON.parse(JSON.stringify(handle))`) it stops, adopts and reads
 * logs as the original does. A backend refuses a handle another kind of backend made, or one whose `ref` it cannot
 * read, with a `RankHandleError` naming the field (`adopt` reports such a rank `lost` with that message instead).
 */
export interface RankHandle {
  /** The `kind` of the backend that made it ('local'): only a backend of that kind accepts it. */
  backend: string;
  jobId: string;
  /** The rank's global number in its job. */
  rank: number;
  /**
   * The node it runs on (an inventory node's `name`): the one it was placed on, or, from a backend that leaves the
   * choice of nodes to its cluster (the Slurm backend's `placement: 'slurm'`), the one the cluster chose. The control
   * plane records the rank where its handle says.
   */
  node: string;
  /** The attempt the rank belongs to (see `LaunchRequest.attempt`); absent for a launch that named none. */
  attempt?: number;
  /** When the backend started the rank (epoch ms), as every backend knows it: the rank's start as users see it. */
  startedAt: number;
  /**
   * The backend's own way to find the rank again: JSON, opaque to the control plane. The local backend's is
   * `{pid, pidStartTime, logPath, host}` (see local/local-rank-ref.ts); a Slurm backend's would name the job step.
   */
  ref: JsonObject;
}

/** A handle a backend cannot use: made by another kind of backend, or with a `ref` it cannot read. */
export class RankHandleError extends Error {
  override readonly name = 'RankHandleError';
}

/**
 * The checks every backend makes on a handle before reading its `ref` (it may come from a damaged store): an object,
 * with a job id and a rank, made by a backend of `kind`, with an object `ref`. Answers the ref's fields and how to
 * name the rank in an error; throws `RankHandleError` naming the field. `refShape` names the ref's fields in errors.
 */
export function checkRankHandle(handle: RankHandle, kind: string, refShape: string): { which: string; ref: Record<string, unknown> } {
  const value = handle as unknown;
  if (typeof value !== 'object' || value === null) throw new RankHandleError(`a rank handle must be an object, got ${describeHandleValue(value)}`);
  const { backend, jobId, rank, ref } = value as Partial<Record<keyof RankHandle, unknown>>;
  const which = `rank ${describeHandleValue(rank)} of job ${describeHandleValue(jobId)}`;
  if (typeof jobId !== 'string' || jobId === '') throw new RankHandleError(`the handle of ${which}: jobId must be a non-empty string`);
  if (typeof rank !== 'number' || !Number.isSafeInteger(rank) || rank < 0) throw new RankHandleError(`the handle of ${which}: rank must be a whole number from 0`);
  if (backend !== kind) {
    const maker = describeHandleValue(backend);
    throw new RankHandleError(`the handle of ${which} was made by the ${maker} backend, not this "${kind}" one: only a ${maker} backend can stop, adopt or read it`);
  }
  if (typeof ref !== 'object' || ref === null || Array.isArray(ref)) {
    throw new RankHandleError(`the handle of ${which}: ref must be an object ${refShape}, got ${describeHandleValue(ref)}`);
  }
  return { which, ref: ref as Record<string, unknown> };
}

/** A value of a handle as an error names it: JSON, cut at 60 characters. */
export function describeHandleValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** What users may see of a rank, from its backend (the local backend: `pid` and `host`). Never the whole `ref`. */
export type RankDetails = Readonly<Record<string, string | number>>;

/** A node's state as its backend sees it, when it changes (see `ExecutionBackend.onNodeState`). */
export interface NodeStateChange {
  node: string;
  state: NodeState;
  /** When the backend saw it (epoch ms). */
  at: number;
  /** Why, in words, when the backend knows (a drain's reason, what went down). */
  reason?: string;
}

/** Which rank's log: a `RankHandle` is one. Without `attempt`, the log of a launch that named no attempt. */
export interface RankLogRef {
  jobId: string;
  rank: number;
  attempt?: number;
}

export interface ReadLogOptions {
  /** Where to start, in bytes from the log's start. @default 0 */
  offset?: number;
  /** Keep reading until the rank has exited. @default false */
  follow?: boolean;
  signal?: AbortSignal;
}

export interface PrepareAttemptRequest {
  jobId: string;
  attempt: number;
  /** The nodes the attempt's ranks will run on. */
  nodes: readonly string[];
  /**
   * The job's own `checkpoint_dir`: an absolute path, or one relative to `workdir` (or, without one, to the job's
   * directory where the backend runs its ranks). Absent: the backend's default per-job checkpoint directory.
   */
  checkpointDir?: string;
  workdir?: string;
}

/** Where the ranks of an attempt find their directories: TUTTI_CHECKPOINT_DIR, TUTTI_CONTROL_DIR, TUTTI_RESUME_FROM. */
export interface AttemptDirectories {
  checkpointDir: string;
  controlDir: string;
  /** The newest complete entry of `checkpointDir`, when there is one. */
  newestCheckpoint?: string;
}

/** What one trim did. Offsets are in bytes of the file before (`cutAt`) and after (`markerBytes`) it. */
export interface LogTrim {
  /** Output dropped by this trim. */
  droppedBytes: number;
  /** Output dropped from this log in all, by this trim and the earlier ones (read from the old marker). */
  totalDroppedBytes: number;
  /** The old file's bytes before this offset are gone; the bytes from it on now start at `markerBytes`. */
  cutAt: number;
  /** The length of the marker line that now starts the file. */
  markerBytes: number;
  /** The file's size right after the trim. */
  sizeAfter: number;
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
  | { jobId: string; rank: number; state: 'exited'; exitCode: number | null; signal?: string; finishedAt: number; error?: string }
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
  /**
   * What the rank said went wrong, when it failed and left a structured error (the file TORCHELASTIC_ERROR_FILE
   * names, written by torch.distributed.elastic's `@record`): "RuntimeError: CUDA out of memory ...", one line.
   */
  error?: string;
  /** The attempt the rank belonged to (its handle's), so a late exit of an earlier attempt is not taken for the current one's. */
  attempt?: number;
}

export interface GpuReading {
  samples: GpuSample[];
  /** Why this reading is missing or partial (nvidia-smi failed), for the operator's log. */
  warning?: string;
}
