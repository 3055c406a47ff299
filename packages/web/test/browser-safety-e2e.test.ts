/**
 * No web page can run commands through tutti, proven in real headless Chromium against a real tutti server: a page
 * served from another localhost port tries every request a browser sends without asking (text/plain fetch, forms)
 * and a JSON fetch (which needs a CORS preflight); a page reached through a DNS name that points at 127.0.0.1 (DNS
 * rebinding, simulated with Chromium's host resolver rules) tries from "inside". Each attempt's job would touch a
 * file: the file never appears and no job exists. The dashboard, meanwhile, still submits and cancels, and its
 * security headers (CSP) block nothing it needs.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { TuttiClient } from '@tutti/client';
import { silentLogger, startTuttiServer } from '@tutti/server';
import type { TuttiServer } from '@tutti/server';
import { dashboardDistDir, ensureDashboardBuilt } from '../src/index.ts';

const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];
/** A name the attacker controls, answering with this machine's loopback address. */
const REBOUND_NAME = 'rebound.attacker.example';

let root: string;
let marker: string;
let server: TuttiServer;
let client: TuttiClient;
let attacker: Server;
let attackerUrl: string;
let browser: Browser;

/** The answers Chromium got from the tutti server, as `METHOD host/path status` (blocked fetches give none). */
function watchTutti(page: Page): string[] {
  const seen: string[] = [];
  page.on('response', (response) => {
    const url = new URL(response.url());
    if (url.port === String(server.port)) seen.push(`${response.request().method()} ${url.host}${url.pathname} ${response.status()}`);
  });
  return seen;
}

/** A job spec whose command would leave `marker` behind. */
function hostileYaml(name: string): string {
  return `name: ${name}\nresources: {gpus: 1}\nrun: touch ${marker}\n`;
}

beforeAll(async () => {
  await ensureDashboardBuilt();
  root = await mkdtemp(path.join(tmpdir(), 'tutti-browser-safety-'));
  marker = path.join(root, 'a-web-page-ran-a-command');
  server = await startTuttiServer({ dataDir: path.join(root, 'data'), port: 0, fakeGpus: '4', logger: silentLogger, tickMs: 200, stopGraceMs: 2000, dashboardDir: dashboardDistDir });
  client = new TuttiClient({ baseUrl: server.url });
  // The attacker's page: an ordinary web page on another port of the same machine.
  attacker = createServer((_request, response) => response.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>a page you visit</title>'));
  await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve));
  const address = attacker.address();
  attackerUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/`;
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: [...CHROMIUM_ARGS, `--host-resolver-rules=MAP ${REBOUND_NAME} 127.0.0.1`] });
});

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => attacker?.close(resolve));
  await server?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('a web page on another origin', () => {
  it('cannot create a job: text/plain fetch, forms and JSON fetch are all refused', async () => {
    const page = await browser.newPage();
    const answers = watchTutti(page);
    await page.goto(attackerUrl);
    for (const target of [server.url, `http://localhost:${server.port}`]) {
      const outcome = await page.evaluate(
        async ({ target, yaml, json, formYamlName }) => {
          // (a) text/plain without CORS: the request a browser sends without asking anyone.
          const noCors = await fetch(`${target}/v1/jobs`, { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: yaml }).then(
            (r) => r.type,
            (e: Error) => `failed: ${e.name}`,
          );
          // (b) forms: text/plain (its body can be made valid YAML) and url-encoded, posted into an iframe.
          const submitForm = (enctype: string, name: string, value: string) =>
            new Promise<void>((resolve) => {
              // A frame of its own per form: a second navigation in one frame could cancel the first.
              const sink = Object.assign(document.createElement('iframe'), { name: `sink-${Math.random()}` });
              document.body.append(sink);
              sink.addEventListener('load', () => resolve(), { once: true });
              const form = Object.assign(document.createElement('form'), { method: 'POST', action: `${target}/v1/jobs`, enctype, target: sink.name });
              const input = Object.assign(document.createElement('input'), { type: 'hidden', name, value });
              form.append(input);
              document.body.append(form);
              form.submit();
              form.remove();
            });
          await submitForm('text/plain', formYamlName, '');
          await submitForm('application/x-www-form-urlencoded', 'spec', yaml);
          // (c) JSON: the browser asks first (a CORS preflight) and gives up when the server does not allow it.
          const cors = await fetch(`${target}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: json }).then(
            (r) => `answered ${r.status}`,
            (e: Error) => `failed: ${e.name}`,
          );
          return { noCors, cors };
        },
        {
          target,
          yaml: hostileYaml('from-a-no-cors-fetch'),
          json: JSON.stringify({ name: 'from-a-json-fetch', resources: { gpus: 1 }, run: `touch ${marker}` }),
          // A text/plain form sends `name=value`: a name ending in a comment makes the whole body one valid spec.
          formYamlName: `${hostileYaml('from-a-form')}#`,
        },
      );
      // The page cannot even see that a response came: CORS, and Cross-Origin-Resource-Policy for no-cors.
      expect(outcome).toEqual({ noCors: 'failed: TypeError', cors: 'failed: TypeError' });
    }
    // The forms reached the server and were refused there (403), before their bodies were read.
    // (Chromium reports a response to the test a moment after the page saw it: poll.)
    await expect.poll(() => [...answers].sort()).toEqual([...Array(2).fill(`POST 127.0.0.1:${server.port}/v1/jobs 403`), ...Array(2).fill(`POST localhost:${server.port}/v1/jobs 403`)]);
    expect((await client.listJobs({ limit: 1000 })).jobs).toEqual([]);
    expect(existsSync(marker)).toBe(false);
    await page.close();
  });

  it('cannot reach the API through a DNS name that points at this machine (DNS rebinding)', async () => {
    const page = await browser.newPage();
    const rebound = `http://${REBOUND_NAME}:${server.port}`;
    const landing = await page.goto(`${rebound}/`);
    expect(landing?.status()).toBe(421);
    expect(await page.textContent('body')).toContain(`--allowed-host ${REBOUND_NAME}`);
    // Same-origin from the browser's point of view: no preflight, no Origin check would stop it.
    const status = await page.evaluate(
      async (yaml) => (await fetch('/v1/jobs', { method: 'POST', headers: { 'content-type': 'application/yaml' }, body: yaml })).status,
      hostileYaml('from-a-rebound-page'),
    );
    expect(status).toBe(421);
    expect((await client.listJobs({ limit: 1000 })).jobs).toEqual([]);
    expect(existsSync(marker)).toBe(false);
    await page.close();
  });
});

describe('the dashboard under the same checks', () => {
  it('submits and cancels a job, and its security headers block nothing it loads', async () => {
    const page = await browser.newPage();
    const blocked: string[] = [];
    page.on('console', (message) => {
      if (/Content Security Policy|Refused to/i.test(message.text())) blocked.push(`${page.url()}: ${message.text()}`);
    });
    page.on('pageerror', (error) => blocked.push(error.message));
    const landing = await page.goto(`${server.url}/submit`);
    expect(landing?.headers()['content-security-policy']).toContain("frame-ancestors 'none'");

    await page.getByLabel('job spec in YAML').fill(`name: from-the-dashboard\nresources:\n  gpus: 1\nrun: sleep 30\n`);
    await page.getByText('The server accepts this spec.').waitFor();
    await page.getByRole('button', { name: 'Submit', exact: true }).click();
    await page.waitForURL(/\/jobs\/\d+$/);
    const id = page.url().split('/').at(-1)!;
    await page.getByRole('button', { name: 'Cancel job…' }).click();
    await page.getByRole('button', { name: `Yes, cancel job ${id}` }).click();
    await page.locator('.job-header .badge', { hasText: 'cancelled' }).waitFor();
    expect((await client.getJob(id)).status).toBe('cancelled');

    // The API docs are a page of this server too.
    await page.goto(`${server.url}/docs`);
    await page.locator('.swagger-ui .opblock').first().waitFor();
    expect(blocked).toEqual([]);
    await page.close();
  });
});
