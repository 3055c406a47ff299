/**
 * The simulator plays a job's whole life through the control core, as the live server does: a failed attempt is
 * restarted after its backoff, a hung one is declared hung and stopped, a cancel during a preemption ends the job
 * cancelled, a victim gets its own grace.
 */
import { describe, expect, it } from 'vitest';
import { resolvePolicies, runSimulation, type SimDecision, type TraceJob } from '../src/index.ts';
import { oneNode } from './fixtures.ts';

function play(jobs: TraceJob[], gpus = 4, profile = 'tutti'): string[] {
  const policy = resolvePolicies([profile]).policies[0]!;
  const log: string[] = [];
  const onDecision = (d: SimDecision): void => {
    const at = `${d.timeS}s`;
    if (d.kind === 'start') log.push(`${at} start ${d.traceId}`);
    if (d.kind === 'preempt') log.push(`${at} preempt ${d.traceId}`);
    if (d.kind === 'stop') log.push(`${at} stop ${d.traceId} (${d.cause})`);
    if (d.kind === 'requeue') log.push(`${at} requeue ${d.traceId} (${d.event})`);
    if (d.kind === 'finish') log.push(`${at} finish ${d.traceId} ${d.status}`);
  };
  runSimulation(jobs, oneNode(gpus), policy, { onDecision, restartOverheadS: 0, checkpointIntervalS: 0 });
  return log;
}

const job = (traceId: string, submitS: number, durationS: number, numGpus: number, extra: Partial<TraceJob> = {}): TraceJob => ({ traceId, submitS, durationS, numGpus, gpuType: '', user: '', queue: '', status: '', ...extra });

describe('the simulator plays jobs through the control core', () => {
  it('restarts a failed attempt after its backoff (doubling), then fails the job once max_restarts is used up', () => {
    const flaky = job('flaky', 0, 100, 1, { scenario: { spec: { maxRestarts: 2, restartBackoffMs: 10_000 }, attempts: [{ fail: { afterS: 5, exitCode: 3 } }, { fail: { afterS: 5, exitCode: 3 } }, { fail: { afterS: 5, exitCode: 4 } }] } });
    expect(play([flaky])).toEqual([
      '0s start flaky', '5s requeue flaky (restarting)',
      '15s start flaky', '20s requeue flaky (restarting)',
      '40s start flaky', '45s finish flaky failed',
    ]);
  });

  it('a failed attempt that has restarts left runs to its end the next time', () => {
    const once = job('once', 0, 100, 1, { scenario: { spec: { maxRestarts: 1, restartBackoffMs: 0 }, attempts: [{ fail: { afterS: 30, exitCode: 1 } }] } });
    expect(play([once])).toEqual(['0s start once', '30s requeue once (restarting)', '30s start once', '130s finish once succeeded']);
  });

  it('runs a process per GPU as live: one failed rank of a 4-GPU job stops the three others before the job restarts', () => {
    const gang = job('gang', 0, 100, 4, { scenario: { spec: { maxRestarts: 1, restartBackoffMs: 0, preemptionGraceMs: 10_000 }, attempts: [{ fail: { afterS: 5, exitCode: 3 } }] } });
    expect(play([gang])).toEqual(['0s start gang', '5s stop gang (rank_failed)', '15s requeue gang (restarting)', '15s start gang', '115s finish gang succeeded']);
  });

  it('declares a job hung after its hang_timeout without progress, stops it with its grace, restarts it per restart_on', () => {
    const hangs = job('hangs', 0, 1000, 1, { scenario: { spec: { hangTimeoutMs: 60_000, preemptionGraceMs: 10_000, maxRestarts: 1, restartOn: ['hang'], restartBackoffMs: 0 }, attempts: [{ hang: { afterS: 100 } }] } });
    expect(play([hangs])).toEqual(['0s start hangs', '160s stop hangs (hung)', '170s requeue hangs (restarting)', '170s start hangs', '1170s finish hangs succeeded']);
  });

  it('a cancel during a preemption ends the job cancelled, not back in the queue', () => {
    const low = job('low', 0, 1000, 4, { priority: 10, scenario: { spec: { preemptionGraceMs: 30_000 }, cancelAtS: 20 } });
    const high = job('high', 10, 100, 4, { priority: 90 });
    expect(play([low, high])).toEqual(['0s start low', '10s preempt low', '40s finish low cancelled', '40s start high', '140s finish high succeeded']);
  });

  it('a victim is gone at the deadline of its own preemption_grace, and a cycle during that grace stops no second job', () => {
    const v1 = job('v1', 0, 1000, 2, { priority: 10, scenario: { spec: { preemptionGraceMs: 120_000 } } });
    const v2 = job('v2', 1, 1000, 2, { priority: 10, scenario: { spec: { preemptionGraceMs: 120_000 } } });
    const urgent = job('urgent', 10, 100, 2, { priority: 90 });
    // Arrives during the victim's grace: its cycle sees the victim marked, with the GPUs it frees promised to urgent.
    const late = job('late', 50, 100, 1, { priority: 10 });
    const log = play([v1, v2, urgent, late]);
    expect(log.filter((line) => line.includes(' preempt '))).toHaveLength(1);
    expect(log).toContain('130s start urgent');
  });

  it('a pending job cancelled never starts; a running one stops and ends cancelled', () => {
    const blocker = job('blocker', 0, 100, 4);
    const waiting = job('waiting', 1, 100, 4, { scenario: { cancelAtS: 50 } });
    const running = job('running', 200, 1000, 1, { scenario: { cancelAtS: 300, exitsOnSignal: true } });
    expect(play([blocker, waiting, running])).toEqual(['0s start blocker', '50s finish waiting cancelled', '100s finish blocker succeeded', '200s start running', '300s stop running (cancelled)', '300s finish running cancelled']);
  });
});
