/**
 * A scheduler profile: the named configuration a cycle runs with. Plain data, so that the server can load it from
 * its configuration file and the simulator can compare profiles side by side.
 *
 * This version has one behaviour and therefore only a name. The plugin framework adds the list of enabled plugins
 * and their arguments here (queue sort, filters, scores, post-filters such as preemption), each keyed by its name in
 * `PLUGIN`; a profile that does not mention a plugin keeps its default.
 */
export interface SchedulerProfile {
  /** Shown in logs, metrics and simulator reports. */
  readonly name: string;
}

/** Priority-then-FIFO queue, greedy all-or-nothing placement, best-fit node choice, NVLink-aware GPU choice. */
export const DEFAULT_PROFILE: SchedulerProfile = Object.freeze({ name: 'default' });
