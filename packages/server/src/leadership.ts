/**
 * Who leads the control plane. Every replica serves the API; exactly one at a time runs the control core and the
 * backends: the holder of the store's lease `control` (see `StateStore.acquireLease`). Its epoch is the fencing
 * token every write of the leader's term carries (`StateStore.withFence`), so a leader that lost the lease without
 * knowing it — paused, cut off — has its late writes refused by the database, and it stops acting on the backends
 * by its own clock before anyone else may take over (`leaseHeld`).
 *
 *   follower ──lease granted──▶ leader (term of epoch e started: recovery, then cycles)
 *   leader ──renewal refused / store unreachable past the lease / shutdown──▶ follower (term closed, ranks left running)
 *
 * A server on the embedded SQLite store is the only one that can open its data dir: it leads from the start, for
 * good (`soleLeadership`).
 */
import type { Lease, StateStore } from '@tutti/store';
import type { Logger } from './logger.ts';

/** An action on ranks refused because this replica may no longer lead (see `Leadership.leaseHeld`). */
export class NotLeaderError extends Error {
  override name = 'NotLeaderError';
}

/** The lease whose holder leads. */
export const CONTROL_LEASE = 'control';
/** How long a granted lease lasts unless renewed (`tutti up --lease-ttl`). */
export const DEFAULT_LEASE_TTL_MS = 8000;
/** The shortest lease: renewals every quarter of it must fit between a slow database's answers. */
export const MIN_LEASE_TTL_MS = 1000;

export interface LeaderIdentity {
  holder: string;
  epoch: number;
  /** Epoch ms, by the leader's clock. */
  expiresAt: number;
}

export interface LeadershipState {
  role: 'leader' | 'follower';
  /** This replica's name in the lease (`host:port#pid`). */
  self: string;
  /** The leader as last read from the store; undefined before the first read, or when no one leads. */
  leader?: LeaderIdentity;
  /** Since when this replica has its current role (epoch ms). */
  since: number;
}

export interface Leadership {
  readonly state: LeadershipState;
  /**
   * Whether this replica may act as the leader at this instant: it was granted the lease and, by its own clock, the
   * lease has not run out (less a margin). Checked synchronously right before every action on the backends, so that a
   * leader resumed after a pause longer than its lease (SIGSTOP, a frozen VM) does nothing before it learns it lost.
   */
  leaseHeld(): boolean;
}

export interface LeaderTermHooks {
  /** This replica now leads at `lease.epoch`: start the term. Renewals go on meanwhile. */
  elected(lease: Lease): Promise<void>;
  /** This replica leads no more (`why` says how it learned): end the term, leaving the ranks running. */
  deposed(why: string): Promise<void>;
}

/** The leadership of a server alone on its store. */
export function soleLeadership(self: string, now: () => number): Leadership {
  const since = now();
  return {
    state: { role: 'leader', self, leader: { holder: self, epoch: 0, expiresAt: Number.POSITIVE_INFINITY }, since },
    leaseHeld: () => true,
  };
}

export interface LeaderElectionOptions {
  store: StateStore;
  self: string;
  ttlMs: number;
  now: () => number;
  logger: Logger;
  hooks: LeaderTermHooks;
}

/**
 * Asks for the lease (a follower every quarter of its ttl, the leader to renew it likewise) and starts or ends this
 * replica's term when the answer changes its role. Terms start and end one after the other, never overlapping;
 * renewals do not wait for them (a term's recovery may take longer than the lease).
 */
export class LeaderElection implements Leadership {
  private readonly options: LeaderElectionOptions;
  private current: LeadershipState;
  /** By this replica's clock, until when it may act as the leader; 0 while it does not lead. */
  private heldUntil = 0;
  private leadingEpoch = 0;
  private timer: NodeJS.Timeout | undefined;
  private asking: Promise<void> | undefined;
  private transitions: Promise<void> = Promise.resolve();
  private closed = false;
  private unreachableSince: number | undefined;

  constructor(options: LeaderElectionOptions) {
    this.options = options;
    this.current = { role: 'follower', self: options.self, since: options.now() };
  }

  get state(): LeadershipState {
    return this.current;
  }

  leaseHeld(): boolean {
    return this.current.role === 'leader' && this.options.now() < this.heldUntil;
  }

  /** Asks once at once (so a lone replica leads as soon as it starts), then on its period. */
  async start(): Promise<void> {
    await this.ask();
    this.schedule();
  }

  /** Resolves once the term this replica may be starting or ending has started or ended. */
  settled(): Promise<void> {
    return this.transitions;
  }

  /**
   * Stops asking; a leader ends its term and gives the lease up, so that a follower takes over at its next ask instead
   * of waiting out the lease.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.asking;
    if (this.current.role === 'leader') {
      const epoch = this.leadingEpoch;
      this.demote('this replica is shutting down');
      await this.transitions;
      await this.options.store.releaseLease(CONTROL_LEASE, this.options.self, epoch, this.options.now()).catch((error: unknown) => {
        this.options.logger.warn(`could not give the lease up (it runs out by itself): ${error instanceof Error ? error.message : String(error)}`);
      });
    }
    await this.transitions;
  }

  private get periodMs(): number {
    return Math.max(250, Math.floor(this.options.ttlMs / 4));
  }

  /** The margin by which a leader stops acting before its lease runs out: room for clocks that disagree a little. */
  private get marginMs(): number {
    return Math.min(2000, Math.floor(this.options.ttlMs / 4));
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      void this.ask().finally(() => this.schedule());
    }, this.periodMs);
    this.timer.unref();
  }

  private ask(): Promise<void> {
    this.asking ??= this.askOnce().finally(() => (this.asking = undefined));
    return this.asking;
  }

  private async askOnce(): Promise<void> {
    const { store, self, ttlMs, now, logger } = this.options;
    const sentAt = now();
    let lease: Lease;
    try {
      lease = await answerWithin(store.acquireLease(CONTROL_LEASE, self, sentAt, ttlMs), 2 * this.periodMs);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      if (this.unreachableSince === undefined) {
        this.unreachableSince = now();
        logger.warn(`the store did not answer the lease request (${reason}); asking again every ${this.periodMs} ms`);
      }
      if (this.current.role === 'leader' && now() >= this.heldUntil) this.demote(`its lease ran out while the store could not be reached (${reason})`);
      return;
    }
    if (this.unreachableSince !== undefined) {
      logger.info(`the store answers again after ${Math.round((now() - this.unreachableSince) / 1000)} s`);
      this.unreachableSince = undefined;
    }
    const leader: LeaderIdentity = { holder: lease.holder, epoch: lease.epoch, expiresAt: lease.expiresAt };
    const granted = lease.holder === self && lease.expiresAt > sentAt;
    if (this.closed) {
      // Granted while shutting down: a follower that never led gives it back, so no one waits out the lease.
      if (granted && this.current.role !== 'leader') await store.releaseLease(CONTROL_LEASE, self, lease.epoch, now()).catch(() => undefined);
      return;
    }
    if (!granted) {
      if (this.current.role === 'leader') this.demote(`${lease.holder} holds the lease now, at epoch ${lease.epoch}`);
      this.current = { ...this.current, leader: lease.expiresAt > sentAt ? leader : undefined };
      return;
    }
    if (this.current.role === 'leader' && lease.epoch !== this.leadingEpoch) {
      // Lost and won back without noticing (a long pause): the old term's state is not this epoch's.
      this.demote(`the lease changed hands meanwhile (epoch ${this.leadingEpoch} → ${lease.epoch})`);
    }
    this.heldUntil = sentAt + ttlMs - this.marginMs;
    if (this.current.role === 'leader') {
      this.current = { ...this.current, leader };
      return;
    }
    this.leadingEpoch = lease.epoch;
    this.current = { role: 'leader', self, leader, since: now() };
    logger.info(`this replica (${self}) leads the control plane at epoch ${lease.epoch}`);
    this.transitions = this.transitions.then(() => this.options.hooks.elected(lease)).catch((error: unknown) => {
      logger.error(`starting the leader's term at epoch ${lease.epoch} failed; giving the lease up`, error);
      this.demote('its term could not start');
      return store.releaseLease(CONTROL_LEASE, self, lease.epoch, now()).then(() => undefined, () => undefined);
    });
  }

  private demote(why: string): void {
    if (this.current.role !== 'leader') return;
    const { logger, now } = this.options;
    this.heldUntil = 0;
    this.current = { role: 'follower', self: this.options.self, since: now() };
    logger.warn(`this replica no longer leads the control plane: ${why}`);
    this.transitions = this.transitions.then(() => this.options.hooks.deposed(why)).catch((error: unknown) => logger.error('ending the leader\'s term failed', error));
  }
}

/**
 * `promise`, or a rejection once `ms` have passed: a database that stops answering (a network cut leaves a query
 * waiting on a dead connection) must not keep a leader believing it leads past its lease.
 */
function answerWithin<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** A `--lease-ttl` problem, or undefined. */
export function checkLeaseTtl(ttlMs: number): string | undefined {
  if (!Number.isFinite(ttlMs) || ttlMs < MIN_LEASE_TTL_MS || ttlMs > 600_000) return `must be between ${MIN_LEASE_TTL_MS / 1000} and 600 seconds (it is how long a dead leader holds the cluster up); the default is ${DEFAULT_LEASE_TTL_MS / 1000}`;
  return undefined;
}
