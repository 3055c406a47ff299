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
 * Contract: the live server and the simulator keep one cache each and pass it to every cycle (`CycleInput.cache`).
 * A job or spec object given to a cycle is not edited afterwards; a changed job is a new object, and a record whose
 * Job or spec object differs from the one it was made from is made again.
 */
import type { Job, JobSpec } from '@tutti/model';
import { computeGpusHeld } from '@tutti/model';
import type { FairShareEntry } from './fair-share.ts';
import { computeResourceShape, type ResourceShape } from './resource-shape.ts';

/**
 * Per team, in one cycle: jobs left waiting, and how many of them have been given a position so far. Kept by the
 * cache from cycle to cycle (and zeroed when a cycle first asks for it), so that pointing each record at its team's
 * slot writes nothing new into long-lived records: a cycle that gave 50,000 old records a pointer to a new object each
 * made every young-generation collection walk them all.
 */
export interface TeamSlot {
  readonly team: string;
  waiting: number;
  seen: number;
  /** The cycle the counts belong to. */
  cycle: number;
}

/**
 * A pending job as cycles read it. The fields derived from the job are set when the record is made; the per-cycle
 * fields (`key`, `slot`) are set by the cycle that reads them and mean nothing outside it.
 */
export interface JobRecord extends FairShareEntry {
  job: Job;
  spec: JobSpec;
  shape: ResourceShape;
  team: string;
  priority: number;
  createdAt: number;
  maxDurationMs: number | undefined;
  gpus: number;
  idValue: number;
  /** The kind of job (shape, team, priority) as a dense number, for the outcome memo; from the cache's kind table of `kindEpoch`. */
  kindId: number;
  kindEpoch: number;
  /** The last cycle that read this record (a second entry with its id in that cycle is a duplicate). */
  seenCycle: number;
  /** Position in its team's sorted order in cycle `rankCycle` (a hint for the next sort). */
  rank: number;
  rankCycle: number;
  /** Per cycle: effective priority (fair share) and the team's position counters. */
  key: number;
  slot: TeamSlot;
  /** Index in the waiting list of cycle `waitingCycle` (for looking up its diagnosis). */
  waitingAt: number;
  waitingCycle: number;
  /** Index in the records the last cycle that read it read (`CycleCache.readPending`). */
  readAt: number;
  /** Replaced by a newer record for its id: no longer kept. */
  retired: boolean;
}

/** A team's order as the last cycle that sorted it left it. */
export interface TeamOrderHint {
  readonly cycle: number;
  readonly size: number;
}

/** Distinct kinds kept before the table is emptied (records then take new ids). */
const KINDS_MAX = 200_000;

const NO_SLOT: TeamSlot = { team: '', waiting: 0, seen: 0, cycle: -1 };

export class CycleCache {
  /** Cycles begun with this cache. */
  private cycleCount = 0;
  private readonly records = new Map<string, JobRecord>();
  /** The records of the last `readPending`, in input order. */
  private lastRead: JobRecord[] = [];
  private kinds = new Map<string, number>();
  private kindEpoch = 0;
  readonly teamOrders = new Map<string, TeamOrderHint>();
  private readonly slots = new Map<string, TeamSlot>();

  /** Starts a cycle; returns its number. */
  begin(): number {
    if (this.kinds.size > KINDS_MAX) {
      this.kinds = new Map();
      this.kindEpoch++;
    }
    return ++this.cycleCount;
  }

  get cycle(): number {
    return this.cycleCount;
  }

  /** Kinds numbered so far: ids are below this. */
  get kindCount(): number {
    return this.kinds.size;
  }

  /**
   * The records of a cycle's pending jobs, one per id (its first entry), in input order. A queue passed again in
   * about the same order as last time (the server lists its queue in arrival order) is matched job by job against
   * the last cycle's records, which costs a comparison per job instead of a look-up by id; a job that does not match
   * is looked up, and the match resumes after it.
   */
  readPending(pending: readonly Job[]): JobRecord[] {
    const last = this.lastRead;
    const read: JobRecord[] = [];
    let next = 0;
    for (let i = 0; i < pending.length; i++) {
      const job = pending[i] as Job;
      let record = last[next];
      if (record !== undefined && record.job === job && !record.retired && record.seenCycle !== this.cycleCount) {
        next++;
        this.touch(record);
      } else {
        record = this.recordOf(job);
        if (record === undefined) continue;
        if (record.readAt >= next && last[record.readAt] === record) next = record.readAt + 1;
      }
      record.readAt = read.length;
      read.push(record);
    }
    this.lastRead = read;
    return read;
  }

  /** The job's record for the current cycle, or undefined when its id was already read in this cycle. */
  recordOf(job: Job): JobRecord | undefined {
    const cycle = this.cycleCount;
    let record = this.records.get(job.id);
    if (record === undefined) {
      record = this.makeRecord(job);
      this.records.set(job.id, record);
    } else if (record.seenCycle === cycle) {
      return undefined;
    } else if (record.job !== job) {
      if (record.spec !== job.spec || record.createdAt !== job.createdAt) {
        record.retired = true;
        record = this.makeRecord(job);
        this.records.set(job.id, record);
      } else record.job = job;
    }
    this.touch(record);
    return record;
  }

  private touch(record: JobRecord): void {
    if (record.kindEpoch !== this.kindEpoch) {
      record.kindId = this.kindIdOf(record.shape, record.team, record.priority);
      record.kindEpoch = this.kindEpoch;
    }
    record.seenCycle = this.cycleCount;
  }

  /** The team's position counters for the current cycle (zero when first asked in it). */
  slotOf(team: string): TeamSlot {
    let slot = this.slots.get(team);
    if (!slot) this.slots.set(team, (slot = { team, waiting: 0, seen: 0, cycle: this.cycleCount }));
    else if (slot.cycle !== this.cycleCount) {
      slot.waiting = 0;
      slot.seen = 0;
      slot.cycle = this.cycleCount;
    }
    return slot;
  }

  /** After a cycle that read `read` jobs: forget jobs it did not read, once they outnumber those it did. */
  sweep(read: number): void {
    if (this.records.size <= 2 * read + 1_024) return;
    const cycle = this.cycleCount;
    for (const [id, record] of this.records) {
      if (record.seenCycle === cycle) continue;
      record.retired = true;
      this.records.delete(id);
    }
    for (const [team, hint] of this.teamOrders) if (hint.cycle !== cycle) this.teamOrders.delete(team);
    for (const [team, slot] of this.slots) if (slot.cycle !== cycle) this.slots.delete(team);
  }

  /** The record kept for a job id, if any (whatever cycle read it last). */
  peek(id: string): JobRecord | undefined {
    return this.records.get(id);
  }

  private makeRecord(job: Job): JobRecord {
    const { spec } = job;
    const shape = computeResourceShape(spec);
    return {
      job,
      spec,
      shape,
      team: spec.team,
      priority: spec.priority,
      createdAt: job.createdAt,
      maxDurationMs: spec.maxDurationMs,
      gpus: computeGpusHeld(spec),
      idValue: decimalIdValue(job.id),
      kindId: this.kindIdOf(shape, spec.team, spec.priority),
      kindEpoch: this.kindEpoch,
      seenCycle: -1,
      rank: -1,
      rankCycle: -1,
      key: 0,
      slot: NO_SLOT,
      waitingAt: -1,
      waitingCycle: -1,
      readAt: -1,
      retired: false,
    };
  }

  private kindIdOf(shape: ResourceShape, team: string, priority: number): number {
    const key = `${shape.key}\u0000${team}\u0000${priority}`;
    let id = this.kinds.get(key);
    if (id === undefined) this.kinds.set(key, (id = this.kinds.size));
    return id;
  }
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
