/** Domain objects → the API's wire types (packages/client/src/api-types.ts). */
import type { EventView, GpuView, JobView, NodeView, TaskView } from '@tutti/client';
import { serializeJobSpec } from '@tutti/model';
import type { ClusterSnapshot, Diagnosis, Job, JobEvent, Task } from '@tutti/model';

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

/** `diagnosis` is the latest cycle's reason for a pending job (the stored one may be a few seconds old). */
export function toJobView(job: Job, tasks?: readonly Task[], diagnosis?: Diagnosis): JobView {
  const pending = job.status === 'pending' ? (diagnosis ?? job.pendingReason) : undefined;
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
