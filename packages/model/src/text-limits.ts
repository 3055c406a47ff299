/**
 * Checks of JSON and YAML text that run before a full parse, so that hostile input costs a linear scan and not a
 * parse: how deep the text nests (yaml's parser spends ~300 ms on 64 KiB of `[[[[…` and overflows the stack on
 * more), and, for JSON, a key repeated in one object (JSON.parse silently keeps the last one; the YAML front end
 * refuses a repeated key, and JSON bodies must not be laxer).
 */
import { CST, Lexer } from 'yaml';
import { duplicateKeyMessage } from './errors.ts';
import type { FieldError, ParseResult } from './errors.ts';
import { formatPath } from './job-spec-validate.ts';
import type { PathSegment } from './job-spec-validate.ts';

/** Where text first nests deeper than the limit: a character offset, with its 1-based line and column. */
export interface TooDeep {
  offset: number;
  line: number;
  column: number;
}

/**
 * Parses JSON text, refusing (with path, line and column) text that nests deeper than `maxDepth` arrays and
 * objects — before JSON.parse sees it — and objects that repeat a key.
 */
export function parseJsonText(text: string, options: { maxDepth: number }): ParseResult<unknown> & { tooDeep?: TooDeep } {
  const scan = scanJson(text, options.maxDepth);
  if (scan.tooDeep !== undefined) {
    const at = positionOf(text, scan.tooDeep);
    return { ok: false, tooDeep: at, errors: [{ path: '', message: `nests deeper than ${options.maxDepth} levels of arrays and objects`, ...lineAndColumn(at) }] };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, errors: [{ path: '', message: `not valid JSON: ${(error as Error).message}` }] };
  }
  if (scan.duplicate !== undefined) {
    const { path, offset } = scan.duplicate;
    return { ok: false, errors: [{ path: formatPath(path), message: duplicateKeyMessage(path.at(-1)), ...lineAndColumn(positionOf(text, offset)) }] };
  }
  return { ok: true, value };
}

interface JsonFrame {
  /** The keys seen so far: objects only. */
  keys: Set<string> | undefined;
  expectingKey: boolean;
  currentKey: string;
  index: number;
  /** How the parent reaches this frame: its key or index. */
  segment: PathSegment;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * One pass over JSON text: the offset where nesting first exceeds `maxDepth` (the scan stops there), and the first
 * repeated key with its path. Any text is scanned safely; the results mean something only for valid JSON, which
 * the caller checks with JSON.parse afterwards.
 */
function scanJson(text: string, maxDepth: number): { tooDeep?: number; duplicate?: { path: PathSegment[]; offset: number } } {
  const frames: JsonFrame[] = [];
  let duplicate: { path: PathSegment[]; offset: number } | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      let end = i + 1;
      let escaped = false;
      while (end < text.length) {
        const d = text.charCodeAt(end);
        if (d === QUOTE) break;
        if (d === BACKSLASH) {
          escaped = true;
          end += 2;
        } else end += 1;
      }
      const top = frames.at(-1);
      if (top?.keys !== undefined && top.expectingKey) {
        const key = escaped ? decodeJsonString(text.slice(i, end + 1)) : text.slice(i + 1, end);
        if (top.keys.has(key)) duplicate ??= { path: [...frames.slice(1).map((f) => f.segment), key], offset: i };
        top.keys.add(key);
        top.currentKey = key;
        top.expectingKey = false;
      }
      i = end;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      const parent = frames.at(-1);
      const segment = parent === undefined ? '' : parent.keys !== undefined ? parent.currentKey : parent.index;
      frames.push({ keys: c === 0x7b ? new Set() : undefined, expectingKey: true, currentKey: '', index: 0, segment });
      if (frames.length > maxDepth) return { tooDeep: i };
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      frames.pop();
    } else if (c === 0x2c /* , */) {
      const top = frames.at(-1);
      if (top?.keys !== undefined) top.expectingKey = true;
      else if (top !== undefined) top.index += 1;
    }
  }
  return duplicate !== undefined ? { duplicate } : {};
}

function decodeJsonString(literal: string): string {
  try {
    return String(JSON.parse(literal));
  } catch {
    return literal.slice(1, -1);
  }
}

/**
 * The offset where YAML text first nests deeper than `maxDepth` collections, or undefined. It reads yaml's own
 * lexer (so quotes, comments and block scalars are what the parser will take them for) and stops at the first
 * token past the limit; block nesting is counted from indentation, flow nesting from brackets. A scalar on a line of
 * its own may count as one level more than it is: the limit is meant to be generous.
 */
export function yamlNestingBeyond(text: string, maxDepth: number): TooDeep | undefined {
  if (yamlNestingBound(text) <= maxDepth) return undefined;
  /** Open block levels: the column of the indicator or key that opened each, and whether it is a sequence item. */
  const block: { column: number; seqItem: boolean }[] = [];
  let flowDepth = 0;
  let offset = 0;
  let column = 0;
  let atLineStart = true;
  let afterIndicator = false;
  for (const token of new Lexer().lex(text)) {
    if (token === CST.DOCUMENT || token === CST.SCALAR || token === CST.FLOW_END) continue; // markers, not text
    const type = CST.tokenType(token);
    const start = offset;
    const tokenColumn = column;
    offset += token.length;
    const newline = token.lastIndexOf('\n');
    column = newline >= 0 ? token.length - newline - 1 : column + token.length;
    // Whitespace, comments and block scalar bodies (which start with their indentation) hold no structure.
    if (type === 'newline' || type === 'space' || type === 'comment' || type === 'byte-order-mark') {
      if (newline >= 0) {
        atLineStart = true;
        afterIndicator = false;
      }
      continue;
    }
    if (type === 'doc-start') {
      block.length = 0;
      continue;
    }
    if (flowDepth === 0 && (atLineStart || afterIndicator)) {
      const seqItem = type === 'seq-item-ind';
      if (atLineStart) {
        // A line closes the levels opened at its column or deeper, except that a sequence may sit at the column of
        // the key that holds it (`key:` then `- item` at the same indent).
        for (let top = block.at(-1); top !== undefined && (top.column > tokenColumn || (top.column === tokenColumn && !(seqItem && !top.seqItem))); top = block.at(-1)) block.pop();
      }
      block.push({ column: tokenColumn, seqItem });
      afterIndicator = seqItem || type === 'explicit-key-ind' || type === 'map-value-ind';
    } else {
      afterIndicator = false;
    }
    // A multi-line scalar ends inside a line.
    atLineStart = false;
    if (type === 'flow-seq-start' || type === 'flow-map-start') flowDepth += 1;
    else if ((type === 'flow-seq-end' || type === 'flow-map-end') && flowDepth > 0) flowDepth -= 1;
    if (block.length + flowDepth > maxDepth) return positionOf(text, start);
  }
  return undefined;
}

/**
 * A bound on how deep YAML text can nest, from one pass over its characters (the lexer costs ~10× as much, which
 * the typical spec need not pay). Block levels start at increasing columns, two at most per column (a sequence may
 * sit at the column of the key that holds it), and a line's deepest block level starts no further right than its
 * indentation and `-`/`?`/`:` indicators reach; a flow collection opens at a `[` or `{`, and no more can be open
 * than there are of those in the text.
 */
function yamlNestingBound(text: string): number {
  let brackets = 0;
  let widestPrefix = 0;
  let prefix = 0;
  let inPrefix = true;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a /* \n */) {
      inPrefix = true;
      prefix = 0;
      continue;
    }
    if (c === 0x5b /* [ */ || c === 0x7b /* { */) brackets += 1;
    if (!inPrefix) continue;
    if (c === 0x20 || c === 0x09 || c === 0x2d /* - */ || c === 0x3f /* ? */ || c === 0x3a /* : */) {
      prefix += 1;
      if (prefix > widestPrefix) widestPrefix = prefix;
    } else inPrefix = false;
  }
  return 2 * (widestPrefix + 1) + brackets;
}

function positionOf(text: string, offset: number): TooDeep {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < offset; i = text.indexOf('\n', i + 1)) {
    line += 1;
    lineStart = i + 1;
  }
  return { offset, line, column: offset - lineStart + 1 };
}

function lineAndColumn(at: TooDeep): Pick<FieldError, 'line' | 'column'> {
  return { line: at.line, column: at.column };
}
