/**
 * The one decayed-usage accumulator and share (decayed-usage.ts), and the one half-life (scheduler-settings.ts): what
 * the server's tracker, its views and the simulator all compute with.
 */
import { describe, expect, it } from 'vitest';
import { accumulateDecayedUsage, applyFairShareHalfLife, compileProfile, computeShare, getProfile, readFairShareHalfLifeMs, resolveSchedulerSettings } from '../src/index.ts';

const HOUR_S = 3600;

describe('accumulateDecayedUsage', () => {
  it('halves unused usage every half-life', () => {
    expect(accumulateDecayedUsage(1000, HOUR_S, 0, HOUR_S)).toBeCloseTo(500, 9);
    expect(accumulateDecayedUsage(1000, 3 * HOUR_S, 0, HOUR_S)).toBeCloseTo(125, 9);
  });

  it('counts GPUs held over the interval as the integral of the decay: advancing often or once gives the same usage', () => {
    const once = accumulateDecayedUsage(200, 2 * HOUR_S, 3, HOUR_S);
    let often = 200;
    for (let i = 0; i < 120; i++) often = accumulateDecayedUsage(often, 60, 3, HOUR_S);
    expect(often).toBeCloseTo(once, 6);
    // 3 GPUs for two half-lives from nothing: 3 · (h / ln 2) · (1 − 1/4).
    expect(accumulateDecayedUsage(0, 2 * HOUR_S, 3, HOUR_S)).toBeCloseTo(3 * (HOUR_S / Math.LN2) * 0.75, 6);
    // Held for ever, usage settles at GPUs · h / ln 2: a share of GPUs / ln 2 on top of the GPUs running.
    expect(accumulateDecayedUsage(0, 100 * HOUR_S, 2, HOUR_S)).toBeCloseTo((2 * HOUR_S) / Math.LN2, 6);
  });

  it('leaves usage as it is when no time passed (or the clock went back)', () => {
    expect(accumulateDecayedUsage(42, 0, 8, HOUR_S)).toBe(42);
    expect(accumulateDecayedUsage(42, -5, 8, HOUR_S)).toBe(42);
  });
});

describe('computeShare', () => {
  it('is (GPUs running + usage / half-life in s) / weight', () => {
    expect(computeShare(2, 1800, HOUR_S, 1)).toBe(2.5);
    expect(computeShare(2, 1800, HOUR_S, 2)).toBe(1.25);
  });
});

describe('the one half-life', () => {
  it("makes the config's fair_share_half_life the profile's fair-share halfLifeMs, which the queue sort reads", () => {
    const resolved = resolveSchedulerSettings({ profile: 'tutti', fairShareHalfLifeMs: 3_600_000, args: {} });
    if (!resolved.ok) throw new Error(resolved.error);
    expect(compileProfile(resolved.profile).fairShare?.halfLifeMs).toBe(3_600_000);
    expect(readFairShareHalfLifeMs(resolved.profile)).toBe(3_600_000);
    expect(resolved.profile.name).toBe('tutti');
  });

  it("keeps the profile's half-life (24 h unless its args say otherwise) when the config does not set one", () => {
    const plain = resolveSchedulerSettings({ profile: 'tutti', args: {} });
    if (!plain.ok) throw new Error(plain.error);
    expect(readFairShareHalfLifeMs(plain.profile)).toBe(24 * 3_600_000);
    const viaArgs = resolveSchedulerSettings({ profile: 'tutti', args: { 'fair-share': { halfLifeMs: 7_200_000 } } });
    if (!viaArgs.ok) throw new Error(viaArgs.error);
    expect(readFairShareHalfLifeMs(viaArgs.profile)).toBe(7_200_000);
    // The same value twice is no conflict.
    expect(resolveSchedulerSettings({ profile: 'tutti', fairShareHalfLifeMs: 7_200_000, args: { 'fair-share': { halfLifeMs: 7_200_000 } } }).ok).toBe(true);
  });

  it('refuses two different half-lives, naming both fields', () => {
    const result = resolveSchedulerSettings({ profile: 'tutti', fairShareHalfLifeMs: 3_600_000, args: { 'fair-share': { halfLifeMs: 7_200_000 } } });
    expect(result).toEqual({ ok: false, error: expect.stringMatching(/^scheduler\.fair_share_half_life \(3600000 ms\) and args\.fair-share\.halfLifeMs \(7200000\) of profile 'tutti'/) as unknown });
  });

  it("applies the config's half-life to a profile the simulator runs, keeping the profile's other fair-share arguments", () => {
    const las = getProfile('tutti-las');
    if (!las.ok) throw new Error(las.error);
    const applied = applyFairShareHalfLife(las.profile, 3_600_000);
    if (!applied.ok) throw new Error(applied.error);
    expect(compileProfile(applied.profile).fairShare).toMatchObject({ halfLifeMs: 3_600_000, withinTeam: 'least-attained' });
  });
});
