/**
 * The checks that run before a full parse: the nesting depth of YAML (by yaml's lexer, or by a one-pass bound when
 * that proves the text shallow enough) and of JSON, and JSON's repeated keys. Property: for documents of every
 * shape yaml itself writes (block, flow, JSON), a limit below the real depth is caught and one a level above it is not.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { parseJsonText, yamlNestingBeyond } from '../src/index.ts';

/** A value nested exactly `depth` collections deep (mappings and sequences mixed), with shallow siblings. */
const nested = (depth: number) =>
  fc.array(fc.boolean(), { minLength: depth, maxLength: depth }).chain((kinds) =>
    fc.array(fc.string({ minLength: 1, maxLength: 6 }), { minLength: depth, maxLength: depth }).map((keys) =>
      kinds.reduceRight<unknown>((inner, isMap, i) => (isMap ? { [`k${keys[i]}`]: inner, plain: keys[i] } : ['x', inner]), 'leaf'),
    ),
  );

describe('yamlNestingBeyond', () => {
  it('catches a limit below the real depth and passes one above it, in block (both ways of indenting sequences), flow and JSON style', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 45 }), fc.constantFrom('block', 'block, sequences at their key\'s column', 'flow', 'json'), fc.integer({ min: 1, max: 1e9 }), (depth, style, seed) => {
        const value = fc.sample(nested(depth), { numRuns: 1, seed })[0];
        const text = style === 'json' ? JSON.stringify(value, null, 2) : stringify(value, style === 'flow' ? { collectionStyle: 'flow' } : { indentSeq: style === 'block' });
        expect(yamlNestingBeyond(text, depth - 1), text).toBeDefined();
        expect(yamlNestingBeyond(text, depth + 1), text).toBeUndefined();
      }),
      { numRuns: 300 },
    );
  });

  it('does not count block scalars, quoted or commented brackets, and says where the limit was passed', () => {
    const script = `run: |\n${Array.from({ length: 40 }, (_, i) => `${'  '.repeat(i + 1)}echo ${i} [{`).join('\n')}\nenv: {A: "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", B: '{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{'} # [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n`;
    expect(yamlNestingBeyond(script, 8)).toBeUndefined();
    expect(yamlNestingBeyond(`a:\n  b:\n    c: [[1]]\n`, 4)).toEqual({ offset: 16, line: 3, column: 9 });
  });
});

describe('parseJsonText', () => {
  it('refuses nesting past the limit before parsing, and repeated keys with their path', () => {
    expect(parseJsonText('[[[1]]]', { maxDepth: 3 })).toEqual({ ok: true, value: [[[1]]] });
    expect(parseJsonText('[[[[1]]]]', { maxDepth: 3 })).toMatchObject({ ok: false, tooDeep: { line: 1, column: 4 } });
    expect(parseJsonText('{"a": [{"b": 1}, {"b": 2, "c": {"d": 1, "\\u0064": 2}}]}', { maxDepth: 8 })).toEqual({
      ok: false,
      errors: [{ path: 'a[1].c.d', message: "duplicate key 'd': each key may appear only once", line: 1, column: 41 }],
    });
    // Keys in different objects, and strings that look like keys, are not repeats.
    expect(parseJsonText('{"a": {"x": 1}, "b": {"x": "\\"a\\": 1"}, "c": ["a", "a"]}', { maxDepth: 8 }).ok).toBe(true);
    expect(parseJsonText('{"a": 1,}', { maxDepth: 8 })).toMatchObject({ ok: false, errors: [{ path: '', message: expect.stringMatching(/^not valid JSON/) }] });
  });
});
