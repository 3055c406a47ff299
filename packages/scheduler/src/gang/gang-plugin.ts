/** The `gang` plugin: every node-rank of a job placed at once on distinct ready nodes, or none (placement.ts). */
import type { SnapshotIndex } from '../cycle/snapshot-index.ts';
import type { Placer } from '../framework/cycle-state.ts';
import type { GangPlacementPlugin } from '../framework/extension-points.ts';
import { PLUGIN } from '../framework/plugin-names.ts';
import { computePlacement, type PlacementOptions } from './placement.ts';

export class GangPlacement implements GangPlacementPlugin {
  readonly name = PLUGIN.gang;
  createPlacer(index: SnapshotIndex, options: PlacementOptions): Placer {
    return (shape, view) => computePlacement(shape, view, index, options);
  }
}
