/**
 * What one cycle may keep for the next: per pending job, what the cycle derives from it (shape, GPUs, sort fields,
 * kind of job), and per team, the order the last cycle put the team's jobs in.
 *
 * A cache changes no result. Every cycle decides from its input alone, and a cycle given a fresh cache decides the
 * same as one given a cache that saw a thousand cycles before; the fast-path tests run sequences of cycles both ways.
 * What the cache buys is work not redone: a queue of 50,000 jobs where a few arrive and leave between cycles is
 * looked up rather than re-derived, and each team's order is handed to the sort nearly sorted, so that sorting it
 * again costs about one comparison per job (the sort, not the hint, decides the order).
 *
 * Layout: each pending job gets a record number, dense and reused, and what the cycle reads of it in its passes over
 * the queue (team, kind, priority, sort key, ...) sits in typed arrays indexed by that number, a structure of arrays.
 * A cycle walks the queue several times in an order unrelated to where jobs lie in memory (fair share interleaves the
 * teams); 50,000 job objects spread over megabytes cost a cache miss per job per pass, while one field of 50,000
 * records is a few hundred kilobytes that stay in cache. The job, its spec and shape are read only on the slow path.
 *
 * Contract: the live server and the simulator keep one cache each and pass it to every cycle (`CycleInput.cache`).
 * A job or spec object given to a cycle is not edited afterwards; a changed job is a new object, and a record whose
 * Job or spec object differs from the one it was made from is made again.
 */
import type { Job, JobSpec } from '@tutti/model';
import { computeGpusHeld } from '@tutti/model';
import { NodeIndexCache } from './node-index-cache.ts';
import { computeResourceShape, type ResourceShape } from '../cycle/resource-shape.ts';

/** Distinct kinds kept before the table is emptied (records then take new ids). */
const KINDS_MAX = 200_000;
/** Distinct team names kept before the whole cache starts again (team numbers are never reused otherwise). */
const TEAMS_MAX = 100_000;
const INITIAL_CAPACITY = 1_024;

export class CycleCache {
  /** Cycles begun with this cache. */
  private cycleCount = 0;
  private readonly numberById = new Map<string, number>();
  /**
   * Record numbers free for a new record. A number is freed only when its record was not read in the current cycle,
   * so no array of the current cycle names it, and it may be handed out again at once.
   */
  private free: number[] = [];
  /** Numbers handed out so far (the arrays below are valid up to here). */
  private used = 0;
  private capacity = 0;

  // Per record number. Cold: read on the slow path only.
  /** The job a record was made from (undefined: the number is free). */
  jobs: (Job | undefined)[] = [];
  private specs: (JobSpec | undefined)[] = [];
  shapes: (ResourceShape | undefined)[] = [];
  // Hot: read by every pass over the queue.
  /** Team number (`teamNames`). */
  teamOf = new Int32Array(0);
  /** The kind of job (shape, team, priority) as a dense number, for the outcome memo and per-kind memos. */
  kindOf = new Int32Array(0);
  private kindEpochOf = new Int32Array(0);
  priorityOf = new Float64Array(0);
  createdAtOf = new Float64Array(0);
  /** `spec.maxDurationMs`, NaN when the job declares none. */
  maxDurationOf = new Float64Array(0);
  /** GPUs the job holds when running (`computeGpusHeld`). */
  gpusOf = new Float64Array(0);
  /** The id's value when it is a decimal number of at most 15 digits (exact as a double), else -1. */
  idValueOf = new Float64Array(0);
  /** Per cycle: effective priority (fair share). */
  keyOf = new Float64Array(0);
  /** The last cycle that read the record (a second entry with its id in that cycle is a duplicate). */
  private seenCycleOf = new Int32Array(0);
  /** Position in its team's sorted order in cycle `rankCycleOf` (a hint for the next sort). */
  rankOf = new Int32Array(0);
  rankCycleOf = new Int32Array(0);
  /** Index in the waiting list of cycle `waitingCycleOf` (for looking up its diagnosis). */
  waitingAtOf = new Int32Array(0);
  waitingCycleOf = new Int32Array(0);
  /** Index in what the last `readPending` read. */
  private readAtOf = new Int32Array(0);

  /** The numbers the last `readPending` read, in input order. */
  private lastRead = new Int32Array(0);

  private kinds = new Map<string, number>();
  private kindEpoch = 0;
  /** The shape of each kind (the shape of the first record of the kind; equal keys, equal shapes). */
  kindShapes: ResourceShape[] = [];

  private readonly teamNumbers = new Map<string, number>();
  readonly teamNames: string[] = [];
  /** Per team number: the cycle and size of the order the last sort of the team left in `rankOf`; -1: none. */
  teamHintCycle = new Int32Array(0);
  teamHintSize = new Int32Array(0);
  /** The cluster side: indexed nodes and running jobs' GPUs, reused where nothing changed (node-index-cache.ts). */
  readonly nodeIndex = new NodeIndexCache();

  /** Starts a cycle; returns its number. */
  begin(): number {
    if (this.kinds.size > KINDS_MAX) {
      this.kinds = new Map();
      this.kindShapes = [];
      this.kindEpoch++;
    }
    if (this.teamNames.length > TEAMS_MAX) this.reset();
    return ++this.cycleCount;
  }

  get cycle(): number {
    return this.cycleCount;
  }

  /** Kinds numbered so far: ids are below this. */
  get kindCount(): number {
    return this.kinds.size;
  }

  /** Team numbers handed out so far: numbers are below this. */
  get teamCount(): number {
    return this.teamNames.length;
  }

  /**
   * The record numbers of a cycle's pending jobs, one per id (its first entry), in input order. A queue passed again
   * in about the same order as last time (the server lists its queue in arrival order) is matched job by job against
   * the last cycle's records, which costs a comparison per job instead of a look-up by id; a job that does not match
   * is looked up, and the match resumes after it.
   */
  readPending(pending: readonly Job[]): Int32Array {
    this.reserve(pending.length);
    const last = this.lastRead;
    const read = new Int32Array(pending.length);
    const cycle = this.cycleCount;
    let count = 0;
    let next = 0;
    for (let i = 0; i < pending.length; i++) {
      const job = pending[i] as Job;
      let no = next < last.length ? (last[next] as number) : -1;
      if (no >= 0 && this.jobs[no] === job && this.seenCycleOf[no] !== cycle) {
        next++;
        this.touch(no);
      } else {
        no = this.numberOf(job);
        if (no < 0) continue;
        const at = this.readAtOf[no] as number;
        if (at >= next && last[at] === no) next = at + 1;
      }
      this.readAtOf[no] = count;
      read[count++] = no;
    }
    this.lastRead = count === read.length ? read : read.slice(0, count);
    return this.lastRead;
  }

  /** The job's record number for the current cycle, or -1 when its id was already read in this cycle. */
  numberOf(job: Job): number {
    let no = this.numberById.get(job.id);
    if (no === undefined) {
      no = this.makeRecord(job);
      this.numberById.set(job.id, no);
    } else if (this.seenCycleOf[no] === this.cycleCount) {
      return -1;
    } else if (this.jobs[no] !== job) {
      if (this.specs[no] !== job.spec || this.createdAtOf[no] !== job.createdAt) {
        this.release(no);
        no = this.makeRecord(job);
        this.numberById.set(job.id, no);
      } else this.jobs[no] = job;
    }
    this.touch(no);
    return no;
  }

  /** The record number kept for a job id, or -1 (whatever cycle read it last). */
  peek(id: string): number {
    return this.numberById.get(id) ?? -1;
  }

  /** The team's number (given on first sight). */
  teamNumber(team: string): number {
    let no = this.teamNumbers.get(team);
    if (no === undefined) {
      no = this.teamNames.length;
      this.teamNumbers.set(team, no);
      this.teamNames.push(team);
      if (no >= this.teamHintCycle.length) {
        const size = Math.max(16, 2 * this.teamHintCycle.length);
        this.teamHintCycle = grownInt32(this.teamHintCycle, size, -1);
        this.teamHintSize = grownInt32(this.teamHintSize, size, 0);
      }
    }
    return no;
  }

  /** After a cycle that read `read` jobs: forget jobs it did not read, once they outnumber those it did. */
  sweep(read: number): void {
    if (this.numberById.size <= 2 * read + 1_024) return;
    const cycle = this.cycleCount;
    for (const [id, no] of this.numberById) {
      if (this.seenCycleOf[no] === cycle) continue;
      this.numberById.delete(id);
      this.release(no);
    }
  }

  private touch(no: number): void {
    if (this.kindEpochOf[no] !== this.kindEpoch) {
      this.kindOf[no] = this.kindIdOf(this.shapes[no] as ResourceShape, this.teamNames[this.teamOf[no] as number] as string, this.priorityOf[no] as number);
      this.kindEpochOf[no] = this.kindEpoch;
    }
    this.seenCycleOf[no] = this.cycleCount;
  }

  /** Frees the number of a record not read in the current cycle. */
  private release(no: number): void {
    this.jobs[no] = undefined;
    this.specs[no] = undefined;
    this.shapes[no] = undefined;
    this.free.push(no);
  }

  private makeRecord(job: Job): number {
    let no: number;
    if (this.free.length > 0) no = this.free.pop() as number;
    else {
      this.reserve(1);
      no = this.used++;
    }
    const { spec } = job;
    const shape = computeResourceShape(spec);
    const team = this.teamNumber(spec.team);
    this.jobs[no] = job;
    this.specs[no] = spec;
    this.shapes[no] = shape;
    this.teamOf[no] = team;
    this.priorityOf[no] = spec.priority;
    this.createdAtOf[no] = job.createdAt;
    this.maxDurationOf[no] = spec.maxDurationMs ?? NaN;
    this.gpusOf[no] = computeGpusHeld(spec);
    this.idValueOf[no] = decimalIdValue(job.id);
    this.kindOf[no] = this.kindIdOf(shape, spec.team, spec.priority);
    this.kindEpochOf[no] = this.kindEpoch;
    this.seenCycleOf[no] = -1;
    this.rankOf[no] = -1;
    this.rankCycleOf[no] = -1;
    this.waitingAtOf[no] = -1;
    this.waitingCycleOf[no] = -1;
    this.readAtOf[no] = -1;
    return no;
  }

  /** Room for `more` numbers beyond those handed out. */
  private reserve(more: number): void {
    const need = this.used + more;
    if (need <= this.capacity) return;
    const size = Math.max(INITIAL_CAPACITY, need, 2 * this.capacity);
    this.teamOf = grownInt32(this.teamOf, size, 0);
    this.kindOf = grownInt32(this.kindOf, size, 0);
    this.kindEpochOf = grownInt32(this.kindEpochOf, size, -1);
    this.priorityOf = grownFloat64(this.priorityOf, size);
    this.createdAtOf = grownFloat64(this.createdAtOf, size);
    this.maxDurationOf = grownFloat64(this.maxDurationOf, size);
    this.gpusOf = grownFloat64(this.gpusOf, size);
    this.idValueOf = grownFloat64(this.idValueOf, size);
    this.keyOf = grownFloat64(this.keyOf, size);
    this.seenCycleOf = grownInt32(this.seenCycleOf, size, -1);
    this.rankOf = grownInt32(this.rankOf, size, -1);
    this.rankCycleOf = grownInt32(this.rankCycleOf, size, -1);
    this.waitingAtOf = grownInt32(this.waitingAtOf, size, -1);
    this.waitingCycleOf = grownInt32(this.waitingCycleOf, size, -1);
    this.readAtOf = grownInt32(this.readAtOf, size, -1);
    this.capacity = size;
  }

  private kindIdOf(shape: ResourceShape, team: string, priority: number): number {
    const key = `${shape.key}\u0000${team}\u0000${priority}`;
    let id = this.kinds.get(key);
    if (id === undefined) {
      this.kinds.set(key, (id = this.kinds.size));
      this.kindShapes.push(shape);
    }
    return id;
  }

  /** Everything forgotten (the arrays keep their size). */
  private reset(): void {
    this.numberById.clear();
    this.free = [];
    this.used = 0;
    this.jobs = [];
    this.specs = [];
    this.shapes = [];
    this.lastRead = new Int32Array(0);
    this.kinds = new Map();
    this.kindShapes = [];
    this.kindEpoch++;
    this.teamNumbers.clear();
    this.teamNames.length = 0;
    this.teamHintCycle.fill(-1);
  }
}

function grownInt32(from: Int32Array, size: number, fill: number): Int32Array<ArrayBuffer> {
  const to = new Int32Array(size);
  if (fill !== 0) to.fill(fill, from.length);
  to.set(from);
  return to;
}

function grownFloat64(from: Float64Array, size: number): Float64Array<ArrayBuffer> {
  const to = new Float64Array(size);
  to.set(from);
  return to;
}

/** The id's value when it is a decimal number of at most 15 digits (exact as a double), else -1. */
export function decimalIdValue(id: string): number {
  if (id.length === 0 || id.length > 15) return -1;
  let value = 0;
  for (let i = 0; i < id.length; i++) {
    const digit = id.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return -1;
    value = value * 10 + digit;
  }
  return value;
}
