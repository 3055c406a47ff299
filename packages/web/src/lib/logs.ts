/**
 * A rank's log as it streams in: chunks become lines (a chunk may end mid-line), only the newest `maxLines` are
 * kept so a chatty rank cannot exhaust the page, and a search picks lines by a case-insensitive substring.
 */
export class LogBuffer {
  private complete: string[] = [];
  private partial = '';
  /** Lines dropped from the start to stay within `maxLines`. */
  dropped = 0;

  constructor(readonly maxLines = 20_000) {}

  append(chunk: string): void {
    const parts = (this.partial + chunk).split('\n');
    this.partial = parts.pop() ?? '';
    for (const line of parts) this.complete.push(line.endsWith('\r') ? line.slice(0, -1) : line);
    const excess = this.complete.length - this.maxLines;
    if (excess > 0) {
      this.complete.splice(0, excess);
      this.dropped += excess;
    }
  }

  /** Every kept line, the unfinished last one included; numbered from 1 at the first line ever received. */
  lines(): { n: number; text: string }[] {
    const all = this.partial === '' ? this.complete : [...this.complete, this.partial];
    return all.map((text, i) => ({ n: this.dropped + i + 1, text }));
  }
}

/** The lines containing `query` (case-insensitive); all lines when the query is empty. */
export function searchLines(lines: readonly { n: number; text: string }[], query: string): { n: number; text: string }[] {
  const needle = query.trim().toLowerCase();
  if (needle === '') return [...lines];
  return lines.filter((line) => line.text.toLowerCase().includes(needle));
}
