/**
 * The YAML front end shared by the job-spec and cluster-config parsers: one parse with positions, and the
 * ordering of field errors by where they are in the file.
 */
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, YAMLParseError } from 'yaml';
import type { Document } from 'yaml';
import type { FieldError } from './errors.ts';
import type { PathSegment } from './job-spec-validate.ts';

export interface YamlSource {
  doc: Document.Parsed;
  /** 1-based line and column of a character offset in the source (nothing for an unknown offset). */
  position(offset: number | undefined): Pick<FieldError, 'line' | 'column'>;
}

export function parseYamlSource(text: string): YamlSource {
  const lineCounter = new LineCounter();
  // logLevel 'error': yaml would otherwise print warnings to the console (from a pure package) for odd keys.
  // yaml's own uniqueKeys check compares each key with every earlier key of its mapping: a 64 KiB spec of 6,000
  // env variables took ~1 s. The same check with a set per mapping is linear.
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: false, logLevel: 'error' });
  doc.errors.push(...repeatedKeys(doc.contents));
  return {
    doc,
    position(offset) {
      if (offset === undefined) return {};
      const { line, col } = lineCounter.linePos(offset);
      return { line, column: col };
    },
  };
}

/** A DUPLICATE_KEY error, as yaml's uniqueKeys reports it, at each scalar key repeated in its mapping. */
function repeatedKeys(root: unknown): YAMLParseError[] {
  const errors: YAMLParseError[] = [];
  const pending = [root];
  while (pending.length > 0) {
    const node = pending.pop();
    if (isSeq(node)) pending.push(...node.items);
    if (!isMap(node)) continue;
    const seen = new Set<string>();
    for (const pair of node.items) {
      pending.push(pair.value);
      if (!isScalar(pair.key)) continue;
      // As yaml compares: by value, so `a` and 'a' are one key, and 1 and "1" are two.
      const identity = `${typeof pair.key.value}:${String(pair.key.value)}`;
      if (seen.has(identity)) errors.push(new YAMLParseError(pair.key.range ? [pair.key.range[0], pair.key.range[1]] : [0, 0], 'DUPLICATE_KEY', 'Map keys must be unique'));
      seen.add(identity);
    }
  }
  return errors;
}

/** Field errors in source order; those without a position go last. */
export function sortByPosition(errors: readonly FieldError[]): FieldError[] {
  const line = (e: FieldError): number => e.line ?? Number.MAX_SAFE_INTEGER;
  return [...errors].sort((a, b) => line(a) - line(b) || (a.column ?? 0) - (b.column ?? 0));
}

/**
 * Walks `path` through the document. `node` is the node at the end of the path, if it exists; `offset` is where the
 * walk got to: the node itself, or the key of an empty value, or the deepest existing ancestor for a missing field.
 */
export function findNode(doc: Document, path: readonly PathSegment[], at: 'key' | 'value' = 'value'): { node: unknown; offset: number | undefined } {
  let node: unknown = doc.contents;
  let offset = rangeStart(node);
  for (const [i, segment] of path.entries()) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment));
      if (!pair) return { node: undefined, offset };
      const keyOffset = rangeStart(pair.key);
      if (i === path.length - 1 && at === 'key') return { node: pair.key, offset: keyOffset ?? offset };
      node = pair.value;
      // `key:` with nothing after it: point at the key, not at the end of the line.
      const emptyValue = node === null || (isScalar(node) && node.value === null);
      offset = (emptyValue ? undefined : rangeStart(node)) ?? keyOffset ?? offset;
    } else if (isSeq(node) && typeof segment === 'number') {
      node = node.items[segment];
      offset = rangeStart(node) ?? offset;
    } else {
      return { node: undefined, offset };
    }
  }
  if (isAlias(node)) node = node.resolve(doc);
  return { node, offset };
}

/** Where a YAML node starts in the source, if it has a position. */
export function rangeStart(node: unknown): number | undefined {
  if (typeof node !== 'object' || node === null || !('range' in node)) return undefined;
  const range: unknown = node.range;
  return Array.isArray(range) && typeof range[0] === 'number' ? range[0] : undefined;
}
