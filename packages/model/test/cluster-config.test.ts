import { describe, expect, it } from 'vitest';
import { parseClusterConfigObject, parseClusterConfigYaml } from '@tutti/model';

describe('parseClusterConfigYaml', () => {
  it('expands node groups, normalises GPU types and fills defaults', () => {
    const result = parseClusterConfigYaml(`
nodes:
  - group: vc1
    count: 11
    gpus: {count: 8, type: Tesla P100, memory: 16GB}
    labels: {rack: r1}
  - {name: big, gpus: {count: 4, type: h100}, cpus: 192, memory: 2TB}
teams:
  - {name: vc1, weight: 2, quota: {P100: 88}, borrowing_limit: {p100: 0}, lending_limit: {'*': 8}}
scheduler:
  profile: fifo
  fair_share_half_life: 12h
`);
    if (!result.ok) throw new Error(JSON.stringify(result.errors));
    const { nodes, teams, scheduler } = result.value;
    expect(nodes.length).toBe(12);
    expect(nodes[0]?.name).toBe('vc1-00');
    expect(nodes[10]?.name).toBe('vc1-10');
    expect(nodes[0]?.gpus.length).toBe(8);
    expect(nodes[0]?.gpus[3]).toMatchObject({ index: 3, type: 'P100', memoryMiB: 16384 });
    expect(nodes[0]?.labels).toEqual({ rack: 'r1' });
    expect(nodes[0]?.cpus).toBe(64);
    expect(nodes[11]).toMatchObject({ name: 'big', cpus: 192, memoryMiB: 2 * 1024 * 1024, state: 'ready' });
    expect(nodes[11]?.gpus[0]?.type).toBe('H100');
    expect(teams).toEqual([{ name: 'vc1', weight: 2, nominal: { P100: 88 }, borrowingLimit: { P100: 0 }, lendingLimit: { '*': 8 } }]);
    expect(scheduler).toEqual({ profile: 'fifo', fairShareHalfLifeMs: 12 * 3_600_000, args: {} });
  });

  it('accepts an empty file as an empty config with the default scheduler', () => {
    const result = parseClusterConfigYaml('');
    expect(result).toEqual({ ok: true, value: { nodes: [], teams: [], scheduler: { profile: 'tutti', args: {} } } });
  });

  it.each([
    ['nodes: {a: 1}', 'nodes', 1, 8, /expected a list of node groups/],
    ['nodes:\n  - group: a\n    count: 0\n    gpus: {count: 8, type: A100}', 'nodes[0].count', 3, 12, /integer ≥ 1, got 0/],
    ['nodes:\n  - group: a\n    gpus: {count: 8, type: A100}\n    lables: {rack: r1}', 'nodes[0].lables', 4, 5, /did you mean 'labels'/],
    ['nodes:\n  - group: a\n    gpus: {count: 8}', 'nodes[0].gpus.type', 3, 11, /required when count > 0/],
    ['nodes:\n  - group: Bad_Name\n    gpus: {count: 1, type: A100}', 'nodes[0].group', 2, 12, /lowercase letters/],
    ['teams:\n  - name: a\n    quota: {A100: -1}', 'teams[0].quota.A100', 3, 19, /whole number of GPUs ≥ 0/],
    ['teams:\n  - name: a\n  - name: a', 'teams[1].name', 3, 11, /declared twice/],
    ['scheduler:\n  fair_share_half_life: soon', 'scheduler.fair_share_half_life', 2, 25, /duration > 0/],
    ['teams:\n  - name: a\n    slurm:\n      partiton: gpu', 'teams[0].slurm.partiton', 4, 7, /did you mean 'partition'/],
    ['teams:\n  - name: a\n    slurm: {partition: gpu, acount: vision}', 'teams[0].slurm.acount', 3, 29, /did you mean 'account'/],
    ['teams:\n  - name: a\n    slurm:\n      partition: "gpu; rm -rf /"', 'teams[0].slurm.partition', 4, 18, /expected a Slurm partition name \(letters, digits, '_', '\.', '-'\), got 'gpu; rm -rf \/'/],
    ['teams:\n  - name: a\n    slurm: {account: 7}', 'teams[0].slurm.account', 3, 22, /expected a Slurm account name .*got 7/],
    ['teams:\n  - name: a\n    slurm: gpu', 'teams[0].slurm', 3, 12, /expected a mapping like \{partition: gpu, account: vision\}, got 'gpu'/],
  ])('reports %j at its path and position', (text, path, line, column, message) => {
    const result = parseClusterConfigYaml(text);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const error = result.errors.find((e) => e.path === path);
    expect(error, JSON.stringify(result.errors)).toBeDefined();
    expect(error?.message).toMatch(message);
    expect({ line: error?.line, column: error?.column }).toEqual({ line, column });
  });

  it('reports every problem, not only the first, and YAML syntax errors with their position', () => {
    const result = parseClusterConfigYaml('nodes:\n  - group: a\n    count: -1\nteams:\n  - weight: 0\n');
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors.map((e) => e.path)).toEqual(['nodes[0].count', 'teams[0].name', 'teams[0].weight']);
    const syntax = parseClusterConfigYaml('nodes: [\n');
    expect(syntax.ok).toBe(false);
    if (!syntax.ok) expect(syntax.errors[0]).toMatchObject({ path: '', line: expect.any(Number) });
  });

  it('reads a team\'s Slurm partition and account, either or both', () => {
    const result = parseClusterConfigYaml(`
teams:
  - {name: vision, quota: {A100: 8}, slurm: {partition: gpu-a100, account: vision.prj_1}}
  - {name: nlp, slurm: {account: nlp}}
  - {name: ops}
`);
    if (!result.ok) throw new Error(JSON.stringify(result.errors));
    expect(result.value.teams.map((t) => [t.name, t.slurm])).toEqual([['vision', { partition: 'gpu-a100', account: 'vision.prj_1' }], ['nlp', { account: 'nlp' }], ['ops', undefined]]);
  });

  it('refuses two groups that name the same node', () => {
    const result = parseClusterConfigYaml('nodes:\n  - {name: a-00}\n  - {group: a, count: 2}\n');
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors[0]?.message).toMatch(/node a-00 is already declared by nodes\[0\]/);
  });
});

describe('parseClusterConfigObject', () => {
  it('validates a JSON value with paths and no positions', () => {
    const result = parseClusterConfigObject({ nodes: [{ group: 'g', count: 2, gpus: { count: 2, type: 'T4' } }], teams: [{ name: 't', quota: 'lots' }] });
    expect(result).toEqual({ ok: false, errors: [{ path: 'teams[0].quota', message: "expected GPU counts per type like {H100: 16} ('*' for any type), got 'lots'" }] });
  });
});
