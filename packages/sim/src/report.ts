/**
 * `tutti sim --report DIR`: a Markdown report with SVG charts drawn by Vega-Lite in Node (no browser): JCT CDF per
 * policy, busy GPUs and queue length over time, per-team average JCT.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import type { PolicyMetrics } from './metrics.ts';
import type { SimResult } from './simulator.ts';

export interface ReportInput {
  title: string;
  /** Lines describing the run's conditions (trace, window, cluster, options). */
  conditions: string[];
  results: Array<{ result: SimResult; metrics: PolicyMetrics }>;
  unavailable: Array<{ name: string; reason: string }>;
}

const POINTS = 200;

/**
 * Renders a Vega-Lite spec to SVG text. Vega is loaded on first use: it is heavy (~25 MB resident), and every
 * `tutti` command, `tutti up` included, imports this package for `tutti sim`.
 */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const [vega, vl] = await Promise.all([import('vega'), import('vega-lite')]);
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** JCT CDF points: up to POINTS quantiles per policy. */
export function computeCdfRows(result: SimResult): Array<{ policy: string; jct_h: number; fraction: number }> {
  const jcts: number[] = [];
  const { submitS, finishS } = result.jobs;
  for (let i = 0; i < submitS.length; i++) if (!Number.isNaN(finishS[i] as number)) jcts.push((finishS[i] as number) - (submitS[i] as number));
  const sorted = Float64Array.from(jcts).sort();
  const rows: Array<{ policy: string; jct_h: number; fraction: number }> = [];
  if (sorted.length === 0) return rows;
  for (let k = 1; k <= POINTS; k++) {
    const rank = Math.max(0, Math.ceil((k / POINTS) * sorted.length) - 1);
    rows.push({ policy: result.policy, jct_h: Math.max((sorted[rank] as number) / 3600, 1 / 3600), fraction: (rank + 1) / sorted.length });
  }
  return rows;
}

/** Time-weighted averages of the step functions in POINTS equal bins between the first and last sample. */
export function computeTimelineRows(result: SimResult): Array<{ policy: string; day: number; utilization: number; pending: number }> {
  const { t, busyGpus, pendingJobs } = result.timeline;
  if (t.length < 2) return [];
  const start = t[0] as number;
  const end = t[t.length - 1] as number;
  const width = (end - start) / POINTS;
  if (width <= 0) return [];
  const busy = new Float64Array(POINTS);
  const pending = new Float64Array(POINTS);
  for (let i = 0; i + 1 < t.length; i++) {
    let a = t[i] as number;
    const b = t[i + 1] as number;
    while (a < b) {
      const bin = Math.min(POINTS - 1, Math.floor((a - start) / width));
      const binEnd = Math.min(b, start + (bin + 1) * width);
      const dt = binEnd - a;
      busy[bin] = (busy[bin] as number) + (busyGpus[i] as number) * dt;
      pending[bin] = (pending[bin] as number) + (pendingJobs[i] as number) * dt;
      a = binEnd > a ? binEnd : b;
    }
  }
  const rows: Array<{ policy: string; day: number; utilization: number; pending: number }> = [];
  for (let k = 0; k < POINTS; k++) {
    rows.push({ policy: result.policy, day: (k * width) / 86400, utilization: result.totalGpus > 0 ? (busy[k] as number) / width / result.totalGpus : 0, pending: (pending[k] as number) / width });
  }
  return rows;
}

const fmtH = (s: number): string => (Number.isFinite(s) ? (s / 3600).toFixed(2) : '–');

export async function writeReport(dir: string, input: ReportInput): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const written: string[] = [];
  /** Every chart: Vega-Lite v5, 560 px wide, one colour per policy. */
  const save = async (name: string, chart: { title: string; height: number; values: object[]; mark: unknown; encoding: Record<string, unknown> }): Promise<void> => {
    const spec = {
      $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
      title: chart.title,
      width: 560,
      height: chart.height,
      data: { values: chart.values },
      mark: chart.mark,
      encoding: { ...chart.encoding, color: { field: 'policy', type: 'nominal' } },
    } as TopLevelSpec;
    await writeFile(path.join(dir, name), await renderSvg(spec));
    written.push(name);
  };
  const cdf = input.results.flatMap(({ result }) => computeCdfRows(result));
  await save('jct-cdf.svg', {
    title: 'Job completion time, CDF',
    height: 320,
    values: cdf,
    mark: { type: 'line', interpolate: 'step-after' },
    encoding: {
      x: { field: 'jct_h', type: 'quantitative', scale: { type: 'log' }, title: 'JCT (hours, log scale)' },
      y: { field: 'fraction', type: 'quantitative', title: 'fraction of finished jobs' },
    },
  });
  const timeline = input.results.flatMap(({ result }) => computeTimelineRows(result));
  await save('utilization.svg', {
    title: 'GPU utilization over time (allocated / all GPUs)',
    height: 240,
    values: timeline,
    mark: 'line',
    encoding: {
      x: { field: 'day', type: 'quantitative', title: 'days since the first submission' },
      y: { field: 'utilization', type: 'quantitative', title: 'utilization', scale: { domain: [0, 1] } },
    },
  });
  await save('queue.svg', {
    title: 'Pending jobs over time',
    height: 240,
    values: timeline,
    mark: 'line',
    encoding: {
      x: { field: 'day', type: 'quantitative', title: 'days since the first submission' },
      y: { field: 'pending', type: 'quantitative', title: 'pending jobs (time-weighted mean)' },
    },
  });
  const teams = input.results.flatMap(({ metrics }) => metrics.teams.filter((t) => t.jobs > 0).map((t) => ({ policy: metrics.policy, team: t.team, avg_jct_h: t.avgJctS / 3600 })));
  await save('teams.svg', {
    title: 'Average JCT per team',
    height: 280,
    values: teams,
    mark: 'bar',
    encoding: {
      x: { field: 'team', type: 'nominal', title: 'team' },
      xOffset: { field: 'policy', type: 'nominal' },
      y: { field: 'avg_jct_h', type: 'quantitative', title: 'average JCT (hours)' },
    },
  });

  const lines = [
    `# ${input.title}`,
    '',
    ...input.conditions.map((c) => `- ${c}`),
    '',
    '| policy | finished | unplaceable | avg JCT (h) | p50 | p95 | p99 | avg queue (h) | p99 queue (h) | bounded slowdown | makespan (d) | utilization | preemptions | GPU-h lost | fairness (Jain) | cycles run / skipped | wall (s) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...input.results.map(({ metrics: m }) =>
      `| ${m.policy} | ${m.jobs} | ${m.unplaceable} | ${fmtH(m.avgJctS)} | ${fmtH(m.p50JctS)} | ${fmtH(m.p95JctS)} | ${fmtH(m.p99JctS)} | ${fmtH(m.avgQueueS)} | ${fmtH(m.p99QueueS)} | ${m.avgBoundedSlowdown.toFixed(2)} | ${(m.makespanS / 86400).toFixed(1)} | ${(m.utilization * 100).toFixed(1)}% | ${m.preemptions} | ${m.gpuHoursLost.toFixed(0)} | ${m.fairness.toFixed(3)} | ${m.cycles} / ${m.cyclesSkipped} | ${m.wallS.toFixed(1)} |`,
    ),
    '',
    ...(input.results[0] ? ['Unplaceable jobs by reason: ' + Object.entries(input.results[0].metrics.unplaceableByReason).map(([r, n]) => `${r} ${n}`).join(', ') + '.', ''] : []),
    ...(input.unavailable.length > 0 ? ['Not run (not available yet):', '', ...input.unavailable.map((u) => `- \`${u.name}\`: ${u.reason}`), ''] : []),
    '![JCT CDF](jct-cdf.svg)',
    '',
    '![Utilization](utilization.svg)',
    '',
    '![Pending jobs](queue.svg)',
    '',
    '![Per-team JCT](teams.svg)',
    '',
    '## Per team',
    '',
    '| policy | team | finished | unplaceable | avg JCT (h) | avg queue (h) | avg bounded slowdown | GPU-hours |',
    '|---|---|---|---|---|---|---|---|',
    ...input.results.flatMap(({ metrics: m }) => m.teams.map((t) => `| ${m.policy} | ${t.team} | ${t.jobs} | ${t.unplaceable} | ${fmtH(t.avgJctS)} | ${fmtH(t.avgQueueS)} | ${Number.isFinite(t.avgSlowdown) ? t.avgSlowdown.toFixed(2) : '–'} | ${t.gpuHours.toFixed(0)} |`)),
    '',
  ];
  await writeFile(path.join(dir, 'report.md'), lines.join('\n'));
  written.push('report.md');
  return written;
}
