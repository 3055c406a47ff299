import type { Diagnosis, GpuDevice, JobSpec, NodeInfo, Placement, Task } from '@tutti/model';
import { computeTasksForPlacement } from '@tutti/model';
import { sql } from 'kysely';
import { MIGRATIONS, type Migration } from '../src/migrations.ts';
import type { PlacementWithTasks } from '../src/state-store.ts';

/** Test builders for the store's inputs. */

export function makeJobSpec(overrides: Partial<JobSpec> = {}): JobSpec {
  return {
    name: 'train',
    team: 'default',
    priority: 50,
    resources: { gpus: { count: 1, types: [] } },
    numNodes: 1,
    run: { kind: 'shell', command: 'python train.py' },
    env: {},
    ...overrides,
  };
}

export function makeGpus(count: number, type = 'H100'): GpuDevice[] {
  return Array.from({ length: count }, (_, index) => ({
    index,
    uuid: `FAKE-${type}-${index}`,
    type,
    product: `NVIDIA ${type}`,
    memoryMiB: 81_920,
    nvlinkPeers: [],
  }));
}

export function makeNode(name: string, gpuCount = 8, overrides: Partial<NodeInfo> = {}): NodeInfo {
  return {
    name,
    address: `${name}.local`,
    gpus: makeGpus(gpuCount),
    cpus: 64,
    memoryMiB: 512_000,
    labels: {},
    state: 'ready',
    ...overrides,
  };
}

/** A placement with the tasks torchrun would run for it (one rank per GPU). */
export function makePlacement(jobId: string, nodes: Array<[node: string, gpuIndices: number[]]>, spec: JobSpec = makeJobSpec()): PlacementWithTasks {
  const placement: Placement = { jobId, nodes: nodes.map(([node, gpuIndices]) => ({ node, gpuIndices })) };
  const perNode = nodes[0]?.[1].length ?? 0;
  const tasks: Task[] = computeTasksForPlacement({ ...spec, resources: { ...spec.resources, gpus: { ...spec.resources.gpus, count: perNode } } }, placement);
  return { placement, tasks };
}

export function makeDiagnosis(message = 'waiting for 1 free GPU', code: Diagnosis['code'] = 'InsufficientGpus'): Diagnosis {
  return { plugin: 'fit', code, message };
}

/** A migration after the last one that creates a table `half_done` and then fails: it must leave nothing behind. */
export function makeBrokenMigration(): Migration {
  return {
    version: MIGRATIONS.length + 1,
    name: 'broken',
    async up(trx) {
      await trx.schema.createTable('half_done').addColumn('x', 'integer').execute();
      await sql`this is not sql`.execute(trx);
    },
  };
}
