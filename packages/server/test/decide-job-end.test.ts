import { describe, expect, it } from 'vitest';
import type { Task } from '@tutti/model';
import { decideJobEnd } from '@tutti/server';

const rank = (r: number, exitCode: number | null, finishedAt: number, status: Task['status'] = 'exited'): Task => ({
  jobId: '1', rank: r, localRank: r, nodeRank: 0, node: 'n', gpus: [0, 1], status, exitCode, finishedAt,
});

describe('how a gang ends', () => {
  it.each([
    ['every rank exits 0', undefined, [rank(0, 0, 1), rank(1, 0, 2)], { status: 'succeeded', exitCode: 0, endReason: 'all 2 ranks exited with code 0' }],
    ['a single rank exits 0', undefined, [rank(0, 0, 1)], { status: 'succeeded', exitCode: 0, endReason: 'its rank exited with code 0' }],
    ['the first failure decides, not the ranks killed after it', { kind: 'rank_failed', rank: 1, exitCode: 7, detail: 'rank 1 exited with code 7' }, [rank(0, 143, 5), rank(1, 7, 1)], { status: 'failed', exitCode: 7, endReason: 'rank 1 exited with code 7' }],
    ['a cancel wins over the SIGTERM exit codes it caused', { kind: 'cancelled' }, [rank(0, 143, 1), rank(1, 143, 1)], { status: 'cancelled', exitCode: null, endReason: 'cancelled' }],
    ['max_duration', { kind: 'max_duration', limitMs: 7_200_000 }, [rank(0, 143, 1)], { status: 'failed', exitCode: null, endReason: 'exceeded max_duration 2h' }],
    ['without a recorded cause, the earliest failing rank', undefined, [rank(0, 0, 1), rank(1, 3, 2), rank(2, 4, 3)], { status: 'failed', exitCode: 3, endReason: 'rank 1 exited with code 3' }],
    ['a lost rank fails the job', undefined, [rank(0, 0, 1), rank(1, null, 2, 'lost')], { status: 'failed', exitCode: null, endReason: 'rank 1 was lost' }],
  ] as const)('%s', (_name, cause, tasks, expected) => {
    expect(decideJobEnd(cause as Parameters<typeof decideJobEnd>[0], tasks)).toEqual(expected);
  });
});
