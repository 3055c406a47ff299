/**
 * A cycle's diagnoses, one per job left waiting, as a read-only map by job id in queue order.
 *
 * Each diagnosis is put together when it is read. A cycle leaves tens of thousands of jobs waiting and the server
 * reads a few of their diagnoses before the next cycle replaces them all; building 50,000 objects and a 50,000-key
 * map every cycle cost more than deciding the cycle. What a cycle keeps here is the queue-order list of waiting jobs,
 * the shared diagnosis each got at its turn, and its position in its team's queue; all of it is copied out of the
 * cycle's working state, so a later cycle changes nothing here.
 */
import type { Diagnosis, Job } from '@tutti/model';
import type { CycleCache } from '../perf/cycle-cache.ts';

export interface WaitingDiagnosesParts {
  /** Jobs left waiting, in queue order. */
  readonly jobs: readonly Job[];
  /** The diagnosis each got (shared between jobs; never edited). */
  readonly atTurn: readonly Diagnosis[];
  /** Each job's 1-based position among its team's waiting jobs. */
  readonly positions: Int32Array;
  /** How many of each job's team are waiting. */
  readonly teamSizes: Int32Array;
  /** Notes added to the message of jobs with a backfill reservation. */
  readonly reservedNote: ReadonlyMap<string, string>;
  /** Expected start of jobs with a reservation (only those whose start rests on something). */
  readonly estimatedStart: ReadonlyMap<string, number>;
  /** What each expected start rests on. */
  readonly estimateBasis: ReadonlyMap<string, string>;
  /** Where the jobs' indexes are noted (`CycleCache.waitingAtOf`), and the cycle that noted them. */
  readonly cache: CycleCache;
  readonly cycle: number;
}

export class WaitingDiagnoses implements ReadonlyMap<string, Diagnosis> {
  // Private fields (#), so that equality checks that walk an object's own properties compare the entries only.
  readonly #parts: WaitingDiagnosesParts;
  /** Made on the first read: most cycles' diagnoses are never read before the next cycle replaces them. */
  #built: (Diagnosis | undefined)[] | undefined;
  /** Made on the first look-up the cache's records can no longer answer (a later cycle has run). */
  #byId: Map<string, number> | undefined;

  constructor(parts: WaitingDiagnosesParts) {
    this.#parts = parts;
  }

  get size(): number {
    return this.#parts.jobs.length;
  }

  get(id: string): Diagnosis | undefined {
    const at = this.#indexOf(id);
    return at < 0 ? undefined : this.#at(at);
  }

  has(id: string): boolean {
    return this.#indexOf(id) >= 0;
  }

  forEach(callback: (value: Diagnosis, key: string, map: ReadonlyMap<string, Diagnosis>) => void, thisArg?: unknown): void {
    const { jobs } = this.#parts;
    for (let i = 0; i < jobs.length; i++) callback.call(thisArg, this.#at(i), (jobs[i] as Job).id, this);
  }

  *entries(): MapIterator<[string, Diagnosis]> {
    const { jobs } = this.#parts;
    for (let i = 0; i < jobs.length; i++) yield [(jobs[i] as Job).id, this.#at(i)];
  }

  *keys(): MapIterator<string> {
    for (const job of this.#parts.jobs) yield job.id;
  }

  *values(): MapIterator<Diagnosis> {
    for (let i = 0; i < this.#parts.jobs.length; i++) yield this.#at(i);
  }

  [Symbol.iterator](): MapIterator<[string, Diagnosis]> {
    return this.entries();
  }

  get [Symbol.toStringTag](): string {
    return 'WaitingDiagnoses';
  }

  #indexOf(id: string): number {
    const { jobs, cache, cycle } = this.#parts;
    if (!this.#byId) {
      // Until the next cycle begins, each waiting job's record says where it is.
      if (cache.cycle === cycle) {
        const no = cache.peek(id);
        return no >= 0 && cache.waitingCycleOf[no] === cycle ? (cache.waitingAtOf[no] as number) : -1;
      }
      this.#byId = new Map();
      for (let i = 0; i < jobs.length; i++) this.#byId.set((jobs[i] as Job).id, i);
    }
    return this.#byId.get(id) ?? -1;
  }

  #at(i: number): Diagnosis {
    const built = (this.#built ??= new Array<Diagnosis | undefined>(this.#parts.jobs.length));
    const found = built[i];
    if (found) return found;
    const { jobs, atTurn, positions, teamSizes, reservedNote, estimatedStart, estimateBasis } = this.#parts;
    const job = jobs[i] as Job;
    const d = atTurn[i] as Diagnosis;
    const note = reservedNote.get(job.id);
    const diagnosis: Diagnosis = { plugin: d.plugin, code: d.code, message: note !== undefined && d.code !== 'NeverFits' ? `${d.message}${note}` : d.message, position: { team: job.spec.team, index: positions[i] as number, of: teamSizes[i] as number } };
    const start = estimatedStart.get(job.id) ?? d.estimatedStartAt;
    if (start !== undefined) diagnosis.estimatedStartAt = start;
    const basis = estimateBasis.get(job.id) ?? d.estimatedStartBasis;
    if (start !== undefined && basis !== undefined) diagnosis.estimatedStartBasis = basis;
    built[i] = diagnosis;
    return diagnosis;
  }
}
