/**
 * A small YAML writer for JSON values (a job's normalised spec), so the job page shows the spec as the user would
 * write it without bundling a YAML library. Strings that YAML would read as something else are double-quoted
 * (JSON strings are valid YAML); multi-line strings become literal blocks.
 */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** Plain (unquoted) when made of these characters; a leading '-' only before a non-space (`--lr`), never `---`. */
const PLAIN = /^(?!---)(?:[A-Za-z0-9_./$~+]|-(?=[A-Za-z0-9_./$~+-]))[A-Za-z0-9_ ./$~+=@()-]*$/;
const LOOKS_TYPED = /^(?:true|false|yes|no|on|off|null|~|y|n|[-+]?(?:\.inf|\.nan)|[-+]?\.?[0-9][0-9_.:eE+-]*|0x[0-9a-fA-F]+|0o[0-7]+)$/i;

export function yamlScalar(value: string | number | boolean | null): string {
  if (value === null) return 'null';
  if (typeof value !== 'string') return String(value);
  if (value !== '' && PLAIN.test(value) && !LOOKS_TYPED.test(value) && !value.endsWith(' ')) return value;
  return JSON.stringify(value);
}

function blockString(value: string, indent: string): string | undefined {
  // Literal blocks keep every character except that trailing whitespace on lines and tabs are ambiguous: quote those.
  if (/[ \t]\n|\t|\r/.test(value) || value.startsWith(' ') || value.startsWith('\n')) return undefined;
  const body = value.replace(/\n$/, '');
  if (body.includes('\n\n\n') || body.endsWith('\n')) return undefined;
  const chomp = value.endsWith('\n') ? '|' : '|-';
  return `${chomp}\n${body.split('\n').map((line) => (line === '' ? '' : `${indent}${line}`)).join('\n')}`;
}

function isEmptyCollection(value: JsonValue): boolean {
  return (Array.isArray(value) && value.length === 0) || (typeof value === 'object' && value !== null && !Array.isArray(value) && Object.keys(value).length === 0);
}

function inline(value: JsonValue): string {
  if (Array.isArray(value)) return '[]';
  if (typeof value === 'object' && value !== null) return '{}';
  return yamlScalar(value);
}

/** The value as a YAML document (ends with a newline). */
export function toYaml(value: JsonValue, depth = 0): string {
  const pad = '  '.repeat(depth);
  if (isEmptyCollection(value) || typeof value !== 'object' || value === null) {
    if (typeof value === 'string' && value.includes('\n')) return `${blockString(value, pad) ?? yamlScalar(value)}\n`;
    return `${inline(value)}\n`;
  }
  const lines: string[] = [];
  const entries: [string | undefined, JsonValue][] = Array.isArray(value) ? value.map((v) => [undefined, v]) : Object.entries(value);
  for (const [key, item] of entries) {
    const lead = key === undefined ? `${pad}- ` : `${pad}${yamlScalar(key)}:`;
    const nested = typeof item === 'object' && item !== null && !isEmptyCollection(item);
    if (!nested) {
      const text = typeof item === 'string' && item.includes('\n') ? (blockString(item, `${pad}  `) ?? yamlScalar(item)) : inline(item);
      lines.push(key === undefined ? `${lead}${text}` : `${lead} ${text}`);
    } else if (key === undefined) {
      // A collection inside a list: its first line goes after the dash.
      const inner = toYaml(item, depth + 1).replace(/\n$/, '').split('\n');
      lines.push(`${lead}${inner[0]!.trimStart()}`, ...inner.slice(1));
    } else {
      lines.push(lead, toYaml(item, depth + 1).replace(/\n$/, ''));
    }
  }
  return `${lines.join('\n')}\n`;
}
