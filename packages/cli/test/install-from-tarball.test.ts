/**
 * The `tutti` command installed the way the README says, outside the repository: `npm run pack` makes a tarball,
 * `npm install -g` puts it under a fresh prefix (npm dependencies from the registry or its cache; better-sqlite3
 * compiles, which is most of this test's minutes), and the installed `tutti` runs from a directory that has
 * nothing of the repository: --help, `up --demo` with the dashboard, and client commands that load only the client.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobView } from '@tutti/client';
import { HEAVY_MODULES, runTutti } from './run-cli.ts';

const PACK = fileURLToPath(new URL('../pack.mjs', import.meta.url));
const run = promisify(execFile);

let root: string;
let tarball: string;
let installed: string;
/** A working directory with nothing of the repository around it. */
let elsewhere: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'tutti-install-'));
  elsewhere = await mkdtemp(path.join(tmpdir(), 'tutti-elsewhere-'));
  tarball = (await run(process.execPath, [PACK, '--out', root], { timeout: 180_000 })).stdout.trim();
  const prefix = path.join(root, 'prefix');
  await run('npm', ['install', '--global', '--prefix', prefix, tarball, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel', 'error'], { cwd: elsewhere, timeout: 900_000 });
  installed = path.join(prefix, 'bin', 'tutti');
}, 960_000);
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
  await rm(elsewhere, { recursive: true, force: true });
});

describe('tutti installed from the packed tarball', () => {
  it('holds the bundle, the dashboard and the examples, and depends on npm packages only', async () => {
    const { stdout } = await run('tar', ['-tzf', tarball]);
    const files = stdout.split('\n');
    for (const file of ['package/packages/cli/bin/tutti.js', 'package/packages/cli/dist/tutti.mjs', 'package/packages/web/dist/index.html', 'package/examples/ddp-hello/ddp_hello.mjs', 'package/README.md']) {
      expect(files).toContain(file);
    }
    expect(files.filter((f) => f.endsWith('.ts'))).toEqual([]);
    const manifest = JSON.parse((await run('tar', ['-xzOf', tarball, 'package/package.json'])).stdout) as { bin: Record<string, string>; dependencies: Record<string, string> };
    expect(manifest.bin).toEqual({ tutti: 'packages/cli/bin/tutti.js' });
    expect(Object.keys(manifest.dependencies)).toEqual(expect.arrayContaining(['better-sqlite3', 'commander', 'fastify']));
    expect(Object.keys(manifest.dependencies).filter((d) => d.startsWith('@tutti/'))).toEqual([]);
  });

  it('runs from any directory: --help, up --demo with the dashboard, and ps without loading the server', async () => {
    const help = await runTutti(['--help'], { bin: installed, cwd: elsewhere });
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: tutti');

    const up = spawn(process.execPath, [installed, 'up', '--demo', '--json', '--port', '0', '--data-dir', path.join(elsewhere, 'data')], { cwd: elsewhere, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    up.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => up.on('exit', (code) => resolve(code)));
    try {
      const events: Array<{ event: string; url?: string; job?: JobView; line?: string }> = [];
      // Its own deadline, within the test's: the finally below must stop the server whatever happens.
      let deadline: NodeJS.Timeout | undefined;
      const demoEnded = new Promise<void>((resolve, reject) => {
        createInterface({ input: up.stdout }).on('line', (line) => {
          events.push(JSON.parse(line) as (typeof events)[number]);
          if (events.at(-1)?.event === 'demo_ended') resolve();
        });
        up.once('exit', (code) => reject(new Error(`tutti up exited with ${code}: ${stderr}`)));
        deadline = setTimeout(() => reject(new Error(`the demo did not end in 45 s; stderr: ${stderr}`)), 45_000);
      }).finally(() => clearTimeout(deadline));
      await demoEnded;
      const url = events[0]!.url!;
      expect(events[0]!.event).toBe('up');
      expect(events.at(-1)!.job!.status).toBe('succeeded');
      expect(events.filter((e) => e.event === 'demo_log').map((e) => e.line)).toContainEqual(expect.stringContaining('rank 0: all 2 ranks joined the rendezvous'));

      const dashboard = await (await fetch(`${url}/`)).text();
      expect(dashboard).toContain('<div id="root">');
      expect(dashboard).not.toContain('dashboard not built');

      const ps = await runTutti(['ps', '--all', '--json', '--server', url], { bin: installed, cwd: elsewhere, recordImports: true });
      expect(ps.code).toBe(0);
      expect((JSON.parse(ps.stdout) as { jobs: JobView[] }).jobs.map((j) => j.name)).toEqual(['ddp-hello-demo']);
      expect(ps.imports.some((u) => u.includes('/lib/node_modules/tutti/'))).toBe(true);
      expect(ps.imports.filter((u) => HEAVY_MODULES.test(u))).toEqual([]);
    } finally {
      up.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});
