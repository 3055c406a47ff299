/**
 * Gauges of one physical GPU at one moment, as the backend read them (nvidia-smi on the local backend). A figure
 * the driver does not report is null; fake GPUs produce no samples at all, so these figures are never invented.
 */
export interface GpuSample {
  /** Epoch ms the sample was taken. */
  at: number;
  node: string;
  gpuIndex: number;
  /** 0–100: share of the last sample period during which a kernel ran. */
  utilizationPct: number | null;
  memoryUsedMiB: number | null;
  memoryTotalMiB: number | null;
  powerW: number | null;
  temperatureC: number | null;
}

/** A sample attributed to the job holding the GPU when it was taken (none: the GPU was free). */
export interface JobGpuSample extends GpuSample {
  jobId: string | null;
  /** The time this sample stands for (since the GPU's previous sample, capped): energy = powerW × intervalMs. */
  intervalMs: number;
}

/** What a job has consumed, over all its attempts. */
export interface JobUsage {
  /** GPUs held × time held, in hours, over every attempt including the running one. */
  gpuHours: number;
  /** Energy drawn by its GPUs while it held them, in Wh; null when no GPU reported power (fake GPUs). */
  energyWh: number | null;
}
