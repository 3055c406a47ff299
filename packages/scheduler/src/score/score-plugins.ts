/**
 * The `score` extension point's plugins. Each says how the gang placement chooses among the nodes that fit
 * (`PlacementOptions`); the node search applies them (gang-placement.ts, packing.ts, placement.ts).
 *
 *   best-fit  fewest free matching GPUs first, keeping whole nodes for big gangs (the default: `packing` absent);
 *             its weight is accepted but not used (a known gap)
 *   packing   best-fit | first-fit (node name order) | spread (emptiest node first)
 *   topology  multi-node gangs without a constraint: one rack (or zone), else one zone, else anywhere; weight 0
 *             turns it off
 */
import type { PlacementOptions } from '../gang/placement.ts';
import type { ScorePlugin } from '../framework/extension-points.ts';
import { PLUGIN } from '../framework/plugin-names.ts';
import type { TopologyArgs } from '../framework/profile.ts';
import type { PackingStrategy } from './packing.ts';

export class BestFitScore implements ScorePlugin {
  readonly name = PLUGIN.bestFit;
  readonly placement: Partial<PlacementOptions> = {};
}

export class PackingScore implements ScorePlugin {
  readonly name = PLUGIN.packing;
  readonly placement: Partial<PlacementOptions>;
  constructor(strategy: PackingStrategy) {
    this.placement = { packing: strategy };
  }
}

export class TopologyScore implements ScorePlugin {
  readonly name = PLUGIN.topology;
  readonly placement: Partial<PlacementOptions>;
  /** `args` undefined: weight 0, no preference. */
  constructor(args: TopologyArgs | undefined) {
    this.placement = args ? { preferTight: true, tightLevel: args.defaultPrefer === 'zone' ? 'zone' : 'rack' } : {};
  }
}
