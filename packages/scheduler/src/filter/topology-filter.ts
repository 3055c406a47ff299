/**
 * The `topology` filter: a job with `topology.require` is placed only inside one NVLink domain, node, rack or zone
 * (enforced by the gang placement, placement.ts). When such a job does not fit but would fit without the constraint,
 * it waits with `TopologyUnavailable`; that is decided when the first job of its shape is left waiting, before a
 * reservation holds the GPUs that are free, and kept per shape for the cycle under the plugin's name.
 */
import type { Diagnosis } from '@tutti/model';
import { withKey, type ResourceShape } from '../cycle/resource-shape.ts';
import type { CycleDataKey, CycleState } from '../framework/cycle-state.ts';
import type { FilterCycle, FilterPlugin } from '../framework/extension-points.ts';
import { PLUGIN } from '../framework/plugin-names.ts';

/** Where the `topology` filter keeps its per-cycle data. */
export const TOPOLOGY_FILTER_DATA: CycleDataKey<TopologyFilterCycle> = { name: PLUGIN.topology };

export class TopologyFilter implements FilterPlugin {
  readonly name = PLUGIN.topology;
  readonly placement = { enforceRequire: true };
  beginCycle(state: CycleState): TopologyFilterCycle {
    const cycle = new TopologyFilterCycle(state);
    state.write(TOPOLOGY_FILTER_DATA, cycle);
    return cycle;
  }
}

export class TopologyFilterCycle implements FilterCycle {
  /** By shape key: the diagnosis of a shape the constraint keeps out (undefined: it would not fit anyway). */
  private readonly verdicts = new Map<string, Diagnosis | undefined>();
  constructor(private readonly state: CycleState) {}

  explainUnplaced(shape: ResourceShape): Diagnosis | undefined {
    if (shape.topology?.mode !== 'require') return undefined;
    if (!this.verdicts.has(shape.key)) {
      const { key: _key, ...rest } = shape;
      const fitsAnywhere = this.state.place(withKey({ ...rest, topology: undefined }), this.state.overlay) !== undefined;
      this.verdicts.set(shape.key, fitsAnywhere ? topologyDiagnosis(shape) : undefined);
    }
    return this.verdicts.get(shape.key);
  }
}

function topologyDiagnosis(shape: ResourceShape): Diagnosis {
  const level = shape.topology?.level ?? 'node';
  const where = { nvlink: 'one NVLink domain', node: 'one node', rack: 'one rack', zone: 'one zone' }[level];
  const gpus = `${shape.gpuCount} free GPU${shape.gpuCount === 1 ? '' : 's'}`;
  const need = shape.numNodes === 1 ? `${gpus} inside ${where}` : `${shape.numNodes} nodes with ${gpus} each inside ${where}`;
  return { plugin: PLUGIN.topology, code: 'TopologyUnavailable', message: `waiting for ${need}; enough GPUs are free, but spread over more than ${where}` };
}
