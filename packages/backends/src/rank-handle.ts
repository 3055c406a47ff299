/**
 * What the control plane does with a rank handle without looking inside its `ref`: keep it with the rank's task,
 * rebuild it from the task, and show users what the backend says about the rank.
 */
import type { JsonObject, Task, TaskBackendRecord } from '@tutti/model';
import type { RankDetails, RankHandle } from './execution-backend.ts';
import { localRankDetails } from './local/local-rank-ref.ts';
import { slurmRankDetails } from './slurm/slurm-rank-ref.ts';

/** A task's fields that record its launched rank: what the store keeps of a handle (a `TaskUpdate`). */
export interface RecordedRank {
  jobId: string;
  rank: number;
  status: 'running';
  backend: TaskBackendRecord;
  startedAt: number;
}

/** What the store keeps of a launched rank's handle, as its backend made it. */
export function recordOfHandle(handle: RankHandle): RecordedRank {
  return { jobId: handle.jobId, rank: handle.rank, status: 'running', backend: { kind: handle.backend, ref: handle.ref }, startedAt: handle.startedAt };
}

/**
 * The handle of a task the store recorded as launched, for the backend that made it; undefined when it was never
 * recorded (the control plane died between the launch and recording it: see `ExecutionBackend.findStarted`).
 * `attempt` is the job's: the attempt the task's ranks belong to.
 */
export function handleOfTask(task: Task, attempt: number | undefined): RankHandle | undefined {
  if (task.backend === undefined) return undefined;
  return {
    backend: task.backend.kind, jobId: task.jobId, rank: task.rank, node: task.node, startedAt: task.startedAt ?? 0, ref: task.backend.ref,
    ...(attempt !== undefined ? { attempt } : {}),
  };
}

/**
 * What users see of a rank's backend record: its backend's own description of `ref` (for a local rank, its pid and
 * host; for a Slurm rank, its Slurm job). A kind this build does not know, or a `ref` its backend cannot read,
 * describes nothing (`{}`): showing a rank never fails.
 */
export function rankDetails(record: TaskBackendRecord): RankDetails {
  switch (record.kind) {
    case 'local':
      return localRankDetails(record.ref);
    case 'slurm':
      return slurmRankDetails(record.ref);
    default:
      return {};
  }
}

/** Launched ranks as the `started` event tells them: rank, node, backend and its details (a local rank's pid and host). */
export function describeLaunchedRanks(handles: readonly RankHandle[]): JsonObject[] {
  return handles.map((h) => ({ rank: h.rank, node: h.node, backend: h.backend, details: { ...rankDetails({ kind: h.backend, ref: h.ref }) } }));
}
