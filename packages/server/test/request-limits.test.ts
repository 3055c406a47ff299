/**
 * Bounded work per request body, over real HTTP: a spec larger than the limit is refused before it is read, one
 * nesting deeper than the limit before it is parsed (yaml spends seconds on deep nesting), JSON that repeats a key
 * is refused as YAML that does, and a POST without a body passes whatever Content-Type it names.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeLeavingNothingRunning, startTestServer, waitForFileThenExit } from './harness.ts';
import type { TestServer } from './harness.ts';
import { rawRequest } from './raw-http.ts';

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await closeLeavingNothingRunning(t);
});

/** A valid spec padded with a comment to `bytes`. */
function specOfSize(bytes: number): string {
  const spec = 'name: padded\nresources: {gpus: 1}\nrun: "true"\n# ';
  return spec + 'x'.repeat(bytes - spec.length);
}

/** YAML nested `depth` mappings deep by indentation: `a:\n  a:\n    a: 1`. */
function nestedBlockYaml(depth: number): string {
  let text = 'name: deep\nresources: {gpus: 1}\nrun: "true"\nenv:\n';
  for (let level = 1; level < depth; level++) text += `${'  '.repeat(level)}a${level}:\n`;
  return `${text}${'  '.repeat(depth)}leaf: 1\n`;
}

async function post(path: string, contentType: string | undefined, body?: string, extraHeaders: Record<string, string> = {}) {
  return rawRequest(t.server.url, path, { method: 'POST', headers: { ...(contentType ? { 'content-type': contentType } : {}), ...extraHeaders }, ...(body !== undefined ? { body } : {}) });
}

describe('spec size', () => {
  it('refuses a spec over 64 KiB with 413, naming the limit and the flag that raises it', async () => {
    expect((await post('/v1/jobs/validate', 'application/yaml', specOfSize(64 * 1024))).status).toBe(200);
    const response = await post('/v1/jobs', 'application/yaml', specOfSize(64 * 1024 + 1));
    expect(response.status).toBe(413);
    expect(response.json.error?.code).toBe('payload_too_large');
    expect(response.json.error?.message).toContain('64 KiB');
    expect(response.json.error?.message).toContain('`tutti up --max-spec-bytes N`');
  });

  it('refuses an oversize body sent without a Content-Length (chunked) too', async () => {
    const response = await post('/v1/jobs', 'application/json', JSON.stringify({ name: 'big', run: 'x'.repeat(100_000) }), { 'transfer-encoding': 'chunked' });
    expect(response.status).toBe(413);
    expect(response.json.error?.message).toContain('`tutti up --max-spec-bytes N`');
  });

  it('refuses a 600 KB deeply nested YAML body, and the server goes on answering', async () => {
    const hostile = '['.repeat(300_000) + ']'.repeat(300_000);
    const response = await post('/v1/jobs', 'application/yaml', hostile);
    expect(response.status).toBe(413);
    expect((await rawRequest(t.server.url, '/healthz')).status).toBe(200);
    expect((await t.client.listJobs()).jobs).toEqual([]);
  });

  it('takes larger specs when the server is started with a larger limit', async () => {
    const roomy = await startTestServer({ maxSpecBytes: 256 * 1024 });
    try {
      const response = await rawRequest(roomy.server.url, '/v1/jobs/validate', { method: 'POST', headers: { 'content-type': 'application/yaml' }, body: specOfSize(200 * 1024) });
      expect(response.status).toBe(200);
    } finally {
      await roomy.close();
    }
  });
});

describe('nesting depth', () => {
  it('refuses YAML nested deeper than 32 levels before parsing it, with where and how to raise the limit', async () => {
    for (const yaml of [nestedBlockYaml(40), `name: deep\nrun: "true"\nenv: ${'['.repeat(33)}${']'.repeat(33)}\n`, `name: deep\nrun: "true"\nenv:\n${'- '.repeat(40)}x\n`]) {
      const response = await post('/v1/jobs', 'application/yaml', yaml);
      expect(response.status).toBe(400);
      expect(response.json.error?.code).toBe('invalid_spec');
      expect(response.json.error?.message).toContain('nests deeper than 32 levels');
      expect(response.json.error?.message).toContain('`tutti up --max-spec-depth N`');
      expect(response.json.error?.fields?.[0]?.line).toBeGreaterThanOrEqual(3);
    }
  });

  it('refuses JSON nested deeper than 32 levels', async () => {
    let env: unknown = 'leaf';
    for (let level = 0; level < 40; level++) env = { a: env };
    const response = await post('/v1/jobs', 'application/json', JSON.stringify({ name: 'deep', resources: { gpus: 1 }, run: 'true', env }));
    expect(response.status).toBe(400);
    expect(response.json.error?.message).toContain('nests deeper than 32 levels');
  });

  it('leaves nesting within the limit to the spec validator, and block scalars and quoted brackets do not count', async () => {
    const within = await post('/v1/jobs', 'application/yaml', nestedBlockYaml(20));
    expect(response400Message(within)).toMatch(/^env\.a1: /);
    const script = `name: script\nresources: {gpus: 1}\nrun: |\n${Array.from({ length: 40 }, (_, i) => `${'  '.repeat(i + 1)}echo level ${i}`).join('\n')}\nenv: {BRACKETS: "${'['.repeat(40)}"}\n`;
    expect((await post('/v1/jobs/validate', 'application/yaml', script)).status).toBe(200);
  });
});

function response400Message(response: Awaited<ReturnType<typeof post>>): string {
  expect(response.status).toBe(400);
  return response.json.error?.message ?? '';
}

describe('duplicate keys', () => {
  it('refuses JSON that repeats a key, naming the key and its path as the YAML parser does', async () => {
    const json = await post('/v1/jobs', 'application/json', '{"name": "a", "resources": {"gpus": 1, "gpus": 2}, "run": "true"}');
    expect(json.status).toBe(400);
    expect(json.json.error?.code).toBe('invalid_spec');
    const yaml = await post('/v1/jobs', 'application/yaml', 'name: a\nresources:\n  gpus: 1\n  gpus: 2\nrun: "true"\n');
    expect(yaml.status).toBe(400);
    const [jsonField, yamlField] = [json.json.error?.fields?.[0], yaml.json.error?.fields?.[0]];
    expect(jsonField?.path).toBe('resources.gpus');
    expect(jsonField?.path).toBe(yamlField?.path);
    expect(jsonField?.message).toBe("duplicate key 'gpus': each key may appear only once");
    expect(jsonField?.message).toBe(yamlField?.message);
    expect(json.json.error?.message).toBe("resources.gpus: duplicate key 'gpus': each key may appear only once");

    const top = await post('/v1/jobs', 'application/json', '{"name": "a", "run": "true", "name": "b"}');
    expect(top.json.error?.fields?.[0]).toMatchObject({ path: 'name', line: 1, column: 30 });
    expect((await t.client.listJobs()).jobs).toEqual([]);
  });
});

describe('POSTs without a body', () => {
  it('cancel a job whatever Content-Type they name', async () => {
    for (const [contentType, extra] of [
      ['application/json', {}],
      ['application/json', { 'content-length': '0' }],
      ['text/plain', {}],
      [undefined, {}],
    ] as const) {
      const job = await t.client.submitJob({ name: 'to-cancel', resources: { gpus: 1 }, run: waitForFileThenExit(`${t.scratch}/never`) });
      const response = await post(`/v1/jobs/${job.id}/cancel`, contentType, undefined, extra);
      expect(response.status, `${contentType} ${JSON.stringify(extra)}`).toBe(202);
      expect(response.json.id).toBe(job.id);
    }
  });
});
