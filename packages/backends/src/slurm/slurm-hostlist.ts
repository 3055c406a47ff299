/**
 * Slurm's hostlist expressions, as its tools print node lists: `n1`, `n[1-3,5]`, `n[01-10]` (zero-padded: the width
 * of the range's first number is kept), `rack[1-2]-n[1-2]` (several brackets: every combination, the last varying
 * fastest) and comma-separated lists of those (`n[1-2],gpu7`). Pure.
 */

/** The host names of a hostlist expression, in Slurm's order. Throws on a malformed one (an unclosed bracket, `n[3-1]`). */
export function expandHostlist(expression: string): string[] {
  const hosts: string[] = [];
  for (const item of splitTopLevel(expression.trim())) {
    if (item !== '') hosts.push(...expandOne(item, expression));
  }
  return hosts;
}

/** Splits at commas that are not inside brackets. */
function splitTopLevel(expression: string): string[] {
  const items: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const c = expression[i];
    if (c === '[') depth++;
    else if (c === ']') depth--;
    else if (c === ',' && depth === 0) {
      items.push(expression.slice(start, i));
      start = i + 1;
    }
  }
  items.push(expression.slice(start));
  return items.map((item) => item.trim());
}

function expandOne(item: string, whole: string): string[] {
  const open = item.indexOf('[');
  if (open === -1) return [item];
  const close = item.indexOf(']', open);
  if (close === -1) throw new Error(`hostlist ${JSON.stringify(whole)}: "[" without "]" in ${JSON.stringify(item)}`);
  const prefix = item.slice(0, open);
  const rest = expandOne(item.slice(close + 1), whole);
  const names: string[] = [];
  for (const value of expandRanges(item.slice(open + 1, close), whole)) {
    for (const suffix of rest) names.push(`${prefix}${value}${suffix}`);
  }
  return names;
}

/** `1-3,5` → 1 2 3 5; `01-10` → 01 … 10. */
function expandRanges(ranges: string, whole: string): string[] {
  const values: string[] = [];
  for (const range of ranges.split(',')) {
    const match = /^\s*(\d+)(?:-(\d+))?\s*$/.exec(range);
    if (!match) throw new Error(`hostlist ${JSON.stringify(whole)}: ${JSON.stringify(range)} is not a number or a range like 1-3`);
    const from = match[1] as string;
    const to = match[2] ?? from;
    const first = Number(from);
    const last = Number(to);
    if (last < first) throw new Error(`hostlist ${JSON.stringify(whole)}: the range ${range} runs backwards`);
    for (let n = first; n <= last; n++) values.push(String(n).padStart(from.length, '0'));
  }
  return values;
}
