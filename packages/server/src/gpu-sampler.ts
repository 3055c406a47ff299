/**
 * Samples every GPU's gauges on a period, attributes each sample to the job holding that GPU at that moment,
 * and stores them as a time series (for `GET /v1/jobs/:id/gpu-metrics`, per-job energy and /metrics). Backends
 * that cannot measure their GPUs (fake GPUs) answer no samples, so nothing is stored and nothing is invented.
 */
import type { GpuSample, JobGpuSample } from '@tutti/model';
import type { ExecutionBackend } from '@tutti/backends';
import { asDiskFull } from '@tutti/store';
import type { StateStore } from '@tutti/store';
import type { Logger } from './logger.ts';

export interface GpuSamplerOptions {
  backend: ExecutionBackend;
  store: StateStore;
  logger: Logger;
  now: () => number;
  /** Time between samples. @default 10000 */
  intervalMs?: number;
  /** Samples older than this are deleted. @default 7 days */
  retentionMs?: number;
}

const PRUNE_EVERY_MS = 3600_000;

export class GpuSampler {
  private readonly intervalMs: number;
  private readonly retentionMs: number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private lastWarning: string | undefined;
  private lastPruneAt = 0;
  /** The latest sample of each GPU (`node/index`) with the job that held it, for /metrics and the nodes view. */
  private readonly latestByGpu = new Map<string, JobGpuSample>();
  /** Per job holding GPUs: since when all of them have read 0% utilization (absent: one was busy or unknown). */
  private readonly idleSinceByJob = new Map<string, number>();

  constructor(private readonly options: GpuSamplerOptions) {
    this.intervalMs = options.intervalMs ?? 10_000;
    this.retentionMs = options.retentionMs ?? 7 * 24 * 3600_000;
  }

  start(): void {
    this.timer = setInterval(() => {
      this.running ??= this.sampleOnce().finally(() => (this.running = undefined));
    }, this.intervalMs);
    this.timer.unref();
    this.running ??= this.sampleOnce().finally(() => (this.running = undefined));
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  latest(): ReadonlyMap<string, JobGpuSample> {
    return this.latestByGpu;
  }

  /** Since when every GPU of the job has been idle, per the samples so far; undefined when not known to be idle. */
  gpusIdleSince(jobId: string): number | undefined {
    return this.idleSinceByJob.get(jobId);
  }

  /**
   * A job is idle from the first sample in which all its GPUs read 0% until one reads more (or reads nothing: a MIG
   * GPU reports no utilization, and unknown is not idle). Jobs that no longer hold GPUs are forgotten.
   */
  private trackIdleness(samples: readonly JobGpuSample[], at: number): void {
    const busy = new Map<string, boolean>();
    for (const sample of samples) {
      if (sample.jobId === null) continue;
      const isBusy = sample.utilizationPct === null || sample.utilizationPct > 0;
      busy.set(sample.jobId, (busy.get(sample.jobId) ?? false) || isBusy);
    }
    for (const jobId of [...this.idleSinceByJob.keys()]) if (!busy.has(jobId)) this.idleSinceByJob.delete(jobId);
    for (const [jobId, isBusy] of busy) {
      if (isBusy) this.idleSinceByJob.delete(jobId);
      else if (!this.idleSinceByJob.has(jobId)) this.idleSinceByJob.set(jobId, at);
    }
  }

  /** Takes one reading now and stores it. Never throws: a failed reading is logged once until it changes. */
  async sampleOnce(): Promise<void> {
    const { backend, store, logger, now } = this.options;
    try {
      const reading = await backend.sampleGpus();
      if (reading.warning !== undefined && reading.warning !== this.lastWarning) logger.warn(reading.warning);
      this.lastWarning = reading.warning;
      if (reading.samples.length === 0) return;
      const snapshot = await store.snapshot();
      const holders = new Map<string, Array<{ jobId: string; fraction: number }>>();
      for (const a of snapshot.allocations) {
        const key = `${a.node}/${a.gpuIndex}`;
        holders.set(key, [...(holders.get(key) ?? []), { jobId: a.jobId, fraction: a.fraction ?? 1 }]);
      }
      const attributed = reading.samples.flatMap((sample) => {
        const gpu = this.attribute(sample, holders.get(`${sample.node}/${sample.gpuIndex}`)?.[0]?.jobId ?? null);
        const sharers = holders.get(`${sample.node}/${sample.gpuIndex}`) ?? [];
        // A shared GPU's sample goes to each sharer, its power split by share, so energy is never counted twice.
        if (sharers.length <= 1) return [gpu];
        return sharers.map((s) => ({ ...gpu, jobId: s.jobId, powerW: gpu.powerW === null ? null : gpu.powerW * s.fraction }));
      });
      await store.appendGpuSamples(attributed);
      this.trackIdleness(attributed, reading.samples[0]?.at ?? now());
      const at = now();
      if (at - this.lastPruneAt >= PRUNE_EVERY_MS) {
        this.lastPruneAt = at;
        await store.pruneGpuSamples(at - this.retentionMs);
      }
    } catch (error) {
      // A full disk is logged once per episode by the store's DiskFullLog, not every sample.
      if (!asDiskFull(error)) logger.warn(`sampling GPU metrics failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /**
   * A sample stands for the time since the GPU's previous one, capped at two periods so that a gap (a
   * server restart, a stalled nvidia-smi) is not billed as energy that was never measured.
   */
  private attribute(sample: GpuSample, jobId: string | null): JobGpuSample {
    const key = `${sample.node}/${sample.gpuIndex}`;
    const previous = this.latestByGpu.get(key);
    const elapsed = previous === undefined ? this.intervalMs : sample.at - previous.at;
    const intervalMs = Math.max(0, Math.min(elapsed, 2 * this.intervalMs));
    const attributed: JobGpuSample = { ...sample, jobId, intervalMs };
    this.latestByGpu.set(key, attributed);
    return attributed;
  }
}
