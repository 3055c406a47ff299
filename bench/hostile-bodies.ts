/**
 * `npx tsx bench/hostile-bodies.ts`: what hostile and maximal request bodies cost the server (docs/benchmarks.md,
 * "Hostile bodies"). A tutti server runs in this process on 4 fake GPUs; each body is POSTed to /v1/jobs/validate
 * RUNS times, and for each the answer's status, how long it took, and the longest stall of the event loop while it
 * ran (perf_hooks' monitorEventLoopDelay: what every other client of the server waited at most) are printed.
 * Talks only to 127.0.0.1; removes its data dir.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { silentLogger, startTuttiServer } from '@tutti/server';

const RUNS = Number(process.env.RUNS ?? 5);

function flatEnvYaml(bytes: number): string {
  let text = 'name: many-vars\nresources: {gpus: 1}\nrun: "true"\nenv:\n';
  for (let i = 0; text.length < bytes - 24; i++) text += `  VAR_${i}: value\n`;
  return text;
}
function nestedBlockYaml(depth: number): string {
  let text = 'name: deep\nrun: "true"\nenv:\n';
  for (let level = 1; level <= depth; level++) text += `${' '.repeat(level)}a:\n`;
  return text;
}

const bodies: [string, string, string][] = [
  ['600 KB of nested flow YAML ([[[…]]])', 'application/yaml', '['.repeat(300_000) + ']'.repeat(300_000)],
  ['64 KB of nested flow YAML', 'application/yaml', '['.repeat(32_000) + ']'.repeat(32_000)],
  ['64 KB of nested block YAML (indentation)', 'application/yaml', nestedBlockYaml(350)],
  ['64 KB YAML spec, ~3,700 env variables', 'application/yaml', flatEnvYaml(64 * 1024)],
  ['64 KB JSON spec, ~3,400 env variables', 'application/json', JSON.stringify({ name: 'many-vars', resources: { gpus: 1 }, run: 'true', env: Object.fromEntries(Array.from({ length: 3400 }, (_, i) => [`VAR_${i}`, 'value'])) })],
];

const root = await mkdtemp(path.join(tmpdir(), 'tutti-bench-bodies-'));
const server = await startTuttiServer({ dataDir: path.join(root, 'data'), port: 0, fakeGpus: '4', logger: silentLogger });
try {
  for (const [label, contentType, body] of bodies) {
    const results: { status: number; ms: number; stallMs: number }[] = [];
    for (let run = 0; run < RUNS; run++) {
      const loop = monitorEventLoopDelay({ resolution: 1 });
      loop.enable();
      const start = performance.now();
      const response = await fetch(`${server.url}/v1/jobs/validate`, { method: 'POST', headers: { 'content-type': contentType }, body });
      await response.arrayBuffer();
      const ms = performance.now() - start;
      loop.disable();
      results.push({ status: response.status, ms, stallMs: loop.max / 1e6 });
    }
    const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
    console.log(`${label} (${body.length} bytes): status ${results[0]?.status}, answered in ${median(results.map((r) => r.ms)).toFixed(1)} ms median, event loop stalled ${median(results.map((r) => r.stallMs)).toFixed(1)} ms median / ${Math.max(...results.map((r) => r.stallMs)).toFixed(1)} ms max`);
  }
} finally {
  await server.close();
  await rm(root, { recursive: true, force: true });
}
