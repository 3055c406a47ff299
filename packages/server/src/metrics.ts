/**
 * Prometheus metrics of the control plane, rendered in the text exposition format (no client library needed), named
 * by Prometheus's conventions: a counter ends in `_total`, nothing else does, and units are suffixes (`_seconds`,
 * `_bytes`, `_ratio`). The process and Node.js runtime metrics carry the names prom-client's default metrics use, so
 * dashboards made for other Node services read them.
 */
import type { LeadershipState } from './leadership.ts';
import { readdirSync } from 'node:fs';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { IntervalHistogram } from 'node:perf_hooks';
import type { ClusterSnapshot, JobGpuSample, JobStatus } from '@tutti/model';
import { JOB_STATUSES } from '@tutti/model';

const CYCLE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(private readonly buckets: number[]) {
    this.counts = buckets.map(() => 0);
  }
  observe(value: number): void {
    this.sum += value;
    this.count += 1;
    this.buckets.forEach((bound, i) => {
      if (value <= bound) this.counts[i]! += 1;
    });
  }
  render(name: string, help: string): string[] {
    const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} histogram`];
    this.buckets.forEach((bound, i) => lines.push(`${name}_bucket{le="${bound}"} ${this.counts[i]}`));
    lines.push(`${name}_bucket{le="+Inf"} ${this.count}`, `${name}_sum ${this.sum}`, `${name}_count ${this.count}`);
    return lines;
  }
}

export class ServerMetrics {
  private readonly cycleSeconds = new Histogram(CYCLE_BUCKETS);
  private readonly startLatencySeconds = new Histogram(LATENCY_BUCKETS);
  private submissions = 0;
  /** Event-loop delay since the last scrape (sampled every 10 ms by libuv, off the event loop). */
  private readonly loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });

  constructor() {
    this.loopDelay.enable();
  }

  close(): void {
    this.loopDelay.disable();
  }

  observeCycle(seconds: number): void {
    this.cycleSeconds.observe(seconds);
  }
  /** Submit → first rank's process started. */
  observeStartLatency(ms: number): void {
    this.startLatencySeconds.observe(Math.max(0, ms) / 1000);
  }
  countSubmission(): void {
    this.submissions += 1;
  }

  /** `progress`: the last progress record of each running attempt, exported as gauges per job and field. */
  render(
    jobsByStatus: Record<JobStatus, number>,
    snapshot: ClusterSnapshot,
    progress: ReadonlyMap<string, { attempt: number; at: number; values: Readonly<Record<string, string | number | boolean>> }> = new Map(),
    gpuSamples: ReadonlyMap<string, JobGpuSample> = new Map(),
  ): string {
    const totalGpus = snapshot.nodes.reduce((n, node) => n + node.gpus.length, 0);
    // A GPU shared by fractional jobs has one allocation per share: it is one allocated GPU.
    const allocated = new Set(snapshot.allocations.map((a) => `${a.node}\u0000${a.gpuIndex}`)).size;
    const lines = ['# HELP tutti_jobs Jobs in the store by status.', '# TYPE tutti_jobs gauge'];
    for (const status of JOB_STATUSES) lines.push(`tutti_jobs{status="${status}"} ${jobsByStatus[status] ?? 0}`);
    lines.push(
      '# HELP tutti_gpus GPUs known to the control plane by state.',
      '# TYPE tutti_gpus gauge',
      `tutti_gpus{state="allocated"} ${allocated}`,
      `tutti_gpus{state="free"} ${Math.max(0, totalGpus - allocated)}`,
      '# HELP tutti_gpu_capacity GPUs in the inventory.',
      '# TYPE tutti_gpu_capacity gauge',
      `tutti_gpu_capacity ${totalGpus}`,
      '# HELP tutti_nodes Nodes in the inventory.',
      '# TYPE tutti_nodes gauge',
      `tutti_nodes ${snapshot.nodes.length}`,
      '# HELP tutti_job_submissions_total Jobs accepted by the API since the server started.',
      '# TYPE tutti_job_submissions_total counter',
      `tutti_job_submissions_total ${this.submissions}`,
      ...this.cycleSeconds.render('tutti_scheduling_cycle_duration_seconds', 'Time spent in one scheduling decision (runCycle).'),
      ...this.startLatencySeconds.render('tutti_job_start_latency_seconds', 'Time from submission to the first rank process started.'),
      '# HELP tutti_job_progress The last value of each numeric field of a running job\'s progress records.',
      '# TYPE tutti_job_progress gauge',
    );
    for (const [jobId, record] of progress) {
      for (const [field, value] of Object.entries(record.values)) {
        if (typeof value === 'number') lines.push(`tutti_job_progress{job_id="${jobId}",field="${field}"} ${value}`);
      }
    }
    lines.push('# HELP tutti_job_attempt The attempt a running job is on (1 for the first).', '# TYPE tutti_job_attempt gauge');
    for (const [jobId, record] of progress) lines.push(`tutti_job_attempt{job_id="${jobId}"} ${record.attempt}`);
    lines.push('# HELP tutti_job_progress_age_seconds Time since a running job last reported progress.', '# TYPE tutti_job_progress_age_seconds gauge');
    for (const [jobId, record] of progress) lines.push(`tutti_job_progress_age_seconds{job_id="${jobId}"} ${Math.max(0, (Date.now() - record.at) / 1000)}`);
    lines.push(...renderGpuGauges([...gpuSamples.values()]), ...this.renderProcessMetrics());
    return `${lines.join('\n')}\n`;
  }

  /** This server process and its Node.js runtime, under prom-client's default names. */
  private renderProcessMetrics(): string[] {
    const cpu = process.cpuUsage();
    const memory = process.memoryUsage();
    const delay = this.loopDelay;
    // No sample yet (a scrape right after start): the histogram reports NaN/huge values; 0 is the truthful "none seen".
    const lag = (ns: number): number => (delay.count > 0 && Number.isFinite(ns) ? ns / 1e9 : 0);
    const [major, minor, patch] = process.versions.node.split('.');
    const metric = (name: string, type: 'counter' | 'gauge', help: string, value: number, labels = ''): string[] => [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name}${labels} ${value}`];
    const lines = [
      ...metric('process_cpu_user_seconds_total', 'counter', 'User CPU time spent by the server process.', cpu.user / 1e6),
      ...metric('process_cpu_system_seconds_total', 'counter', 'System CPU time spent by the server process.', cpu.system / 1e6),
      ...metric('process_cpu_seconds_total', 'counter', 'User and system CPU time spent by the server process.', (cpu.user + cpu.system) / 1e6),
      ...metric('process_resident_memory_bytes', 'gauge', 'Resident memory of the server process.', memory.rss),
      ...metric('process_start_time_seconds', 'gauge', 'Start time of the server process since the Unix epoch.', Math.round(performance.timeOrigin / 1000)),
    ];
    const openFds = countOpenFds();
    if (openFds !== undefined) lines.push(...metric('process_open_fds', 'gauge', 'Open file descriptors of the server process.', openFds));
    lines.push(
      ...metric('nodejs_eventloop_lag_p50_seconds', 'gauge', 'Median event-loop delay since the last scrape.', lag(delay.percentile(50))),
      ...metric('nodejs_eventloop_lag_p99_seconds', 'gauge', '99th percentile of the event-loop delay since the last scrape.', lag(delay.percentile(99))),
      ...metric('nodejs_eventloop_lag_max_seconds', 'gauge', 'Longest event-loop delay since the last scrape.', lag(delay.max)),
      ...metric('nodejs_heap_size_total_bytes', 'gauge', 'V8 heap size.', memory.heapTotal),
      ...metric('nodejs_heap_size_used_bytes', 'gauge', 'V8 heap in use.', memory.heapUsed),
      ...metric('nodejs_external_memory_bytes', 'gauge', 'Memory of C++ objects bound to JavaScript objects.', memory.external),
      ...metric('nodejs_version_info', 'gauge', 'Node.js version of the server.', 1, `{version="${process.version}",major="${major}",minor="${minor}",patch="${patch}"}`),
    );
    delay.reset();
    return lines;
  }
}

/** Open file descriptors, from /proc on Linux; undefined elsewhere (the metric is then left out, not zeroed). */
function countOpenFds(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return undefined;
  }
}

/**
 * The latest sample of each real GPU, labelled with the job holding it (`job_id=""` when free), so that
 * `sum by (job_id) (tutti_gpu_power_watts)` is a job's draw. Unreported figures are left out, not zeroed; with
 * fake GPUs there are no samples and so no series.
 */
function renderGpuGauges(samples: readonly JobGpuSample[]): string[] {
  const gauges: Array<[string, string, (s: JobGpuSample) => number | null]> = [
    ['tutti_gpu_utilization_ratio', 'Share of time a kernel ran on the GPU (0-1), from nvidia-smi.', (s) => (s.utilizationPct === null ? null : s.utilizationPct / 100)],
    ['tutti_gpu_memory_used_bytes', 'GPU memory in use.', (s) => (s.memoryUsedMiB === null ? null : s.memoryUsedMiB * 1024 * 1024)],
    ['tutti_gpu_memory_total_bytes', 'GPU memory.', (s) => (s.memoryTotalMiB === null ? null : s.memoryTotalMiB * 1024 * 1024)],
    ['tutti_gpu_power_watts', 'Power drawn by the GPU.', (s) => s.powerW],
    ['tutti_gpu_temperature_celsius', 'GPU temperature.', (s) => s.temperatureC],
  ];
  const lines: string[] = [];
  for (const [name, help, value] of gauges) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const sample of samples) {
      const v = value(sample);
      if (v !== null) lines.push(`${name}{node="${escapeLabel(sample.node)}",gpu="${sample.gpuIndex}",job_id="${sample.jobId ?? ''}"} ${v}`);
    }
  }
  return lines;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/**
 * Who leads, from this replica's view: `tutti_leader` is 1 on the leader and 0 on followers (so `sum(tutti_leader)`
 * over the replicas is 1 when all is well), `tutti_leader_epoch` the lease's fencing epoch (it grows by one at each
 * change of leader: `changes(tutti_leader_epoch[1h])` counts failovers), labelled with the leading replica.
 */
export function renderLeadership(state: LeadershipState): string {
  const leader = state.leader;
  const replica = `replica="${escapeLabel(state.self)}"`;
  return [
    '# HELP tutti_leader 1 on the replica that runs the control loop, 0 on the others.',
    '# TYPE tutti_leader gauge',
    `tutti_leader{${replica}} ${state.role === 'leader' ? 1 : 0}`,
    '# HELP tutti_leader_epoch The fencing epoch of the leader lease as this replica last read it, labelled with its holder.',
    '# TYPE tutti_leader_epoch gauge',
    ...(leader ? [`tutti_leader_epoch{leader="${escapeLabel(leader.holder)}"} ${leader.epoch}`] : []),
  ].join('\n') + '\n';
}
