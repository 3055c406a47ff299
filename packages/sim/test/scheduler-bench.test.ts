/**
 * The scheduler benchmark's costs are differences of two timings; at small sizes the true difference is below the
 * noise. A machine that gets faster as the benchmark runs (the JIT still settling, another process finishing) made
 * every later cycle read shorter, and the printed "cost of one arrival" and "per pending job" came out negative.
 * A clock injected here plays that machine exactly, so the test does not depend on this machine's noise.
 */
import { describe, expect, it } from 'vitest';
import { formatSchedulerBench, runSchedulerBench } from '../src/index.ts';

/** Milliseconds since start, each reading a little less after the last than the one before: a machine speeding up. */
function speedingUpClock(): () => number {
  let now = 0;
  let step = 5;
  return () => {
    now += step;
    step *= 0.995;
    return now;
  };
}

describe('tutti bench scheduler at small sizes', () => {
  it('prints no negative cost when the measured difference is below the noise', () => {
    const result = runSchedulerBench({ nodes: 2, gpusPerNode: 8, pending: 4, teams: 2, rounds: 5, growth: false, clock: speedingUpClock() });
    for (const [name, value] of Object.entries(result)) {
      if (typeof value === 'number') expect(value, name).toBeGreaterThanOrEqual(0);
    }
    const text = formatSchedulerBench(result);
    expect(text).toMatch(/one arrival +under [\d.]+ ms \(within the noise\)/);
    expect(text).toMatch(/per pending job +under [\d.]+ µs \(within the noise\)/);
    expect(text).not.toMatch(/-\d/);
  });
});
