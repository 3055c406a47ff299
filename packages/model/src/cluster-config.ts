/**
 * The cluster and sharing configuration given to `tutti up --config FILE` and to `tutti sim --cluster FILE`:
 * nodes (for simulated and fake clusters, and topology labels for real ones), teams with quotas, and the
 * scheduler profile. Parsed by `parseClusterConfigYaml` into this normalised form.
 */
import type { NodeInfo } from './cluster.ts';
import type { TeamConfig } from './teams.ts';

export interface ClusterConfig {
  /** Nodes declared in the file (expanded from node groups). Empty when the backend discovers them. */
  nodes: NodeInfo[];
  teams: TeamConfig[];
  scheduler: SchedulerSettings;
}

export interface SchedulerSettings {
  /** Name of the scheduler profile. @default "tutti" */
  profile: string;
  /**
   * `fair_share_half_life`, ms, when the file sets it: the fair-share plugin's `halfLifeMs` under another name (the
   * scheduler's `resolveSchedulerSettings` lays it over the profile, and refuses a different `halfLifeMs` in `args`).
   * Left out, the profile's `halfLifeMs` applies (@default 24 h).
   */
  fairShareHalfLifeMs?: number;
  /** Extra profile arguments, validated by the plugins that read them. */
  args: Record<string, unknown>;
}
