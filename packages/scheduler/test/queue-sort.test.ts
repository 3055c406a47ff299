import { describe, expect, it } from 'vitest';
import { compareDecimalIds, computeQueueOrder } from '../src/queue-sort/queue-sort.ts';
import { makeJob } from './builders.ts';

describe('queue order', () => {
  it('sorts by priority, then id as a number, then createdAt', () => {
    const jobs = [
      makeJob(10).priority(50),
      makeJob(9).priority(50),
      makeJob(100).priority(90),
      makeJob('007').priority(10).createdAt(5),
      makeJob('7').priority(10).createdAt(3),
      makeJob(2).priority(10),
    ].map((j) => j.build());
    expect(computeQueueOrder(jobs).map((j) => j.id)).toEqual(['100', '9', '10', '2', '7', '007']);
  });

  it.each([
    ['9', '10', -1],
    ['10', '9', 1],
    ['123456789012345678901', '123456789012345678902', -1],
    ['0', '00', 0],
    ['5', 'abc', -1],
  ] as const)('compareDecimalIds(%s, %s) has the sign of %d', (a, b, sign) => {
    expect(Math.sign(compareDecimalIds(a, b))).toBe(sign);
  });
});
