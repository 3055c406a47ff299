/** The `packing` score: best fit, first fit and spread, for whole GPUs, gangs and shares of a GPU; and its arguments. */
import { describe, expect, it } from 'vitest';
import type { Job, JobSpec } from '@tutti/model';
import { GREEDY_PROFILE, parseProfile, verifyPlan, type SchedulerProfile } from '../src/index.ts';
import { cycle, makeCluster, makeJob, makeNode, placedOf, type ClusterBuilder } from './builders.ts';

function packingProfile(strategy: string): SchedulerProfile {
  const parsed = parseProfile({ name: `greedy-${strategy}`, base: 'greedy', plugins: { score: ['packing'] }, args: { packing: { strategy } } });
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.profile;
}

const specs = (jobs: Job[]) => new Map<string, JobSpec>(jobs.map((j) => [j.id, j.spec]));

/** a: 2 of 8 free, b: 8 of 8 free, c: 5 of 8 free. */
function partlyBusy(): ClusterBuilder {
  return makeCluster(makeNode('a').gpus(8), makeNode('b').gpus(8), makeNode('c').gpus(8)).allocate('r1', 'a', [0, 1, 2, 3, 4, 5]).allocate('r2', 'c', [0, 1, 2]);
}

describe('packing strategies place whole-GPU jobs', () => {
  it.each([
    // strategy, where a 2-GPU job goes, where a 2-node × 4-GPU gang goes
    ['best-fit', 'a:6,7', 'b:0,1,2,3 c:3,4,5,6'],
    ['first-fit', 'a:6,7', 'b:0,1,2,3 c:3,4,5,6'],
    ['spread', 'b:0,1', 'b:0,1,2,3 c:3,4,5,6'],
  ])('%s: a 2-GPU job goes to %s; a gang of 2 × 4 to %s', (strategy, small, gang) => {
    const profile = strategy === 'best-fit' ? GREEDY_PROFILE : packingProfile(strategy);
    expect(placedOf(cycle(partlyBusy(), [makeJob(1).gpus(2)], profile))['1']).toBe(small);
    expect(placedOf(cycle(partlyBusy(), [makeJob(2).gpus(4).nodes(2)], profile))['2']).toBe(gang);
  });

  it('first fit takes nodes in name order even when a later one fits tighter', () => {
    // a: 6 free, b: 3 free. Best fit puts 3 GPUs on b; first fit on a.
    const cluster = () => makeCluster(makeNode('a').gpus(8), makeNode('b').gpus(8)).allocate('r1', 'a', [0, 1]).allocate('r2', 'b', [0, 1, 2, 3, 4]);
    expect(placedOf(cycle(cluster(), [makeJob(1).gpus(3)], GREEDY_PROFILE))['1']).toBe('b:5,6,7');
    expect(placedOf(cycle(cluster(), [makeJob(1).gpus(3)], packingProfile('first-fit')))['1']).toBe('a:2,3,4');
    expect(placedOf(cycle(cluster(), [makeJob(1).gpus(3)], packingProfile('spread')))['1']).toBe('a:2,3,4');
  });

  it('spread leaves no node whole that best fit keeps whole, so a full-node job then waits', () => {
    const cluster = () => makeCluster(makeNode('a').gpus(8), makeNode('b').gpus(8));
    const jobs = [makeJob(1).gpus(4), makeJob(2).gpus(4), makeJob(3).gpus(8)];
    expect(Object.keys(placedOf(cycle(cluster(), jobs, GREEDY_PROFILE)))).toEqual(['1', '2', '3']);
    const spread = cycle(cluster(), jobs, packingProfile('spread'));
    expect(placedOf(spread)).toEqual({ '1': 'a:0,1,2,3', '2': 'b:0,1,2,3' });
    expect(spread.diagnoses.get('3')?.code).toBe('QueuedBehindHigherPriority');
  });
});

describe('packing strategies place shares of a GPU', () => {
  /** n1: GPU 0 half used by a share, GPU 1 free; n2: both GPUs free. */
  const cluster = () => makeCluster(makeNode('n1').gpus(2, 'A100', 40), makeNode('n2').gpus(2, 'A100', 40)).share('9', 'n1', 0, 0.5, 20);

  it.each([
    ['best-fit', 'n1:0'],
    ['first-fit', 'n1:0'],
    ['spread', 'n2:0'],
  ])('%s puts a quarter GPU on %s', (strategy, where) => {
    const profile = strategy === 'best-fit' ? GREEDY_PROFILE : packingProfile(strategy);
    const jobs = [makeJob(1).fraction(0.25)];
    const result = cycle(cluster(), jobs, profile);
    expect(placedOf(result)['1']).toBe(where);
    expect(verifyPlan(cluster().build(), result.plan, specs(jobs.map((j) => j.build())))).toEqual([]);
  });

  it('spread shares a GPU only when none is free, then the one with the most room', () => {
    const busy = makeCluster(makeNode('n1').gpus(2, 'A100', 40)).share('8', 'n1', 0, 0.75, 10).share('9', 'n1', 1, 0.25, 10);
    expect(placedOf(cycle(busy, [makeJob(1).fraction(0.25)], packingProfile('spread')))['1']).toBe('n1:1');
  });

  it('first fit takes the lowest GPU with room on the first node, shared or free', () => {
    // n1's GPU 0 is too full for a half; GPU 1 is free: first fit takes it, best fit prefers n2's half-used GPU.
    const snapshot = () => makeCluster(makeNode('n1').gpus(2, 'A100', 40), makeNode('n2').gpus(2, 'A100', 40)).share('8', 'n1', 0, 0.75, 10).share('9', 'n2', 0, 0.5, 10);
    expect(placedOf(cycle(snapshot(), [makeJob(1).fraction(0.5)], packingProfile('first-fit')))['1']).toBe('n1:1');
    expect(placedOf(cycle(snapshot(), [makeJob(1).fraction(0.5)], GREEDY_PROFILE))['1']).toBe('n2:0');
  });
});

describe('packing arguments', () => {
  it.each([
    [{ plugins: { score: ['packing'] }, args: { packing: { strategy: 'worst' } } }, 'args.packing.strategy: expected one of best-fit, first-fit, spread, got "worst"'],
    [{ plugins: { score: ['packing'] }, args: { packing: { order: 'spread' } } }, 'args.packing.order: unknown argument; known: strategy'],
    [{ plugins: { score: ['packing'] }, args: { packing: 'spread' } }, 'args.packing: expected a mapping'],
    [{ plugins: { score: ['best-fit', 'packing'] } }, 'plugins.score: list best-fit or packing, not both'],
  ])('rejects %j', (raw, error) => {
    const result = parseProfile({ name: 'x', base: 'greedy', ...raw });
    expect(result).toEqual({ ok: false, error: expect.stringContaining(error) });
  });

  it('accepts packing beside topology, and defaults to best fit', () => {
    expect(parseProfile({ name: 'x', plugins: { score: ['packing', 'topology'] }, args: { packing: { strategy: 'spread' } } }).ok).toBe(true);
    const defaulted = parseProfile({ name: 'x', base: 'greedy', plugins: { score: ['packing'] } });
    expect(defaulted.ok).toBe(true);
    if (defaulted.ok) expect(placedOf(cycle(partlyBusy(), [makeJob(1).gpus(2)], defaulted.profile))['1']).toBe('a:6,7');
  });
});
