/**
 * The one place request bodies are read: JSON and YAML only (a browser can send text/plain, form data and
 * multipart from any web page without asking; it cannot send these without a CORS preflight), with a size limit
 * checked before the body is read and a nesting limit checked before it is parsed. JSON bodies that repeat a key
 * are refused, as YAML ones are. YAML text is parsed as a job spec here (the spec parser reports lines and
 * columns), off the event loop when it is large: see yaml-spec-parser.ts.
 */
import type { FastifyInstance } from 'fastify';
import { parseJsonText, yamlNestingBeyond } from '@tutti/model';
import type { TooDeep } from '@tutti/model';
import { HttpProblem } from './errors.ts';
import { ParsedYamlSpec } from './yaml-spec-parser.ts';
import type { YamlSpecParser } from './yaml-spec-parser.ts';

export const JSON_MEDIA_TYPE = 'application/json';
/** application/yaml is the registered type; the others are what tools commonly send for the same thing. */
export const YAML_MEDIA_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml', 'text/x-yaml'];

export interface BodyLimits {
  /** The largest body, in bytes (a job spec is the largest thing anyone sends). */
  maxBytes: number;
  /** The deepest nesting of lists and mappings a body may have. */
  maxDepth: number;
}

export const DEFAULT_BODY_LIMITS: BodyLimits = { maxBytes: 64 * 1024, maxDepth: 32 };

/** Why limits cannot work (naming the `tutti up` flag), or undefined: every spec nests ~4 deep and fits in 1 KiB. */
export function checkBodyLimits(limits: BodyLimits): string | undefined {
  if (!Number.isInteger(limits.maxBytes) || limits.maxBytes < 1024) return `--max-spec-bytes must be an integer of at least 1024, got ${limits.maxBytes}`;
  if (!Number.isInteger(limits.maxDepth) || limits.maxDepth < 8) return `--max-spec-depth must be an integer of at least 8, got ${limits.maxDepth}`;
  return undefined;
}

/** The media type of a Content-Type header, lowercased and without parameters. */
export function mediaTypeOf(contentType: string | undefined): string | undefined {
  const type = contentType?.split(';', 1)[0]?.trim().toLowerCase();
  return type ? type : undefined;
}

export function isAcceptedBodyType(contentType: string | undefined): boolean {
  const type = mediaTypeOf(contentType);
  return type === JSON_MEDIA_TYPE || (type !== undefined && YAML_MEDIA_TYPES.includes(type));
}

/**
 * Replaces Fastify's parsers (which include text/plain) with ours; the app's bodyLimit must be `limits.maxBytes`.
 * A YAML body reaches the route as a `ParsedYamlSpec`, parsed by `yamlSpecs` (off the event loop when large).
 */
export function registerBodyParsers(app: FastifyInstance, limits: BodyLimits, yamlSpecs: YamlSpecParser): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(JSON_MEDIA_TYPE, { parseAs: 'string' }, (_request, body, done) => {
    try {
      done(null, parseJsonBody(String(body), limits.maxDepth));
    } catch (error) {
      done(error as Error, undefined);
    }
  });
  app.addContentTypeParser(YAML_MEDIA_TYPES, { parseAs: 'string' }, async (_request: unknown, body: string | Buffer) => {
    const text = String(body);
    const tooDeep = yamlNestingBeyond(text, limits.maxDepth);
    if (tooDeep !== undefined) throw tooDeepProblem(tooDeep, limits.maxDepth);
    return new ParsedYamlSpec(await yamlSpecs.parse(text));
  });
  // Any other type: refused unless the body turns out empty (a chunked POST may say nothing until it ends).
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (request, body, done) => {
    if (body.length === 0) done(null, undefined);
    else done(unsupportedBodyType(request.headers['content-type']), undefined);
  });
}

/** The 415 for a body that is neither JSON nor YAML. */
export function unsupportedBodyType(contentType: string | undefined): HttpProblem {
  const got = mediaTypeOf(contentType);
  return new HttpProblem(
    'unsupported_media_type',
    `${got === undefined ? 'a body without a Content-Type' : `Content-Type ${got}`} is not accepted: send the body as application/json or application/yaml (web pages can send text/plain and form bodies here without asking, so tutti refuses them)`,
    [{ path: 'headers.content-type', message: 'must be application/json or application/yaml' }],
  );
}

/** An empty body is no body (a POST that needs none may still say `Content-Type: application/json`). */
function parseJsonBody(text: string, maxDepth: number): unknown {
  if (text.trim() === '') return undefined;
  const parsed = parseJsonText(text, { maxDepth });
  if (parsed.ok) return parsed.value;
  if (parsed.tooDeep !== undefined) throw tooDeepProblem(parsed.tooDeep, maxDepth);
  const first = parsed.errors[0];
  throw new HttpProblem('invalid_spec', `${first?.path ? `${first.path}: ` : 'the body is '}${first?.message ?? 'not valid JSON'}`, parsed.errors);
}

function tooDeepProblem(at: TooDeep, maxDepth: number): HttpProblem {
  return new HttpProblem(
    'invalid_spec',
    `the body nests deeper than ${maxDepth} levels of lists and mappings (line ${at.line}, column ${at.column}); a job spec needs a handful. If yours truly needs more, start the server with \`tutti up --max-spec-depth N\``,
    [{ path: '', message: `nests deeper than ${maxDepth} levels`, line: at.line, column: at.column }],
  );
}
