/**
 * One fair-share half-life in simulation too: the cluster config's `fair_share_half_life` is the half-life the
 * simulator accumulates usage with AND the one the queue sort divides it by (before, the accumulation used the
 * config's and the sort the profile's 24 h). The scenario is the server's (packages/server/test/fair-share-half-life
 * .test.ts), on 2 GPUs:
 *   heavy        alpha 2 GPUs  0 s → 7,200 s  (two half-lives of 1 h: ≈ 7,791 GPU-s of decayed use, a share of 2.16)
 *   beta-first   beta  1 GPU   submitted at 7,000 s, waits
 *   alpha-next   alpha 1 GPU   submitted at 7,001 s, waits
 *   beta-next    beta  1 GPU   submitted at 7,002 s, waits
 * When heavy ends, beta (share 0) takes a GPU; beta's share is then 1, below alpha's 2.16, so beta-next takes the
 * other. With the 24 h half-life alpha's share is ≈ 0.09 and alpha-next goes second.
 */
import { describe, expect, it } from 'vitest';
import { parseClusterConfigYaml } from '@tutti/model';
import type { ClusterConfig } from '@tutti/model';
import { parseProfile } from '@tutti/scheduler';
import { resolvePolicies, runSimulation } from '../src/index.ts';
import type { TraceJob } from '../src/index.ts';

function cluster(schedulerYaml: string): ClusterConfig {
  const parsed = parseClusterConfigYaml(`nodes:\n  - {group: n, count: 1, gpus: {count: 2, type: H100, memory: 80GB}}\nteams:\n  - {name: alpha}\n  - {name: beta}\n${schedulerYaml}`);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  return parsed.value;
}

const job = (traceId: string, queue: string, numGpus: number, submitS: number, durationS: number): TraceJob => ({ traceId, submitS, durationS, numGpus, gpuType: '', user: '', queue, status: '' });
const TRACE: TraceJob[] = [job('heavy', 'alpha', 2, 0, 7200), job('beta-first', 'beta', 1, 7000, 1000), job('alpha-next', 'alpha', 1, 7001, 1000), job('beta-next', 'beta', 1, 7002, 1000)];

function startOrder(config: ClusterConfig, profile = resolvePolicies(['tutti']).policies[0]): string[] {
  if (!profile) throw new Error('no tutti profile');
  const starts: string[] = [];
  runSimulation(TRACE, config, profile, { onDecision: (d) => d.kind === 'start' && starts.push(d.traceId) });
  return starts;
}

describe('the fair-share half-life of the cluster config, simulated', () => {
  it('orders teams by usage decayed and divided with that one half-life', () => {
    expect(startOrder(cluster('scheduler:\n  fair_share_half_life: 1h\n'))).toEqual(['heavy', 'beta-first', 'beta-next', 'alpha-next']);
    // The profile's own 24 h, when the config sets none: alpha's two GPU-hours weigh little.
    expect(startOrder(cluster(''))).toEqual(['heavy', 'beta-first', 'alpha-next', 'beta-next']);
  });

  it("refuses a profile whose own half-life differs from the config's, naming both", () => {
    const base = resolvePolicies(['tutti']).policies[0];
    const own = parseProfile({ base: 'tutti', args: { 'fair-share': { halfLifeMs: 7_200_000 } } });
    if (!base || !own.ok) throw new Error('no profile');
    expect(() => startOrder(cluster('scheduler:\n  fair_share_half_life: 1h\n'), { ...base, profile: own.profile })).toThrow(
      /scheduler\.fair_share_half_life \(3600000 ms\) and args\.fair-share\.halfLifeMs \(7200000\)/,
    );
  });
});
