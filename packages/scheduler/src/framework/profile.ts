/**
 * Scheduler profiles: which plugin runs at each extension point, with weights and arguments. Plain data (a YAML
 * file's `scheduler:` section parses into one), so that the server can load it from its configuration and the
 * simulator can compare profiles side by side. Each plugin validates its own arguments (`PLUGIN_ARGS`);
 * `compileProfile` turns a profile into the `CompiledProfile` a cycle runs with, once per profile object: the
 * arguments validated and defaulted, and the plugin objects the registry builds from them (`cycle`; their
 * interfaces are in extension-points.ts).
 *
 * Extension points, in cycle order:
 *
 *   queueSort   one of  queue-sort (priority, then submission) | fair-share (teams by decayed dominant share) |
 *                       oracle-shortest (true remaining time; simulator references sjf, srtf) |
 *                       las (two-dimensional least attained service, discretized: tiresias)
 *   admission   any of  quota
 *   filter      any of  topology (enforces `topology.require`); gpu-fit, host-resources and gang always run
 *   score       any of  best-fit, packing (best-fit | first-fit | spread), topology (tightest domain first for
 *                       multi-node gangs; `topology.prefer`)
 *   gang        one of  gang
 *   preemption  any of  preemption (priority, quota reclaim) | order-preemption (jobs the queue order ranks later:
 *                       oracle-shortest, las, or fair-share with `withinTeam: least-attained`); with both listed,
 *                       `preemption`'s maxGraceMs and maxPreemptorsPerCycle are the ones a cycle uses
 *   backfill    one of  greedy (a job that does not fit is skipped) | strict (nothing passes a blocked job) |
 *                       easy (the blocked head gets a reservation; others start only if they do not delay it)
 */
import type { TopologyLevel } from '@tutti/model';
import { DEFAULT_DURATION_ESTIMATE_ARGS } from '../queue-sort/duration-estimate.ts';
import { DEFAULT_LAS_ARGS, isThresholdList, parseLasArgs, type LasArgs } from '../queue-sort/las-sort.ts';
import type { OrderPreemptionArgs } from '../preemption/order-preemption.ts';
import { parsePackingArgs, type PackingArgs, type PackingStrategy } from '../score/packing.ts';
import type { CyclePlugins } from './extension-points.ts';
import { PLUGIN } from './plugin-names.ts';
import { buildCyclePlugins } from './registry.ts';

export const EXTENSION_POINTS = ['queueSort', 'admission', 'filter', 'score', 'gang', 'preemption', 'backfill'] as const;
export type ExtensionPoint = (typeof EXTENSION_POINTS)[number];

export type BackfillMode = 'greedy' | 'strict' | 'easy';
export const BACKFILL_MODES: readonly BackfillMode[] = ['greedy', 'strict', 'easy'];

export interface ProfilePlugins {
  /** `queue-sort`, `fair-share`, `oracle-shortest` or `las`. */
  readonly queueSort: string;
  /** Zero or more of: `quota`. */
  readonly admission: readonly string[];
  /** Zero or more of: `topology`. */
  readonly filter: readonly string[];
  /** Zero or more of: `best-fit`, `packing`, `topology`. */
  readonly score: readonly string[];
  /** `gang`. */
  readonly gang: string;
  /** Zero or more of: `preemption`, `order-preemption`. */
  readonly preemption: readonly string[];
  /** `greedy`, `strict` or `easy`. */
  readonly backfill: BackfillMode;
}

/** A profile as data. Every field but `name` is optional; what is left out keeps the `tutti` profile's value. */
export interface SchedulerProfile {
  /** Shown in logs, metrics and simulator reports. */
  readonly name: string;
  readonly plugins?: Partial<ProfilePlugins>;
  /** Score plugin weights by name (integers ≥ 0; 0 turns the score off). @default 1 each */
  readonly weights?: Readonly<Record<string, number>>;
  /** Arguments by plugin name, validated by that plugin (see `PLUGIN_ARGS`). */
  readonly args?: Readonly<Record<string, unknown>>;
}

/** Arguments of `fair-share`. */
export interface FairShareArgs {
  /** Half-life of the decayed usage history, ms. @default 24 h */
  readonly halfLifeMs: number;
  /** Priority points a waiting job gains per hour waited (ageing, so nothing starves). @default 1 */
  readonly agingPerHour: number;
  /**
   * Order within a team. `priority`: effective priority (priority + ageing), then submission. `shortest-estimated`:
   * priority (a lower one ageing up to the team's highest), then the shortest estimated run time (learned from
   * `CycleInput.durationHistory`, capped by `max_duration`), then submission. `response-ratio`: like
   * `shortest-estimated`, but by (waited + estimate) / estimate, highest first, so a long job that waited long
   * enough passes new short ones. A team with no estimates at all keeps the `priority` order. `least-attained`:
   * priority (a lower one ageing up to the team's highest), then the least-attained-service queue of the job's
   * GPU-time so far (`lasThresholdsGpuS`, as `las` / Tiresias), then submission; with `order-preemption`, a job
   * preempts running jobs of a lower queue (see order-preemption.ts for which teams). @default priority
   */
  readonly withinTeam: WithinTeamOrder;
  /**
   * `least-attained` only: attained-service thresholds between queues, GPU-seconds, ascending (n thresholds make
   * n + 1 queues). @default [3600, 36000] (as `las`)
   */
  readonly lasThresholdsGpuS: readonly number[];
  /** Finished jobs per history key the estimate looks at (the most recent). @default 20 */
  readonly estimateWindow: number;
  /** Finished jobs a history key needs before its median is used. @default 3 */
  readonly estimateMinSamples: number;
}

export type WithinTeamOrder = 'priority' | 'shortest-estimated' | 'response-ratio' | 'least-attained';
export const WITHIN_TEAM_ORDERS: readonly WithinTeamOrder[] = ['priority', 'shortest-estimated', 'response-ratio', 'least-attained'];

/**
 * `order-preemption` under `fair-share` (`withinTeam: least-attained`): whose running jobs a waiting job may preempt
 * by queue order. `never`: only its own team's. `over-share`: its own team's, and another team's when that team
 * would still have at least the preemptor's team's share after the swap (fair share between teams is kept). There
 * is deliberately no "any team's" (see order-preemption.ts: it thrashes).
 */
export type AcrossTeams = 'never' | 'over-share';
export const ACROSS_TEAMS: readonly AcrossTeams[] = ['never', 'over-share'];

/** Arguments of `preemption`. */
export interface PreemptionArgs {
  /**
   * The most a victim's grace may be, ms: a victim gets its own `preemption_grace` (else the server's default), cut
   * to this (see `decideStopGrace` in @tutti/model). Every stop of the server's jobs obeys it. @default none
   */
  readonly maxGraceMs?: number;
  /** Preempt for quota reclaim (jobs on borrowed GPUs). @default true */
  readonly reclaim: boolean;
  /** Preempt lower-priority jobs. @default true */
  readonly priority: boolean;
  /** At most this many pending jobs get room made by preemption per cycle (bounds the cost). @default 16 */
  readonly maxPreemptorsPerCycle: number;
}

/** Arguments of `backfill`. */
export interface BackfillArgs {
  /** Runtime assumed for a running job without `maxDurationMs`, ms. @default 1 h */
  readonly estimatedRuntimeMs: number;
  /** How many blocked jobs get a reservation per cycle (1 = EASY). @default 1 */
  readonly reservations: number;
}

/** Arguments of `topology` (the score). */
export interface TopologyArgs {
  /** Level multi-node gangs without a constraint are kept in when they can be. @default "rack" */
  readonly defaultPrefer: TopologyLevel;
}

export type ProfileResult = { ok: true; profile: SchedulerProfile } | { ok: false; error: string };

type ArgsCheck<T> = { ok: true; value: T } | { ok: false; error: string };

/** Each plugin that takes arguments validates them; unknown keys are errors (a typo must not be silently ignored). */
export const PLUGIN_ARGS = {
  [PLUGIN.fairShare]: (raw: unknown): ArgsCheck<FairShareArgs> => {
    // The one list-valued argument is checked here; the rest as every plugin's.
    let thresholds = DEFAULT_LAS_ARGS.queueThresholdsGpuS;
    let rest = raw;
    if (typeof raw === 'object' && raw !== null && !Array.isArray(raw) && Object.hasOwn(raw, 'lasThresholdsGpuS')) {
      const { lasThresholdsGpuS: value, ...others } = raw as Record<string, unknown>;
      if (!isThresholdList(value) || value.length === 0) {
        return { ok: false, error: `args.${PLUGIN.fairShare}.lasThresholdsGpuS: expected a non-empty list of GPU-seconds > 0 in increasing order (e.g. [3600, 36000]), got ${JSON.stringify(value)}` };
      }
      thresholds = value;
      rest = others;
    }
    return readArgs(
      PLUGIN.fairShare,
      rest,
      {
        halfLifeMs: [24 * 3_600_000, 1],
        agingPerHour: [1, 0],
        withinTeam: ['priority', WITHIN_TEAM_ORDERS],
        estimateWindow: [DEFAULT_DURATION_ESTIMATE_ARGS.window, 1],
        estimateMinSamples: [DEFAULT_DURATION_ESTIMATE_ARGS.minSamples, 1],
      },
      (v) => ({
        halfLifeMs: v['halfLifeMs'] as number,
        agingPerHour: v['agingPerHour'] as number,
        withinTeam: v['withinTeam'] as WithinTeamOrder,
        lasThresholdsGpuS: thresholds,
        estimateWindow: Math.floor(v['estimateWindow'] as number),
        estimateMinSamples: Math.floor(v['estimateMinSamples'] as number),
      }),
      ['lasThresholdsGpuS'],
    );
  },
  [PLUGIN.preemption]: (raw: unknown): ArgsCheck<PreemptionArgs> =>
    renamedGrace(PLUGIN.preemption, raw) ??
    readArgs(PLUGIN.preemption, raw, { maxGraceMs: [NO_MAX_GRACE, 0], reclaim: [true], priority: [true], maxPreemptorsPerCycle: [16, 0] }, (v) => ({
      ...maxGrace(v),
      reclaim: v['reclaim'] as boolean,
      priority: v['priority'] as boolean,
      maxPreemptorsPerCycle: v['maxPreemptorsPerCycle'] as number,
    })),
  [PLUGIN.backfill]: (raw: unknown): ArgsCheck<BackfillArgs> =>
    readArgs(PLUGIN.backfill, raw, { estimatedRuntimeMs: [3_600_000, 0], reservations: [1, 0] }, (v) => ({ estimatedRuntimeMs: v['estimatedRuntimeMs'] as number, reservations: v['reservations'] as number })),
  [PLUGIN.orderPreemption]: (raw: unknown): ArgsCheck<OrderPreemptionArgs> =>
    renamedGrace(PLUGIN.orderPreemption, raw) ??
    readArgs(PLUGIN.orderPreemption, raw, { maxGraceMs: [NO_MAX_GRACE, 0], maxPreemptorsPerCycle: [16, 0], acrossTeams: ['over-share', ACROSS_TEAMS] }, (v) => ({
      ...maxGrace(v),
      maxPreemptorsPerCycle: v['maxPreemptorsPerCycle'] as number,
      acrossTeams: v['acrossTeams'] as AcrossTeams,
    })),
  [PLUGIN.las]: (raw: unknown): ArgsCheck<LasArgs> => parseLasArgs(raw),
  [PLUGIN.packing]: (raw: unknown): ArgsCheck<PackingArgs> => parsePackingArgs(raw),
  [PLUGIN.topology]: (raw: unknown): ArgsCheck<TopologyArgs> =>
    readArgs(PLUGIN.topology, raw, { defaultPrefer: ['rack', ['rack', 'zone']] }, (v) => ({ defaultPrefer: v['defaultPrefer'] as TopologyLevel })),
} as const;

/** `maxGraceMs` left out: no maximum (readArgs wants a number for the default). */
const NO_MAX_GRACE = Number.POSITIVE_INFINITY;

function maxGrace(v: Record<string, unknown>): { maxGraceMs?: number } {
  const value = v['maxGraceMs'] as number;
  return value === NO_MAX_GRACE ? {} : { maxGraceMs: value };
}

/**
 * `graceMs` was the grace every victim got, whatever its own `preemption_grace`; it is now a maximum under another
 * name, so that a profile written for the old meaning is refused with the new one rather than read differently.
 */
function renamedGrace(plugin: string, raw: unknown): ArgsCheck<never> | undefined {
  if (typeof raw !== 'object' || raw === null || !Object.hasOwn(raw, 'graceMs')) return undefined;
  return {
    ok: false,
    error: `args.${plugin}.graceMs: renamed maxGraceMs, and now a maximum: a victim gets its own preemption_grace (else tutti up --grace), at most maxGraceMs`,
  };
}

/** `[default, min]` for numbers, `[default]` for booleans, `[default, allowed]` for strings. */
type ArgSpec = readonly [number, number] | readonly [boolean] | readonly [string, readonly string[]];

/** `alsoKnown`: arguments the caller checked itself (named among the known ones in an error). */
function readArgs<T>(plugin: string, raw: unknown, spec: Record<string, ArgSpec>, make: (v: Record<string, unknown>) => T, alsoKnown: readonly string[] = []): ArgsCheck<T> {
  const values: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(spec)) values[key] = s[0];
  if (raw === undefined || raw === null) return { ok: true, value: make(values) };
  if (typeof raw !== 'object' || Array.isArray(raw)) return { ok: false, error: `args.${plugin}: expected a mapping, got ${JSON.stringify(raw)}` };
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    const s = spec[key];
    if (!s) return { ok: false, error: `args.${plugin}.${key}: unknown argument; known: ${[...Object.keys(spec), ...alsoKnown].join(', ')}` };
    if (typeof s[0] === 'number') {
      const min = s[1] as number;
      if (typeof value !== 'number' || !Number.isFinite(value) || value < min) return { ok: false, error: `args.${plugin}.${key}: expected a number ≥ ${min}, got ${JSON.stringify(value)}` };
    } else if (typeof s[0] === 'boolean') {
      if (typeof value !== 'boolean') return { ok: false, error: `args.${plugin}.${key}: expected true or false, got ${JSON.stringify(value)}` };
    } else {
      const allowed = s[1] as readonly string[];
      if (typeof value !== 'string' || !allowed.includes(value)) return { ok: false, error: `args.${plugin}.${key}: expected one of ${allowed.join(', ')}, got ${JSON.stringify(value)}` };
    }
    values[key] = value;
  }
  return { ok: true, value: make(values) };
}

/** Which plugins may sit at each extension point. */
export const PLUGINS_AT: Readonly<Record<ExtensionPoint, readonly string[]>> = {
  queueSort: [PLUGIN.queueSort, PLUGIN.fairShare, PLUGIN.oracleShortest, PLUGIN.las],
  admission: [PLUGIN.quota],
  filter: [PLUGIN.topology],
  score: [PLUGIN.bestFit, PLUGIN.packing, PLUGIN.topology],
  gang: [PLUGIN.gang],
  preemption: [PLUGIN.preemption, PLUGIN.orderPreemption],
  backfill: BACKFILL_MODES,
};

const TUTTI_PLUGINS: ProfilePlugins = {
  queueSort: PLUGIN.fairShare,
  admission: [PLUGIN.quota],
  filter: [PLUGIN.topology],
  score: [PLUGIN.bestFit, PLUGIN.topology],
  gang: PLUGIN.gang,
  preemption: [PLUGIN.preemption],
  backfill: 'easy',
};

/** The default: fair share across teams, quotas, topology-aware best-fit gangs, preemption, EASY backfill. */
export const TUTTI_PROFILE: SchedulerProfile = deepFreeze({ name: 'tutti', plugins: TUTTI_PLUGINS, weights: {}, args: {} });

/** The default profile (`tutti`). */
export const DEFAULT_PROFILE: SchedulerProfile = TUTTI_PROFILE;

const FIFO_PLUGINS: ProfilePlugins = { queueSort: PLUGIN.queueSort, admission: [], filter: [PLUGIN.topology], score: [PLUGIN.bestFit], gang: PLUGIN.gang, preemption: [], backfill: 'strict' };

/** Strict priority-FIFO: nothing passes a job that does not fit (no quotas, no preemption). */
export const FIFO_PROFILE: SchedulerProfile = deepFreeze({ name: 'fifo', plugins: FIFO_PLUGINS, weights: {}, args: {} });

/** Priority-FIFO with EASY backfill. */
export const FIFO_BACKFILL_PROFILE: SchedulerProfile = deepFreeze({ name: 'fifo-backfill', plugins: { ...FIFO_PLUGINS, backfill: 'easy' }, weights: {}, args: {} });

/** The first version's behaviour: priority-FIFO, a job that does not fit is skipped, no reservations (first fit in queue order). */
export const GREEDY_PROFILE: SchedulerProfile = deepFreeze({ name: 'greedy', plugins: { ...FIFO_PLUGINS, backfill: 'greedy' }, weights: {}, args: {} });

const ORACLE_PLUGINS: ProfilePlugins = { ...FIFO_PLUGINS, queueSort: PLUGIN.oracleShortest, backfill: 'greedy' };

/**
 * ORACLE reference (simulator only): shortest job first by the true duration, non-preemptive, a job that does not fit
 * is skipped. Live there is no true duration: it orders by declared `max_duration` (jobs without one last).
 */
export const SJF_PROFILE: SchedulerProfile = deepFreeze({ name: 'sjf', plugins: ORACLE_PLUGINS, weights: {}, args: {} });

/**
 * ORACLE reference (simulator only): shortest remaining time first by the true remaining time, preemptive (a job
 * preempts running jobs with more remaining time). Live it orders and preempts by declared `max_duration`.
 */
export const SRTF_PROFILE: SchedulerProfile = deepFreeze({ name: 'srtf', plugins: { ...ORACLE_PLUGINS, preemption: [PLUGIN.orderPreemption] }, weights: {}, args: {} });

/** Tiresias: two-dimensional least attained service in discretized queues, non-clairvoyant, preemptive. */
export const TIRESIAS_PROFILE: SchedulerProfile = deepFreeze({ name: 'tiresias', plugins: { ...FIFO_PLUGINS, queueSort: PLUGIN.las, preemption: [PLUGIN.orderPreemption], backfill: 'greedy' }, weights: {}, args: {} });

/**
 * `tutti` with Tiresias inside each team: teams still take turns by fair share, and within a team the job with the
 * least attained service (GPUs × time run) goes first; a waiting job may preempt running jobs of a lower
 * attained-service queue — of its own team, and of another team only while that team stays at or above the
 * preemptor's team's share after the swap (`acrossTeams: over-share`). Non-clairvoyant. Opt-in: it preempts jobs
 * that are within their team's quota, which the default never does (docs/scheduling-results.md has the figures).
 */
export const TUTTI_LAS_PROFILE: SchedulerProfile = deepFreeze({
  name: 'tutti-las',
  plugins: { ...TUTTI_PLUGINS, preemption: [PLUGIN.preemption, PLUGIN.orderPreemption] },
  weights: {},
  args: { [PLUGIN.fairShare]: { withinTeam: 'least-attained' }, [PLUGIN.orderPreemption]: { acrossTeams: 'over-share' } },
});

export const BUILTIN_PROFILES: ReadonlyMap<string, SchedulerProfile> = new Map([TUTTI_PROFILE, TUTTI_LAS_PROFILE, FIFO_PROFILE, FIFO_BACKFILL_PROFILE, GREEDY_PROFILE, SJF_PROFILE, SRTF_PROFILE, TIRESIAS_PROFILE].map((p) => [p.name, p]));

/** A built-in profile by name, or an error value naming the known ones. */
export function getProfile(name: string): ProfileResult {
  const profile = BUILTIN_PROFILES.get(name);
  if (profile) return { ok: true, profile };
  return { ok: false, error: `unknown scheduler profile '${name}'; built-in profiles: ${[...BUILTIN_PROFILES.keys()].join(', ')}` };
}

/**
 * Parses a profile from a YAML-compatible plain object: `{name, base?, plugins?, weights?, args?}`. `base` names a
 * built-in profile to start from (default `tutti`): `plugins` replace the base's at the extension points named,
 * `weights` and each plugin's `args` are laid over the base's key by key. Every plugin name and argument is checked;
 * the first problem is returned as an error value.
 */
export function parseProfile(raw: unknown): ProfileResult {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, error: `a scheduler profile is a mapping, got ${JSON.stringify(raw)}` };
  const record = raw as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!['name', 'base', 'plugins', 'weights', 'args'].includes(key)) return { ok: false, error: `unknown profile field '${key}'; allowed: name, base, plugins, weights, args` };
  }
  const baseName = record['base'] ?? 'tutti';
  if (typeof baseName !== 'string') return { ok: false, error: `base: expected a profile name, got ${JSON.stringify(baseName)}` };
  const base = getProfile(baseName);
  if (!base.ok) return base;
  const name = record['name'] ?? baseName;
  if (typeof name !== 'string' || name === '') return { ok: false, error: `name: expected a non-empty string, got ${JSON.stringify(name)}` };

  const plugins: Record<string, unknown> = { ...(base.profile.plugins ?? {}) };
  const rawPlugins = record['plugins'];
  if (rawPlugins !== undefined) {
    if (typeof rawPlugins !== 'object' || rawPlugins === null || Array.isArray(rawPlugins)) return { ok: false, error: 'plugins: expected a mapping of extension point to plugin names' };
    for (const [point, value] of Object.entries(rawPlugins as Record<string, unknown>)) {
      if (!(EXTENSION_POINTS as readonly string[]).includes(point)) return { ok: false, error: `plugins.${point}: unknown extension point; known: ${EXTENSION_POINTS.join(', ')}` };
      plugins[point] = value;
    }
  }
  const weights = record['weights'] ?? {};
  const args = record['args'] ?? {};
  if (typeof weights !== 'object' || weights === null || Array.isArray(weights)) return { ok: false, error: 'weights: expected a mapping of score plugin to weight' };
  if (typeof args !== 'object' || args === null || Array.isArray(args)) return { ok: false, error: 'args: expected a mapping of plugin to arguments' };
  // A plugin's arguments given here are laid over the base's, key by key (`tutti-las` with other thresholds keeps its
  // `withinTeam`).
  const mergedArgs: Record<string, unknown> = { ...(base.profile.args ?? {}) };
  for (const [plugin, value] of Object.entries(args as Record<string, unknown>)) {
    const under = mergedArgs[plugin];
    const isMapping = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
    mergedArgs[plugin] = isMapping(under) && isMapping(value) ? { ...under, ...value } : value;
  }
  const profile: SchedulerProfile = { name, plugins: plugins as Partial<ProfilePlugins>, weights: { ...(base.profile.weights ?? {}), ...(weights as Record<string, number>) }, args: mergedArgs };
  const compiled = checkProfile(profile);
  return compiled.ok ? { ok: true, profile: deepFreeze(profile) } : compiled;
}

/**
 * What a cycle runs with: plugins resolved, arguments validated and defaulted. `runCycle` calls only `cycle`; the
 * other fields describe the profile for its callers (the simulator asks which inputs a profile reads).
 */
export interface CompiledProfile {
  readonly name: string;
  readonly plugins: ProfilePlugins;
  readonly fairShare: FairShareArgs | undefined;
  readonly quota: boolean;
  readonly topologyFilter: boolean;
  readonly topologyScore: TopologyArgs | undefined;
  /** Weight of the best-fit score (0: first fit by node name). */
  readonly bestFitWeight: number;
  /** How placement chooses among the nodes that fit (`packing` score; best fit without it). */
  readonly packing: PackingStrategy;
  readonly preemption: PreemptionArgs | undefined;
  /** The queue sort reads `oracleRemainingMs` (`oracle-shortest`). */
  readonly oracle: boolean;
  /** Arguments of `las`, when it is the queue sort. */
  readonly las: LasArgs | undefined;
  readonly orderPreemption: OrderPreemptionArgs | undefined;
  readonly backfill: BackfillMode;
  readonly backfillArgs: BackfillArgs;
  /** The plugins a cycle calls, one entry per extension point, built from the fields above (registry.ts). */
  readonly cycle: CyclePlugins;
}

export class ProfileError extends Error {
  override readonly name = 'ProfileError';
}

const compiledCache = new WeakMap<SchedulerProfile, CompiledProfile>();

/** Compiles (and caches per profile object). Throws `ProfileError` for an invalid profile: parse profiles with `parseProfile` first. */
export function compileProfile(profile: SchedulerProfile): CompiledProfile {
  let compiled = compiledCache.get(profile);
  if (!compiled) {
    const result = checkProfile(profile);
    if (!result.ok) throw new ProfileError(result.error);
    compiled = result.value;
    compiledCache.set(profile, compiled);
  }
  return compiled;
}

/**
 * The most any stop's grace may be under `profile` (its preemption plugin's `maxGraceMs`; with both listed,
 * `preemption`'s), or undefined when it sets none. The server caps every stop with it, the scheduler every victim.
 */
export function readMaxGraceMs(profile: SchedulerProfile): number | undefined {
  const config = compileProfile(profile);
  return (config.preemption ?? config.orderPreemption)?.maxGraceMs;
}

function checkProfile(profile: SchedulerProfile): ArgsCheck<CompiledProfile> {
  const plugins: ProfilePlugins = { ...TUTTI_PLUGINS, ...(profile.plugins ?? {}) };
  const one = (point: ExtensionPoint, value: unknown): string | undefined =>
    typeof value === 'string' && PLUGINS_AT[point].includes(value) ? undefined : `plugins.${point}: expected one of ${PLUGINS_AT[point].join(', ')}, got ${JSON.stringify(value)}`;
  const many = (point: ExtensionPoint, value: unknown): string | undefined =>
    Array.isArray(value) && value.every((v) => typeof v === 'string' && PLUGINS_AT[point].includes(v))
      ? undefined
      : `plugins.${point}: expected a list of ${PLUGINS_AT[point].join(', ')}, got ${JSON.stringify(value)}`;
  const problem =
    one('queueSort', plugins.queueSort) ?? many('admission', plugins.admission) ?? many('filter', plugins.filter) ?? many('score', plugins.score) ?? one('gang', plugins.gang) ?? many('preemption', plugins.preemption) ?? one('backfill', plugins.backfill);
  if (problem) return { ok: false, error: problem };

  const weights = profile.weights ?? {};
  for (const [name, weight] of Object.entries(weights)) {
    if (!PLUGINS_AT.score.includes(name)) return { ok: false, error: `weights.${name}: not a score plugin; score plugins: ${PLUGINS_AT.score.join(', ')}` };
    if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 0 || weight > 1000) return { ok: false, error: `weights.${name}: expected a whole number 0..1000, got ${JSON.stringify(weight)}` };
  }
  const args = profile.args ?? {};
  for (const name of Object.keys(args)) {
    if (!Object.hasOwn(PLUGIN_ARGS, name)) return { ok: false, error: `args.${name}: no plugin of that name takes arguments; those that do: ${Object.keys(PLUGIN_ARGS).join(', ')}` };
  }
  const fairShare = PLUGIN_ARGS[PLUGIN.fairShare](args[PLUGIN.fairShare]);
  const preemption = PLUGIN_ARGS[PLUGIN.preemption](args[PLUGIN.preemption]);
  const backfill = PLUGIN_ARGS[PLUGIN.backfill](args[PLUGIN.backfill]);
  const topology = PLUGIN_ARGS[PLUGIN.topology](args[PLUGIN.topology]);
  const orderPreemption = PLUGIN_ARGS[PLUGIN.orderPreemption](args[PLUGIN.orderPreemption]);
  const las = PLUGIN_ARGS[PLUGIN.las](args[PLUGIN.las]);
  const packing = PLUGIN_ARGS[PLUGIN.packing](args[PLUGIN.packing]);
  for (const r of [fairShare, preemption, backfill, topology, orderPreemption, las, packing]) if (!r.ok) return r;
  if (!fairShare.ok || !preemption.ok || !backfill.ok || !topology.ok || !orderPreemption.ok || !las.ok || !packing.ok) return { ok: false, error: 'unreachable' };
  if (plugins.score.includes(PLUGIN.packing) && plugins.score.includes(PLUGIN.bestFit)) {
    return { ok: false, error: 'plugins.score: list best-fit or packing, not both (packing with strategy best-fit is best-fit)' };
  }
  const lasWithinTeams = plugins.queueSort === PLUGIN.fairShare && fairShare.value.withinTeam === 'least-attained';
  const sortName = plugins.queueSort === PLUGIN.fairShare ? `fair-share with withinTeam: ${fairShare.value.withinTeam}` : plugins.queueSort;
  if (plugins.preemption.includes(PLUGIN.orderPreemption) && plugins.queueSort !== PLUGIN.oracleShortest && plugins.queueSort !== PLUGIN.las && !lasWithinTeams) {
    return { ok: false, error: `plugins.preemption: order-preemption needs a queue sort that ranks jobs (oracle-shortest, las, or fair-share with withinTeam: least-attained), got ${sortName}` };
  }
  const rawFairShareArgs = args[PLUGIN.fairShare];
  if (fairShare.value.withinTeam !== 'least-attained' && typeof rawFairShareArgs === 'object' && rawFairShareArgs !== null && Object.hasOwn(rawFairShareArgs, 'lasThresholdsGpuS')) {
    return { ok: false, error: `args.${PLUGIN.fairShare}.lasThresholdsGpuS: only with withinTeam: least-attained, got withinTeam: ${fairShare.value.withinTeam}` };
  }
  const rawOrderArgs = args[PLUGIN.orderPreemption];
  if (!lasWithinTeams && typeof rawOrderArgs === 'object' && rawOrderArgs !== null && Object.hasOwn(rawOrderArgs, 'acrossTeams')) {
    return { ok: false, error: `args.${PLUGIN.orderPreemption}.acrossTeams: only with the fair-share queue sort and withinTeam: least-attained (oracle-shortest and las rank every team's jobs alike), got ${sortName}` };
  }

  const topologyWeight = weights[PLUGIN.topology] ?? 1;
  const topologyScore = plugins.score.includes(PLUGIN.topology) && topologyWeight > 0 ? topology.value : undefined;
  const rankedBy = {
    oracle: plugins.queueSort === PLUGIN.oracleShortest,
    las: plugins.queueSort === PLUGIN.las ? las.value : undefined,
    fairShare: plugins.queueSort === PLUGIN.fairShare ? fairShare.value : undefined,
    orderPreemption: plugins.preemption.includes(PLUGIN.orderPreemption) ? orderPreemption.value : undefined,
  };
  return {
    ok: true,
    value: {
      name: profile.name,
      plugins,
      fairShare: rankedBy.fairShare,
      quota: plugins.admission.includes(PLUGIN.quota),
      topologyFilter: plugins.filter.includes(PLUGIN.topology),
      topologyScore,
      bestFitWeight: plugins.score.includes(PLUGIN.bestFit) ? (weights[PLUGIN.bestFit] ?? 1) : 0,
      packing: plugins.score.includes(PLUGIN.packing) ? packing.value.strategy : 'best-fit',
      preemption: plugins.preemption.includes(PLUGIN.preemption) ? preemption.value : undefined,
      oracle: rankedBy.oracle,
      las: rankedBy.las,
      orderPreemption: rankedBy.orderPreemption,
      backfill: plugins.backfill,
      backfillArgs: backfill.value,
      cycle: buildCyclePlugins(plugins, {
        fairShare: fairShare.value,
        las: las.value,
        preemption: preemption.value,
        orderPreemption: orderPreemption.value,
        backfill: backfill.value,
        topologyScore,
        packing: plugins.score.includes(PLUGIN.packing) ? packing.value.strategy : 'best-fit',
        queueRank: rankedBy,
      }),
    },
  };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
