/**
 * Time series for the charts, in uPlot's column layout: x values first, then one array per series, with null
 * where a series has no point at that x.
 */
import type { ClusterSampleView, GpuMetricSampleView, ProgressView } from '@tutti/client';

export interface Series {
  label: string;
  values: (number | null)[];
}

export interface ChartData {
  /** Seconds since the epoch, or steps. */
  x: number[];
  xIsTime: boolean;
  series: Series[];
  /** The x range to show, whatever the data spans (a time window); absent: the data's own span. */
  xRange?: readonly [number, number];
}

const seconds = (iso: string) => Date.parse(iso) / 1000;

/**
 * The x range of a chart of the last `windowS` seconds: the whole window, ending now (or at the newest sample, if the
 * server's clock is ahead). Without it uPlot spans whatever the samples span: years around a single sample, seconds
 * over the first few.
 */
export function lastWindowRange(nowS: number, windowS: number, x: readonly number[]): [number, number] {
  const end = Math.max(nowS, x[x.length - 1] ?? nowS);
  return [end - windowS, end];
}

/** The queue and GPU allocation over the last `windowS` seconds (the samples the server kept for that window). */
export function clusterSeries(samples: readonly ClusterSampleView[], window: { nowS: number; windowS: number }): ChartData {
  const x = samples.map((s) => seconds(s.at));
  return {
    x,
    xRange: lastWindowRange(window.nowS, window.windowS, x),
    xIsTime: true,
    series: [
      { label: 'pending jobs', values: samples.map((s) => s.pending_jobs) },
      { label: 'running jobs', values: samples.map((s) => s.running_jobs) },
      { label: 'GPUs allocated', values: samples.map((s) => s.gpus_allocated) },
    ],
  };
}

/** Gauges worth a throughput chart: numeric values named like a rate. */
const RATE = /(per_s|_per_sec|\/s$|throughput|tokens_s|samples_s|it_s|ips)/i;

/**
 * Loss and throughput from progress records: by step when every record has one, else by time; only the latest
 * attempt's records of rank 0 (or the lowest rank present), so restarts do not fold lines back on themselves.
 */
export function progressSeries(records: readonly ProgressView[]): { loss: ChartData; throughput: ChartData } {
  const latest = Math.max(0, ...records.map((r) => r.attempt));
  const ofAttempt = records.filter((r) => r.attempt === latest);
  const rank = Math.min(...ofAttempt.map((r) => r.rank));
  const points = ofAttempt.filter((r) => r.rank === rank);
  const byStep = points.length > 0 && points.every((r) => r.step !== null);
  const sorted = [...points].sort((a, b) => (byStep ? a.step! - b.step! : a.seq - b.seq));
  const x = sorted.map((r) => (byStep ? r.step! : seconds(r.at)));
  const rateKeys = [...new Set(sorted.flatMap((r) => Object.keys(r.values).filter((k) => RATE.test(k) && typeof r.values[k] === 'number')))].sort();
  return {
    loss: { x, xIsTime: !byStep, series: [{ label: 'loss', values: sorted.map((r) => r.loss) }] },
    throughput: {
      x,
      xIsTime: !byStep,
      series: rateKeys.map((key) => ({ label: key, values: sorted.map((r) => (typeof r.values[key] === 'number' ? (r.values[key] as number) : null)) })),
    },
  };
}

/** Utilisation (%) and memory used (%) per GPU (`node/gpu`), aligned on the union of sample times. */
export function gpuSeries(samples: readonly GpuMetricSampleView[]): { utilization: ChartData; memory: ChartData } {
  const times = [...new Set(samples.map((s) => seconds(s.at)))].sort((a, b) => a - b);
  const column = new Map(times.map((t, i) => [t, i]));
  const gpus = [...new Set(samples.map((s) => `${s.node}/${s.gpuIndex}`))].sort();
  const utilization = new Map(gpus.map((g) => [g, Array<number | null>(times.length).fill(null)]));
  const memory = new Map(gpus.map((g) => [g, Array<number | null>(times.length).fill(null)]));
  for (const s of samples) {
    const key = `${s.node}/${s.gpuIndex}`;
    const i = column.get(seconds(s.at))!;
    utilization.get(key)![i] = s.utilizationPct;
    memory.get(key)![i] = s.memoryUsedMiB !== null && s.memoryTotalMiB ? Math.round((1000 * s.memoryUsedMiB) / s.memoryTotalMiB) / 10 : null;
  }
  return {
    utilization: { x: times, xIsTime: true, series: gpus.map((g) => ({ label: `GPU ${g}`, values: utilization.get(g)! })) },
    memory: { x: times, xIsTime: true, series: gpus.map((g) => ({ label: `GPU ${g}`, values: memory.get(g)! })) },
  };
}
