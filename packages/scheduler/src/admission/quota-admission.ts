/**
 * The `quota` admission plugin: a job starts only within its team's nominal quota plus what it may borrow (quota.ts
 * has the rules). Per cycle it keeps two ledgers under its name: `ledger` (running jobs plus this cycle's admissions,
 * less its victims) decides admission; `runningLedger` (running jobs only, less victims) says who works on borrowed
 * GPUs, for quota reclaim.
 */
import type { GpuDevice, Job, PlacedNode } from '@tutti/model';
import type { ResourceShape } from '../cycle/resource-shape.ts';
import { restrictShapeTypes } from '../cycle/resource-shape.ts';
import type { RunningJob } from '../cycle/running.ts';
import type { SnapshotIndex } from '../cycle/snapshot-index.ts';
import { computeCandidateTypes } from '../filter/gpu-fit.ts';
import type { CycleDataKey, CycleState } from '../framework/cycle-state.ts';
import type { Admission, AdmissionCycle, AdmissionPlugin } from '../framework/extension-points.ts';
import { PLUGIN } from '../framework/plugin-names.ts';
import { describeQuotaFailure, QuotaLedger } from './quota.ts';

/** Where `quota` keeps its per-cycle data. */
export const QUOTA_DATA: CycleDataKey<QuotaCycle> = { name: PLUGIN.quota };

export class QuotaAdmission implements AdmissionPlugin {
  readonly name = PLUGIN.quota;

  /** Without teams every job is admitted: no ledger this cycle. */
  beginCycle(state: CycleState): QuotaCycle | undefined {
    if (state.teams.length === 0) return undefined;
    const cycle = new QuotaCycle(state);
    state.write(QUOTA_DATA, cycle);
    return cycle;
  }
}

export class QuotaCycle implements AdmissionCycle {
  /** Usage including this cycle's admissions: is a job within its team's quota? */
  readonly ledger: QuotaLedger;
  /** Usage of running jobs only (less this cycle's victims): who works on borrowed GPUs, for reclaim. */
  readonly runningLedger: QuotaLedger;
  /** GPU types each shape accepts among the ready ones, by shape key. */
  private readonly candidateTypes = new Map<string, readonly string[]>();
  private readonly index: SnapshotIndex;
  private readonly restricted: Map<string, ResourceShape>;

  constructor(state: CycleState) {
    const readyGpus = countReadyGpus(state.index);
    this.index = state.index;
    this.restricted = state.restrictedShapes;
    this.ledger = new QuotaLedger(state.teams, readyGpus);
    this.runningLedger = new QuotaLedger(state.teams, readyGpus);
    // Victims of earlier cycles still within their grace count for no quota.
    const { ids: stopping } = state.stopping;
    for (const r of state.running) {
      if (!r.job || stopping.has(r.id)) continue;
      for (const [type, n] of r.byType) {
        this.ledger.charge(r.job.spec.team, type, n);
        this.runningLedger.charge(r.job.spec.team, type, n);
      }
    }
  }

  get version(): number {
    return this.ledger.version + this.runningLedger.version;
  }

  admit(job: Job, team: string, shape: ResourceShape, amount: number): Admission {
    if (shape.gpuCount === 0) return { admitted: true, shape };
    const { ledger } = this;
    let types = this.candidateTypes.get(shape.key);
    if (!types) this.candidateTypes.set(shape.key, (types = computeCandidateTypes(shape, this.index.readyGpuTypes)));
    let everyType = types.length > 0;
    for (let t = 0; t < types.length && everyType; t++) everyType = ledger.admits(team, types[t] as string, amount);
    // Usually every type is admitted, and nothing is built.
    if (everyType) return { admitted: true, shape };
    const admitted: string[] = [];
    const refused: string[] = [];
    const refusedTypes: string[] = [];
    for (const type of types) {
      const check = ledger.check(job.spec.team, type, amount);
      if (check.ok) admitted.push(type);
      else {
        refused.push(check.message);
        refusedTypes.push(type);
      }
    }
    if (admitted.length === 0) return { admitted: false, diagnosis: { plugin: PLUGIN.quota, code: 'QuotaExceeded', message: describeQuotaFailure(refused, refusedTypes) } };
    return { admitted: true, shape: admitted.length < types.length ? restrictShapeTypes(shape, admitted, this.restricted) : shape };
  }

  charge(job: Job, nodes: readonly PlacedNode[]): void {
    const fraction = job.spec.resources.gpus.fraction ?? 1;
    for (const placed of nodes) {
      const node = this.index.byName.get(placed.node);
      for (const gpuIndex of placed.gpuIndices) {
        const gpu = node?.gpuByIndex.get(gpuIndex);
        if (gpu) this.ledger.charge(job.spec.team, gpu.type, fraction);
      }
    }
  }

  release(victim: RunningJob): void {
    const team = (victim.job as Job).spec.team;
    for (const [type, n] of victim.byType) {
      this.ledger.charge(team, type, -n);
      this.runningLedger.charge(team, type, -n);
    }
  }
}

/** GPUs on ready nodes, by type. */
function countReadyGpus(index: SnapshotIndex): Map<string, number> {
  const byType = new Map<string, number>();
  for (const node of index.readyNodes) {
    // The node's list when no GPU index repeats in it (the usual case): an array walk, no iterator per node.
    const gpus = node.info.gpus.length === node.gpuByIndex.size ? node.info.gpus : [...node.gpuByIndex.values()];
    for (let g = 0; g < gpus.length; g++) {
      const type = (gpus[g] as GpuDevice).type;
      byType.set(type, (byType.get(type) ?? 0) + 1);
    }
  }
  return byType;
}
