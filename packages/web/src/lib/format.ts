/** How times, durations and statuses read on the dashboard. */
import type { JobStatus } from '@tutti/model';

/** Succeeded, failed or cancelled: the job will not change any more. */
export function isTerminalStatus(status: JobStatus): boolean {
  return status === 'succeeded' || status === 'failed' || status === 'cancelled';
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '–';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** "12s ago", "in 3m 05s": relative to `now` (epoch ms). */
export function formatRelative(iso: string | null, now: number): string {
  if (!iso) return '–';
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return '–';
  const delta = at - now;
  return delta >= 0 ? `in ${formatDuration(delta)}` : `${formatDuration(-delta)} ago`;
}

/** A local date and time, to the second, sortable: 2026-11-23 14:05:09. */
export function formatTime(iso: string | null): string {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '–';
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** How long a job ran (or has been running, or waited). */
export function jobDuration(job: { status: JobStatus; created_at: string; started_at: string | null; finished_at: string | null }, now: number): string {
  if (job.started_at) return formatDuration((job.finished_at ? Date.parse(job.finished_at) : now) - Date.parse(job.started_at));
  if (job.status === 'pending') return `waiting ${formatDuration(now - Date.parse(job.created_at))}`;
  return '–';
}

export function formatMiB(mib: number | null): string {
  if (mib === null) return '–';
  return mib >= 1024 ? `${(mib / 1024).toFixed(mib % 1024 === 0 ? 0 : 1)} GiB` : `${mib} MiB`;
}

/** Per-type counts as "8 A100, 2 *". */
export function formatPerType(counts: Record<string, number>): string {
  const entries = Object.entries(counts).filter(([, n]) => n !== 0);
  if (entries.length === 0) return '0';
  return entries.map(([type, n]) => `${Number.isInteger(n) ? n : n.toFixed(2)} ${type === '*' ? 'any' : type}`).join(', ');
}
