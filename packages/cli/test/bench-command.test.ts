/** `tutti bench scheduler` as a person runs it: the real binary, on a tiny synthetic cluster (fake GPUs, no server). */
import { describe, expect, it } from 'vitest';
import { runTutti as tutti } from './run-cli.ts';

interface GrowthRow {
  nodes: number;
  gpus: number;
  pending: number;
  cycle_ms_p50: number;
  placements: number;
}

describe('tutti bench scheduler (fake GPUs)', () => {
  it('prints cycle times, placements per second, the cost of one arrival and growth tables as JSON', async () => {
    const run = await tutti(['bench', 'scheduler', '--nodes', '6', '--gpus-per-node', '8', '--pending', '60', '--teams', '3', '--profile', 'tutti', '--rounds', '2', '--json']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout) as Record<string, unknown> & { growth: { by_nodes: GrowthRow[]; by_pending: GrowthRow[] }; conditions: Record<string, unknown> };
    for (const key of ['cycle_ms_p50', 'cycle_ms_p99', 'cold_cycle_ms_p50', 'changing_cycle_ms_p50', 'placements_per_s', 'idle_cycle_ms_p50']) expect(result[key], key).toBeGreaterThan(0);
    // Differences of two timings, below the noise at this size: never negative, with the noise beside them.
    for (const key of ['arrival_incremental_ms', 'arrival_noise_ms', 'per_pending_job_us', 'per_pending_job_noise_us']) expect(result[key], key).toBeGreaterThanOrEqual(0);
    expect(result['idle_placements_per_cycle']).toBeGreaterThan(0);
    expect(result.conditions).toMatchObject({ profile: 'tutti', nodes: 6, gpus_per_node: 8, gpus: 48, pending: 60, teams: 3, rounds: 2 });
    expect(result.growth.by_nodes.map((r) => r.nodes)).toEqual([2, 3, 6, 12]);
    expect(result.growth.by_pending.map((r) => r.pending)).toEqual([6, 30, 60, 120]);
    for (const row of [...result.growth.by_nodes, ...result.growth.by_pending]) expect(row.cycle_ms_p50).toBeGreaterThan(0);
  });

  it('prints the figures and growth tables for people, and says which option is wrong', async () => {
    const run = await tutti(['bench', 'scheduler', '--nodes', '4', '--pending', '20', '--teams', '2', '--rounds', '1']);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('placements/s');
    expect(run.stdout).toContain('one arrival');
    expect(run.stdout, 'no negative figure').not.toMatch(/-\d/);
    expect(run.stdout).toContain('busy cycle, changing');
    expect(run.stdout).toMatch(/nodes \(20 pending\)/);
    expect(run.stdout).toMatch(/pending \(4 nodes\)/);
    const bad = await tutti(['bench', 'scheduler', '--profile', 'nope', '--nodes', '2', '--pending', '2']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("unknown scheduler profile 'nope'");
  });
});
