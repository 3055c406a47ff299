/** A problem with one field of user input. `path` is dotted (`resources.gpus`, `run[2]`). */
export interface FieldError {
  path: string;
  message: string;
  /** 1-based position in the YAML source, when the input was YAML. */
  line?: number;
  column?: number;
}

/** The message for a key that appears twice in one mapping, in YAML and JSON alike. */
export function duplicateKeyMessage(key: string | number | undefined): string {
  return `duplicate key${key !== undefined ? ` '${key}'` : ''}: each key may appear only once`;
}

/** Parsing user input is an expected outcome, so it returns a value rather than throwing. */
export type ParseResult<T> = { ok: true; value: T } | { ok: false; errors: FieldError[] };

/** Formats field errors one per line: "resources.gpus: expected ... (line 5, column 9)". */
export function formatFieldErrors(errors: readonly FieldError[]): string {
  return errors
    .map((e) => `${e.path || '(root)'}: ${e.message}${e.line !== undefined ? ` (line ${e.line}, column ${e.column ?? 1})` : ''}`)
    .join('\n');
}
