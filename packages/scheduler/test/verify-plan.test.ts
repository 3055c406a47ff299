import { describe, expect, it } from 'vitest';
import type { JobSpec, Placement } from '@tutti/model';
import { verifyPlan, type PlanViolationCode } from '../src/index.ts';
import { makeCluster, makeJob, makeNode } from './builders.ts';

const snapshot = makeCluster(
  makeNode('a').gpus(4, 'H100').cpus(32),
  makeNode('b').gpus(4, 'H100'),
  makeNode('c').gpus(4, 'A100', 40),
  makeNode('d').gpus(4, 'H100').state('draining'),
  makeNode('m').gpus(2, 'H100').gpus(2, 'A100'),
)
  .allocate('r1', 'b', [3])
  .build();

const jobs = new Map<string, JobSpec>([
  ['1', makeJob(1).gpus(2).spec()],
  ['2', makeJob(2).gpus(2).spec()],
  ['gang', makeJob('gang').gpus(2).nodes(2).spec()],
  ['h100', makeJob('h100').gpus(2).types('H100').spec()],
  ['big', makeJob('big').gpus(2).gpuMemoryGiB(80).spec()],
  ['cpu', makeJob('cpu').gpus(0).cpus(20).spec()],
]);

const at = (node: string, ...gpuIndices: number[]) => ({ node, gpuIndices });
const place = (jobId: string, ...nodes: { node: string; gpuIndices: number[] }[]): Placement => ({ jobId, nodes });

const cases: { name: string; placements: Placement[]; codes: PlanViolationCode[] }[] = [
  { name: 'a valid plan', placements: [place('1', at('a', 0, 1)), place('2', at('a', 2, 3)), place('gang', at('b', 0, 1), at('m', 0, 1))], codes: [] },
  { name: 'double-booking within the plan', placements: [place('1', at('a', 0, 1)), place('2', at('a', 1, 2))], codes: ['GpuDoubleBooked'] },
  { name: 'a GPU the snapshot already allocates', placements: [place('1', at('b', 2, 3))], codes: ['GpuAlreadyAllocated'] },
  { name: 'a partial gang', placements: [place('gang', at('a', 0, 1))], codes: ['GangSizeMismatch'] },
  { name: 'a gang twice on one node', placements: [place('gang', at('a', 0, 1), at('a', 2, 3))], codes: ['DuplicateNode'] },
  { name: 'too few GPUs on a node', placements: [place('1', at('a', 0))], codes: ['GpuCountMismatch'] },
  { name: 'a GPU listed twice', placements: [place('1', at('a', 0, 0))], codes: ['GpuCountMismatch'] },
  { name: 'the wrong type', placements: [place('h100', at('c', 0, 1))], codes: ['GpuTypeMismatch', 'GpuTypeMismatch'] },
  { name: 'too little GPU memory', placements: [place('big', at('c', 0, 1))], codes: ['GpuMemoryTooSmall', 'GpuMemoryTooSmall'] },
  { name: 'mixed types on one node', placements: [place('1', at('m', 1, 2))], codes: ['MixedGpuTypes'] },
  { name: 'a node that is not ready', placements: [place('1', at('d', 0, 1))], codes: ['NodeNotReady'] },
  { name: 'an unknown node', placements: [place('1', at('zz', 0, 1))], codes: ['UnknownNode'] },
  { name: 'an unknown GPU', placements: [place('1', at('a', 0, 9))], codes: ['UnknownGpu'] },
  { name: 'an unknown job', placements: [place('nope', at('a', 0, 1))], codes: ['UnknownJob'] },
  { name: 'a job placed twice', placements: [place('1', at('a', 0, 1)), place('1', at('b', 0, 1))], codes: ['DuplicateJob'] },
];

describe('verifyPlan', () => {
  it.each(cases)('$name', ({ placements, codes }) => {
    const violations = verifyPlan(snapshot, { snapshotVersion: snapshot.version, placements, preemptions: [], reservations: [] }, jobs);
    expect(violations.map((v) => v.code)).toEqual(codes);
  });

  it('catches CPUs over-committed by the plan itself', () => {
    const twoCpuJobs = new Map([...jobs, ['cpu2', makeJob('cpu2').gpus(0).cpus(20).spec()]]);
    const violations = verifyPlan(snapshot, { snapshotVersion: 1, placements: [place('cpu', at('a')), place('cpu2', at('a'))], preemptions: [], reservations: [] }, twoCpuJobs);
    expect(violations).toEqual([{ jobId: 'cpu2', code: 'HostResourcesExceeded', message: 'job cpu2: jobs cpu, cpu2 together take 40 CPUs of 32 on node a' }]);
  });

  it('says which job holds a GPU', () => {
    const [violation] = verifyPlan(snapshot, { snapshotVersion: 1, placements: [place('1', at('b', 2, 3))], preemptions: [], reservations: [] }, jobs);
    expect(violation).toEqual({ jobId: '1', code: 'GpuAlreadyAllocated', message: 'job 1: GPU 3 on node b is already allocated to job r1' });
  });

  it('names the earlier holder on double-booking', () => {
    const violations = verifyPlan(snapshot, { snapshotVersion: 1, placements: [place('1', at('a', 0, 1)), place('2', at('a', 1, 2))], preemptions: [], reservations: [] }, jobs);
    expect(violations).toEqual([{ jobId: '2', code: 'GpuDoubleBooked', message: 'job 2: GPU 1 on node a is also given to job 1 in this plan' }]);
  });
});
