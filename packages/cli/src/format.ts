/** Plain-text rendering for people: aligned tables, ages, durations. Scripts use --json instead. */
import type { JobSummaryView } from '@tutti/client';

export function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function formatAge(fromIso: string | null, nowMs: number): string {
  if (!fromIso) return '-';
  return formatSeconds(Math.max(0, (nowMs - Date.parse(fromIso)) / 1000));
}

export function formatSeconds(seconds: number): string {
  if (seconds < 60) return `${Math.floor(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(Math.floor(seconds % 60)).padStart(2, '0')}s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(seconds / 86400)}d${String(Math.floor((seconds % 86400) / 3600)).padStart(2, '0')}h`;
}

export function describeGpus(job: JobSummaryView): string {
  const perNode = job.gpus_per_node;
  return job.num_nodes > 1 ? `${job.num_nodes}x${perNode}` : String(perNode);
}

/** What a person wants to know in the last column: why it waits, or how it ended. */
export function describeState(job: JobSummaryView): string {
  if (job.status === 'pending') return job.pending_reason ?? '';
  if (job.status === 'running') return job.cancel_requested_at ? 'stopping (cancel requested)' : '';
  return job.end_reason ?? '';
}

export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
