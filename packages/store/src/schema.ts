import type { Generated } from 'kysely';

/**
 * The tables as Kysely sees them (column names are the SQL names). Integers are epoch milliseconds or counters;
 * JSON columns hold `JSON.stringify` text. A PostgreSQL dialect must return `bigint` columns as numbers
 * (e.g. `pg.types.setTypeParser(20, Number)`): every id and timestamp here is below 2^53.
 *
 * This describes the schema after the newest migration; migrations themselves use `Kysely<any>` because the
 * schema they see changes over time.
 */
export interface StoreDatabase {
  jobs: JobsTable;
  tasks: TasksTable;
  gpu_allocations: GpuAllocationsTable;
  nodes: NodesTable;
  events: EventsTable;
  job_attempts: JobAttemptsTable;
  progress: ProgressTable;
  gpu_samples: GpuSamplesTable;
  meta: MetaTable;
  leases: LeasesTable;
  schema_migrations: SchemaMigrationsTable;
}

export interface JobsTable {
  /** Autoincrement, never reused; exposed as a decimal string. */
  id: Generated<number>;
  /** Copies of spec fields, kept as columns for filtering. */
  name: string;
  team: string;
  priority: number;
  status: string;
  /** The submitting user (`user` is a reserved word in PostgreSQL). */
  submitted_by: string | null;
  spec_json: string;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  exit_code: number | null;
  end_reason: string | null;
  pending_reason_json: string | null;
  cancel_requested_at: number | null;
  /** The latest attempt's number; 0 before the first start. */
  attempt: Generated<number>;
  /** Restarts counted against max_restarts. */
  restarts: Generated<number>;
  not_before: number | null;
  last_checkpoint: string | null;
  /**
   * Copies of the spec's `resources` (JSON), `numNodes` and `maxRestarts` (null when absent): with name, team and
   * priority, all a job list shows, so a list reads no `spec_json` (which may be tens of KiB).
   */
  resources_json: string;
  num_nodes: number;
  max_restarts: number | null;
}

/** An attempt that ended: its ranks (as Task JSON) and how it ended. */
export interface JobAttemptsTable {
  job_id: number;
  attempt: number;
  started_at: number | null;
  finished_at: number;
  exit_code: number | null;
  reason: string;
  tasks_json: string;
}

/** Progress records reported by ranks: a time series per job. */
export interface GpuSamplesTable {
  at: number;
  node: string;
  gpu_index: number;
  job_id: number | null;
  interval_ms: number;
  utilization_pct: number | null;
  memory_used_mib: number | null;
  memory_total_mib: number | null;
  power_w: number | null;
  temperature_c: number | null;
}

export interface ProgressTable {
  seq: Generated<number>;
  job_id: number;
  attempt: number;
  rank: number;
  at: number;
  step: number | null;
  values_json: string;
}

export interface TasksTable {
  job_id: number;
  rank: number;
  local_rank: number;
  node_rank: number;
  node: string;
  gpus_json: string;
  status: string;
  /** The kind of backend that launched the rank (its handle's `backend`); null until launched. */
  backend: string | null;
  /** That backend's own `ref` of the rank's handle, as JSON, kept as it recorded it; null until launched. */
  backend_ref_json: string | null;
  exit_code: number | null;
  started_at: number | null;
  finished_at: number | null;
}

/** Primary key (node, gpu_index): the database itself refuses to give one GPU to two jobs. */
export interface GpuAllocationsTable {
  node: string;
  gpu_index: number;
  job_id: number;
  /** Share of a shared GPU (0 < fraction < 1); null for a whole GPU. */
  fraction: number | null;
  /** GPU memory the share may use, MiB (shares only). */
  memory_mib: number | null;
}

export interface NodesTable {
  name: string;
  info_json: string;
}

export interface EventsTable {
  seq: Generated<number>;
  job_id: number;
  at: number;
  type: string;
  message: string;
  data_json: string | null;
}

/** Integer counters by name; `snapshot_version` is the only one so far. */
export interface MetaTable {
  key: string;
  value: number;
}

/** One row per lease (`leader`: which replica runs the control core and the backends). */
export interface LeasesTable {
  name: string;
  /** The replica holding it (its id), or the last one that did. */
  holder: string;
  /** +1 each time the lease changes hands: what every fenced write carries, so a deposed holder's writes are refused. */
  epoch: number;
  /** Epoch ms; the lease is free from then on. */
  expires_at: number;
}

export interface SchemaMigrationsTable {
  version: number;
  name: string;
  applied_at: number;
}

/** The key in `meta` of the database's identity (see KyselyStateStore.databaseId). */
export const DATABASE_ID_KEY = 'database_id';

/** The key in `meta` of the cluster snapshot version. */
export const SNAPSHOT_VERSION_KEY = 'snapshot_version';
