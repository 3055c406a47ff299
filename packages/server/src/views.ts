/** Domain objects → the API's wire types (packages/client/src/api-types.ts). */
import type { AttemptView, EventView, GpuView, JobView, NodeView, ProgressView, TaskView } from '@tutti/client';
import { serializeJobSpec } from '@tutti/model';
import type { AttemptRecord, ClusterSnapshot, Diagnosis, Job, JobEvent, ProgressRecord, Task } from '@tutti/model';

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

/** What `GET /v1/jobs/:id` adds to a job: its attempts and its last progress record. */
export interface JobDetail {
  attempts: readonly AttemptRecord[];
  progress: ProgressRecord | undefined;
  now: number;
}

/** `diagnosis` is the latest cycle's reason for a pending job (the stored one may be a few seconds old). */
export function toJobView(job: Job, tasks?: readonly Task[], diagnosis?: Diagnosis, detail?: JobDetail): JobView {
  const backoff = job.status === 'pending' && job.notBefore !== undefined && detail !== undefined && job.notBefore > detail.now;
  const pending = job.status === 'pending' && !backoff ? (diagnosis ?? job.pendingReason) : undefined;
  const view = toJobViewBase(job, tasks, pending);
  if (backoff) view.pending_reason = `restarting: waiting out the restart backoff until ${iso(job.notBefore)}`;
  if (detail) {
    const attempts = detail.attempts.map(toAttemptView);
    // The running attempt is not recorded yet: its ranks are the job's tasks.
    if (job.status === 'running' && (job.attempt ?? 0) > (detail.attempts.at(-1)?.attempt ?? 0)) {
      attempts.push({ attempt: job.attempt ?? 1, started_at: iso(job.startedAt), finished_at: null, exit_code: null, reason: null, tasks: (tasks ?? []).map(toTaskView) });
    }
    view.attempts = attempts;
    view.progress = detail.progress ? toProgressView(detail.progress) : null;
  }
  return view;
}

export function toAttemptView(record: AttemptRecord): AttemptView {
  return {
    attempt: record.attempt,
    started_at: iso(record.startedAt),
    finished_at: iso(record.finishedAt),
    exit_code: record.exitCode,
    reason: record.reason,
    tasks: record.tasks.map(toTaskView),
  };
}

export function toProgressView(record: ProgressRecord): ProgressView {
  return {
    seq: record.seq,
    attempt: record.attempt,
    rank: record.rank,
    at: new Date(record.at).toISOString(),
    step: record.step ?? null,
    loss: record.loss ?? null,
    checkpoint: record.checkpoint ?? null,
    values: record.values,
  };
}

function toJobViewBase(job: Job, tasks: readonly Task[] | undefined, pending: Diagnosis | undefined): JobView {
  return {
    id: job.id,
    name: job.spec.name,
    team: job.spec.team,
    priority: job.spec.priority,
    status: job.status,
    pending_reason: job.status === 'pending' ? (pending?.message ?? 'waiting for the next scheduling cycle') : null,
    pending_diagnosis: pending ? { plugin: pending.plugin, code: pending.code, message: pending.message } : null,
    created_at: iso(job.createdAt)!,
    started_at: iso(job.startedAt),
    finished_at: iso(job.finishedAt),
    exit_code: job.exitCode ?? null,
    end_reason: job.endReason ?? null,
    cancel_requested_at: iso(job.cancelRequestedAt),
    gpus_per_node: job.spec.resources.gpus.count,
    num_nodes: job.spec.numNodes,
    spec: serializeJobSpec(job.spec) as unknown as Record<string, unknown>,
    ...(tasks ? { tasks: tasks.map(toTaskView) } : {}),
    attempt: job.attempt ?? 0,
    restarts: job.restarts ?? 0,
    max_restarts: job.spec.maxRestarts ?? 0,
    last_checkpoint: job.lastCheckpoint ?? null,
    not_before: iso(job.notBefore),
  };
}

export function toTaskView(task: Task): TaskView {
  return {
    rank: task.rank,
    local_rank: task.localRank,
    node_rank: task.nodeRank,
    node: task.node,
    gpus: task.gpus,
    pid: task.pid ?? null,
    status: task.status,
    exit_code: task.exitCode ?? null,
    started_at: iso(task.startedAt),
    finished_at: iso(task.finishedAt),
  };
}

export function toNodeViews(snapshot: ClusterSnapshot): NodeView[] {
  const holder = new Map(snapshot.allocations.map((a) => [`${a.node}/${a.gpuIndex}`, a.jobId]));
  return snapshot.nodes.map((node) => ({
    name: node.name,
    address: node.address,
    state: node.state,
    cpus: node.cpus,
    memory_mib: node.memoryMiB,
    labels: node.labels,
    gpus: node.gpus.map(
      (gpu): GpuView => ({
        index: gpu.index,
        uuid: gpu.uuid,
        type: gpu.type,
        product: gpu.product,
        memory_mib: gpu.memoryMiB,
        nvlink_peers: gpu.nvlinkPeers,
        job_id: holder.get(`${node.name}/${gpu.index}`) ?? null,
      }),
    ),
  }));
}

export function toEventView(event: JobEvent): EventView {
  return { seq: event.seq, job_id: event.jobId, at: new Date(event.at).toISOString(), type: event.type, message: event.message, data: event.data ?? null };
}
