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
  run: RunCommand;
  /** Working directory of every rank; relative paths are resolved against the submitter's directory by the CLI. */
  workdir?: string;
  /** Extra environment for every rank (tutti's own variables win on conflict). */
  env: Record<string, string>;
  /** The job is stopped when it has run this long. */
  maxDurationMs?: number;
}

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
  /** Minimum memory of each GPU, MiB. */
  memoryMiB?: number;
}

/** `shell` runs `/bin/sh -c command`; `argv` executes the program directly without a shell. */
export type RunCommand = { kind: 'shell'; command: string } | { kind: 'argv'; argv: string[] };

export type JobStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export const JOB_STATUSES: readonly JobStatus[] = ['pending', 'running', 'succeeded', 'failed', 'cancelled'];
export const TERMINAL_JOB_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled'];
export function isTerminalJobStatus(status: JobStatus): boolean {
  return status === 'succeeded' || status === 'failed' || status === 'cancelled';
}

export interface Job {
  /** Assigned by the store at submit: a decimal sequence number as a string ("1", "2", ...). */
  id: string;
  spec: JobSpec;
  status: JobStatus;
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
}

/** The state of one rank's process. */
export type TaskStatus = 'starting' | 'running' | 'exited' | 'lost';

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
  pid?: number;
  /** Process start time (clock ticks since boot, /proc/PID/stat field 22): guards re-adoption against PID reuse. */
  pidStartTime?: number;
  /** Where this rank's stdout and stderr go. */
  logPath?: string;
  exitCode?: number | null;
  startedAt?: number;
  finishedAt?: number;
}

export type JobEventType =
  | 'submitted'
  | 'scheduled'
  | 'started'
  | 'rank_exited'
  | 'cancel_requested'
  | 'stopping'
  | 'adopted'
  | 'requeued'
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
  /** Epoch ms at which the job is expected to start, when a reservation exists. */
  estimatedStartAt?: number;
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
  | 'NeverFits';
