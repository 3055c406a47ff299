/**
 * Running jobs as the cycle needs them: which GPUs each holds (from the snapshot's allocations), its team and
 * priority (from `CycleInput.running`), and when it is expected to end (for backfill reservations).
 */
import type { GpuDevice, Job } from '@tutti/model';
import { compareNames, type IndexedNode, type SnapshotIndex } from './snapshot-index.ts';

export interface RunningJob {
  readonly id: string;
  /** Undefined for an allocation whose job is not in `CycleInput.running`: counted busy, never preempted. */
  readonly job: Job | undefined;
  /** Whole GPUs it holds, by node ordinal (fractional shares are not freed for others by its end or preemption). */
  readonly byNode: ReadonlyMap<number, readonly GpuDevice[]>;
  /** GPUs per type, a share counting its fraction. */
  readonly byType: ReadonlyMap<string, number>;
  /** Expected end: startedAt + maxDurationMs (or the learned estimate, when given), else startedAt + the estimate; never before `now`. */
  readonly endAt: number;
}

/** `estimateMs`: a learned run-time estimate (already capped by `max_duration`), used instead of `max_duration` when it answers. */
export function computeRunningJobs(index: SnapshotIndex, running: readonly Job[], now: number, estimatedRuntimeMs: number, estimateMs?: (job: Job) => number | undefined): RunningJob[] {
  const jobs = new Map(running.map((j) => [j.id, j]));
  const byJob = new Map<string, { byNode: Map<number, GpuDevice[]>; byType: Map<string, number> }>();
  // A job's allocations usually lie together: the previous one's entry and node answer without a look-up.
  let lastJobId: string | undefined;
  let lastEntry: { byNode: Map<number, GpuDevice[]>; byType: Map<string, number> } | undefined;
  let lastNode: IndexedNode | undefined;
  for (const a of index.snapshot.allocations) {
    const node = lastNode !== undefined && lastNode.name === a.node ? lastNode : index.byName.get(a.node);
    const gpu = node?.gpuByIndex.get(a.gpuIndex);
    if (!node || !gpu) continue;
    lastNode = node;
    let entry = lastJobId === a.jobId ? lastEntry : byJob.get(a.jobId);
    if (!entry) byJob.set(a.jobId, (entry = { byNode: new Map(), byType: new Map() }));
    lastJobId = a.jobId;
    lastEntry = entry;
    entry.byType.set(gpu.type, (entry.byType.get(gpu.type) ?? 0) + (a.fraction ?? 1));
    if (a.fraction !== undefined) continue;
    const list = entry.byNode.get(node.ordinal);
    if (!list) entry.byNode.set(node.ordinal, [gpu]);
    else if (!list.includes(gpu)) list.push(gpu);
  }
  const result: RunningJob[] = [];
  for (const [id, entry] of byJob) {
    const job = jobs.get(id);
    const startedAt = job?.startedAt ?? now;
    const expected = job ? (estimateMs?.(job) ?? job.spec.maxDurationMs) : undefined;
    const endAt = Math.max(now, startedAt + (expected ?? estimatedRuntimeMs));
    result.push({ id, job, byNode: entry.byNode, byType: entry.byType, endAt });
  }
  return result.sort((a, b) => compareNames(a.id, b.id));
}
