import type { Selectable } from 'kysely';
import type { AttemptRecord, Diagnosis, Job, JsonObject, JobEvent, JobEventType, JobSpec, JobSpecSummary, JobStatus, JobSummary, ProgressRecord, ResourceRequest, Task, TaskStatus } from '@tutti/model';
import type { EventsTable, JobAttemptsTable, JobsTable, ProgressTable, TasksTable } from './schema.ts';

/** Rows to domain objects. Optional fields are left out (not `undefined`) when their column is NULL. */

/** A jobs row without its spec: what `listJobSummaries` reads. */
export type JobSummaryRow = Omit<Selectable<JobsTable>, 'spec_json'>;

export function jobFromRow(row: Selectable<JobsTable>): Job {
  return withJobFields(row, JSON.parse(row.spec_json) as JobSpec);
}

/** The summary of the spec comes from its copies in columns; `spec_json` is neither read nor parsed. */
export function jobSummaryFromRow(row: JobSummaryRow): JobSummary {
  const spec: JobSpecSummary = { name: row.name, team: row.team, priority: row.priority, resources: JSON.parse(row.resources_json) as ResourceRequest, numNodes: Number(row.num_nodes) };
  if (row.max_restarts !== null) spec.maxRestarts = Number(row.max_restarts);
  return withJobFields(row, spec);
}

function withJobFields<S>(row: JobSummaryRow, spec: S): Omit<Job, 'spec'> & { spec: S } {
  const job: Omit<Job, 'spec'> & { spec: S } = {
    id: String(row.id),
    spec,
    status: row.status as JobStatus,
    createdAt: Number(row.created_at),
  };
  if (row.submitted_by !== null) job.user = row.submitted_by;
  if (row.started_at !== null) job.startedAt = Number(row.started_at);
  if (row.finished_at !== null) {
    job.finishedAt = Number(row.finished_at);
    // A finished job always reports its exit code; null means it never ran (or was lost).
    job.exitCode = row.exit_code;
  } else if (row.exit_code !== null) {
    job.exitCode = row.exit_code;
  }
  if (row.end_reason !== null) job.endReason = row.end_reason;
  if (row.pending_reason_json !== null) job.pendingReason = JSON.parse(row.pending_reason_json) as Diagnosis;
  if (row.cancel_requested_at !== null) job.cancelRequestedAt = Number(row.cancel_requested_at);
  // Left out while zero, so a job that never started looks as it did before attempts existed.
  if (Number(row.attempt) > 0) job.attempt = Number(row.attempt);
  if (Number(row.restarts) > 0) job.restarts = Number(row.restarts);
  if (row.not_before !== null) job.notBefore = Number(row.not_before);
  if (row.last_checkpoint !== null) job.lastCheckpoint = row.last_checkpoint;
  return job;
}

/** The columns that copy spec fields for lists (see `JobsTable`), for an insert. */
export function jobSummaryColumns(spec: JobSpec): { resources_json: string; num_nodes: number; max_restarts: number | null } {
  return { resources_json: JSON.stringify(spec.resources), num_nodes: spec.numNodes, max_restarts: spec.maxRestarts ?? null };
}

export function attemptFromRow(row: Selectable<JobAttemptsTable>): AttemptRecord {
  const record: AttemptRecord = {
    jobId: String(row.job_id),
    attempt: row.attempt,
    finishedAt: Number(row.finished_at),
    exitCode: row.exit_code,
    reason: row.reason,
    tasks: JSON.parse(row.tasks_json) as Task[],
  };
  if (row.started_at !== null) record.startedAt = Number(row.started_at);
  return record;
}

export function progressFromRow(row: Selectable<ProgressTable>): ProgressRecord {
  const values = JSON.parse(row.values_json) as Record<string, unknown>;
  const record: ProgressRecord = { seq: Number(row.seq), jobId: String(row.job_id), attempt: row.attempt, rank: row.rank, at: Number(row.at), values };
  if (row.step !== null) record.step = Number(row.step);
  if (typeof values.loss === 'number') record.loss = values.loss;
  if (typeof values.checkpoint === 'string') record.checkpoint = values.checkpoint;
  return record;
}

export function taskFromRow(row: Selectable<TasksTable>): Task {
  const status = row.status as TaskStatus;
  const task: Task = {
    jobId: String(row.job_id),
    rank: row.rank,
    localRank: row.local_rank,
    nodeRank: row.node_rank,
    node: row.node,
    gpus: JSON.parse(row.gpus_json) as number[],
    status,
  };
  if (row.backend !== null && row.backend_ref_json !== null) task.backend = { kind: row.backend, ref: JSON.parse(row.backend_ref_json) as JsonObject };
  // An ended rank always reports its exit code (null when unknown, e.g. lost); a live one only once known.
  if (row.exit_code !== null || status === 'exited' || status === 'lost') task.exitCode = row.exit_code;
  if (row.started_at !== null) task.startedAt = Number(row.started_at);
  if (row.finished_at !== null) task.finishedAt = Number(row.finished_at);
  return task;
}

export function eventFromRow(row: Selectable<EventsTable>): JobEvent {
  const event: JobEvent = {
    seq: Number(row.seq),
    jobId: String(row.job_id),
    at: Number(row.at),
    type: row.type as JobEventType,
    message: row.message,
  };
  if (row.data_json !== null) event.data = JSON.parse(row.data_json) as Record<string, unknown>;
  return event;
}

/**
 * A job id from outside (a URL, a cursor) as the integer key, or undefined when it cannot name a job. Ids are
 * canonical decimal strings: "007" and "1e3" name no job.
 */
export function parseJobId(id: string): number | undefined {
  if (!/^[1-9][0-9]{0,15}$/.test(id)) return undefined;
  const n = Number(id);
  return Number.isSafeInteger(n) ? n : undefined;
}
