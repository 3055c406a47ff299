import { describe, expect, it } from 'vitest';
import type { LifecycleCommand } from '../src/lifecycle-events.ts';
import { LifecycleHarness, makeJob } from './lifecycle-harness.ts';

const kinds = LifecycleHarness.kinds;
const only = <K extends LifecycleCommand['kind']>(commands: readonly LifecycleCommand[], kind: K) => commands.filter((c): c is Extract<LifecycleCommand, { kind: K }> => c.kind === kind);

describe('a job that runs to its end', () => {
  it('placed, launched, every rank exits 0: succeeded, and its run time joins the history', () => {
    const h = new LifecycleHarness({ durationWindow: 20 });
    expect(kinds(h.feed({ kind: 'placed', job: makeJob('1'), ranks: [{ rank: 0, node: 'a' }, { rank: 1, node: 'b' }] }))).toEqual(['launch']);
    h.feed({ kind: 'ranks_started', jobId: '1', attempt: 1, at: h.now });
    // How many ranks a driver that ends them all (the simulator) has to end: the attempt's, until it is over.
    expect(h.lifecycle.rankCountOf('1')).toBe(2);
    h.advance(90_000);
    expect(kinds(h.exit('1', 0, 0))).toEqual(['record_rank_exit']);
    const end = h.exit('1', 1, 0);
    expect(kinds(end)).toEqual(['record_rank_exit', 'finish']);
    expect(h.lifecycle.rankCountOf('1')).toBe(0);
    expect(only(end, 'finish')[0]?.end).toEqual({ status: 'succeeded', exitCode: 0, endReason: 'all 2 ranks exited with code 0' });
    expect(h.lifecycle.durationHistory.get('default|1')).toEqual([90_000]);
  });

  it('a job that needed two attempts enters the run-time history with both (what it took), not its last alone', () => {
    const h = new LifecycleHarness({ durationWindow: 20 });
    h.run(makeJob('1', { maxRestarts: 1, restartBackoffMs: 0 }));
    h.advance(30_000);
    h.exit('1', 0, 1);
    h.run(makeJob('1', { maxRestarts: 1 }, { attempt: 2, restarts: 1 }));
    h.advance(50_000);
    h.exit('1', 0, 0, { attempt: 2 });
    expect(h.lifecycle.durationHistory.get('default|1')).toEqual([80_000]);
  });

  it('a rank of an attempt that is over does not act on the next one', () => {
    const h = new LifecycleHarness();
    h.run(makeJob('1', {}, { attempt: 2 }));
    expect(h.exit('1', 0, 1, { attempt: 1 })).toEqual([]);
  });
});

describe('stops: recorded before any signal, the first cause wins', () => {
  it('a failed rank stops the others with the job’s own grace, recorded first, and the job fails with that rank’s code', () => {
    const h = new LifecycleHarness();
    h.run(makeJob('1', { preemptionGraceMs: 5_000 }), 2);
    const stop = h.exit('1', 1, 3);
    expect(kinds(stop)).toEqual(['record_rank_exit', 'record_stop', 'signal_ranks']);
    const recorded = only(stop, 'record_stop')[0]!;
    expect(recorded.stop).toMatchObject({ signal: 'SIGTERM', grace_ms: 5_000, grace_source: 'job', deadline: h.now + 5_000, cause: { kind: 'rank_failed', rank: 1, exitCode: 3 } });
    expect(only(stop, 'signal_ranks')[0]).toMatchObject({ deadline: h.now + 5_000, resumed: false });
    h.advance(1_000);
    const end = h.exit('1', 0, 143, { signal: 'SIGTERM' });
    expect(only(end, 'finish')[0]?.end).toEqual({ status: 'failed', exitCode: 3, endReason: 'rank 1 exited with code 3' });
  });

  it('the profile’s maximum caps a longer grace, and the record says the maximum applied', () => {
    const h = new LifecycleHarness({ maxGraceMs: 10_000 });
    h.run(makeJob('1', { preemptionGraceMs: 600_000 }));
    const stop = h.feed({ kind: 'cancel_requested', jobId: '1' });
    expect(only(stop, 'record_stop')[0]?.stop).toMatchObject({ grace_ms: 10_000, grace_source: 'max' });
  });

  it('cancel during a preemption: not stopped twice, and the job ends cancelled, not back in the queue', () => {
    const h = new LifecycleHarness();
    h.run(makeJob('1', { maxRestarts: 3 }));
    expect(kinds(h.feed({ kind: 'preempt', jobId: '1', message: 'room for job 2', forJobId: '2' }))).toEqual(['record_stop', 'signal_ranks']);
    expect(h.lifecycle.stoppingMarkerOf('1')).toEqual({ since: h.now, forJobId: '2' });
    h.advance(2_000);
    expect(h.feed({ kind: 'cancel_requested', jobId: '1' })).toEqual([]);
    const end = h.exit('1', 0, 143, { signal: 'SIGTERM' });
    expect(kinds(end)).toEqual(['record_rank_exit', 'finish']);
    expect(only(end, 'finish')[0]?.end.status).toBe('cancelled');
  });

  it('a preempted job goes back to the queue without using a restart or a backoff', () => {
    const h = new LifecycleHarness();
    h.run(makeJob('1', { maxRestarts: 1 }));
    h.feed({ kind: 'preempt', jobId: '1', message: 'room', forJobId: '2' });
    const end = h.exit('1', 0, 143);
    const requeue = only(end, 'requeue')[0]!;
    expect(requeue.options).toMatchObject({ event: 'preempted' });
    expect(requeue.options.countRestart).toBeUndefined();
    expect(requeue.options.notBefore).toBeUndefined();
    expect(only(end, 'wake_at')).toEqual([]);
  });

  it('a failure during a cancel: the cancel stands', () => {
    const h = new LifecycleHarness();
    h.run(makeJob('1', { maxRestarts: 2 }), 2);
    h.feed({ kind: 'cancel_requested', jobId: '1' });
    expect(kinds(h.exit('1', 0, 7))).toEqual(['record_rank_exit']);
    expect(only(h.exit('1', 1, 143), 'finish')[0]?.end.status).toBe('cancelled');
  });

  it('a stop decided while the ranks are being launched is recorded and signalled once they run', () => {
    const h = new LifecycleHarness();
    h.feed({ kind: 'placed', job: makeJob('1'), ranks: [{ rank: 0, node: 'a' }] });
    expect(h.feed({ kind: 'cancel_requested', jobId: '1' })).toEqual([]);
    expect(kinds(h.feed({ kind: 'ranks_started', jobId: '1', attempt: 1, at: h.now }))).toEqual(['record_stop', 'signal_ranks']);
  });

  it('a launch that failed fails the job, its ranks lost; one refused for a full disk is tried again, not counted', () => {
    const h = new LifecycleHarness();
    h.feed({ kind: 'placed', job: makeJob('1'), ranks: [{ rank: 0, node: 'a' }] });
    const failed = h.feed({ kind: 'launch_failed', jobId: '1', attempt: 1, detail: 'no such file: train' });
    expect(kinds(failed)).toEqual(['record_ranks_lost', 'finish']);
    expect(only(failed, 'finish')[0]?.end).toEqual({ status: 'failed', exitCode: null, endReason: 'could not start: no such file: train' });
    h.feed({ kind: 'placed', job: makeJob('2'), ranks: [{ rank: 0, node: 'a' }] });
    const full = h.feed({ kind: 'launch_failed', jobId: '2', attempt: 1, detail: 'disk full', retryAfterMs: 10_000 });
    expect(full).toEqual([
      { kind: 'requeue', jobId: '2', attempt: 1, reason: 'could not start: disk full; tried again in 10s', options: { notBefore: h.now + 10_000 } },
      { kind: 'wake_at', at: h.now + 10_000, why: 'backoff', jobId: '2' },
    ]);
  });
});

describe('restarts, hangs and deadlines', () => {
  it('a failure with restarts left: requeued counted, after the backoff, with a wake-up when it ends', () => {
    const h = new LifecycleHarness();
    h.run(makeJob('1', { maxRestarts: 2, restartBackoffMs: 4_000 }, { restarts: 1 }));
    h.advance(10_000);
    const end = h.exit('1', 0, 1);
    const requeue = only(end, 'requeue')[0]!;
    expect(requeue.options).toMatchObject({ event: 'restarting', countRestart: true, notBefore: h.now + 8_000 });
    expect(only(end, 'wake_at')).toEqual([{ kind: 'wake_at', at: h.now + 8_000, why: 'backoff', jobId: '1' }]);
    // The attempt that ended counts towards the job's attained service.
    expect(h.lifecycle.attainedServiceGpuMs([], h.now).get('1')).toBe(10_000);
    // One job's, as the simulator's LAS thresholds read it: the ended attempt while queued, plus the run under way.
    const queued = makeJob('1', {}, { status: 'pending', startedAt: h.now - 10_000 });
    expect(h.lifecycle.attainedServiceGpuMsOf(queued, h.now + 5_000)).toBe(10_000);
    const rerunning = { ...queued, status: 'running' as const, startedAt: h.now + 8_000 };
    expect(h.lifecycle.attainedServiceGpuMsOf(rerunning, h.now + 11_000)).toBe(13_000);
  });

  it('a hang: declared after hang_timeout without progress, recorded, then stopped; progress keeps it alive', () => {
    const h = new LifecycleHarness();
    h.run(makeJob('1', { hangTimeoutMs: 60_000, maxRestarts: 1, restartOn: ['hang'] }));
    h.advance(50_000);
    h.feed({ kind: 'progress', jobId: '1', attempt: 1, at: h.now, values: { step: 10 } });
    h.advance(50_000);
    expect(kinds(h.feed({ kind: 'tick' }))).toEqual(['wake_at']);
    h.advance(10_000);
    const hung = h.feed({ kind: 'tick' });
    expect(kinds(hung)).toEqual(['append_event', 'record_stop', 'signal_ranks']);
    expect(only(hung, 'append_event')[0]?.message).toMatch(/^declared hung: no progress record for 1m \(hang_timeout\); last progress \{"step":10\}/);
    const end = h.exit('1', 0, 137, { signal: 'SIGKILL' });
    expect(only(end, 'requeue')[0]?.options).toMatchObject({ event: 'restarting', countRestart: true });
  });

  it('a backend that reports exits late (Slurm: once it releases the nodes) gets that much more before a hang, so a finished gang is not taken for a hung one', () => {
    const h = new LifecycleHarness({ exitReportDelayMs: 11_000 });
    h.run(makeJob('1', { hangTimeoutMs: 3_000, maxRestarts: 1, restartOn: ['hang'] }));
    // The ranks ended 1 s in; Slurm releases the job 8 s later, when their exits are reported.
    h.advance(9_000);
    expect(kinds(h.feed({ kind: 'tick' }))).toEqual(['wake_at']);
    expect(only(h.exit('1', 0, 0), 'finish')[0]?.end.status).toBe('succeeded');
    // A gang that is really silent is declared hung after hang_timeout plus the delay.
    h.run(makeJob('2', { hangTimeoutMs: 3_000 }));
    h.advance(13_000);
    expect(kinds(h.feed({ kind: 'tick' }))).toEqual(['wake_at']);
    h.advance(1_000);
    expect(kinds(h.feed({ kind: 'tick' }))).toEqual(['append_event', 'record_stop', 'signal_ranks']);
  });

  it('a hang during a backoff cannot happen: a job waiting out its backoff has no attempt to declare hung', () => {
    const h = new LifecycleHarness();
    h.run(makeJob('1', { hangTimeoutMs: 1_000, maxRestarts: 1 }));
    h.exit('1', 0, 1);
    h.advance(60_000);
    expect(h.feed({ kind: 'tick' })).toEqual([]);
  });

  it('every GPU idle for hang_timeout declares a hang even while progress lines come', () => {
    const h = new LifecycleHarness();
    h.run(makeJob('1', { hangTimeoutMs: 60_000 }));
    const idleSince = h.now;
    h.advance(61_000);
    h.feed({ kind: 'progress', jobId: '1', attempt: 1, at: h.now });
    const hung = h.feed({ kind: 'tick', gpusIdleSince: new Map([['1', idleSince]]) });
    expect(only(hung, 'append_event')[0]?.message).toContain('every GPU of the job idle');
  });

  it('max_duration: stopped at its deadline, failed, not restarted', () => {
    const h = new LifecycleHarness();
    const started = h.now;
    h.run(makeJob('1', { maxDurationMs: 120_000, maxRestarts: 3 }));
    expect(only(h.log, 'wake_at')).toEqual([{ kind: 'wake_at', at: started + 120_000, why: 'max_duration' }]);
    h.advance(119_000);
    expect(h.feed({ kind: 'tick' })).toEqual([]);
    h.advance(1_000);
    expect(kinds(h.feed({ kind: 'tick' }))).toEqual(['record_stop', 'signal_ranks']);
    expect(only(h.exit('1', 0, 143), 'finish')[0]?.end).toEqual({ status: 'failed', exitCode: null, endReason: 'exceeded max_duration 2m' });
  });

  it('a node that goes down loses its ranks: the gang is stopped and restarted as node_lost', () => {
    const h = new LifecycleHarness();
    h.run(makeJob('1', { maxRestarts: 1 }), 2);
    const down = h.feed({ kind: 'node_state', node: 'node-1', state: 'down' });
    expect(kinds(down)).toEqual(['record_rank_exit', 'record_stop', 'signal_ranks']);
    expect(only(down, 'record_rank_exit')[0]).toMatchObject({ rank: 1, status: 'lost' });
    expect(only(h.exit('1', 0, 143), 'requeue')[0]?.reason).toMatch(/^rank 1 was lost .*restarting the whole gang/);
  });

  it('ranks the cluster started on other nodes than placed are lost with the node they run on, not the one they were placed on', () => {
    const h = new LifecycleHarness();
    const job = makeJob('1', { maxRestarts: 1 });
    h.feed({ kind: 'placed', job, ranks: [{ rank: 0, node: 'node-0' }, { rank: 1, node: 'node-0' }] });
    h.feed({ kind: 'ranks_started', jobId: '1', attempt: 1, at: h.now, nodes: [{ rank: 0, node: 'node-7' }, { rank: 1, node: 'node-7' }] });
    expect(h.feed({ kind: 'node_state', node: 'node-0', state: 'down' })).toEqual([]);
    const down = h.feed({ kind: 'node_state', node: 'node-7', state: 'down' });
    expect(only(down, 'record_rank_exit').map((c) => [c.rank, c.status])).toEqual([[0, 'lost'], [1, 'lost']]);
  });
});

describe('a control-plane restart', () => {
  const stopOf = (h: LifecycleHarness) => only(h.log, 'record_stop')[0]!.stop;

  it('during a preemption grace: the recorded stop resumes with the same deadline, nothing recorded again, the job requeued as preempted', () => {
    const before = new LifecycleHarness();
    const job = makeJob('1', { preemptionGraceMs: 30_000, maxRestarts: 1 }, { startedAt: before.now });
    before.run(job);
    before.feed({ kind: 'preempt', jobId: '1', message: 'room', forJobId: '2' });
    const recorded = stopOf(before);
    const stoppedAt = before.now;

    const after = new LifecycleHarness({}, stoppedAt + 10_000);
    after.feed({ kind: 'restored', job, ranks: [{ rank: 0, node: 'node-0', status: 'running' }], stop: { recorded, at: stoppedAt } });
    expect(after.lifecycle.stoppingMarkerOf('1')).toEqual({ since: stoppedAt, forJobId: '2' });
    expect(after.feed({ kind: 'adopted', jobId: '1' })).toEqual([{ kind: 'signal_ranks', jobId: '1', attempt: 1, signal: 'SIGTERM', deadline: stoppedAt + 30_000, resumed: true }]);
    const end = after.exit('1', 0, 143);
    expect(only(end, 'requeue')[0]?.options).toMatchObject({ event: 'preempted' });
    expect(only(end, 'requeue')[0]?.options.countRestart).toBeUndefined();
  });

  it('during a cancel grace whose ranks all exited meanwhile: cancelled at adoption', () => {
    const job = makeJob('1', {}, { cancelRequestedAt: 5, startedAt: 0 });
    const h = new LifecycleHarness();
    h.feed({ kind: 'restored', job, ranks: [{ rank: 0, node: 'a', status: 'running' }] });
    expect(kinds(h.exit('1', 0, 143))).toEqual(['record_rank_exit']);
    const end = h.feed({ kind: 'adopted', jobId: '1' });
    expect(only(end, 'finish')[0]?.end.status).toBe('cancelled');
  });

  it('a rank failure recorded before the crash, its stop not begun: the stop begins at adoption', () => {
    const job = makeJob('1', {}, { startedAt: 0 });
    const h = new LifecycleHarness();
    h.feed({ kind: 'restored', job, ranks: [{ rank: 0, node: 'a', status: 'exited', exitCode: 4, finishedAt: 1 }, { rank: 1, node: 'b', status: 'running' }] });
    const resumed = h.feed({ kind: 'adopted', jobId: '1' });
    expect(kinds(resumed)).toEqual(['record_stop', 'signal_ranks']);
    expect(only(resumed, 'record_stop')[0]?.stop.cause).toMatchObject({ kind: 'rank_failed', rank: 0, exitCode: 4 });
  });

  it('a launch the crash cut (not every rank started): back in the queue without using a restart, or cancelled if it was', () => {
    const h = new LifecycleHarness();
    const requeued = h.feed({ kind: 'launch_interrupted', job: makeJob('1', { maxRestarts: 0 }, { attempt: 2, restarts: 1 }) });
    expect(requeued).toEqual([{ kind: 'requeue', jobId: '1', attempt: 2, reason: 'the control plane restarted before the job was launched', options: {} }]);
    const cancelled = h.feed({ kind: 'launch_interrupted', job: makeJob('2', {}, { cancelRequestedAt: 5 }) });
    expect(cancelled).toEqual([{ kind: 'finish', jobId: '2', attempt: 1, end: { status: 'cancelled', exitCode: null, endReason: 'cancelled' } }]);
    // Neither is watched any more: a late exit of a killed rank commands nothing.
    expect(h.exit('1', 0, 137)).toEqual([]);
    expect(h.lifecycle.stoppingMarkerOf('2')).toBeUndefined();
  });
});
