/** Runs the `tutti` command as a person does: a real process, its exit code, stdout and stderr. */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The checkout's `tutti` (the bundle when it is fresh, else the sources through tsx). */
export const TUTTI = fileURLToPath(new URL('../bin/tutti.js', import.meta.url));
const RECORD_IMPORTS = fileURLToPath(new URL('./fixtures/record-imports.mjs', import.meta.url));

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
  /** With `recordImports`: the URL of every ES module the process loaded. */
  imports: string[];
}

export interface RunOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** Another `tutti` to run, e.g. an installed one. */
  bin?: string;
  recordImports?: boolean;
  timeoutMs?: number;
}

export async function runTutti(args: string[], options: RunOptions = {}): Promise<Run> {
  const logDir = options.recordImports ? await mkdtemp(path.join(tmpdir(), 'tutti-imports-')) : undefined;
  const log = logDir ? path.join(logDir, 'imports.txt') : undefined;
  const nodeArgs = log ? ['--import', RECORD_IMPORTS] : [];
  const env = { ...process.env, ...options.env, ...(log ? { TUTTI_IMPORT_LOG: log } : {}) };
  const run = await new Promise<Omit<Run, 'imports'>>((resolve) => {
    execFile(process.execPath, [...nodeArgs, options.bin ?? TUTTI, ...args], { env, cwd: options.cwd, timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
  const imports = log ? (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean) : [];
  if (logDir) await rm(logDir, { recursive: true, force: true });
  return { ...run, imports };
}

/** What only `tutti up`, `tutti sim` and `tutti bench` need: the server, SQLite, the simulator, the scheduler. */
export const HEAVY_MODULES = /better-sqlite3|fastify|kysely|vega|\/packages\/(server|store|backends|scheduler|sim)\/|\/dist\/(up|sim-run|bench-run)-[A-Z0-9]+\.mjs/;
