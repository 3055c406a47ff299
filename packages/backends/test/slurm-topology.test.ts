import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseGpusHeldByOthers } from '../src/slurm/slurm-held-gpus.ts';
import { expandHostlist } from '../src/slurm/slurm-hostlist.ts';
import { parseSlurmNodes, toNodeInfo } from '../src/slurm/slurm-nodes.ts';
import { parseSlurmTopology } from '../src/slurm/slurm-topology.ts';

describe('Slurm hostlist expressions', () => {
  it('expands ranges, lists, zero padding and several brackets, in Slurm\'s order', () => {
    expect(expandHostlist('n7')).toEqual(['n7']);
    expect(expandHostlist('n[1-3,5]')).toEqual(['n1', 'n2', 'n3', 'n5']);
    expect(expandHostlist('n[01-03],n10')).toEqual(['n01', 'n02', 'n03', 'n10']);
    expect(expandHostlist('gpu[8-11]')).toEqual(['gpu8', 'gpu9', 'gpu10', 'gpu11']);
    expect(expandHostlist('r[1-2]-n[1-2]')).toEqual(['r1-n1', 'r1-n2', 'r2-n1', 'r2-n2']);
    expect(expandHostlist('n[4,6],login')).toEqual(['n4', 'n6', 'login']);
    expect(expandHostlist('')).toEqual([]);
  });

  it('refuses a malformed expression, saying what is wrong', () => {
    expect(() => expandHostlist('n[1-3')).toThrow(/"\[" without "\]"/);
    expect(() => expandHostlist('n[3-1]')).toThrow(/3-1 runs backwards/);
    expect(() => expandHostlist('n[a-b]')).toThrow(/"a-b" is not a number or a range/);
  });
});

// `scontrol show topology` on the dev cluster (topology.conf: s1 = n1-n3, s2 = n4-n6, a spine above them).
const DEV_TOPOLOGY = `SwitchName=s1 Level=0 LinkSpeed=1 Nodes=n[1-3]
SwitchName=s2 Level=0 LinkSpeed=1 Nodes=n[4-6]
SwitchName=spine Level=1 LinkSpeed=1 Nodes=n[1-6] Switches=s[1-2]
`;

describe('Slurm topology as racks (scontrol show topology)', () => {
  it('gives each node its leaf switch, not the spine above it', () => {
    expect([...parseSlurmTopology(DEV_TOPOLOGY)]).toEqual([['n1', 's1'], ['n2', 's1'], ['n3', 's1'], ['n4', 's2'], ['n5', 's2'], ['n6', 's2']]);
  });

  it('reads zero-padded node lists and a three-level tree listed top first', () => {
    const output = [
      'SwitchName=core Level=2 LinkSpeed=1 Nodes=gpu[01-04],cpu1 Switches=agg1',
      'SwitchName=agg1 Level=1 LinkSpeed=1 Nodes=gpu[01-04],cpu1 Switches=leaf[1-2]',
      'SwitchName=leaf1 Level=0 LinkSpeed=1 Nodes=gpu[01-02]',
      'SwitchName=leaf2 Level=0 LinkSpeed=1 Nodes=gpu[03-04],cpu1',
    ].join('\n');
    expect(Object.fromEntries(parseSlurmTopology(output))).toEqual({ gpu01: 'leaf1', gpu02: 'leaf1', gpu03: 'leaf2', gpu04: 'leaf2', cpu1: 'leaf2' });
  });

  it('gives no rack when Slurm prints no switch', () => {
    expect(parseSlurmTopology('').size).toBe(0);
  });

  it('labels the node with its rack', () => {
    const [node] = parseSlurmNodes('NodeName=n2 CPUTot=8 Gres=gpu:4 NodeAddr=10.77.0.12 RealMemory=4000 State=IDLE Partitions=two');
    expect(toNodeInfo(node!, {}, { rack: 's1' }).labels).toEqual({ partitions: 'two', slurm_state: 'IDLE', rack: 's1' });
    expect(toNodeInfo(node!).labels?.['rack']).toBeUndefined();
  });
});

const SQUEUE_JSON = readFileSync(path.join(__dirname, 'fixtures/slurm/squeue-json-22.05.json'), 'utf8');

describe('GPUs that other Slurm jobs hold (squeue --json)', () => {
  it('counts, per node, the GPUs of running jobs that are not this instance\'s, a job split over nodes included', () => {
    // 216 holds 3 on n2; 217 (--gpus=2 over two nodes) 1 on n2 and 1 on n3; 219 is another tutti's: 1 on n3; 218 is
    // ours (tutti.abcd1234.); 220 waits and 215 is over: they hold nothing.
    const held = parseGpusHeldByOthers(SQUEUE_JSON, 'tutti.abcd1234.');
    expect(Object.fromEntries(held)).toEqual({ n2: [{ type: '', count: 4 }], n3: [{ type: '', count: 2 }] });
  });

  it('counts this instance\'s jobs when they are not its own (another instance looks)', () => {
    expect(Object.fromEntries(parseGpusHeldByOthers(SQUEUE_JSON, 'tutti.ffff0000.'))).toEqual({ n2: [{ type: '', count: 4 }], n3: [{ type: '', count: 2 }] });
    expect(Object.fromEntries(parseGpusHeldByOthers(SQUEUE_JSON, 'tutti.00000000.'))).toEqual({ n2: [{ type: '', count: 4 }], n3: [{ type: '', count: 3 }] });
  });

  it('reads the nodes from the hostlist when the job says no allocated nodes, and typed gres', () => {
    const json = JSON.stringify({ jobs: [
      { name: 'train', job_state: ['RUNNING'], nodes: 'g[01-02]', gres_detail: ['gpu:a100:2(IDX:0-1)', 'gpu:a100:1(IDX:3),mps:100'] },
      { name: 'held', job_state: 'SUSPENDED', nodes: 'g02', gres_detail: ['gpu:v100:1(IDX:0)'] },
    ] });
    expect(Object.fromEntries(parseGpusHeldByOthers(json, 'tutti.x.'))).toEqual({ g01: [{ type: 'a100', count: 2 }], g02: [{ type: 'a100', count: 1 }, { type: 'v100', count: 1 }] });
  });

  it('refuses output that is not squeue\'s JSON', () => {
    expect(() => parseGpusHeldByOthers('{"errors": []}', 'tutti.x.')).toThrow(/no "jobs" list/);
  });

  it('leaves the held GPUs out of the node\'s schedulable ones, by count and type, and says how many others hold', () => {
    const [node] = parseSlurmNodes('NodeName=g1 CPUTot=8 Gres=gpu:a100:4,gpu:v100:2 NodeAddr=g1 RealMemory=4000 State=MIXED Partitions=train');
    const info = toNodeInfo(node!, {}, { heldByOthers: [{ type: 'a100', count: 3 }, { type: '', count: 1 }] });
    // a100 x3 from the a100s (0-3), the untyped one from the last GPUs (the v100s, 4-5); the rest keep their index.
    expect(info.gpus.map((g) => `${g.index}:${g.type}`)).toEqual(['0:A100', '4:V100']);
    expect(info.labels?.['slurm_gpus_used_by_others']).toBe('4');
    // Still the node's: a job that needs them is not refused as one that never fits (see feasibility.ts).
    expect(info.gpusHeldElsewhere?.map((g) => `${g.index}:${g.type}`)).toEqual(['1:A100', '2:A100', '3:A100', '5:V100']);
    const [n2] = parseSlurmNodes('NodeName=n2 CPUTot=8 Gres=gpu:4 NodeAddr=10.77.0.12 RealMemory=4000 State=MIXED Partitions=two');
    expect(toNodeInfo(n2!, {}, { heldByOthers: [{ type: '', count: 3 }] }).gpus.map((g) => g.index)).toEqual([0]);
    expect(toNodeInfo(n2!).labels?.['slurm_gpus_used_by_others']).toBeUndefined();
  });

  it('leaves out the GPUs tutti\'s own ranks were placed on last, so that its allocations still name GPUs of the node', () => {
    const [n2] = parseSlurmNodes('NodeName=n2 CPUTot=8 Gres=gpu:4 NodeAddr=10.77.0.12 RealMemory=4000 State=MIXED Partitions=two');
    const own = new Set([2, 3]);
    expect(toNodeInfo(n2!, {}, { heldByOthers: [{ type: '', count: 2 }], ownGpus: own }).gpus.map((g) => g.index)).toEqual([2, 3]);
    // More held than the node has beside tutti's: Slurm says so, and tutti's count follows it.
    expect(toNodeInfo(n2!, {}, { heldByOthers: [{ type: '', count: 3 }], ownGpus: own }).gpus.map((g) => g.index)).toEqual([2]);
    expect(toNodeInfo(n2!, {}, { heldByOthers: [{ type: '', count: 9 }] })).toMatchObject({ gpus: [], labels: { slurm_gpus_used_by_others: '4' } });
  });
});
