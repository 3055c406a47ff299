/**
 * What keeps web pages from using the API through the visitor's browser. The API has no login: anyone who can
 * reach the port can run commands, so the port is kept to this machine, and every request is checked here first:
 *
 * - Host: only names this server is known by (DNS rebinding points a name the attacker controls at 127.0.0.1,
 *   making its page "same-origin" with tutti); IP addresses cannot be rebound and are always answered.
 * - Origin: a browser names the page that sent a request; only the dashboard this server serves, and the origins
 *   the operator lists, may call the API (allowed ones get CORS headers).
 * - Content-Type: a body must be JSON or YAML. Browsers send text/plain, form and multipart bodies cross-origin
 *   without a preflight; JSON and YAML always need one.
 * - Security headers on every response: the dashboard may not be framed, sniffed or leak its URLs.
 */
import { hostname } from 'node:os';
import { isIP } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { HttpProblem, bodyTooLargeProblem } from './errors.ts';
import { isAcceptedBodyType, unsupportedBodyType } from './body-parsers.ts';

export interface RequestGuardOptions {
  /** The address the server listens on: a host name there is answered too. */
  boundHost: string;
  /** More host names to answer to (`tutti up --allowed-host`). */
  allowedHosts: readonly string[];
  /** Origins of web pages, besides the dashboard, that may call the API (`tutti up --allowed-origin`). */
  allowedOrigins: readonly string[];
  /** The largest request body, in bytes. */
  maxBodyBytes: number;
}

// The dashboard is one script and one stylesheet from this server; it talks to this server only.
const CONTENT_SECURITY_POLICY = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
// Swagger UI (/docs) sets inline styles; its scripts are still only its own files.
const DOCS_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'");
const SECURITY_HEADERS = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
};
const CORS_ALLOWED_HEADERS = 'content-type, authorization, last-event-id, tutti-submit-dir, tutti-user';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const WILDCARD_ADDRESSES = new Set(['0.0.0.0', '::', '']);

/** Registers the checks as the first onRequest hook: they run before routing, body reading and the 404 handler. */
export function registerRequestGuards(app: FastifyInstance, options: RequestGuardOptions): void {
  const allowedNames = allowedHostNames(options.boundHost, options.allowedHosts);
  const allowedOrigins = new Set(options.allowedOrigins.map((origin) => normalizeOrigin(origin) ?? origin));

  app.addHook('onRequest', async (request, reply) => {
    void reply.headers(SECURITY_HEADERS);
    if (request.url === '/docs' || request.url.startsWith('/docs/')) void reply.header('content-security-policy', DOCS_CONTENT_SECURITY_POLICY);
    checkHost(request.headers.host, allowedNames);
    const origin = request.headers.origin;
    if (origin !== undefined && !isSameOrigin(origin, request.headers.host)) {
      const normalized = normalizeOrigin(origin);
      if (normalized === undefined || !allowedOrigins.has(normalized)) throw refusedOrigin(origin);
      if (answerCorsRequest(request, reply, origin)) return reply;
    }
    if (!SAFE_METHODS.has(request.method)) checkDeclaredBody(request, options.maxBodyBytes);
    return undefined;
  });
}

/** The host names answered to: localhost, the bound name, the machine's name when bound to every address, and the configured ones. */
export function allowedHostNames(boundHost: string, extra: readonly string[]): ReadonlySet<string> {
  const names = new Set(['localhost', ...extra.map(normalizeHostName)]);
  if (isIP(stripBrackets(boundHost)) === 0) names.add(normalizeHostName(boundHost));
  if (WILDCARD_ADDRESSES.has(boundHost)) names.add(normalizeHostName(hostname()));
  return names;
}

function checkHost(hostHeader: string | undefined, allowedNames: ReadonlySet<string>): void {
  // HTTP/1.0 requests may lack Host; browsers always send it, and only browsers can be rebound.
  if (hostHeader === undefined) return;
  const name = hostNameOf(hostHeader);
  if (isIP(stripBrackets(name)) !== 0 || allowedNames.has(name)) return;
  throw new HttpProblem(
    'misdirected_request',
    `this server does not answer to the host name '${name}': a web page can point a DNS name it controls at this machine ("DNS rebinding"), so only known names are served. If you reach tutti by that name, start it with \`tutti up --allowed-host ${name}\``,
    [{ path: 'headers.host', message: `'${name}' is not an allowed host name` }],
  );
}

/** The name part of a Host header, lowercased, without port and trailing dot; IPv6 keeps its brackets. */
function hostNameOf(hostHeader: string): string {
  const host = hostHeader.trim().toLowerCase();
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  const colon = host.lastIndexOf(':');
  return normalizeHostName(colon >= 0 ? host.slice(0, colon) : host);
}

function normalizeHostName(name: string): string {
  const lower = name.trim().toLowerCase().replace(/\.$/, '');
  return isIP(lower) === 6 ? `[${lower}]` : lower;
}

function stripBrackets(name: string): string {
  return name.startsWith('[') && name.endsWith(']') ? name.slice(1, -1) : name;
}

/** A page of this server itself (the dashboard, /docs): its origin names the host the request was sent to. */
function isSameOrigin(origin: string, hostHeader: string | undefined): boolean {
  if (hostHeader === undefined) return false;
  try {
    const url = new URL(origin);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.host === new URL(`${url.protocol}//${hostHeader}`).host;
  } catch {
    return false;
  }
}

/** Why a configured host name or origin cannot be matched (naming the `tutti up` flag), or undefined. */
export function checkBrowserSafetyOptions(options: { allowedHosts: readonly string[]; allowedOrigins: readonly string[] }): string | undefined {
  const badHost = options.allowedHosts.find((name) => !/^(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)$/i.test(name.trim()));
  if (badHost !== undefined) return `--allowed-host '${badHost}' is not a host name: give the name alone, without scheme or port (e.g. gpu-box.lan)`;
  const badOrigin = options.allowedOrigins.find((origin) => normalizeOrigin(origin) === undefined);
  if (badOrigin !== undefined) return `--allowed-origin '${badOrigin}' is not an origin: write it as a browser does, scheme://host[:port] (e.g. http://localhost:5173)`;
  return undefined;
}

/** `scheme://host[:port]` as browsers write it in the Origin header, or undefined when it is not an origin. */
export function normalizeOrigin(origin: string): string | undefined {
  try {
    const url = new URL(origin);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
    return url.origin;
  } catch {
    return undefined;
  }
}

function refusedOrigin(origin: string): HttpProblem {
  const allow = normalizeOrigin(origin);
  const how = allow !== undefined ? ` To let that page call the API, start the server with \`tutti up --allowed-origin ${allow}\`` : '';
  return new HttpProblem(
    'forbidden',
    `requests from the web page at ${origin} are refused: only the dashboard this server serves may call the API from a browser (any page you visit could otherwise run commands here).${how}`,
    [{ path: 'headers.origin', message: `'${origin}' is not an allowed origin` }],
  );
}

/** CORS for an allowed origin: the headers on every answer, and the whole answer to a preflight (true then). */
function answerCorsRequest(request: FastifyRequest, reply: FastifyReply, origin: string): boolean {
  void reply.header('access-control-allow-origin', origin).header('vary', 'origin');
  if (request.method !== 'OPTIONS' || request.headers['access-control-request-method'] === undefined) return false;
  void reply
    .status(204)
    .header('access-control-allow-methods', 'GET, POST')
    .header('access-control-allow-headers', CORS_ALLOWED_HEADERS)
    .header('access-control-max-age', '600')
    .send();
  return true;
}

/**
 * A body of a declared length must be JSON or YAML, and no larger than the limit: refused here, before a byte of
 * it is read. A POST without a body passes whatever it says; a chunked body is checked by the parsers once read.
 */
function checkDeclaredBody(request: FastifyRequest, maxBodyBytes: number): void {
  const length = Number(request.headers['content-length'] ?? 0);
  if (!(length > 0)) return;
  if (!isAcceptedBodyType(request.headers['content-type'])) throw unsupportedBodyType(request.headers['content-type']);
  if (length > maxBodyBytes) throw bodyTooLargeProblem(maxBodyBytes);
}
