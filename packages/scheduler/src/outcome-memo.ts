/**
 * Kinds of pending jobs that a cycle treats alike. Two jobs of one kind (same resource shape, team, priority, and
 * whether they may use held GPUs and declare a max duration) that reach their turn in the same state of the cycle
 * (no placement, hold, charge, preemption, reservation or strict-FIFO block in between) get the same outcome: every
 * step reads only the kind and that state, and every memo a step keeps is keyed by the kind's parts. So when the
 * job before was of the same kind and nothing changed, a long queue of jobs that cannot start is answered in O(1)
 * per job instead of re-running admission, placement, preemption and reservation searches.
 *
 * `runCycle` measures "nothing changed" with `stateVersion`, a sum of counters that only grow.
 */
import type { Diagnosis } from '@tutti/model';
import type { ResourceShape } from './resource-shape.ts';

export interface JobKind {
  /** The state version at which `atTurn` was learnt; -1 for none. */
  version: number;
  /** What a job of this kind got at its turn (undefined: waits for capacity, described after the cycle). */
  atTurn: Diagnosis | undefined;
}

export class OutcomeMemo {
  private readonly kinds = new Map<string, Map<string, Map<number, JobKind[]>>>();

  /**
   * The kinds of jobs of this shape, team and priority, by variant: the flags that are not part of the shape,
   * packed as 0–3 (1: may use GPUs held for reservations, 2: declares no max duration).
   */
  kindsOf(shape: ResourceShape, team: string, priority: number): JobKind[] {
    let byTeam = this.kinds.get(shape.key);
    if (!byTeam) this.kinds.set(shape.key, (byTeam = new Map()));
    let byPriority = byTeam.get(team);
    if (!byPriority) byTeam.set(team, (byPriority = new Map()));
    let variants = byPriority.get(priority);
    if (!variants) byPriority.set(priority, (variants = [0, 1, 2, 3].map(() => ({ version: -1, atTurn: undefined }))));
    return variants;
  }
}
