/** The server's field errors on a YAML spec, placed at their lines for the editor's gutter and list. */
export interface FieldErrorView {
  path: string;
  message: string;
  line?: number;
  column?: number;
}

export interface PlacedErrors {
  /** Line (1-based) → the errors reported there, in order. */
  byLine: Map<number, FieldErrorView[]>;
  /** Errors without a position (e.g. a feasibility problem). */
  unplaced: FieldErrorView[];
}

export function placeErrors(fields: readonly FieldErrorView[], lineCount: number): PlacedErrors {
  const byLine = new Map<number, FieldErrorView[]>();
  const unplaced: FieldErrorView[] = [];
  for (const field of fields) {
    if (field.line === undefined || !Number.isInteger(field.line) || field.line < 1) {
      unplaced.push(field);
      continue;
    }
    // A problem at the end of the document (a missing field) points one past the last line: show it on the last.
    const line = Math.min(field.line, Math.max(1, lineCount));
    byLine.set(line, [...(byLine.get(line) ?? []), field]);
  }
  return { byLine, unplaced };
}

/** "line 3, column 5: resources.gpus: must be …" */
export function describeFieldError(field: FieldErrorView): string {
  const where = field.line !== undefined ? `line ${field.line}${field.column !== undefined ? `, column ${field.column}` : ''}: ` : '';
  return `${where}${field.path ? `${field.path}: ` : ''}${field.message}`;
}

/** The character offset where `line` (1-based) starts in `text`, to move the editor's caret there. */
export function offsetOfLine(text: string, line: number): number {
  let offset = 0;
  for (let current = 1; current < line; current++) {
    const next = text.indexOf('\n', offset);
    if (next < 0) return text.length;
    offset = next + 1;
  }
  return offset;
}
