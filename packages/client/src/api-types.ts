/**
 * The REST API's wire types (snake_case JSON), shared by the server that produces them and the clients that
 * read them. Timestamps are ISO-8601 strings in UTC; absent values are null.
 */
import type { DiagnosisCode, JobStatus, TaskStatus } from '@tutti/model';

/**
 * A job as `GET /v1/jobs` lists it: what a job list shows (who, what it asked for, where it stands). Its spec, whose
 * command and environment may be tens of KiB, only with `view=full`. `JobView` (one job) always has the spec.
 */
export interface JobSummaryView {
  id: string;
  name: string;
  team: string;
  /** Who submitted it (the `tutti-user` header); null when the submitter did not say. */
  user: string | null;
  priority: number;
  status: JobStatus;
  /** Why a pending job waits, in words; null when not pending. */
  pending_reason: string | null;
  /** The same reason as data: which scheduler plugin stopped the job and its stable code. */
  pending_diagnosis: {
    plugin: string;
    code: DiagnosisCode;
    message: string;
    /** Where the job stands in its team's queue (1 = next). */
    position: { team: string; index: number; of: number } | null;
    /**
     * When it is expected to start: an estimate, given when a reservation exists and its time rests on something
     * (null when it would rest on the default run time of jobs without max_duration alone).
     */
    estimated_start_at: string | null;
    /** What `estimated_start_at` rests on: "if job 51 takes its max_duration"; null with no estimate. */
    estimated_start_basis: string | null;
  } | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  exit_code: number | null;
  /** Why the job ended ("rank 1 exited with code 3", "cancelled", ...); null until it ends. */
  end_reason: string | null;
  cancel_requested_at: string | null;
  /**
   * GPUs per node (× `num_nodes` for the job's total): whole GPUs, or for a fractional job its share of one GPU
   * (0 < x < 1, e.g. 0.5; such a job runs on one node).
   */
  gpus_per_node: number;
  num_nodes: number;
  /** What the job asked for on each node, as its normalised spec says it (`spec.resources`). */
  resources: JobResourcesView;
  /** The latest attempt's number (1 for the first start); 0 before the job first starts. */
  attempt: number;
  /** Restarts counted against max_restarts (preemptions are not counted). */
  restarts: number;
  max_restarts: number;
  /** The checkpoint the job reported last, if any. */
  last_checkpoint: string | null;
  /** A pending job waiting out its restart backoff is not started before this. */
  not_before: string | null;
  /** The spec as submitted, normalised; in lists only with `view=full`. */
  spec?: Record<string, unknown>;
}

/** A job's `resources` as its normalised spec has them: per node. */
export interface JobResourcesView {
  gpus: {
    /** Whole GPUs per node; 1 for a share of one GPU; 0 for a CPU-only job. */
    count: number;
    /** A share of one GPU (0 < fraction < 1); absent for whole GPUs. */
    fraction?: number;
    /** Acceptable GPU types in order of preference; empty for any. */
    type: string[];
    /** GPU memory each GPU (or the share) needs, e.g. "40GiB"; absent when not asked. */
    memory?: string;
  };
  cpus?: number;
  /** e.g. "64GiB" */
  memory?: string;
}

/** One job (`GET /v1/jobs/:id`, a submission's answer): its summary, its normalised spec and, on `GET`, its detail. */
export interface JobView extends JobSummaryView {
  /** The spec as submitted, normalised. */
  spec: Record<string, unknown>;
  /** One entry per rank of the latest attempt; present on `GET /v1/jobs/:id`. */
  tasks?: TaskView[];
  /** Every attempt, oldest first, the running one included; present on `GET /v1/jobs/:id`. */
  attempts?: AttemptView[];
  /** The last progress record (rank 0's or any rank's); present on `GET /v1/jobs/:id`. */
  progress?: ProgressView | null;
  /**
   * What the job consumed over all its attempts; present on `GET /v1/jobs/:id`. `energy_wh` is null when its GPUs
   * reported no power (fake GPUs).
   */
  usage?: { gpu_hours: number; energy_wh: number | null };
}

/** One run of a job's gang. */
export interface AttemptView {
  attempt: number;
  started_at: string | null;
  /** null while the attempt runs. */
  finished_at: string | null;
  exit_code: number | null;
  /** Why the attempt ended; null while it runs. */
  reason: string | null;
  tasks: TaskView[];
}

/** One progress record a rank reported: `{"tutti": {...}}` on its stdout. */
export interface ProgressView {
  seq: number;
  attempt: number;
  rank: number;
  at: string;
  step: number | null;
  loss: number | null;
  checkpoint: string | null;
  values: Record<string, unknown>;
}

export interface MetricsView {
  job_id: string;
  records: ProgressView[];
}

/** What a rank's backend shows of it: its kind and its own details (a local rank: `pid` and `host`). */
export interface TaskBackendView {
  kind: string;
  details: { [key: string]: string | number };
}

export interface TaskView {
  rank: number;
  local_rank: number;
  node_rank: number;
  node: string;
  gpus: number[];
  /** The backend running the rank and its details; null until the rank is launched. */
  backend: TaskBackendView | null;
  status: TaskStatus;
  exit_code: number | null;
  started_at: string | null;
  finished_at: string | null;
}

/** `GET /v1/jobs`: a page of summaries (at most 1000), or with `view=full` of summaries with their specs (at most 100). */
export interface JobListView {
  jobs: JobSummaryView[];
  /** Pass as `cursor` to get the next page; null on the last page. */
  next_cursor: string | null;
}

export interface NodeView {
  name: string;
  address: string;
  state: 'ready' | 'draining' | 'down';
  /** Why the node is draining or down, as its backend says (Slurm: the reason it was drained with); null when it does not say. */
  state_reason: string | null;
  cpus: number;
  memory_mib: number;
  labels: Record<string, string>;
  gpus: GpuView[];
}

export interface GpuView {
  index: number;
  uuid: string;
  type: string;
  product: string;
  memory_mib: number;
  nvlink_peers: number[];
  /** The job holding this GPU (for a shared GPU: the first of its sharers), or null when free. */
  job_id: string | null;
  /** Jobs holding a share of this GPU (fractional GPUs); empty for a free or whole-held GPU. */
  shares: Array<{ job_id: string; fraction: number; memory_mib: number | null }>;
  /** The latest gauges of this GPU; null when they are not measured (fake GPUs) or not yet sampled. */
  metrics: { at: string; utilization_pct: number | null; memory_used_mib: number | null; power_w: number | null; temperature_c: number | null } | null;
}

export interface EventView {
  seq: number;
  job_id: string;
  at: string;
  type: string;
  message: string;
  data: Record<string, unknown> | null;
}

export interface ErrorBody {
  error: {
    /** Stable machine-readable code: `invalid_spec`, `unschedulable`, `job_not_found`, `invalid_request`, ... */
    code: string;
    message: string;
    fields?: { path: string; message: string; line?: number; column?: number }[];
  };
}

export interface HealthView {
  status: 'ok';
  version: string;
  uptime_s: number;
  /** True until the jobs that ran before a (re)start are re-adopted: nothing is scheduled meanwhile. */
  recovering: boolean;
  /** While the data dir's disk is full (writes answer 507): which file, and what to do. */
  disk_full: string | null;
  /** Whether this replica runs the control loop (one does; a server alone on its store always leads). */
  role: 'leader' | 'follower';
  /** This replica's name in the leader lease: host:port#pid. */
  replica: string;
  /** Who leads, as this replica last read it; null while no one does. */
  leader: LeaderView | null;
}

/** The leading replica and its lease. */
export interface LeaderView {
  /** The leading replica (host:port#pid). */
  replica: string;
  /** The lease's fencing epoch: +1 at every change of leader. */
  epoch: number;
  /** When its lease runs out unless renewed; null for a server alone on its store. */
  lease_expires_at: string | null;
}

/** `GET /readyz` of a replica that can serve the API (a replica that cannot answers 503 with an ErrorBody). */
export interface ReadinessView {
  ready: boolean;
  role: 'leader' | 'follower';
  /** "ok", or why the store could not be read. */
  store: string;
  recovering: boolean;
  leader: LeaderView | null;
}

/** A team's share of the cluster: its quota, what it uses now, what of that is borrowed, what waits. */
export interface TeamView {
  name: string;
  weight: number;
  /** Guaranteed GPUs per type (`*` = any type); empty for a team with no quota. */
  quota: Record<string, number>;
  borrowing_limit: Record<string, number> | null;
  lending_limit: Record<string, number> | null;
  /** GPUs held by the team's running jobs, per type. */
  used: Record<string, number>;
  /** The part of `used` beyond the quota, per type: reclaimable by the lenders. */
  borrowed: Record<string, number>;
  running_jobs: number;
  pending_jobs: number;
  /**
   * Where the team stands for fair share: its recent use (decayed GPU-hours), its share
   * ((GPUs running + decayed GPU-seconds ÷ half-life) ÷ weight) and its place in the order teams are served (1 = first).
   */
  fair_share: { decayed_gpu_hours: number; share: number; position: number };
}

/** `POST /v1/jobs/validate`: the spec as the server would accept it, nothing submitted. */
export interface SpecValidationView {
  valid: true;
  /** The normalised spec, as `JobView.spec` would show it. */
  spec: Record<string, unknown>;
}

/** One sample of the cluster's state, taken by the server every `interval_s`. */
export interface ClusterSampleView {
  at: string;
  pending_jobs: number;
  running_jobs: number;
  gpus_total: number;
  gpus_allocated: number;
}

/** `GET /v1/cluster/history`: the samples of the last `minutes`, oldest first (kept in the server's memory). */
export interface ClusterHistoryView {
  interval_s: number;
  samples: ClusterSampleView[];
}

/** One GPU's gauges at one moment while a job held it (`GET /v1/jobs/:id/gpu-metrics`; none on fake GPUs). */
export interface GpuMetricSampleView {
  at: string;
  node: string;
  gpuIndex: number;
  utilizationPct: number | null;
  memoryUsedMiB: number | null;
  memoryTotalMiB: number | null;
  powerW: number | null;
  temperatureC: number | null;
}
