/**
 * The one fair-share half-life. The profile's `fair-share.halfLifeMs` is the value every reader uses: the queue sort,
 * the server's usage tracker and its views (`/v1/teams`, `tutti queues`), the simulator's usage. The cluster
 * config's `scheduler.fair_share_half_life` is a friendlier way to set that same value (a duration like `12h`);
 * given both with different values, the config is refused with an error naming both fields.
 */
import type { SchedulerSettings } from '@tutti/model';
import { PLUGIN } from './plugin-names.ts';
import { getProfile, parseProfile, PLUGIN_ARGS, ProfileError } from './profile.ts';
import type { ProfileResult, SchedulerProfile } from './profile.ts';

/**
 * The profile a cluster config's `scheduler` section asks for: the named profile, `args` laid over it, and
 * `fair_share_half_life` as `fair-share.halfLifeMs`. Errors carry the config path of the field at fault.
 */
export function resolveSchedulerSettings(settings: Pick<SchedulerSettings, 'profile' | 'args'> & { readonly fairShareHalfLifeMs?: number | undefined }): ProfileResult {
  const named = Object.keys(settings.args).length > 0 ? parseProfile({ base: settings.profile, args: settings.args }) : getProfile(settings.profile);
  if (!named.ok) return { ok: false, error: `scheduler.profile: ${named.error}` };
  return applyFairShareHalfLife(named.profile, settings.fairShareHalfLifeMs);
}

/**
 * `profile` with `fair-share.halfLifeMs` set to `halfLifeMs` (the cluster config's `fair_share_half_life`); the
 * profile itself when that is not given. Refused when the profile's arguments already set a different half-life.
 */
export function applyFairShareHalfLife(profile: SchedulerProfile, halfLifeMs: number | undefined): ProfileResult {
  if (halfLifeMs === undefined) return { ok: true, profile };
  const own = profile.args?.[PLUGIN.fairShare];
  const ownArgs = typeof own === 'object' && own !== null && !Array.isArray(own) ? (own as Record<string, unknown>) : {};
  const ownHalfLife = ownArgs['halfLifeMs'];
  if (ownHalfLife === halfLifeMs) return { ok: true, profile };
  if (ownHalfLife !== undefined) {
    return {
      ok: false,
      error: `scheduler.fair_share_half_life (${halfLifeMs} ms) and args.${PLUGIN.fairShare}.halfLifeMs (${JSON.stringify(ownHalfLife)}) of profile '${profile.name}' set two different half-lives: they are the same setting, give only one`,
    };
  }
  const args = { ...(profile.args ?? {}), [PLUGIN.fairShare]: { ...ownArgs, halfLifeMs } };
  const checked = PLUGIN_ARGS[PLUGIN.fairShare](args[PLUGIN.fairShare]);
  if (!checked.ok) return { ok: false, error: `scheduler.fair_share_half_life: ${checked.error}` };
  return { ok: true, profile: Object.freeze({ ...profile, args: Object.freeze(args) }) };
}

/** The half-life of decayed team usage under `profile`, ms (`fair-share.halfLifeMs`, whatever the queue sort). */
export function readFairShareHalfLifeMs(profile: SchedulerProfile): number {
  const args = PLUGIN_ARGS[PLUGIN.fairShare](profile.args?.[PLUGIN.fairShare]);
  if (!args.ok) throw new ProfileError(`profile '${profile.name}': ${args.error}`);
  return args.value.halfLifeMs;
}
