/**
 * What the control core hears (events) and what it asks for (commands). A driver — the server over the store and
 * an execution backend, the simulator over its memory and a simulated backend — turns what happened into events,
 * feeds them to `JobLifecycle.handle` with the time, and carries out the commands in the order given. The order is
 * part of the contract: `record_stop` comes before its `signal_ranks` (a stop is durable before a rank is
 * signalled), a rank's exit is recorded before the job's end that it causes.
 */
import type { Job, JobEnd, NodeState, RequeueOptions } from '@tutti/model';
import type { RecordedStop, StopCause } from './stop.ts';

/** A rank of a placed attempt: where it runs. */
export interface PlacedRank {
  rank: number;
  node: string;
}

/** A rank of an attempt as the store recorded it before a restart. */
export interface RestoredRank extends PlacedRank {
  status: 'starting' | 'running' | 'exited' | 'lost';
  exitCode?: number | null;
  finishedAt?: number;
}

export type LifecycleEvent =
  /** The plan's placement of `job` is committed (its attempt number and restarts as the store now has them). */
  | { kind: 'placed'; job: Job; ranks: readonly PlacedRank[] }
  /**
   * Every rank of the attempt was started by the backend (and its handles recorded). `nodes`: where ranks run that the
   * cluster put elsewhere than they were placed (the Slurm backend's `placement: 'slurm'`).
   */
  | { kind: 'ranks_started'; jobId: string; attempt: number; at: number; nodes?: readonly PlacedRank[] }
  /**
   * The attempt could not start. `retryAfterMs`: not the job's fault and over by itself (a full disk): it goes back to
   * the queue, not counted as a restart, tried again after that pause; without it the job fails.
   */
  | { kind: 'launch_failed'; jobId: string; attempt: number; detail: string; retryAfterMs?: number }
  /**
   * A rank ended: with an exit status, or lost (its process vanished without one). `error`: what the rank itself said
   * went wrong (its structured error file), told with the exit.
   */
  | { kind: 'rank_exited'; jobId: string; attempt: number; rank: number; exitCode: number | null; signal?: string; lost: boolean; at: number; error?: string }
  /** A cancel of a running job was recorded. */
  | { kind: 'cancel_requested'; jobId: string }
  /** Stop a running job to make room (a plan's victim with the job `forJobId` it makes room for, or an operator's preempt). */
  | { kind: 'preempt'; jobId: string; message: string; forJobId?: string }
  /** A progress record of the running attempt (printed on stdout or posted to the API). */
  | { kind: 'progress'; jobId: string; attempt: number; at: number; values?: Readonly<Record<string, unknown>> }
  /**
   * Time passed: max_duration deadlines and hang timers are checked. `gpusIdleSince`: since when every GPU of a
   * running job has been idle (0% utilization), for the jobs where that is known.
   */
  | { kind: 'tick'; gpusIdleSince?: ReadonlyMap<string, number> }
  /** A backend's node changed state; `down` loses every rank on it. */
  | { kind: 'node_state'; node: string; state: NodeState; detail?: string }
  /**
   * After a control-plane restart, a job the store says is running, with its ranks as recorded and the stop its
   * last `stopping` event of this attempt recorded (with when), if any. Nothing is commanded yet: the driver adopts
   * the ranks (their exits found meanwhile come as `rank_exited`), then says `adopted`.
   */
  | { kind: 'restored'; job: Job; ranks: readonly RestoredRank[]; stop?: { recorded: RecordedStop; at: number } }
  /** The restored job's live ranks are watched again: its interrupted stop, or its end, is carried through. */
  | { kind: 'adopted'; jobId: string }
  /**
   * After a control-plane restart, a job the store says is running of which not every rank was started (or none
   * was): the crash cut its launch. The driver has killed the ranks it found (nothing of a partial gang may run on);
   * the job ends if it was cancelled, else it goes back to the queue without using a restart (not its fault).
   */
  | { kind: 'launch_interrupted'; job: Job };

export type LifecycleCommand =
  /** Start every rank of the placed attempt (then say `ranks_started` or `launch_failed`). */
  | { kind: 'launch'; jobId: string; attempt: number }
  /** Record a rank's end (its task, and a `rank_exited` event saying `detail`). */
  | { kind: 'record_rank_exit'; jobId: string; attempt: number; rank: number; status: 'exited' | 'lost'; exitCode: number | null; signal?: string; finishedAt: number; detail: string }
  /** Record that ranks that never started are lost (a launch that failed). */
  | { kind: 'record_ranks_lost'; jobId: string; attempt: number; ranks: readonly number[]; at: number }
  /** Record why the gang is being stopped, with its signal and SIGKILL deadline (the `stopping` event), before any signal. */
  | { kind: 'record_stop'; jobId: string; stop: RecordedStop; message: string }
  /**
   * Tell the ranks the deadline, send `signal` to every live rank of the attempt, SIGKILL whatever is left at
   * `deadline` (at once when it has passed). `resumed`: the stop was recorded by a control plane that died.
   */
  | { kind: 'signal_ranks'; jobId: string; attempt: number; signal: string; deadline: number; resumed: boolean }
  /** Append an event to the job (a hang declared). */
  | { kind: 'append_event'; jobId: string; type: 'hung'; message: string; data: Record<string, unknown> }
  /** The attempt is over and so is the job. */
  | { kind: 'finish'; jobId: string; attempt: number; end: JobEnd; cause?: StopCause }
  /** The attempt is over; the whole gang goes back to the queue (not before `options.notBefore`). */
  | { kind: 'requeue'; jobId: string; attempt: number; reason: string; options: RequeueOptions; cause?: StopCause }
  /** Wake the driver at `at` (epoch ms): a backoff ends (of `jobId`), a deadline or a hang timer falls due (then `tick`). */
  | { kind: 'wake_at'; at: number; why: 'backoff' | 'max_duration' | 'hang'; jobId?: string };
