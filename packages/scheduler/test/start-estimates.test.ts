/**
 * Expected starts are estimates: told rounded ("about 1 h"), with what they rest on, and not told at all when they
 * would rest on the profile's default run time alone (a job without max_duration says nothing about its end).
 */
import { describe, expect, it } from 'vitest';
import { formatApproxDuration } from '@tutti/model';
import { FIFO_BACKFILL_PROFILE } from '../src/index.ts';
import { cycle, makeCluster, makeJob, makeNode } from './builders.ts';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
/** A moment that is not a round number of anything, as a real clock's. */
const NOW = 4 * MINUTE + 26_557;

// Node a is held by job 50, node b by job 51: a job of 2 whole nodes waits for both to end.
const snapshot = makeCluster(makeNode('a').gpus(8), makeNode('b').gpus(8)).allocate('50', 'a', [0, 1, 2, 3, 4, 5, 6, 7]).allocate('51', 'b', [0, 1, 2, 3, 4, 5, 6, 7]);
const blocked = [makeJob(1).gpus(8).nodes(2).build()];

describe('expected start of a reserved job', () => {
  it('is told rounded, with the max_durations it rests on', () => {
    const running = [makeJob(50).gpus(8).maxDurationMs(2 * HOUR).runningSince(0).build(), makeJob(51).gpus(8).maxDurationMs(HOUR).runningSince(0).build()];
    const diagnosis = cycle(snapshot, blocked, FIFO_BACKFILL_PROFILE, { running, now: NOW }).diagnoses.get('1')!;
    expect(diagnosis.estimatedStartAt).toBe(2 * HOUR);
    expect(diagnosis.estimatedStartBasis).toBe('if jobs 51 and 50 take their max_duration');
    expect(diagnosis.message).toContain('reserved: expected to start in about 2 h, when job 50 ends (if jobs 51 and 50 take their max_duration)');
    expect(diagnosis.message).not.toMatch(/\d+ms/);
  });

  it('is not told when the running jobs have no max_duration: the 1-hour default is no ground for one', () => {
    // Before: "expected to start in 55m33s443ms", a guess built on the default run time shown to the millisecond.
    const running = [makeJob(50).gpus(8).runningSince(0).build(), makeJob(51).gpus(8).runningSince(0).build()];
    const diagnosis = cycle(snapshot, blocked, FIFO_BACKFILL_PROFILE, { running, now: NOW }).diagnoses.get('1')!;
    expect(diagnosis.code).toBe('InsufficientNodes');
    expect(diagnosis.estimatedStartAt).toBeUndefined();
    expect(diagnosis.estimatedStartBasis).toBeUndefined();
    expect(diagnosis.message).toContain('reserved: starts when jobs 50 and 51 end (no max_duration to estimate when)');
    expect(diagnosis.message).not.toMatch(/expected to start|\d+ms|\d+m\d+s/);
  });

  it('says which ends it assumes when only some running jobs have a max_duration', () => {
    const running = [makeJob(50).gpus(8).maxDurationMs(3 * HOUR).runningSince(0).build(), makeJob(51).gpus(8).runningSince(0).build()];
    const diagnosis = cycle(snapshot, blocked, FIFO_BACKFILL_PROFILE, { running, now: NOW }).diagnoses.get('1')!;
    expect(diagnosis.estimatedStartAt).toBe(3 * HOUR);
    expect(diagnosis.estimatedStartBasis).toBe('if job 50 takes its max_duration, assuming 1h for job 51 without max_duration');
    expect(diagnosis.message).toContain('expected to start in about 3 h, when job 50 ends');
  });
});

describe('formatApproxDuration', () => {
  it('rounds to a unit worth telling', () => {
    expect(formatApproxDuration(25_000)).toBe('under a minute');
    expect(formatApproxDuration(7 * MINUTE + 20_000)).toBe('about 7 min');
    expect(formatApproxDuration(HOUR - NOW)).toBe('about 55 min');
    expect(formatApproxDuration(58 * MINUTE)).toBe('about 1 h');
    expect(formatApproxDuration(100 * MINUTE)).toBe('about 1.5 h');
    expect(formatApproxDuration(14 * HOUR + 20 * MINUTE)).toBe('about 14 h');
    expect(formatApproxDuration(80 * HOUR)).toBe('about 3 days');
  });
});
