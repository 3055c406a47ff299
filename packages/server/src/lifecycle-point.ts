/**
 * The moments of a job's life right after a durable step, each leaving the store in a state of its own. A crash
 * at any of them is what `recoverRunningJobs` (restart-recovery.ts) converges from; `onLifecyclePoint` lets a test crash at exactly one.
 * - `placed`: the job is running with its GPUs, its ranks not launched.
 * - `launched`: the backend started the ranks; their handles are not recorded.
 * - `ranks_recorded`: the ranks' handles are recorded.
 * - `rank_exit_recorded`: a rank's exit is recorded; the job is neither finished nor requeued.
 * - `stop_recorded`: why the gang is being stopped is recorded (the `stopping` event); no rank signalled yet.
 * - `cancel_recorded`: a cancel is recorded; the stop not begun.
 * - `requeued`: the job is back to pending (a restart waiting out its backoff, or a preemption).
 */
export type LifecyclePoint = 'placed' | 'launched' | 'ranks_recorded' | 'rank_exit_recorded' | 'stop_recorded' | 'cancel_recorded' | 'requeued';

/** Tells that a job passed a lifecycle point (`JobControllerOptions.onLifecyclePoint`; a no-op without one). */
export type PassLifecyclePoint = (point: LifecyclePoint, jobId: string) => void;
