/** The dashboard's pieces with logic, without a browser: what a user would see them produce. */
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { describeEstimatedStart, formatGpuCount, totalJobGpus } from '@tutti/client';
import type { EventView, GpuView, NodeView, ProgressView, TeamView } from '@tutti/client';
import { groupTopology, jobColor, nvlinkDomains, summarizeGpusByType } from '../src/lib/gpus.ts';
import { LogBuffer, searchLines } from '../src/lib/logs.ts';
import { eventTouchesPage, filterFromSearch, filterToSearch, normalizeNamePart, toggleSort, toListQuery } from '../src/lib/jobs-query.ts';
import { parseRoute, routeHref } from '../src/lib/routes.ts';
import { describeFieldError, offsetOfLine, placeErrors } from '../src/lib/spec-errors.ts';
import { clusterSeries, gpuSeries, progressSeries } from '../src/lib/series.ts';
import { fairShareOrder } from '../src/lib/teams.ts';
import { toYaml } from '../src/lib/yaml.ts';
import { formatDuration, formatPerType, formatRelative } from '../src/lib/format.ts';

const gpu = (index: number, job_id: string | null = null, nvlink_peers: number[] = [], type = 'A100'): GpuView => ({ index, uuid: `GPU-${index}`, type, product: `NVIDIA ${type}`, memory_mib: 81920, nvlink_peers, job_id, shares: [], metrics: null });
const node = (name: string, gpus: GpuView[], state: NodeView['state'] = 'ready', labels: Record<string, string> = {}): NodeView => ({ name, address: '127.0.0.1', state, state_reason: null, cpus: 32, memory_mib: 256000, labels, gpus });

describe('GPUs by type', () => {
  it('counts each GPU once: unhealthy on a node that is not ready, else allocated or free', () => {
    const nodes = [node('a', [gpu(0, '7'), gpu(1), gpu(2, null, [], 'H100')]), node('b', [gpu(0, '8'), gpu(1)], 'down')];
    expect(summarizeGpusByType(nodes)).toEqual([
      { type: 'A100', total: 4, allocated: 1, free: 1, unhealthy: 2 },
      { type: 'H100', total: 1, allocated: 0, free: 1, unhealthy: 0 },
    ]);
  });

  it('gives neighbouring jobs clearly different colours, the same job always the same', () => {
    expect(jobColor('41')).toBe(jobColor('41'));
    const hue = (c: string) => Number(/hsl\((\d+)/.exec(c)![1]);
    expect(Math.abs(hue(jobColor('41')) - hue(jobColor('42')))).toBeGreaterThan(60);
  });

  it('groups nodes by rack (unlabelled last), and GPUs into NVLink domains', () => {
    const nodes = [node('n10', [gpu(0)], 'ready', { rack: 'r2' }), node('n2', [gpu(0)], 'ready', { rack: 'r1' }), node('n1', [gpu(0)]), node('n3', [gpu(0)], 'ready', { rack: 'r1' })];
    expect(groupTopology(nodes, 'rack').map((g) => [g.label, g.nodes.map((n) => n.node.name)])).toEqual([
      ['rack r1', ['n2', 'n3']],
      ['rack r2', ['n10']],
      ['no rack label', ['n1']],
    ]);
    const domains = nvlinkDomains([gpu(3, null, [2]), gpu(0, null, [1]), gpu(1, null, [0]), gpu(2, null, [3]), gpu(4)]);
    expect(domains.map((d) => d.map((g) => g.index))).toEqual([[0, 1], [2, 3], [4]]);
    expect(groupTopology([node('x', [gpu(1, null, [0]), gpu(0, null, [1]), gpu(2)])], 'nvlink')[0]!.nodes[0]!.gpuGroups.map((g) => g.length)).toEqual([2, 1]);
  });
});

describe('logs', () => {
  it('joins chunks split mid-line, keeps the unfinished last line, and numbers lines from the first ever received', () => {
    const buffer = new LogBuffer(3);
    buffer.append('one\ntw');
    buffer.append('o\r\nthree\nfour\nfi');
    expect(buffer.lines()).toEqual([
      { n: 2, text: 'two' },
      { n: 3, text: 'three' },
      { n: 4, text: 'four' },
      { n: 5, text: 'fi' },
    ]);
    expect(buffer.dropped).toBe(1);
  });

  it('searches case-insensitively and keeps line numbers', () => {
    const buffer = new LogBuffer();
    buffer.append('step 1 loss 2.0\nWARNING: slow\nstep 2 loss 1.5\n');
    expect(searchLines(buffer.lines(), 'LOSS').map((l) => l.n)).toEqual([1, 3]);
    expect(searchLines(buffer.lines(), '  ')).toHaveLength(3);
  });
});

describe('the jobs list query', () => {
  it('reads filters from the URL, dropping what the server would refuse, and writes back only what differs from the default', () => {
    const filter = filterFromSearch('?status=running&team=red&user=ada.l&name=Train&sort=priority&order=asc&bogus=1');
    expect(filter).toEqual({ status: 'running', team: 'red', user: 'ada.l', name: 'train', sort: 'priority', order: 'asc' });
    expect(filterFromSearch('?status=sleeping&team=Bad%20Team&user=a%20b&sort=owner')).toEqual({ sort: 'id', order: 'desc' });
    expect(filterToSearch(filter)).toBe('?status=running&team=red&user=ada.l&name=train&sort=priority&order=asc');
    expect(filterToSearch(filterFromSearch(''))).toBe('');
    expect(toListQuery(filter, 'priority:10:5', 50)).toEqual({ status: 'running', team: 'red', user: 'ada.l', name: 'train', sort: 'priority', order: 'asc', limit: 50, cursor: 'priority:10:5' });
  });

  it('sorts by a clicked column, and reverses on a second click', () => {
    const byName = toggleSort({ sort: 'id', order: 'desc' }, 'name');
    expect(byName).toEqual({ sort: 'name', order: 'asc' });
    expect(toggleSort(byName, 'name')).toEqual({ sort: 'name', order: 'desc' });
    expect(toggleSort(byName, 'priority')).toEqual({ sort: 'priority', order: 'desc' });
    expect(normalizeNamePart(' Eval-2 ')).toBe('eval-2');
    expect(normalizeNamePart('a b')).toBeUndefined();
  });

  it('refreshes for events about a shown job, and for new submissions on the first page', () => {
    const event = (job_id: string, type: string): EventView => ({ seq: 1, job_id, at: new Date(0).toISOString(), type, message: '', data: null });
    expect(eventTouchesPage(event('5', 'started'), new Set(['5']), false)).toBe(true);
    expect(eventTouchesPage(event('9', 'submitted'), new Set(['5']), true)).toBe(true);
    expect(eventTouchesPage(event('9', 'submitted'), new Set(['5']), false)).toBe(false);
    expect(eventTouchesPage(event('9', 'started'), new Set(['5']), true)).toBe(false);
  });
});

describe('routes', () => {
  it('maps URLs to pages and back', () => {
    expect(parseRoute('/')).toEqual({ page: 'overview' });
    expect(parseRoute('/jobs', '?status=pending')).toEqual({ page: 'jobs', search: '?status=pending' });
    expect(parseRoute('/jobs/42/')).toEqual({ page: 'job', id: '42' });
    expect(parseRoute('/jobs/042')).toEqual({ page: 'not-found', path: '/jobs/042' });
    expect(parseRoute('/nodes')).toEqual({ page: 'nodes' });
    for (const href of ['/', '/jobs?team=red', '/jobs/7', '/nodes', '/teams', '/submit']) {
      const [path, search] = href.split('?');
      expect(routeHref(parseRoute(path!, search ? `?${search}` : ''))).toBe(href);
    }
  });
});

describe('spec errors in the editor', () => {
  it('places each error at its line (a line past the end on the last), and keeps the rest apart', () => {
    const placed = placeErrors(
      [
        { path: 'resources.gpus', message: 'must be a whole number', line: 3, column: 9 },
        { path: 'run', message: 'is required', line: 9 },
        { path: '', message: 'cannot fit' },
      ],
      5,
    );
    expect([...placed.byLine.keys()]).toEqual([3, 5]);
    expect(placed.unplaced).toEqual([{ path: '', message: 'cannot fit' }]);
    expect(describeFieldError({ path: 'resources.gpus', message: 'must be a whole number', line: 3, column: 9 })).toBe('line 3, column 9: resources.gpus: must be a whole number');
    expect(offsetOfLine('a\nbb\nccc', 3)).toBe(5);
    expect(offsetOfLine('a', 4)).toBe(1);
  });
});

describe('chart series', () => {
  const record = (seq: number, attempt: number, rank: number, step: number | null, loss: number | null, values: Record<string, unknown> = {}): ProgressView => ({ seq, attempt, rank, at: new Date(1_700_000_000_000 + seq * 1000).toISOString(), step, loss, checkpoint: null, values });

  it('charts loss and rate gauges of the latest attempt’s lowest rank, by step', () => {
    const records = [record(1, 1, 0, 10, 3), record(2, 2, 1, 5, 9), record(3, 2, 0, 20, 2, { samples_per_s: 100, lr: 0.1 }), record(4, 2, 0, 10, 2.5, { samples_per_s: 90 })];
    const { loss, throughput } = progressSeries(records);
    expect(loss.xIsTime).toBe(false);
    expect(loss.x).toEqual([10, 20]);
    expect(loss.series[0]!.values).toEqual([2.5, 2]);
    expect(throughput.series.map((s) => s.label)).toEqual(['samples_per_s']);
    expect(throughput.series[0]!.values).toEqual([90, 100]);
  });

  it('aligns GPU gauges of several GPUs on one time axis, memory as a percentage', () => {
    const at = (s: number) => new Date(s * 1000).toISOString();
    const sample = (s: number, gpuIndex: number, util: number) => ({ at: at(s), node: 'n1', gpuIndex, utilizationPct: util, memoryUsedMiB: 40960, memoryTotalMiB: 81920, powerW: null, temperatureC: null });
    const { utilization, memory } = gpuSeries([sample(10, 0, 50), sample(10, 1, 60), sample(20, 0, 70)]);
    expect(utilization.x).toEqual([10, 20]);
    expect(utilization.series).toEqual([
      { label: 'GPU n1/0', values: [50, 70] },
      { label: 'GPU n1/1', values: [60, null] },
    ]);
    expect(memory.series[0]!.values).toEqual([50, 50]);
  });
});

describe('the overview chart of the last hour', () => {
  const sample = (s: number) => ({ at: new Date(s * 1000).toISOString(), pending_jobs: 1, running_jobs: 2, gpus_total: 4, gpus_allocated: 2 });
  const now = 1_700_000_000;

  it('spans the whole hour ending now with a single sample (not years around it)', () => {
    expect(clusterSeries([sample(now - 5)], { nowS: now, windowS: 3600 }).xRange).toEqual([now - 3600, now]);
  });

  it('spans the whole hour with a few samples, and with none', () => {
    expect(clusterSeries([sample(now - 20), sample(now - 15), sample(now - 10)], { nowS: now, windowS: 3600 }).xRange).toEqual([now - 3600, now]);
    expect(clusterSeries([], { nowS: now, windowS: 3600 }).xRange).toEqual([now - 3600, now]);
  });

  it('ends at the newest sample when the server’s clock is ahead of the browser’s', () => {
    expect(clusterSeries([sample(now + 30)], { nowS: now, windowS: 3600 }).xRange).toEqual([now + 30 - 3600, now + 30]);
  });
});

describe('GPUs of a job', () => {
  it('shows a share of one GPU as the fraction, whole GPUs as counts', () => {
    expect(formatGpuCount(0.5)).toBe('0.5 GPU');
    expect(formatGpuCount(0.25)).toBe('0.25 GPU');
    expect(formatGpuCount(1)).toBe('1 GPU');
    expect(formatGpuCount(8)).toBe('8 GPUs');
    expect(formatGpuCount(0)).toBe('0 GPUs');
    expect(totalJobGpus({ gpus_per_node: 0.5, num_nodes: 1 })).toBe(0.5);
    expect(totalJobGpus({ gpus_per_node: 8, num_nodes: 2 })).toBe(16);
  });
});

describe('a waiting job’s expected start', () => {
  it('reads as an estimate with what it rests on, never to the millisecond', () => {
    const now = Date.parse('2026-11-23T12:00:00Z');
    const at = new Date(now + 55 * 60_000 + 34_443).toISOString();
    expect(describeEstimatedStart({ estimated_start_at: at, estimated_start_basis: 'if job 51 takes its max_duration' }, now)).toBe('in about 55 min, if job 51 takes its max_duration');
    expect(describeEstimatedStart({ estimated_start_at: new Date(now - 1000).toISOString(), estimated_start_basis: null }, now)).toBe('any moment now');
    expect(describeEstimatedStart({ estimated_start_at: null, estimated_start_basis: null }, now)).toBeUndefined();
  });
});

describe('teams', () => {
  it('lists teams in the order the server says fair share serves them, with their shares', () => {
    const team = (name: string, position: number, share: number): TeamView => ({
      name, weight: 1, quota: {}, borrowing_limit: null, lending_limit: null, used: {}, borrowed: {}, running_jobs: 0, pending_jobs: 0,
      fair_share: { decayed_gpu_hours: share, share, position },
    });
    const ordered = fairShareOrder([team('a', 3, 2.5), team('b', 1, 0), team('c', 2, 0.5)]);
    expect(ordered.map((t) => [t.team.name, t.share])).toEqual([['b', 0], ['c', 0.5], ['a', 2.5]]);
  });
});

describe('the spec as YAML', () => {
  it('writes a normalised spec the way a user would, quoting what YAML would misread', () => {
    const yaml = toYaml({ name: 'train', priority: 50, resources: { gpus: { count: 2, type: [] } }, run: ['python', 'train.py', '--lr', '1e-3'], env: { MODE: 'yes', EMPTY: '', 'needs: quote': 'a: b' }, script: 'echo one\necho two\n' });
    expect(yaml).toBe(
      [
        'name: train',
        'priority: 50',
        'resources:',
        '  gpus:',
        '    count: 2',
        '    type: []',
        'run:',
        '  - python',
        '  - train.py',
        '  - --lr',
        '  - "1e-3"',
        'env:',
        '  MODE: "yes"',
        '  EMPTY: ""',
        '  "needs: quote": "a: b"',
        'script: |',
        '  echo one',
        '  echo two',
        '',
      ].join('\n'),
    );
  });

  it('reads back as the same value with a YAML parser, whatever the strings hold', () => {
    const tricky = ['', ' lead', 'trail ', 'yes', 'No', 'null', '~', '1e3', '0x1F', '-', '---', '- a', '--flag', 'a: b', '#x', 'x #y', '@at', '`tick`', "it's", 'say "hi"', '[1]', '{a}', '*ref', '&anchor', '!tag', '%pct', '|', '>', 'tab\there', 'two\nlines\n', 'no newline\nat end', '\nleading', 'trailing  \nspace', 'ünïcode', '12:30', '.5', '+1', '.inf'];
    const value = { list: tricky, map: Object.fromEntries(tricky.filter(Boolean).map((s, i) => [s, i])), nested: [{ a: [], b: {} }, [1, [2, 'x']]], flags: [true, false, null, 0, -1.5] };
    expect(parseYaml(toYaml(value))).toEqual(value);
  });

  it('writes lists of mappings with the first key after the dash', () => {
    expect(toYaml({ items: [{ a: 1, b: 'x' }] })).toBe('items:\n  - a: 1\n    b: x\n');
  });
});

describe('formatting', () => {
  it('reads durations and relative times the short way', () => {
    expect(formatDuration(59_000)).toBe('59s');
    expect(formatDuration(61_000)).toBe('1m 01s');
    expect(formatDuration(3 * 3600_000 + 5 * 60_000)).toBe('3h 05m');
    expect(formatRelative(new Date(10_000).toISOString(), 70_000)).toBe('1m 00s ago');
    expect(formatPerType({ A100: 2, '*': 4, H100: 0 })).toBe('2 A100, 4 any');
  });
});
