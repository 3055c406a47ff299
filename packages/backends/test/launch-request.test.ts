import { describe, expect, it } from 'vitest';
import { LaunchError, verifyLaunchRequest, type LaunchRequest } from '@tutti/backends';

const request = (overrides: Partial<LaunchRequest> = {}): LaunchRequest => ({
  jobId: '7', jobName: 'x', run: { kind: 'shell', command: 'true' }, env: {},
  ranks: [{ rank: 0, localRank: 0, nodeRank: 0, node: 'a', gpus: [0] }, { rank: 1, localRank: 1, nodeRank: 0, node: 'a', gpus: [0] }],
  ...overrides,
});

describe('verifyLaunchRequest', () => {
  it('accepts a consistent request, in any rank order', () => {
    expect(verifyLaunchRequest(request())).toEqual([]);
    expect(verifyLaunchRequest(request({ ranks: [...request().ranks].reverse() }))).toEqual([]);
  });

  it.each([
    ['an unsafe job id', { jobId: '../etc' }, /job id "..\/etc"/],
    ['a dot-only job id', { jobId: '..' }, /job id/],
    ['no ranks', { ranks: [] }, /at least one rank/],
    ['a repeated rank', { ranks: [{ rank: 0, localRank: 0, nodeRank: 0, node: 'a', gpus: [] }, { rank: 0, localRank: 1, nodeRank: 0, node: 'a', gpus: [] }] }, /rank 0 appears more than once/],
    ['a gap in the ranks', { ranks: [{ rank: 0, localRank: 0, nodeRank: 0, node: 'a', gpus: [] }, { rank: 2, localRank: 1, nodeRank: 0, node: 'a', gpus: [] }] }, /rank 1 is missing/],
    ['a negative GPU index', { ranks: [{ rank: 0, localRank: 0, nodeRank: 0, node: 'a', gpus: [-1] }] }, /GPU indices/],
    ['an empty shell command', { run: { kind: 'shell', command: '  ' } }, /command is empty/],
    ['an empty argv', { run: { kind: 'argv', argv: [] } }, /command is empty/],
  ] as const)('rejects %s', (_name, overrides, message) => {
    expect(verifyLaunchRequest(request(overrides as Partial<LaunchRequest>)).join('\n')).toMatch(message);
  });
});

describe('LaunchError', () => {
  it('carries a code for the server to sort user mistakes from platform failures', () => {
    const error = new LaunchError('WorkdirMissing', 'workdir /nope does not exist');
    expect(error).toBeInstanceOf(Error);
    expect([error.name, error.code, error.message]).toEqual(['LaunchError', 'WorkdirMissing', 'workdir /nope does not exist']);
  });
});
