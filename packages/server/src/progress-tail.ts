/**
 * Progress records: one-line JSON objects a rank prints on stdout, `{"tutti": {"step": 120, "loss": 0.42,
 * "checkpoint": "/ckpt/step-120"}}`. The server reads them by tailing the rank's log file incrementally (no pipe
 * between the rank and the control plane, so a rank never blocks on a slow server and survives its restart).
 */
import type { ExecutionBackend, LogTrim, RankLogRef } from '@tutti/backends';

/** Longest line read as a progress record; longer lines are skipped (they are someone's data, not a record). */
const MAX_RECORD_LINE = 16 * 1024;
/** Bytes read from one log per poll, so a chatty rank cannot stall the loop. */
const MAX_READ_PER_POLL = 1024 * 1024;
const RECORD_PREFIX = '{"tutti"';

/**
 * The fields of a progress record, or undefined when the line is not one. Only string, number and boolean values
 * are kept (a record is a flat set of gauges); `step` must be a whole number ≥ 0 and `checkpoint` a string when
 * present, or the record is refused.
 */
export function parseProgressLine(line: string): Record<string, string | number | boolean> | undefined {
  const text = line.trim();
  if (!text.startsWith(RECORD_PREFIX) || text.length > MAX_RECORD_LINE) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  return parseProgressValues((parsed as { tutti?: unknown }).tutti);
}

/** A field of a progress record that was refused, and why. */
export interface ProgressFieldProblem {
  field: string;
  message: string;
}

/**
 * The rules of a progress record's fields (the object under `"tutti"`), for printed records and posted ones alike:
 * names are identifiers of at most 64 characters; values are numbers, strings or booleans (a flat set of gauges);
 * `step` is a whole number ≥ 0 and `checkpoint` a path. Returns the fields kept and those refused.
 */
export function checkProgressFields(body: Record<string, unknown>): { values: Record<string, string | number | boolean>; problems: ProgressFieldProblem[] } {
  const values: Record<string, string | number | boolean> = {};
  const problems: ProgressFieldProblem[] = [];
  for (const [field, value] of Object.entries(body)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(field)) problems.push({ field, message: 'field names are letters, digits and _ (at most 64), not starting with a digit' });
    else if (field === 'step' && !(typeof value === 'number' && Number.isSafeInteger(value) && value >= 0)) problems.push({ field, message: 'must be a whole number ≥ 0' });
    else if (field === 'checkpoint' && typeof value !== 'string') problems.push({ field, message: 'must be a path (a string)' });
    else if ((typeof value === 'number' && Number.isFinite(value)) || typeof value === 'string' || typeof value === 'boolean') values[field] = value;
    else problems.push({ field, message: 'must be a number, a string or a boolean' });
  }
  return { values, problems };
}

/**
 * The fields of a printed record's body: other fields than these are dropped (a line is someone's output, not a
 * request to answer), but a bad `step` or `checkpoint` refuses the whole record; undefined when nothing is left.
 */
export function parseProgressValues(body: unknown): Record<string, string | number | boolean> | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const { values, problems } = checkProgressFields(body as Record<string, unknown>);
  if (problems.some((p) => p.field === 'step' || p.field === 'checkpoint')) return undefined;
  return Object.keys(values).length === 0 ? undefined : values;
}

/** How a tail keeps its file within a size cap (see log-cap.ts). */
export interface LogTailCap {
  maxBytes: number;
  /** Told after each trim (e.g. to record an event on the job). */
  onTrim?: (trim: LogTrim) => void;
}

/** What a tail reads through: the backend that holds the logs. */
export type LogSource = Pick<ExecutionBackend, 'readLog' | 'logSize' | 'capLog'>;

/**
 * Reads the complete lines appended to a rank's log since the last call, through the backend (the server opens no
 * rank file). A missing log reads as no lines. With a `cap`, each read first trims the log to the cap, and the lines
 * it dropped before they were read are never returned.
 */
export class LogTail {
  private offset = 0;
  private partial = '';
  /** Reads run one after the other: two overlapping reads would return the same lines twice. */
  private reading: Promise<unknown>;

  /** `from: 'end'` skips what the log holds now (e.g. when adopting a rank after a restart). */
  constructor(
    private readonly source: LogSource,
    readonly rank: RankLogRef,
    from: 'start' | 'end' = 'start',
    private readonly cap?: LogTailCap,
  ) {
    // Its size is asked at once, so that what the rank prints from now on is read, not skipped.
    this.reading = from === 'end' ? source.logSize(rank).then((size) => (this.offset = size), () => undefined) : Promise.resolve();
  }

  readLines(): Promise<string[]> {
    const next = this.reading.then(() => this.readNow());
    this.reading = next.catch(() => undefined);
    return next;
  }

  private async readNow(): Promise<string[]> {
    if (this.cap) await this.trim(this.cap);
    const size = await this.source.logSize(this.rank);
    if (size < this.offset) {
      // Truncated or replaced: start over.
      this.offset = 0;
      this.partial = '';
    }
    const length = Math.min(size - this.offset, MAX_READ_PER_POLL);
    if (length <= 0) return [];
    const chunks: Buffer[] = [];
    let bytesRead = 0;
    for await (const chunk of this.source.readLog(this.rank, { offset: this.offset })) {
      const wanted = Math.min(chunk.byteLength, length - bytesRead);
      chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, wanted));
      bytesRead += wanted;
      if (bytesRead >= length) break;
    }
    this.offset += bytesRead;
    const text = this.partial + Buffer.concat(chunks).toString('utf8');
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    // A line that never ends is dropped once it is longer than any record could be.
    if (this.partial.length > MAX_RECORD_LINE) this.partial = '';
    return lines;
  }

  /** Trims the log to the cap, keeping the offset on the first byte not read yet. */
  private async trim(cap: LogTailCap): Promise<void> {
    const trim = await this.source.capLog(this.rank, cap.maxBytes);
    if (!trim) return;
    // The part not read yet starts where the kept part now starts, or after the marker if it was dropped.
    if (this.offset >= trim.cutAt) this.offset = this.offset - trim.cutAt + trim.markerBytes;
    else {
      this.offset = trim.markerBytes;
      this.partial = '';
    }
    cap.onTrim?.(trim);
  }
}
