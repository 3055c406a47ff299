/**
 * Serves the web dashboard (the built packages/web/dist) at `/`: its files, and index.html for the app's own
 * routes (`/jobs/42`), which the browser-side router then draws. `/v1`, `/docs`, `/metrics` and `/healthz` are
 * routes of their own and win over these. Hashed assets are cached for a year; index.html is revalidated. The
 * security headers (CSP, no framing, nosniff) come with every response, from request-guards.ts.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};
const COMPRESSIBLE = new Set(['.html', '.js', '.mjs', '.css', '.json', '.map', '.svg', '.txt']);
/** Prefixes that belong to the API: an unknown path there is the API's 404, never the app. */
const API_PREFIXES = ['/v1', '/docs', '/metrics', '/healthz'];

export interface DashboardOptions {
  /** The built dashboard (index.html and assets/); undefined when this server was started without one. */
  dir: string | undefined;
}

export function registerDashboard(app: FastifyInstance, options: DashboardOptions): void {
  const root = options.dir === undefined ? undefined : path.resolve(options.dir);
  const gzipped = new Map<string, { key: string; body: Buffer }>();

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const urlPath = request.url.split('?')[0] ?? '/';
    if (API_PREFIXES.some((prefix) => urlPath === prefix || urlPath.startsWith(`${prefix}/`))) return reply.callNotFound();
    if (root === undefined) return sendNotBuilt(reply, 'this server was started without a dashboard directory (`tutti up` serves packages/web/dist)');

    const file = resolveInside(root, urlPath);
    if (file === undefined) return reply.callNotFound();
    const isAppRoute = !path.posix.basename(urlPath).includes('.');
    const target = isAppRoute ? path.join(root, 'index.html') : file;
    const info = await stat(target).catch(() => undefined);
    if (!info?.isFile()) {
      if (isAppRoute) return sendNotBuilt(reply, `${path.join(root, 'index.html')} does not exist`);
      return reply.callNotFound();
    }

    const ext = path.extname(target).toLowerCase();
    void reply.type(CONTENT_TYPES[ext] ?? 'application/octet-stream');
    // Vite names every asset by its content hash: a changed file is a new URL, so a cached one never goes stale.
    void reply.header('cache-control', urlPath.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache');

    const acceptsGzip = /\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''));
    if (acceptsGzip && COMPRESSIBLE.has(ext)) {
      const key = `${info.mtimeMs}:${info.size}`;
      let cached = gzipped.get(target);
      if (cached?.key !== key) {
        cached = { key, body: gzipSync(await readFile(target)) };
        gzipped.set(target, cached);
      }
      void reply.header('content-encoding', 'gzip').header('vary', 'accept-encoding');
      return reply.send(cached.body);
    }
    return reply.send(await readFile(target));
  };

  app.get('/', { schema: { hide: true } }, handler);
  app.get('/*', { schema: { hide: true } }, handler);
}

/**
 * The file a URL path names inside `root`, or undefined when it would leave `root` (`..`, encoded or not), is
 * not valid percent-encoding, or holds characters no built asset has (NUL, backslash).
 */
export function resolveInside(root: string, urlPath: string): string | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return undefined;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return undefined;
  if (decoded.split('/').some((segment) => segment === '..')) return undefined;
  const file = path.resolve(root, `.${path.posix.normalize(`/${decoded}`)}`);
  return file === root || file.startsWith(root + path.sep) ? file : undefined;
}

function sendNotBuilt(reply: FastifyReply, why: string) {
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>tutti: dashboard not built</title></head><body style="font-family:sans-serif;max-width:42rem;margin:3rem auto;line-height:1.5">
<h1>The tutti dashboard is not built</h1>
<p>${escapeHtml(why)}.</p>
<p>Build it with <code>npm run build</code> (or only the dashboard: <code>npm run build -w @tutti/web</code>) in the tutti checkout, then reload this page. Start the server with <code>npx tutti up</code>.</p>
<p>The API works meanwhile: <a href="/docs">/docs</a>, <a href="/v1/jobs">/v1/jobs</a>, <a href="/healthz">/healthz</a>, <a href="/metrics">/metrics</a>.</p>
</body></html>`;
  return reply.status(503).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(html);
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
