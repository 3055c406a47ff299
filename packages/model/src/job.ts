/**
 * Jobs, their ranks (tasks) and their history. A job is a gang: every rank starts together or none does.
 */

/** A validated, normalised job spec. Produced by `parseJobSpec`; stored as JSON. */
export interface JobSpec {
  /** Lowercase letters, digits and '-'; at most 63 characters. */
  name: string;
  /** @default "default" */
  team: string;
  /** 0..1000, higher runs first. @default 50 */
  priority: number;
  resources: ResourceRequest;
  /** Nodes the gang spans; every node gets `resources` again. @default 1 */
  numNodes: number;
  /** Keep the gang inside one NVLink domain / node / rack / zone, as a requirement or a preference. */
  topology?: TopologyConstraint;
  run: RunCommand;
  /**
   * Who starts the job's processes on each node: tutti, one per GPU (`per-gpu`, with torchrun's variables); tutti,
   * one per node (`per-node`, with torchrun's `PET_*` launcher settings, for `torchrun`, `accelerate launch`,
   * `deepspeed` or a program that spawns its own workers); or the MPI runtime (`mpi`: `mpirun` locally, `srun --mpi`
   * on Slurm). @default 'per-gpu'
   */
  launcher?: Launcher;
  /**
   * A Python environment (a virtualenv or conda environment directory, as every node sees it) the ranks run in: its
   * `bin` leads PATH and VIRTUAL_ENV (or CONDA_PREFIX) names it.
   */
  pythonEnv?: string;
  /** Working directory of every rank; relative paths are resolved against the submitter's directory by the CLI. */
  workdir?: string;
  /** Extra environment for every rank (tutti's own variables win on conflict). */
  env: Record<string, string>;
  /** The job is stopped when it has run this long. */
  maxDurationMs?: number;
  /** How often the whole gang may be restarted after a failure, a lost node or a hang (see `restartOn`). @default 0 */
  maxRestarts?: number;
  /** Which ends of an attempt lead to a restart while restarts remain. @default ['failure', 'node_lost'] */
  restartOn?: RestartCause[];
  /** Wait before the first restart; doubles with each restart, capped at 10 minutes. @default 5000 */
  restartBackoffMs?: number;
  /** Kept across attempts, given as TUTTI_CHECKPOINT_DIR. @default <dataDir>/checkpoints/<jobId> */
  checkpointDir?: string;
  /** Sent to every rank when the gang is stopped (cancel, preemption, restart). @default 'SIGTERM' */
  stopSignal?: StopSignal;
  /** Time between `stopSignal` and SIGKILL. @default the server's --grace */
  preemptionGraceMs?: number;
  /** No progress record for this long while ranks live: the job is declared hung. Off when absent. */
  hangTimeoutMs?: number;
}

/** How a job's processes are started (see `JobSpec.launcher`). */
export type Launcher = 'per-gpu' | 'per-node' | 'mpi';
export const LAUNCHERS: readonly Launcher[] = ['per-gpu', 'per-node', 'mpi'];
export const DEFAULT_LAUNCHER: Launcher = 'per-gpu';

/** What may end an attempt and start another: a rank that failed, a rank whose node (or process) was lost, a hang. */
export type RestartCause = 'failure' | 'node_lost' | 'hang';
export const RESTART_CAUSES: readonly RestartCause[] = ['failure', 'node_lost', 'hang'];
export const DEFAULT_RESTART_ON: readonly RestartCause[] = ['failure', 'node_lost'];
export const DEFAULT_RESTART_BACKOFF_MS = 5000;
/** The backoff doubles per restart up to this. */
export const MAX_RESTART_BACKOFF_MS = 600_000;
/** Signals a job may ask to be stopped with. */
export type StopSignal = 'SIGTERM' | 'SIGINT' | 'SIGUSR1' | 'SIGUSR2' | 'SIGHUP' | 'SIGQUIT';
export const STOP_SIGNALS: readonly StopSignal[] = ['SIGTERM', 'SIGINT', 'SIGUSR1', 'SIGUSR2', 'SIGHUP', 'SIGQUIT'];

/** Resources asked for on each node of the gang. */
export interface ResourceRequest {
  gpus: GpuRequest;
  /** Logical CPUs per node. */
  cpus?: number;
  /** Host memory per node, MiB. */
  memoryMiB?: number;
}

export interface GpuRequest {
  /** Whole GPUs per node; 0 for a CPU-only job. */
  count: number;
  /** Acceptable GPU types in order of preference; empty means any type. */
  types: string[];
  /** Minimum memory of each GPU, MiB. With `fraction`: the GPU memory the job's share needs (absent: fraction × memory). */
  memoryMiB?: number;
  /**
   * A share of one GPU (0 < fraction < 1), packed with other fractional jobs on a shared GPU; `count` is then 1 and
   * the job spans one node. Absent: whole GPUs.
   */
  fraction?: number;
}

/** Topology levels, tightest first: one NVLink domain inside a node, one node, one rack, one zone. */
export type TopologyLevel = 'nvlink' | 'node' | 'rack' | 'zone';
export const TOPOLOGY_LEVELS: readonly TopologyLevel[] = ['nvlink', 'node', 'rack', 'zone'];

/** Where a gang must (`require`) or should (`prefer`) be placed. Racks and zones come from node labels `rack`, `zone`. */
export type TopologyConstraint = { require: TopologyLevel } | { prefer: TopologyLevel };

/** `shell` runs `/bin/sh -c command`; `argv` executes the program directly without a shell. */
export type RunCommand = { kind: 'shell'; command: string } | { kind: 'argv'; argv: string[] };

export type JobStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export const JOB_STATUSES: readonly JobStatus[] = ['pending', 'running', 'succeeded', 'failed', 'cancelled'];
export const TERMINAL_JOB_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled'];
export function isTerminalJobStatus(status: JobStatus): boolean {
  return status === 'succeeded' || status === 'failed' || status === 'cancelled';
}

/** A job id as the API and the CLI accept it (the store's sequence number, `Job.id`). */
export const JOB_ID_PATTERN = '^[0-9]{1,18}$';
const JOB_ID = new RegExp(JOB_ID_PATTERN);
export function isJobId(value: string): boolean {
  return JOB_ID.test(value);
}
/** What the CLI and the API answer when something else is given where a job id belongs. */
export function describeBadJobId(value: string, whereToLook: string): string {
  return `job id must be a number like 42, got '${value}'; ${whereToLook} lists the jobs and their ids`;
}

export interface Job {
  /** Assigned by the store at submit: a decimal sequence number as a string ("1", "2", ...). */
  id: string;
  spec: JobSpec;
  status: JobStatus;
  /** Who submitted it, as the submitter said (the CLI sends the OS user name); absent when nobody said. */
  user?: string;
  /** Epoch milliseconds. */
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  /** Exit code of the job: 0 on success, the failing rank's code on failure, null when it never ran. */
  exitCode?: number | null;
  /** Why the job ended, in words ("rank 1 exited with code 3", "cancelled", "exceeded max_duration 2h"). */
  endReason?: string;
  /** Why a pending job waits, from the last scheduling cycle. */
  pendingReason?: Diagnosis;
  /** Set when a cancel was asked for a running job; the job becomes `cancelled` once every rank has exited. */
  cancelRequestedAt?: number;
  /** The number of the latest attempt (1 for the first start); 0 or absent before the job first starts. */
  attempt?: number;
  /** Restarts counted against `maxRestarts` (preemptions do not count); absent means 0. */
  restarts?: number;
  /** A requeued job is not started before this (epoch ms): the restart backoff. */
  notBefore?: number;
  /** The checkpoint the job reported last (a progress record's `checkpoint`). */
  lastCheckpoint?: string;
}

/** What a list of jobs shows of a spec: who, how urgent, how big. Not the command, the environment or the run-time settings. */
export type JobSpecSummary = Pick<JobSpec, 'name' | 'team' | 'priority' | 'resources' | 'numNodes' | 'maxRestarts'>;

/**
 * A job as lists show it: a `Job` whose spec is only its summary. Its size does not grow with the spec's command
 * or environment (a spec may be tens of KiB), so a page of a thousand stays small. A `Job` is a `JobSummary`.
 */
export interface JobSummary extends Omit<Job, 'spec'> {
  spec: JobSpecSummary;
}

/** One run of a job's gang that has ended: its ranks, how it ended. The running attempt is not an `AttemptRecord` yet. */
export interface AttemptRecord {
  jobId: string;
  attempt: number;
  startedAt?: number;
  finishedAt: number;
  exitCode: number | null;
  /** Why the attempt ended, in words ("rank 2 was killed by SIGKILL", "preempted: ...", "hung: ..."). */
  reason: string;
  tasks: Task[];
}

/** One progress record a rank reported (`{"tutti": {...}}` on stdout). */
export interface ProgressRecord {
  seq: number;
  jobId: string;
  attempt: number;
  rank: number;
  /** Epoch ms the server read it. */
  at: number;
  step?: number;
  loss?: number;
  checkpoint?: string;
  /** Every field of the record, as reported (numbers and strings). */
  values: Record<string, unknown>;
}

/** The state of one rank's process. */
export type TaskStatus = 'starting' | 'running' | 'exited' | 'lost';

/** A JSON value, as stored and sent: what a backend may keep in a rank's `ref`. */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

/** A rank's handle as the store keeps it: which kind of backend made it, and that backend's own `ref`. */
export interface TaskBackendRecord {
  /** The backend's kind ('local', later 'slurm'): only a backend of this kind can read `ref`. */
  kind: string;
  /** Owned by that backend (the local backend: the process id, its start time, the log path, the host). */
  ref: JsonObject;
}

/** One rank of a job: one process. */
export interface Task {
  jobId: string;
  /** Global rank, 0..worldSize-1. */
  rank: number;
  /** Rank within its node. */
  localRank: number;
  /** Index of the node within the gang (torchrun's NODE_RANK / GROUP_RANK). */
  nodeRank: number;
  node: string;
  /** GPU indices on `node` visible to this rank (the same list for every local rank of the node). */
  gpus: number[];
  status: TaskStatus;
  /**
   * How the backend that runs this rank finds it again (its handle's `backend` and `ref`), set once launched.
   * Opaque to everything but that backend; what users see of it comes from @tutti/backends' `rankDetails`.
   */
  backend?: TaskBackendRecord;
  exitCode?: number | null;
  startedAt?: number;
  finishedAt?: number;
}

export type JobEventType =
  | 'submitted'
  | 'scheduled'
  /** The cluster ran ranks on other nodes than tutti placed them on (the Slurm backend's `placement: 'slurm'`). */
  | 'relocated'
  | 'started'
  | 'rank_exited'
  | 'cancel_requested'
  | 'stopping'
  | 'adopted'
  | 'requeued'
  | 'restarting'
  | 'preempted'
  | 'hung'
  /** A rank's log passed the log cap: its oldest output was dropped (see `tutti up --max-log-bytes`). */
  | 'log_trimmed'
  | 'succeeded'
  | 'failed'
  | 'cancelled';

/** One entry of a job's append-only history. `seq` is global and increasing, so it doubles as a stream cursor. */
export interface JobEvent {
  seq: number;
  jobId: string;
  /** Epoch milliseconds. */
  at: number;
  type: JobEventType;
  message: string;
  data?: Record<string, unknown>;
}

/** Why a job is not running, as decided by one scheduler plugin. An expected outcome, not an error. */
export interface Diagnosis {
  /** The plugin that stopped the job (`fit`, `gang`, ...). */
  plugin: string;
  /** Stable machine-readable code, e.g. `InsufficientGpus`. */
  code: DiagnosisCode;
  /** A sentence a person understands: "waiting for 4 free GPUs on one node; 2 free now". */
  message: string;
  /** Where the job stands in its team's queue (1 = next). */
  position?: { team: string; index: number; of: number };
  /**
   * Epoch ms at which the job is expected to start: when a reservation exists and its time rests on something (a
   * max_duration, run times of similar jobs, a stop's grace); absent when it would rest on the default guess alone.
   */
  estimatedStartAt?: number;
  /** What `estimatedStartAt` rests on, for people: "if job 51 takes its max_duration". */
  estimatedStartBasis?: string;
}

export type DiagnosisCode =
  /** Enough GPUs of the right kind exist, but not free now. */
  | 'InsufficientGpus'
  /** Not enough nodes with enough free GPUs for a multi-node gang. */
  | 'InsufficientNodes'
  /** Free GPUs exist but not of an accepted type or with enough memory. */
  | 'GpuTypeUnavailable'
  /** A job ahead in the queue holds the capacity this one would need. */
  | 'QueuedBehindHigherPriority'
  /** Not enough free CPUs or host memory on any node. */
  | 'InsufficientHostResources'
  /** The job can never fit this cluster (rejected at submit; shown if the inventory shrank). */
  | 'NeverFits'
  /** Starting it would take its team beyond its nominal quota plus borrowing limit, or beyond what others lend. */
  | 'QuotaExceeded'
  /** Running jobs are being preempted (priority or quota reclaim) to make room for it. */
  | 'WaitingForReclaim'
  /** Capacity is held for a reservation of a job ahead of it; it would delay that job (backfill). */
  | 'WaitingForReservation'
  /** It is the blocked head of the queue and holds a reservation: it starts when running jobs end. */
  | 'Reserved'
  /** Strict FIFO: a job ahead of it does not fit, and nothing passes it. */
  | 'BlockedByQueueHead'
  /** No topology domain (NVLink domain, node, rack, zone) it requires has the free GPUs. */
  | 'TopologyUnavailable';

/** How a job ended: what `finishJob` records. */
export interface JobEnd {
  status: 'succeeded' | 'failed' | 'cancelled';
  exitCode: number | null;
  endReason: string;
}

/** How a job goes back to the queue: what `requeueJob` records. */
export interface RequeueOptions {
  /** The event appended. @default 'requeued' */
  event?: 'requeued' | 'restarting' | 'preempted';
  /** Counts the requeue against max_restarts (`restarts + 1`). @default false */
  countRestart?: boolean;
  /** Not to be started before this (epoch ms): the restart backoff. */
  notBefore?: number;
  /** The recorded end of the attempt that ran. @default {exitCode: null, reason} */
  attemptEnd?: { exitCode: number | null; reason: string };
}
