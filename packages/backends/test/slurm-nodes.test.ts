import { describe, expect, it } from 'vitest';
import { parseGpuGres, parseSlurmNodes, toNodeInfo, toNodeState } from '../src/slurm/slurm-nodes.ts';

// Lines as Slurm 22.05's `scontrol -o show node` prints them (the first from the dev cluster, the others edited from
// it to a drained node with a reason that has spaces, a typed multi-gres node that does not respond, and a down one).
const IDLE = 'NodeName=n1 Arch=x86_64 CoresPerSocket=1  CPUAlloc=0 CPUEfctv=2 CPUTot=2 CPULoad=0.59 AvailableFeatures=(null) ActiveFeatures=(null) Gres=gpu:2 NodeAddr=10.77.0.11 NodeHostName=n1 Version=22.05.8 OS=Linux 6.18.44-fc-v1300 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=4000 AllocMem=0 FreeMem=22315 Sockets=2 Boards=1 State=IDLE ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=dev  BootTime=2026-12-07T04:19:38 SlurmdStartTime=2026-12-07T12:36:01 LastBusyTime=2026-12-07T12:36:01 CfgTRES=cpu=2,mem=4000M,billing=2 AllocTRES= CapWatts=n/a CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s';
const DRAINED = IDLE.replace('NodeName=n1', 'NodeName=n2').replace('NodeAddr=10.77.0.11', 'NodeAddr=10.77.0.12').replace('State=IDLE', 'State=IDLE+DRAIN') + ' Reason=bad DIMM in slot 3 [root@2026-12-07T12:40:00]';
const TYPED = IDLE.replace('NodeName=n1', 'NodeName=g1').replace('Gres=gpu:2', 'Gres=gpu:a100:4(S:0-1),gpu:v100:2(S:0),mps:100').replace('State=IDLE', 'State=MIXED+NOT_RESPONDING').replace('Partitions=dev', 'Partitions=train,debug');
const DOWN = IDLE.replace('NodeName=n1', 'NodeName=n3').replace('State=IDLE', 'State=DOWN') + ' Reason=Not responding [slurm@2026-12-07T12:41:00]';

describe('Slurm nodes from scontrol -o show node', () => {
  it('reads a node: address, CPUs, memory, GPUs from gres, partitions, state', () => {
    const [node] = parseSlurmNodes(IDLE);
    expect(node).toEqual({ name: 'n1', address: '10.77.0.11', cpus: 2, memoryMiB: 4000, gpus: [{ type: '', count: 2 }], partitions: ['dev'], slurmState: 'IDLE', state: 'ready' });
    const info = toNodeInfo(node!);
    expect(info.gpus.map((g) => [g.index, g.type, g.uuid])).toEqual([[0, 'GPU', 'SLURM-n1-0'], [1, 'GPU', 'SLURM-n1-1']]);
    expect(info).toMatchObject({ name: 'n1', address: '10.77.0.11', cpus: 2, memoryMiB: 4000, state: 'ready', labels: { partitions: 'dev', slurm_state: 'IDLE' } });
  });

  it('says why a drained node takes no new work, and a down node is down', () => {
    const nodes = parseSlurmNodes([IDLE, DRAINED, DOWN].join('\n'));
    expect(nodes.map((n) => [n.name, n.state, n.reason])).toEqual([['n1', 'ready', undefined], ['n2', 'draining', 'bad DIMM in slot 3'], ['n3', 'down', 'Not responding']]);
  });

  it('numbers typed GPUs of several gres entries in order, ignores other gres, and a node that does not respond is down', () => {
    const [node] = parseSlurmNodes(TYPED);
    expect(node?.gpus).toEqual([{ type: 'a100', count: 4 }, { type: 'v100', count: 2 }]);
    expect(node?.partitions).toEqual(['train', 'debug']);
    expect(node?.state).toBe('down');
    expect(toNodeInfo(node!, { A100: 81_920 }).gpus.map((g) => `${g.index}:${g.type}:${g.memoryMiB}`)).toEqual(['0:A100:81920', '1:A100:81920', '2:A100:81920', '3:A100:81920', '4:V100:0', '5:V100:0']);
  });

  it('maps every Slurm state to ready, draining or down', () => {
    const cases: Array<[string, string]> = [
      ['IDLE', 'ready'], ['MIXED', 'ready'], ['ALLOCATED', 'ready'], ['COMPLETING', 'ready'], ['IDLE+COMPLETING', 'ready'],
      ['IDLE+DRAIN', 'draining'], ['MIXED+DRAIN', 'draining'], ['ALLOCATED+DRAIN', 'draining'], ['DRAINED', 'draining'], ['DRAINING', 'draining'],
      ['DOWN', 'down'], ['DOWN+DRAIN', 'down'], ['IDLE+NOT_RESPONDING', 'down'], ['IDLE*', 'down'], ['FAIL', 'down'], ['INVAL', 'down'], ['UNKNOWN', 'down'], ['FUTURE', 'down'], ['IDLE+CLOUD+POWERED_DOWN', 'down'],
    ];
    expect(cases.map(([s]) => [s, toNodeState(s)])).toEqual(cases);
  });

  it('reads no GPU from an empty or null gres', () => {
    expect(parseGpuGres('(null)')).toEqual([]);
    expect(parseGpuGres('')).toEqual([]);
    expect(parseGpuGres('gpu:0')).toEqual([]);
  });
});
