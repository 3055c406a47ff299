/**
 * The checks that keep web pages from using the API through a visitor's browser, over real HTTP: host names the
 * server does not know (DNS rebinding), requests from other origins, bodies a browser can send without a
 * preflight (text/plain, forms), and the security headers every answer carries. The browser itself is driven in
 * packages/web/test/browser-safety-e2e.test.ts.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger, startTuttiServer } from '@tutti/server';
import { closeLeavingNothingRunning, startTestServer } from './harness.ts';
import type { TestServer } from './harness.ts';
import { rawRequest } from './raw-http.ts';

const SPEC_YAML = 'name: guarded\nresources: {gpus: 1}\nrun: "true"\n';
const SPEC_JSON = JSON.stringify({ name: 'guarded', resources: { gpus: 1 }, run: 'true' });

let t: TestServer;
let port: string;

beforeAll(async () => {
  t = await startTestServer({ allowedHosts: ['tutti.lan'], allowedOrigins: ['http://localhost:5173/'] });
  port = new URL(t.server.url).port;
});
afterAll(async () => {
  await closeLeavingNothingRunning(t);
});

async function jobCount(): Promise<number> {
  return (await t.client.listJobs({ limit: 1000 })).jobs.length;
}

describe('host names (DNS rebinding)', () => {
  it('refuses a host name it does not know, on every route, and says which flag adds it', async () => {
    for (const [method, path, body] of [
      ['GET', '/v1/jobs', undefined],
      ['GET', '/', undefined],
      ['GET', '/no-such-route', undefined],
      ['POST', '/v1/jobs', SPEC_YAML],
    ] as const) {
      const response = await rawRequest(t.server.url, path, { method, headers: { host: `evil.example:${port}`, ...(body ? { 'content-type': 'application/yaml' } : {}) }, body });
      expect(response.status, `${method} ${path}`).toBe(421);
      expect(response.json.error?.code).toBe('misdirected_request');
      expect(response.json.error?.message).toContain('`tutti up --allowed-host evil.example`');
    }
    expect(await jobCount()).toBe(0);
  });

  it('answers localhost, IP addresses and the configured names', async () => {
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, `LOCALHOST.:${port}`, `tutti.lan:${port}`, 'tutti.lan', '10.1.2.3:7070']) {
      const response = await rawRequest(t.server.url, '/healthz', { headers: { host } });
      expect(response.status, host).toBe(200);
    }
  });
});

describe('origins', () => {
  it('refuses a POST from another web page, says how to allow it, and creates nothing', async () => {
    const response = await rawRequest(t.server.url, '/v1/jobs', { method: 'POST', headers: { origin: 'http://evil.example', 'content-type': 'application/json' }, body: SPEC_JSON });
    expect(response.status).toBe(403);
    expect(response.json.error?.code).toBe('forbidden');
    expect(response.json.error?.message).toContain('`tutti up --allowed-origin http://evil.example`');
    expect(response.headers['access-control-allow-origin']).toBeUndefined();
    expect(await jobCount()).toBe(0);
  });

  it('refuses another localhost port, an opaque origin ("null") and reads too', async () => {
    for (const [origin, method] of [
      [`http://127.0.0.1:${Number(port) + 1}`, 'POST'],
      ['null', 'POST'],
      ['http://evil.example', 'GET'],
    ] as const) {
      const response = await rawRequest(t.server.url, method === 'POST' ? '/v1/jobs/1/cancel' : '/v1/jobs', { method, headers: { origin } });
      expect(response.status, origin).toBe(403);
    }
  });

  it('lets the pages this server serves (its own origin) submit', async () => {
    const response = await rawRequest(t.server.url, '/v1/jobs', { method: 'POST', headers: { origin: t.server.url, 'content-type': 'application/yaml' }, body: SPEC_YAML });
    expect(response.status).toBe(201);
  });

  it('lets a configured origin through, with CORS headers and an answered preflight', async () => {
    const preflight = await rawRequest(t.server.url, '/v1/jobs', {
      method: 'OPTIONS',
      headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBe('http://localhost:5173');
    expect(preflight.headers['access-control-allow-headers']).toContain('content-type');
    expect(preflight.headers['access-control-allow-methods']).toContain('POST');

    const response = await rawRequest(t.server.url, '/v1/jobs', { method: 'POST', headers: { origin: 'http://localhost:5173', 'content-type': 'application/json' }, body: SPEC_JSON });
    expect(response.status).toBe(201);
    expect(response.headers['access-control-allow-origin']).toBe('http://localhost:5173');
  });
});

describe('content types', () => {
  it('answers 415 to bodies a web page can send without a preflight, and creates nothing', async () => {
    const before = await jobCount();
    for (const contentType of ['text/plain', 'text/plain;charset=UTF-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const response = await rawRequest(t.server.url, '/v1/jobs', { method: 'POST', headers: { 'content-type': contentType }, body: SPEC_YAML });
      expect(response.status, contentType).toBe(415);
      expect(response.json.error?.code).toBe('unsupported_media_type');
      expect(response.json.error?.message).toMatch(/send the body as application\/json or application\/yaml/);
    }
    const untyped = await rawRequest(t.server.url, '/v1/jobs', { method: 'POST', body: SPEC_YAML });
    expect(untyped.status).toBe(415);
    expect(untyped.json.error?.message).toContain('a body without a Content-Type');
    expect(await jobCount()).toBe(before);
  });

  it('accepts JSON and the YAML types', async () => {
    for (const contentType of ['application/json; charset=utf-8', 'application/yaml', 'application/x-yaml', 'text/yaml']) {
      const body = contentType.startsWith('application/json') ? SPEC_JSON : SPEC_YAML;
      const response = await rawRequest(t.server.url, '/v1/jobs/validate', { method: 'POST', headers: { 'content-type': contentType }, body });
      expect(response.status, contentType).toBe(200);
    }
  });
});

describe('security headers', () => {
  it('come with the dashboard, the API, errors and the docs', async () => {
    for (const path of ['/', '/v1/jobs', '/v1/jobs/999', '/docs']) {
      const response = await rawRequest(t.server.url, path);
      expect(response.headers['content-security-policy'], path).toContain("frame-ancestors 'none'");
      expect(response.headers['x-content-type-options'], path).toBe('nosniff');
      expect(response.headers['x-frame-options'], path).toBe('DENY');
      expect(response.headers['referrer-policy'], path).toBe('no-referrer');
    }
  });
});

describe('start-up options', () => {
  it('refuses an origin or host name it could never match, naming the flag', async () => {
    // Refused before the data dir is touched.
    const dataDir = path.join(t.dataDir, 'never-created');
    await expect(startTuttiServer({ dataDir, port: 0, logger: silentLogger, allowedOrigins: ['localhost:5173'] })).rejects.toThrow(/--allowed-origin 'localhost:5173' is not an origin/);
    await expect(startTuttiServer({ dataDir, port: 0, logger: silentLogger, allowedHosts: ['http://gpu-box:7070'] })).rejects.toThrow(/--allowed-host 'http:\/\/gpu-box:7070' is not a host name/);
  });
});
