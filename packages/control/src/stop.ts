/**
 * Why a running gang is stopped, and the stop as it is recorded before any rank is signalled. A recorded stop is
 * what a restarted control plane resumes from: the same cause, the same signal, the same SIGKILL deadline.
 */
import { formatDuration } from '@tutti/model';
import type { GraceSource } from '@tutti/model';

/** Why a running gang is being stopped. The first cause wins: the ranks that die of our SIGTERM do not count. */
export type StopCause =
  | { kind: 'rank_failed'; rank: number; exitCode: number | null; detail: string; lost?: boolean }
  | { kind: 'cancelled' }
  | { kind: 'max_duration'; limitMs: number }
  /** No progress record for `timeoutMs` while the ranks lived (or every GPU idle that long). */
  | { kind: 'hung'; timeoutMs: number; detail: string }
  /** Stopped to make room (`preempt`), for the pending job `forJobId` when the scheduler chose it: back to pending, not counted as a restart. */
  | { kind: 'preempted'; message: string; forJobId?: string };

export type StopCauseKind = StopCause['kind'];

/** A stop as its `stopping` event records it, before any rank is signalled (the event's data). */
export interface RecordedStop {
  signal: string;
  grace_ms: number;
  /** Which setting decided `grace_ms` (see `decideStopGrace`). */
  grace_source: GraceSource;
  /** Epoch ms: SIGKILL then, also by a control plane started after this one died. */
  deadline: number;
  attempt: number | null;
  cause: StopCause;
}

const STOP_CAUSE_KINDS: ReadonlySet<string> = new Set<StopCauseKind>(['rank_failed', 'cancelled', 'max_duration', 'hung', 'preempted']);

/** A stop as the `stopping` event recorded it; undefined for anything else (an event of an older server). */
export function parseRecordedStop(data: Readonly<Record<string, unknown>> | undefined): RecordedStop | undefined {
  if (!data) return undefined;
  const cause = data.cause;
  if (typeof cause !== 'object' || cause === null) return undefined;
  const kind = (cause as { kind?: unknown }).kind;
  if (typeof kind !== 'string' || !STOP_CAUSE_KINDS.has(kind)) return undefined;
  if (typeof data.deadline !== 'number' || typeof data.signal !== 'string' || typeof data.grace_ms !== 'number') return undefined;
  return data as unknown as RecordedStop;
}

/** The `stopping` event's message: what is stopped and why. */
export function describeStop(cause: StopCause): string {
  switch (cause.kind) {
    case 'rank_failed':
      return `stopping the other ranks: ${cause.detail}`;
    case 'cancelled':
      return 'stopping every rank: cancel requested';
    case 'max_duration':
      return `stopping every rank: exceeded max_duration ${formatDuration(cause.limitMs)}`;
    case 'hung':
      return `stopping every rank: hung, ${cause.detail}`;
    case 'preempted':
      return `stopping every rank: preempted (${cause.message})`;
  }
}

/** How a rank's exit is told: "rank 1 exited with code 3", "rank 0 was killed by SIGKILL", "rank 2 was lost (…)". */
export function describeRankExit(rank: number, exit: { exitCode: number | null; signal?: string | null; lost: boolean; error?: string }): string {
  if (exit.lost) return `rank ${rank} was lost (its process vanished without an exit status)`;
  const how = exit.signal ? `rank ${rank} was killed by ${exit.signal}` : `rank ${rank} exited with code ${exit.exitCode}`;
  return exit.error !== undefined && exit.exitCode !== 0 ? `${how}: ${exit.error}` : how;
}
