import { describe, expect, it } from 'vitest';
import type { Job, Task } from '@tutti/model';
import { decideAttemptOutcome, decideJobEnd } from '../src/attempt-outcome.ts';

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

describe('what follows an attempt', () => {
  const job = (spec: Partial<Job['spec']> = {}, extra: Partial<Job> = {}): Job => ({
    id: '1', status: 'running', createdAt: 0, attempt: 1,
    spec: { name: 'j', team: 'default', priority: 50, resources: { gpus: { count: 2, types: [] } }, numNodes: 1, run: { kind: 'shell', command: 'x' }, env: {}, ...spec },
    ...extra,
  });
  const failed = { kind: 'rank_failed', rank: 1, exitCode: 3, detail: 'rank 1 exited with code 3' } as const;
  const lost = { kind: 'rank_failed', rank: 1, exitCode: null, detail: 'rank 1 was lost', lost: true } as const;
  const tasks = [rank(0, 143, 2), rank(1, 3, 1)];

  it.each([
    ['no restart policy: the job fails', job(), failed, 'finish', 'rank 1 exited with code 3'],
    ['a failure with restarts left: restart after the backoff', job({ maxRestarts: 2 }), failed, 'restarting', 'rank 1 exited with code 3; restarting the whole gang in 5s (restart 1 of 2)'],
    ['the backoff doubles per restart', job({ maxRestarts: 3, restartBackoffMs: 1000 }, { restarts: 2 }), failed, 'restarting', 'rank 1 exited with code 3; restarting the whole gang in 4s (restart 3 of 3)'],
    ['restarts exhausted', job({ maxRestarts: 2 }, { restarts: 2 }), failed, 'finish', 'rank 1 exited with code 3 (max_restarts 2 exhausted after 3 attempts)'],
    ['a lost rank is node_lost', job({ maxRestarts: 1, restartOn: ['failure'] }), lost, 'finish', 'rank 1 was lost (not restarted: restart_on is [failure])'],
    ['a hang restarts only with hang in restart_on', job({ maxRestarts: 1 }), { kind: 'hung', timeoutMs: 1000, detail: 'quiet' }, 'finish', 'hung: quiet (not restarted: restart_on is [failure, node_lost])'],
    ['a preemption requeues without counting', job(), { kind: 'preempted', message: 'room' }, 'preempted', 'preempted: room'],
    ['a cancel during a preemption wins', job({ maxRestarts: 2 }, { cancelRequestedAt: 5 }), { kind: 'preempted', message: 'room' }, 'finish', 'cancelled'],
  ] as const)('%s', (_name, theJob, cause, expected, reason) => {
    const outcome = decideAttemptOutcome(theJob, cause as Parameters<typeof decideAttemptOutcome>[1], tasks);
    expect(outcome.kind === 'finish' ? 'finish' : outcome.options.event).toBe(expected);
    expect(outcome.kind === 'finish' ? outcome.end.endReason : outcome.reason).toBe(reason);
  });
});
