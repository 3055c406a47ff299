import { DEFAULT_STOP_GRACE_MS } from '@tutti/model';
import { compileProfile, readFairShareHalfLifeMs, readMaxGraceMs } from '@tutti/scheduler';
import type { SchedulerProfile } from '@tutti/scheduler';
import type { LifecycleSettings } from './job-lifecycle.ts';

/**
 * The lifecycle's settings as a scheduler profile and a site's default grace make them, the same way for the server
 * and the simulator: the profile's maximum grace, its fair-share half-life, and its estimate window (run times are
 * kept only when the profile's queue sort estimates from them); and how late the backend may report exits.
 */
export function lifecycleSettingsFor(profile: SchedulerProfile, defaultGraceMs: number = DEFAULT_STOP_GRACE_MS, exitReportDelayMs = 0): LifecycleSettings {
  const compiled = compileProfile(profile);
  const maxGraceMs = readMaxGraceMs(profile);
  const estimates = compiled.fairShare !== undefined && compiled.fairShare.withinTeam !== 'priority';
  return {
    defaultGraceMs,
    halfLifeMs: readFairShareHalfLifeMs(profile),
    ...(maxGraceMs !== undefined ? { maxGraceMs } : {}),
    ...(estimates ? { durationWindow: compiled.fairShare!.estimateWindow } : {}),
    ...(exitReportDelayMs > 0 ? { exitReportDelayMs } : {}),
  };
}
