/**
 * Policy names on the command line → scheduler profiles. The simulator never implements a policy itself: each name
 * must resolve to a `SchedulerProfile` that the live server could run too. When @tutti/scheduler exports a profile
 * registry (`getProfile(name)`), names are looked up there; until then only the default profile exists, under the
 * names `tutti` and `default`, and every other name is reported as not available yet.
 */
import * as scheduler from '@tutti/scheduler';
import { DEFAULT_PROFILE, type SchedulerProfile } from '@tutti/scheduler';

/**
 * Whether a profile places greedily in priority-then-submission order, best fit by free GPUs then node name,
 * without admission, preemption, reservations or topology scoring: then `greedy-best-fit` pruning is exact.
 * A profile with no plugin list is the first scheduler's single behaviour, which is exactly that.
 */
export function isGreedyBestFit(profile: SchedulerProfile): boolean {
  const loose = profile as { plugins?: Record<string, unknown>; weights?: Record<string, unknown>; args?: Record<string, unknown> };
  if (loose.plugins === undefined) return true;
  const p = loose.plugins;
  const list = (value: unknown): string[] | undefined => (Array.isArray(value) ? value.map(String) : undefined);
  return (
    p.queueSort === 'queue-sort' &&
    (list(p.admission) ?? ['?']).length === 0 &&
    (list(p.preemption) ?? ['?']).length === 0 &&
    p.backfill === 'greedy' &&
    (list(p.score) ?? []).join(',') === 'best-fit' &&
    Object.keys(loose.weights ?? {}).length === 0
  );
}

/**
 * How much of the cluster and the queue a cycle is shown.
 *
 * - `greedy-best-fit`: only the pending jobs that could possibly start now (per shape, the first jobs in queue
 *   order up to what the free capacity could hold) and only the nodes the cycle could choose (per hardware class and
 *   free-GPU count, the first nodes by name up to the gang sizes asked). Exact for a profile that places greedily in
 *   `compareQueueOrder` order, best fit by free GPUs then node name, without preemption or reservations — the
 *   default profile today. A test runs the same traces with and without it and compares every job's start.
 * - `none`: the whole queue and every node, every cycle. Right for any profile; slower on big queues.
 */
export type CyclePruning = 'greedy-best-fit' | 'none';

export interface SimPolicy {
  /** The name asked for (`tutti`, `fifo`, ...), used as the key of the results. */
  name: string;
  profile: SchedulerProfile;
  pruning: CyclePruning;
}

export interface PolicyResolution {
  policies: SimPolicy[];
  /** Names that no profile answers to yet, with why. */
  unavailable: Array<{ name: string; reason: string }>;
}

/** The policies issue 4 asks for; the ones the scheduler does not have yet are reported, not faked. */
export const KNOWN_POLICY_NAMES = ['fifo', 'fifo-backfill', 'sjf', 'srtf', 'tiresias', 'tutti'] as const;

type ProfileLookup = (name: string) => SchedulerProfile | undefined;

function registryLookup(): ProfileLookup | undefined {
  const candidate = (scheduler as Record<string, unknown>).getProfile;
  if (typeof candidate !== 'function') return undefined;
  return (name: string) => {
    try {
      // Either a profile, or a result value `{ok: true, profile}` / `{ok: false, error}`.
      const found: unknown = (candidate as (n: string) => unknown)(name);
      if (typeof found !== 'object' || found === null) return undefined;
      if ('ok' in found) return found.ok === true && 'profile' in found ? (found.profile as SchedulerProfile) : undefined;
      return 'name' in found ? (found as SchedulerProfile) : undefined;
    } catch {
      return undefined;
    }
  };
}

/** Resolves policy names (order kept, duplicates dropped). `exact` turns pruning off for every policy. */
export function resolvePolicies(names: readonly string[], options: { exact?: boolean } = {}): PolicyResolution {
  const lookup = registryLookup();
  const policies: SimPolicy[] = [];
  const unavailable: PolicyResolution['unavailable'] = [];
  for (const name of [...new Set(names.map((n) => n.trim()).filter((n) => n !== ''))]) {
    let profile = lookup?.(name);
    if (!profile && !lookup && (name === 'tutti' || name === 'default' || name === DEFAULT_PROFILE.name)) profile = DEFAULT_PROFILE;
    if (!profile) {
      unavailable.push({
        name,
        reason: lookup
          ? `the scheduler's profile registry has no profile '${name}'`
          : `not available yet: @tutti/scheduler has only the default profile (priority then submission order, greedy best fit); '${name}' comes with the scheduler's plugin framework (issue 3)`,
      });
      continue;
    }
    // Without a registry the scheduler is its first version, whose runCycle has one behaviour (greedy best fit)
    // whatever the profile says; with one, the profile's plugins decide.
    const greedy = lookup ? isGreedyBestFit(profile) : profile === DEFAULT_PROFILE;
    const pruning: CyclePruning = !options.exact && greedy ? 'greedy-best-fit' : 'none';
    policies.push({ name, profile, pruning });
  }
  return { policies, unavailable };
}
