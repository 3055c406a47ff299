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

/** Variants of a kind, packed as 0–3 (1: may use GPUs held for reservations, 2: declares no max duration). */
export const KIND_VARIANTS = 4;

/**
 * Per kind variant (kind id × `KIND_VARIANTS` + variant; kind ids come from the `CycleCache`): the state version at
 * which its outcome was learnt, and that outcome. One cycle's memo; nothing is carried to the next.
 */
export class OutcomeMemo {
  private readonly versions: Float64Array;
  private readonly outcomes: (Diagnosis | undefined)[];

  constructor(kindCount: number) {
    this.versions = new Float64Array(kindCount * KIND_VARIANTS).fill(-1);
    this.outcomes = new Array<Diagnosis | undefined>(kindCount * KIND_VARIANTS);
  }

  /** Whether the variant's outcome was learnt at this state version. */
  knows(variant: number, version: number): boolean {
    return this.versions[variant] === version;
  }

  /** What a job of the variant got at its turn (undefined: waits for capacity, described after the cycle). */
  outcome(variant: number): Diagnosis | undefined {
    return this.outcomes[variant];
  }

  learn(variant: number, version: number, outcome: Diagnosis | undefined): void {
    this.versions[variant] = version;
    this.outcomes[variant] = outcome;
  }
}
