/**
 * Drives a `JobLifecycle` with events and a clock that only moves when told: no process, no timer, no store. Each
 * step answers the commands, which the tests compare with what the job's owner would see happen.
 */
import type { Job, JobSpec } from '@tutti/model';
import { JobLifecycle } from '../src/job-lifecycle.ts';
import type { LifecycleSettings } from '../src/job-lifecycle.ts';
import type { LifecycleCommand, LifecycleEvent } from '../src/lifecycle-events.ts';

export function makeJob(id: string, spec: Partial<JobSpec> = {}, extra: Partial<Job> = {}): Job {
  return {
    id,
    status: 'running',
    createdAt: 0,
    attempt: 1,
    spec: { name: `job-${id}`, team: 'default', priority: 50, resources: { gpus: { count: 1, types: [] } }, numNodes: 1, run: { kind: 'shell', command: 'train' }, env: {}, ...spec },
    ...extra,
  };
}

export class LifecycleHarness {
  readonly lifecycle: JobLifecycle;
  now: number;
  /** Every command so far, in order. */
  readonly log: LifecycleCommand[] = [];

  constructor(settings: Partial<LifecycleSettings> = {}, start = 1_000_000) {
    this.lifecycle = new JobLifecycle({ defaultGraceMs: 60_000, halfLifeMs: 3_600_000, ...settings });
    this.now = start;
  }

  /** Moves the clock forward. */
  advance(ms: number): this {
    this.now += ms;
    return this;
  }

  feed(event: LifecycleEvent): readonly LifecycleCommand[] {
    const commands = this.lifecycle.handle(event, this.now);
    this.log.push(...commands);
    return commands;
  }

  /** Places `job` on one node per rank and starts its ranks: the job runs. */
  run(job: Job, ranks = 1): this {
    this.feed({ kind: 'placed', job, ranks: Array.from({ length: ranks }, (_, rank) => ({ rank, node: `node-${rank}` })) });
    this.feed({ kind: 'ranks_started', jobId: job.id, attempt: job.attempt ?? 1, at: this.now });
    return this;
  }

  exit(jobId: string, rank: number, exitCode: number | null, options: { attempt?: number; signal?: string; lost?: boolean } = {}): readonly LifecycleCommand[] {
    return this.feed({ kind: 'rank_exited', jobId, attempt: options.attempt ?? 1, rank, exitCode, lost: options.lost ?? false, at: this.now, ...(options.signal ? { signal: options.signal } : {}) });
  }

  /** Only the kinds of `commands`, for reading a sequence at a glance. */
  static kinds(commands: readonly LifecycleCommand[]): string[] {
    return commands.map((c) => c.kind);
  }
}
