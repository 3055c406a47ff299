/** The diagnosis step as a plugin: one `Diagnoser` per cycle (diagnose.ts), kept under its name. */
import type { CycleDataKey, CycleState } from '../framework/cycle-state.ts';
import type { DiagnosisPlugin } from '../framework/extension-points.ts';
import { DIAGNOSIS } from '../framework/plugin-names.ts';
import { Diagnoser } from './diagnose.ts';

/** Where the diagnosis step keeps its per-cycle data. */
export const DIAGNOSIS_DATA: CycleDataKey<Diagnoser> = { name: DIAGNOSIS };

export class WaitingDiagnosis implements DiagnosisPlugin {
  readonly name = DIAGNOSIS;
  beginCycle(state: CycleState, queueLength: number): Diagnoser {
    const diagnoser = new Diagnoser(state.index, state.overlay, state.cache, queueLength, state.place);
    state.write(DIAGNOSIS_DATA, diagnoser);
    return diagnoser;
  }
}
