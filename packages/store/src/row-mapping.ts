import type { Selectable } from 'kysely';
import type { Diagnosis, Job, JobEvent, JobEventType, JobSpec, JobStatus, Task, TaskStatus } from '@tutti/model';
import type { EventsTable, JobsTable, TasksTable } from './schema.ts';

/** Rows to domain objects. Optional fields are left out (not `undefined`) when their column is NULL. */

export function jobFromRow(row: Selectable<JobsTable>): Job {
  const job: Job = {
    id: String(row.id),
    spec: JSON.parse(row.spec_json) as JobSpec,
    status: row.status as JobStatus,
    createdAt: Number(row.created_at),
  };
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
  return job;
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
  if (row.pid !== null) task.pid = row.pid;
  if (row.pid_start_time !== null) task.pidStartTime = Number(row.pid_start_time);
  if (row.log_path !== null) task.logPath = row.log_path;
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
