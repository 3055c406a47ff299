/** Domain objects → the API's wire types (packages/client/src/api-types.ts). */
import type { AttemptView, EventView, GpuMetricSampleView, GpuView, JobSummaryView, JobView, NodeView, ProgressView, TaskView, TeamView } from '@tutti/client';
import { rankDetails } from '@tutti/backends';
import { serializeJobSpec, serializeResources } from '@tutti/model';
import { computeShare, computeTeamWeights } from '@tutti/scheduler';
import type { AttemptRecord, ClusterSnapshot, Diagnosis, GpuSample, Job, JobEvent, JobSummary, ProgressRecord, Task, TeamConfig } from '@tutti/model';

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

/** What `GET /v1/jobs/:id` adds to a job: its attempts and its last progress record. */
export interface JobDetail {
  attempts: readonly AttemptRecord[];
  progress: ProgressRecord | undefined;
  now: number;
  /** From the GPU samples; null without power readings. */
  energyWh: number | null;
}

/** `diagnosis` is the latest cycle's reason for a pending job (the stored one may be a few seconds old). */
export function toJobView(job: Job, tasks?: readonly Task[], diagnosis?: Diagnosis, detail?: JobDetail): JobView {
  const backoff = job.status === 'pending' && job.notBefore !== undefined && detail !== undefined && job.notBefore > detail.now;
  const pending = job.status === 'pending' && !backoff ? (diagnosis ?? job.pendingReason) : undefined;
  const view: JobView = { ...toJobViewBase(job, pending), spec: serializeJobSpec(job.spec) as unknown as Record<string, unknown>, ...(tasks ? { tasks: tasks.map(toTaskView) } : {}) };
  if (backoff) view.pending_reason = `restarting: waiting out the restart backoff until ${iso(job.notBefore)}`;
  if (detail) {
    const attempts = detail.attempts.map(toAttemptView);
    // The running attempt is not recorded yet: its ranks are the job's tasks.
    if (job.status === 'running' && (job.attempt ?? 0) > (detail.attempts.at(-1)?.attempt ?? 0)) {
      attempts.push({ attempt: job.attempt ?? 1, started_at: iso(job.startedAt), finished_at: null, exit_code: null, reason: null, tasks: (tasks ?? []).map(toTaskView) });
    }
    view.attempts = attempts;
    view.progress = detail.progress ? toProgressView(detail.progress) : null;
    view.usage = { gpu_hours: computeGpuHours(job, tasks ?? [], detail.attempts, detail.now), energy_wh: detail.energyWh };
  }
  return view;
}

/** A job as `GET /v1/jobs` lists it: no spec, so that its size does not grow with the spec's command and environment. */
export function toJobSummaryView(job: JobSummary, diagnosis?: Diagnosis): JobSummaryView {
  return toJobViewBase(job, job.status === 'pending' ? (diagnosis ?? job.pendingReason) : undefined);
}

/** A job as `GET /v1/jobs?view=full` lists it: the summary and the normalised spec. */
export function toJobWithSpecView(job: Job, diagnosis?: Diagnosis): JobSummaryView {
  return { ...toJobSummaryView(job, diagnosis), spec: serializeJobSpec(job.spec) as unknown as Record<string, unknown> };
}

/** GPUs held × time held, over the ended attempts and the running one, in hours. */
export function computeGpuHours(job: Job, tasks: readonly Task[], attempts: readonly AttemptRecord[], now: number): number {
  // Every local rank lists its node's whole GPU set (as torchrun does): count each (node, GPU) once.
  const gpusOf = (ranks: readonly Task[]) => new Set(ranks.flatMap((task) => task.gpus.map((gpu) => `${task.node}/${gpu}`))).size * (job.spec.resources.gpus.fraction ?? 1);
  let gpuMs = 0;
  for (const attempt of attempts) {
    if (attempt.startedAt !== undefined) gpuMs += gpusOf(attempt.tasks) * Math.max(0, attempt.finishedAt - attempt.startedAt);
  }
  const runningRecorded = (attempts.at(-1)?.attempt ?? 0) >= (job.attempt ?? 0);
  if (job.status === 'running' && job.startedAt !== undefined && !runningRecorded) gpuMs += gpusOf(tasks) * Math.max(0, now - job.startedAt);
  return gpuMs / 3_600_000;
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

function toJobViewBase(job: JobSummary, pending: Diagnosis | undefined): JobSummaryView {
  return {
    id: job.id,
    name: job.spec.name,
    team: job.spec.team,
    user: job.user ?? null,
    priority: job.spec.priority,
    status: job.status,
    pending_reason: job.status === 'pending' ? (pending?.message ?? 'waiting for the next scheduling cycle') : null,
    pending_diagnosis: pending
      ? {
          plugin: pending.plugin,
          code: pending.code,
          message: pending.message,
          position: pending.position ?? null,
          estimated_start_at: iso(pending.estimatedStartAt),
          estimated_start_basis: pending.estimatedStartAt !== undefined ? (pending.estimatedStartBasis ?? null) : null,
        }
      : null,
    created_at: iso(job.createdAt)!,
    started_at: iso(job.startedAt),
    finished_at: iso(job.finishedAt),
    exit_code: job.exitCode ?? null,
    end_reason: job.endReason ?? null,
    cancel_requested_at: iso(job.cancelRequestedAt),
    // A share of one GPU is shown as that share (0.5), not as the one GPU it sits on.
    gpus_per_node: job.spec.resources.gpus.fraction ?? job.spec.resources.gpus.count,
    num_nodes: job.spec.numNodes,
    resources: serializeResources(job.spec.resources),
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
    backend: task.backend === undefined ? null : { kind: task.backend.kind, details: { ...rankDetails(task.backend) } },
    status: task.status,
    exit_code: task.exitCode ?? null,
    started_at: iso(task.startedAt),
    finished_at: iso(task.finishedAt),
  };
}

export function toNodeViews(snapshot: ClusterSnapshot, latestGpuSamples: ReadonlyMap<string, GpuSample> = new Map()): NodeView[] {
  const holder = new Map<string, string>();
  const shares = new Map<string, GpuView['shares']>();
  for (const a of snapshot.allocations) {
    const key = `${a.node}/${a.gpuIndex}`;
    if (!holder.has(key)) holder.set(key, a.jobId);
    if (a.fraction !== undefined) shares.set(key, [...(shares.get(key) ?? []), { job_id: a.jobId, fraction: a.fraction, memory_mib: a.memoryMiB ?? null }]);
  }
  return snapshot.nodes.map((node) => ({
    name: node.name,
    address: node.address,
    state: node.state,
    state_reason: node.stateReason ?? null,
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
        shares: shares.get(`${node.name}/${gpu.index}`) ?? [],
        metrics: toGpuMetricsView(latestGpuSamples.get(`${node.name}/${gpu.index}`)),
      }),
    ),
  }));
}

function toGpuMetricsView(sample: GpuSample | undefined): GpuView['metrics'] {
  if (!sample) return null;
  return { at: new Date(sample.at).toISOString(), utilization_pct: sample.utilizationPct, memory_used_mib: sample.memoryUsedMiB, power_w: sample.powerW, temperature_c: sample.temperatureC };
}

export function toGpuMetricSampleView(sample: GpuSample): GpuMetricSampleView {
  return {
    at: new Date(sample.at).toISOString(),
    node: sample.node,
    gpuIndex: sample.gpuIndex,
    utilizationPct: sample.utilizationPct,
    memoryUsedMiB: sample.memoryUsedMiB,
    memoryTotalMiB: sample.memoryTotalMiB,
    powerW: sample.powerW,
    temperatureC: sample.temperatureC,
  };
}

export function toEventView(event: JobEvent): EventView {
  return { seq: event.seq, job_id: event.jobId, at: new Date(event.at).toISOString(), type: event.type, message: event.message, data: event.data ?? null };
}

/** Per team: its quota, what its running jobs hold by GPU type, the part of that beyond the quota, what waits. */
export function computeTeamViews(
  teams: readonly TeamConfig[],
  snapshot: ClusterSnapshot,
  running: readonly Job[],
  pendingByTeam: ReadonlyMap<string, number>,
  /** Decayed usage as of now and the half-life it decays with: `JobController.fairShareState()`. */
  fairShare: { decayedGpuSeconds: ReadonlyMap<string, number>; halfLifeMs: number },
): TeamView[] {
  const typeOf = new Map<string, string>();
  for (const node of snapshot.nodes) for (const gpu of node.gpus) typeOf.set(`${node.name}/${gpu.index}`, gpu.type);
  const teamOfJob = new Map(running.map((job) => [job.id, job.spec.team]));
  const used = new Map<string, Record<string, number>>();
  for (const allocation of snapshot.allocations) {
    const team = teamOfJob.get(allocation.jobId);
    if (!team) continue;
    const type = typeOf.get(`${allocation.node}/${allocation.gpuIndex}`) ?? 'unknown';
    const byType = used.get(team) ?? {};
    byType[type] = (byType[type] ?? 0) + (allocation.fraction ?? 1);
    used.set(team, byType);
  }
  const runningCount = new Map<string, number>();
  for (const job of running) runningCount.set(job.spec.team, (runningCount.get(job.spec.team) ?? 0) + 1);
  const names = [...new Set([...teams.map((t) => t.name), ...used.keys(), ...pendingByTeam.keys(), ...runningCount.keys()])].sort();
  // The same share the fair-share sort starts a cycle from (the scheduler's function): lowest first, ties by name.
  const weightOf = computeTeamWeights(teams);
  const shareOf = (name: string) => {
    const gpus = Object.values(used.get(name) ?? {}).reduce((a, b) => a + b, 0);
    return computeShare(gpus, fairShare.decayedGpuSeconds.get(name) ?? 0, fairShare.halfLifeMs / 1000, weightOf(name));
  };
  const order = [...names].sort((a, b) => shareOf(a) - shareOf(b) || (a < b ? -1 : a > b ? 1 : 0));
  return names.map((name) => {
    const config = teams.find((t) => t.name === name);
    const quota = config?.nominal ?? {};
    const teamUsed = used.get(name) ?? {};
    const borrowed: Record<string, number> = {};
    const anyType = quota['*'];
    if (anyType !== undefined) {
      const total = Object.values(teamUsed).reduce((a, b) => a + b, 0);
      if (total > anyType) borrowed['*'] = total - anyType;
    }
    for (const [type, n] of Object.entries(teamUsed)) {
      if (anyType !== undefined) break;
      const over = n - (quota[type] ?? 0);
      if (over > 0) borrowed[type] = over;
    }
    return {
      name,
      weight: config?.weight ?? 1,
      quota,
      borrowing_limit: config?.borrowingLimit ?? null,
      lending_limit: config?.lendingLimit ?? null,
      used: teamUsed,
      borrowed,
      running_jobs: runningCount.get(name) ?? 0,
      pending_jobs: pendingByTeam.get(name) ?? 0,
      fair_share: { decayed_gpu_hours: (fairShare.decayedGpuSeconds.get(name) ?? 0) / 3600, share: shareOf(name), position: order.indexOf(name) + 1 },
    };
  });
}
