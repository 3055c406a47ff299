/**
 * The registry: for each extension point, the plugins that may sit there, by name (the `PLUGIN` constants profiles
 * and diagnoses use; backfill modes by mode), each with the factory that builds it from the profile's validated
 * arguments. `compileProfile` calls `buildCyclePlugins` once per profile; a cycle only calls the plugins it built.
 * Adding a plugin: implement its extension point's interface (extension-points.ts), list it here and in
 * `PLUGINS_AT` (profile.ts), and validate its arguments in `PLUGIN_ARGS`.
 */
import { QuotaAdmission } from '../admission/quota-admission.ts';
import { EasyBackfill, GreedyBackfill, StrictBackfill } from '../backfill/backfill-plugins.ts';
import { WaitingDiagnosis } from '../diagnose/diagnosis-plugin.ts';
import { TopologyFilter } from '../filter/topology-filter.ts';
import { GangPlacement } from '../gang/gang-plugin.ts';
import type { PlacementOptions } from '../gang/placement.ts';
import type { OrderPreemptionArgs, QueueRankConfig } from '../preemption/order-preemption.ts';
import { OrderPreemption, PriorityPreemption } from '../preemption/preemption-plugins.ts';
import type { LasArgs } from '../queue-sort/las-sort.ts';
import { FairShareQueueSort, LasQueueSort, OracleQueueSort, PriorityQueueSort } from '../queue-sort/queue-sort-plugins.ts';
import type { PackingStrategy } from '../score/packing.ts';
import { BestFitScore, PackingScore, TopologyScore } from '../score/score-plugins.ts';
import type { AdmissionPlugin, BackfillPlugin, CyclePlugins, FilterPlugin, GangPlacementPlugin, PreemptionPlugin, QueueSortPlugin, ScorePlugin } from './extension-points.ts';
import { PLUGIN } from './plugin-names.ts';
import type { BackfillArgs, ExtensionPoint, FairShareArgs, PreemptionArgs, ProfilePlugins, TopologyArgs } from './profile.ts';

/** Every plugin's validated arguments (defaults where the profile gives none), what the factories read. */
export interface PluginSettings {
  readonly fairShare: FairShareArgs;
  readonly las: LasArgs;
  readonly preemption: PreemptionArgs;
  readonly orderPreemption: OrderPreemptionArgs;
  readonly backfill: BackfillArgs;
  /** The topology score's arguments; undefined when its weight is 0 (no preference). */
  readonly topologyScore: TopologyArgs | undefined;
  readonly packing: PackingStrategy;
  /** What the profile's queue sort ranks by (`order-preemption` preempts in that order). */
  readonly queueRank: QueueRankConfig;
}

type Factories<P> = Readonly<Record<string, (settings: PluginSettings) => P>>;

const QUEUE_SORTS: Factories<QueueSortPlugin> = {
  [PLUGIN.queueSort]: () => new PriorityQueueSort(),
  [PLUGIN.fairShare]: (s) => new FairShareQueueSort(s.fairShare),
  [PLUGIN.oracleShortest]: () => new OracleQueueSort(),
  [PLUGIN.las]: (s) => new LasQueueSort(s.las),
};
const ADMISSIONS: Factories<AdmissionPlugin> = { [PLUGIN.quota]: () => new QuotaAdmission() };
const FILTERS: Factories<FilterPlugin> = { [PLUGIN.topology]: () => new TopologyFilter() };
const SCORES: Factories<ScorePlugin> = {
  [PLUGIN.bestFit]: () => new BestFitScore(),
  [PLUGIN.packing]: (s) => new PackingScore(s.packing),
  [PLUGIN.topology]: (s) => new TopologyScore(s.topologyScore),
};
const GANGS: Factories<GangPlacementPlugin> = { [PLUGIN.gang]: () => new GangPlacement() };
const PREEMPTIONS: Factories<PreemptionPlugin> = {
  [PLUGIN.preemption]: (s) => new PriorityPreemption(s.preemption),
  [PLUGIN.orderPreemption]: (s) => new OrderPreemption(s.orderPreemption, s.queueRank),
};
const BACKFILLS: Factories<BackfillPlugin> = {
  greedy: (s) => new GreedyBackfill(s.backfill),
  strict: (s) => new StrictBackfill(s.backfill),
  easy: (s) => new EasyBackfill(s.backfill),
};

/** The registry, by extension point (the names match `PLUGINS_AT`). */
export const PLUGIN_REGISTRY: Readonly<Record<ExtensionPoint, Factories<unknown>>> = {
  queueSort: QUEUE_SORTS,
  admission: ADMISSIONS,
  filter: FILTERS,
  score: SCORES,
  gang: GANGS,
  preemption: PREEMPTIONS,
  backfill: BACKFILLS,
};

/** What the gang placement does with no filter or score listed. */
const BARE_PLACEMENT: PlacementOptions = { enforceRequire: false, preferTight: false, tightLevel: 'rack', packing: 'best-fit' };

/** Builds a validated profile's plugins (names checked against `PLUGINS_AT` already: a missing factory is a bug). */
export function buildCyclePlugins(plugins: ProfilePlugins, settings: PluginSettings): CyclePlugins {
  const build = <P>(point: ExtensionPoint, factories: Factories<P>, name: string): P => {
    const factory = factories[name];
    if (!factory) throw new Error(`bug: plugin '${name}' is allowed at ${point} but has no factory in the registry`);
    return factory(settings);
  };
  // A name listed twice is one plugin (a second quota ledger would count every job twice).
  const each = (names: readonly string[]): string[] => [...new Set(names)];
  const filter = each(plugins.filter).map((n) => build('filter', FILTERS, n));
  const score = each(plugins.score).map((n) => build('score', SCORES, n));
  let placement = BARE_PLACEMENT;
  for (const p of [...filter, ...score]) placement = { ...placement, ...p.placement };
  return {
    queueSort: build('queueSort', QUEUE_SORTS, plugins.queueSort),
    admission: each(plugins.admission).map((n) => build('admission', ADMISSIONS, n)),
    filter,
    score,
    gang: build('gang', GANGS, plugins.gang),
    preemption: each(plugins.preemption).map((n) => build('preemption', PREEMPTIONS, n)),
    backfill: build('backfill', BACKFILLS, plugins.backfill),
    diagnosis: new WaitingDiagnosis(),
    placement,
  };
}
