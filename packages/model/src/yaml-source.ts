/**
 * The YAML front end shared by the job-spec and cluster-config parsers: one parse with positions, and the
 * ordering of field errors by where they are in the file.
 */
import { LineCounter, parseDocument } from 'yaml';
import type { Document } from 'yaml';
import type { FieldError } from './errors.ts';

export interface YamlSource {
  doc: Document.Parsed;
  /** 1-based line and column of a character offset in the source (nothing for an unknown offset). */
  position(offset: number | undefined): Pick<FieldError, 'line' | 'column'>;
}

export function parseYamlSource(text: string): YamlSource {
  const lineCounter = new LineCounter();
  // logLevel 'error': yaml would otherwise print warnings to the console (from a pure package) for odd keys.
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true, logLevel: 'error' });
  return {
    doc,
    position(offset) {
      if (offset === undefined) return {};
      const { line, col } = lineCounter.linePos(offset);
      return { line, column: col };
    },
  };
}

/** Field errors in source order; those without a position go last. */
export function sortByPosition(errors: readonly FieldError[]): FieldError[] {
  const line = (e: FieldError): number => e.line ?? Number.MAX_SAFE_INTEGER;
  return [...errors].sort((a, b) => line(a) - line(b) || (a.column ?? 0) - (b.column ?? 0));
}
