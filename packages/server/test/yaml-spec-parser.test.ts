/**
 * Large YAML specs are parsed in a worker thread (yaml's parser takes tens of milliseconds on a 64 KiB spec, and
 * the event loop would serve nobody meanwhile): the event loop turns while one parses, the answer is the one the
 * in-place parser gives (values, and errors with their lines and columns), and a worker that dies loses nothing.
 */
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parseJobSpecYaml } from '@tutti/model';
import { OFF_THREAD_BYTES, YamlSpecParser } from '../src/http/yaml-spec-parser.ts';
import { startTestServer } from './harness.ts';

function specWithEnv(bytes: number, extra = ''): string {
  let text = `name: many-vars\nresources: {gpus: 1}\nrun: "true"\n${extra}env:\n`;
  for (let i = 0; text.length < bytes - 24; i++) text += `  VAR_${i}: value\n`;
  return text;
}

describe('YAML specs parsed off the event loop', () => {
  const parser = new YamlSpecParser();
  afterAll(() => parser.close());

  it('lets the event loop turn while a large spec parses, and gives the in-place result', async () => {
    const text = specWithEnv(64 * 1024);
    const order: string[] = [];
    setImmediate(() => order.push('event loop turned'));
    const result = await parser.parse(text);
    order.push('parsed');
    // In place, the parse would finish (and its promise settle) before the event loop could turn once.
    expect(order).toEqual(['event loop turned', 'parsed']);
    expect(result).toEqual(parseJobSpecYaml(text));
    expect(result.ok).toBe(true);
  });

  it('reports a large spec\'s errors with the same paths, lines and columns', async () => {
    const text = specWithEnv(32 * 1024, 'priority: urgent\nmax_restarts: -1\n');
    expect(text.length).toBeGreaterThan(OFF_THREAD_BYTES);
    const result = await parser.parse(text);
    expect(result).toEqual(parseJobSpecYaml(text));
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors.map((e) => [e.path, e.line])).toEqual([['priority', 4], ['max_restarts', 5]]);
  });

  it('answers every request when its worker dies', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'tutti-dying-worker-'));
    const dying = path.join(dir, 'dying-worker.mjs');
    await writeFile(dying, "import { parentPort } from 'node:worker_threads';\nparentPort.on('message', () => process.exit(3));\n");
    const fragile = new YamlSpecParser(pathToFileURL(dying));
    try {
      const texts = [specWithEnv(20 * 1024), specWithEnv(24 * 1024, 'priority: high\n')];
      const results = await Promise.all(texts.map((text) => fragile.parse(text)));
      expect(results).toEqual(texts.map((text) => parseJobSpecYaml(text)));
    } finally {
      await fragile.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('takes a large YAML submission through a real server, errors with their line', async () => {
    const { server, close } = await startTestServer();
    try {
      const post = (body: string) => fetch(`${server.url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/yaml' }, body });
      const accepted = await post(specWithEnv(60 * 1024));
      expect(accepted.status).toBe(201);
      expect(((await accepted.json()) as { name: string }).name).toBe('many-vars');
      const refused = await post(specWithEnv(60 * 1024, 'priority: urgent\n'));
      expect(refused.status).toBe(400);
      const problem = (await refused.json()) as { error: { fields: { path: string; line: number }[] } };
      expect(problem.error.fields[0]).toMatchObject({ path: 'priority', line: 4 });
    } finally {
      await close();
    }
  });
});
