/** What the execution backend reports, as the control core's events; and which recorded ranks may still run. */
import type { NodeState, Task } from '@tutti/model';
import type { LifecycleEvent } from '@tutti/control';
import type { RankExit } from '@tutti/backends';

/** A backend's rank exit as the core's event (`attempt`: the job's current one when the backend named none). */
export function rankExitEvent(exit: RankExit, currentAttempt: number | undefined): LifecycleEvent {
  return {
    kind: 'rank_exited', jobId: exit.jobId, attempt: exit.attempt ?? currentAttempt ?? 1, rank: exit.rank, exitCode: exit.exitCode, lost: exit.lost, at: exit.at,
    ...(exit.signal ? { signal: exit.signal } : {}),
    ...(exit.error !== undefined ? { error: exit.error } : {}),
  };
}

/** A backend's node state change as the core's event (`down` loses every rank on the node). */
export function nodeStateEvent(change: { node: string; state: NodeState; reason?: string }): LifecycleEvent {
  return { kind: 'node_state', node: change.node, state: change.state, ...(change.reason !== undefined ? { detail: change.reason } : {}) };
}

/** Whether a recorded rank may still be running (what is signalled on a stop, adopted after a restart). */
export const isLive = (task: Task): boolean => task.status === 'running' || task.status === 'starting';
