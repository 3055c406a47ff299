/**
 * What the API asks of the control plane, answered by whichever replica it reached. The leader answers from its
 * control core (queue, diagnoses, ledgers, watches); a follower answers from the store, which the leader keeps, and
 * leaves the acting to the leader, which learns of the follower's writes from the event log (leader-term.ts).
 */
import type { Diagnosis, Job, JobGpuSample } from '@tutti/model';
import { SEED_HALF_LIVES, TeamUsageLedger, lifecycleSettingsFor } from '@tutti/control';
import type { SchedulerProfile } from '@tutti/scheduler';
import { FencedError } from '@tutti/store';
import type { CancelOutcome, StateStore } from '@tutti/store';
import type { EventFeed } from './event-feed.ts';
import type { LeaderTerm } from './leader-term.ts';
import type { Leadership } from './leadership.ts';
import { toProgressRecord } from './progress-watch.ts';

type ProgressValues = Record<string, string | number | boolean>;

export type ProgressSnapshot = ReadonlyMap<string, { attempt: number; at: number; values: Readonly<Record<string, string | number | boolean>> }>;

export interface FairShareState {
  decayedGpuSeconds: ReadonlyMap<string, number>;
  halfLifeMs: number;
}

/** A follower's fair-share figures are rebuilt from the store at most this often. */
const FOLLOWER_FAIR_SHARE_TTL_MS = 5000;

export interface ReplicaControlOptions {
  store: StateStore;
  feed: EventFeed;
  leadership: Leadership;
  profile: SchedulerProfile;
  now: () => number;
}

export class ReplicaControl {
  private readonly options: ReplicaControlOptions;
  private term: LeaderTerm | undefined;
  private followerFairShare: { at: number; state: Promise<FairShareState> } | undefined;

  constructor(options: ReplicaControlOptions) {
    this.options = options;
  }

  /** The term this replica leads now, if any (set and cleared by the server as terms start and end). */
  setTerm(term: LeaderTerm | undefined): void {
    this.term = term;
  }

  get leaderTerm(): LeaderTerm | undefined {
    return this.term;
  }

  /** True while this replica leads but has not finished re-adopting what ran before (nothing is scheduled yet). */
  get recovering(): boolean {
    return this.options.leadership.state.role === 'leader' && (this.term === undefined || this.term.controller.recovering);
  }

  /** A job the API just stored as pending. */
  enqueue(job: Job): void {
    this.term?.controller.enqueue(job);
  }

  pendingDiagnosis(jobId: string): Diagnosis | undefined {
    return this.term?.controller.pendingDiagnosis(jobId);
  }

  /** Cancels in the store (any replica may), then lets this replica's term act on it if it leads. */
  async cancel(jobId: string): Promise<CancelOutcome> {
    const outcome = await this.options.store.requestCancel(jobId, this.options.now());
    if (outcome === 'cancelled' || outcome === 'stopping') this.options.feed.notify();
    this.term?.controller.cancelRecorded(jobId, outcome);
    return outcome;
  }

  /**
   * A progress record posted by a rank. The leader stores it and counts it for hang detection; a follower stores it
   * (shown in the job's views and metrics at once), which the leader's hang detection does not see.
   */
  async recordProgress(jobId: string, rank: number, values: ProgressValues): Promise<'recorded' | 'not_running'> {
    const term = this.term;
    if (term) {
      try {
        return await term.controller.recordProgress(jobId, rank, values);
      } catch (error) {
        if (!(error instanceof FencedError)) throw error;
      }
    }
    const job = await this.options.store.getJob(jobId);
    if (!job || job.status !== 'running') return 'not_running';
    await this.options.store.appendProgress([toProgressRecord(jobId, job.attempt ?? 1, rank, this.options.now(), values)]);
    this.options.feed.notify();
    return 'recorded';
  }

  async pendingCountsByTeam(): Promise<Map<string, number>> {
    if (this.term) return this.term.controller.pendingCountsByTeam();
    return this.options.store.countJobsByTeam('pending');
  }

  async pendingCount(): Promise<number> {
    if (this.term) return this.term.controller.queueLength;
    return (await this.options.store.countJobsByStatus()).pending;
  }

  /** Each team's decayed GPU use: the leader's ledger, or on a follower the same ledger rebuilt from the store. */
  fairShareState(): Promise<FairShareState> {
    if (this.term) return Promise.resolve(this.term.controller.fairShareState());
    const at = this.options.now();
    if (!this.followerFairShare || at - this.followerFairShare.at > FOLLOWER_FAIR_SHARE_TTL_MS) {
      this.followerFairShare = { at, state: this.readFairShare(at) };
      this.followerFairShare.state.catch(() => (this.followerFairShare = undefined));
    }
    return this.followerFairShare.state;
  }

  private async readFairShare(at: number): Promise<FairShareState> {
    const { store, profile } = this.options;
    const ledger = new TeamUsageLedger(lifecycleSettingsFor(profile).halfLifeMs);
    const [past, running] = await Promise.all([store.listGpuUseEndedSince(at - SEED_HALF_LIVES * ledger.halfLifeMs), store.listJobsByStatus(['running'])]);
    ledger.seed(at, past, running);
    return { decayedGpuSeconds: new Map(ledger.peek(at / 1000).map((u) => [u.team, u.decayedGpuSeconds])), halfLifeMs: ledger.halfLifeMs };
  }

  /** The last progress record of each running attempt the leader watches (a follower watches none). */
  lastProgress(): ProgressSnapshot {
    return this.term?.controller.lastProgress() ?? new Map();
  }

  /** The latest GPU gauges (sampled by the leader only). */
  latestGpuSamples(): ReadonlyMap<string, JobGpuSample> {
    return this.term?.latestGpuSamples() ?? new Map();
  }
}
