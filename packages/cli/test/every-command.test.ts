/**
 * Every command of the `tutti` command table, as a script runs it: with --json its stdout parses (one document, or
 * one per line for the commands that stream), and its exit code is the documented one: 0 ok, 1 refused or failed,
 * 2 bad usage, 3 no server answering. The commands come from the CLI's own table (program.ts), so a new command
 * without a case here fails this test.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TuttiClient } from '@tutti/client';
import type { JobView } from '@tutti/client';
import { silentLogger, startTuttiServer } from '@tutti/server';
import type { TuttiServer } from '@tutti/server';
import { buildProgram } from '../src/program.ts';
import { HEAVY_MODULES, TUTTI, runTutti } from './run-cli.ts';

const EXAMPLES = fileURLToPath(new URL('../../../examples/', import.meta.url));
/** Nothing listens on the discard port of loopback. */
const NO_SERVER = 'http://127.0.0.1:9';

/** Every command a person can run ("bench scheduler" for subcommands), from the CLI's own table. */
function commandPaths(command: Command, prefix: string[] = []): string[] {
  return command.commands.flatMap((sub) => {
    const at = [...prefix, sub.name()];
    return sub.commands.length === 0 ? [at.join(' ')] : commandPaths(sub, at);
  });
}

interface Fixture {
  url: string;
  /** A job that ran and ended, with output and a progress record. */
  ended: string;
  /** A job that runs until cancelled. */
  running: string;
  spec: string;
  trace: string;
}

/** The arguments of each command (besides --json and --server) against the fixture's server. */
const CASES: Record<string, (f: Fixture) => string[]> = {
  submit: (f) => ['submit', f.spec],
  ps: () => ['ps', '--all'],
  show: (f) => ['show', f.ended],
  metrics: (f) => ['metrics', f.ended],
  why: (f) => ['why', f.ended],
  export: () => ['export', 'history'],
  queues: () => ['queues'],
  logs: (f) => ['logs', f.ended],
  cancel: (f) => ['cancel', f.running],
  nodes: () => ['nodes'],
  status: () => ['status'],
  sim: (f) => ['sim', '--trace', f.trace, '--cluster', path.join(EXAMPLES, 'clusters/tiny.yaml'), '--policies', 'tutti'],
  'bench scheduler': () => ['bench', 'scheduler', '--nodes', '2', '--gpus-per-node', '2', '--pending', '4', '--teams', '1', '--rounds', '1'],
  // Runs until stopped: tested on its own below.
  up: () => [],
};
/** Commands that work without a server. */
const OFFLINE = new Set(['up', 'sim', 'bench scheduler']);

let server: TuttiServer;
let root: string;
let fixture: Fixture;
beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'tutti-every-command-'));
  server = await startTuttiServer({ dataDir: path.join(root, 'data'), port: 0, fakeGpus: '2', logger: silentLogger, tickMs: 200, stopGraceMs: 2000 });
  const client = new TuttiClient({ baseUrl: server.url });
  const ended = await client.submitJob({ name: 'talks', run: ['sh', '-c', 'echo "first line"; echo \'{"tutti": {"step": 1, "loss": 0.5}}\'; printf "no newline at the end"'] });
  const running = await client.submitJob({ name: 'sleeps', run: ['sleep', '60'] });
  for (const id of [ended.id, running.id]) {
    for (let job: JobView = await client.getJob(id); ; job = await client.getJob(id)) {
      if (id === ended.id ? job.status === 'succeeded' : job.status === 'running') break;
      if (job.status === 'failed' || job.status === 'cancelled') throw new Error(`fixture job ${id} ${job.status}: ${job.end_reason}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  const spec = path.join(root, 'hello.yaml');
  await writeFile(spec, 'name: hello\nrun: echo hello\n');
  const trace = path.join(root, 'trace.csv');
  await writeFile(trace, 'job_id,submit_time_s,duration_s,num_gpus,gpu_type,user,queue,status\n1,0,60,1,,alice,research,succeeded\n2,10,30,2,,bob,product,succeeded\n');
  fixture = { url: server.url, ended: ended.id, running: running.id, spec, trace };
});
afterAll(async () => {
  await server?.close();
  await rm(root, { recursive: true, force: true });
});

describe('every command with --json', () => {
  it('has a case here for every command of the command table', () => {
    const missing = commandPaths(buildProgram()).filter((command) => !(command in CASES));
    expect(missing, 'add a case to CASES for each new command').toEqual([]);
  });

  it('prints one JSON document on stdout and exits 0', async () => {
    for (const command of commandPaths(buildProgram()).filter((c) => c !== 'up')) {
      const args = CASES[command]!(fixture);
      const run = await runTutti([...args, '--json', '--server', fixture.url]);
      expect({ command, code: run.code, stderr: run.stderr }).toEqual({ command, code: 0, stderr: run.stderr });
      expect(() => JSON.parse(run.stdout), `tutti ${args.join(' ')} --json printed: ${run.stdout.slice(0, 300)}`).not.toThrow();
    }
  });

  it('logs: the lines of a rank, as an object, or one object per line when following', async () => {
    const whole = JSON.parse((await runTutti(['logs', fixture.ended, '--json', '--server', fixture.url])).stdout) as unknown;
    expect(whole).toEqual({ job_id: fixture.ended, rank: 0, attempt: 1, lines: ['first line', '{"tutti": {"step": 1, "loss": 0.5}}', 'no newline at the end'] });
    const followed = await runTutti(['logs', fixture.ended, '-f', '--json', '--server', fixture.url]);
    expect(followed.code).toBe(0);
    const lines = followed.stdout.trim().split('\n').map((line) => JSON.parse(line) as { line: string; attempt: number });
    expect(lines.map((l) => l.line)).toEqual(['first line', '{"tutti": {"step": 1, "loss": 0.5}}', 'no newline at the end']);
    expect(lines.every((l) => l.attempt === 1)).toBe(true);
  });

  it('export history: the trace rows as objects, numbers as numbers', async () => {
    const rows = JSON.parse((await runTutti(['export', 'history', '--json', '--server', fixture.url])).stdout) as Array<Record<string, unknown>>;
    expect(rows.find((r) => r['job_id'] === fixture.ended)).toMatchObject({ job_id: fixture.ended, submit_time_s: expect.any(Number), duration_s: expect.any(Number), num_gpus: 0, queue: 'default', status: 'succeeded' });
  });

  it('submit --watch: only the ended job on stdout, and the job\'s exit code', async () => {
    const failing = path.join(root, 'fails.yaml');
    await writeFile(failing, 'name: fails\nrun: echo some output; exit 5\n');
    const run = await runTutti(['submit', failing, '--watch', '--json', '--server', fixture.url]);
    expect(run.code).toBe(5);
    expect(JSON.parse(run.stdout)).toMatchObject({ name: 'fails', status: 'failed', exit_code: 5 });
  });

  it('up: one JSON line when it is up (then the demo\'s as JSON lines), and it stops on SIGTERM', async () => {
    const child = spawn(process.execPath, [TUTTI, 'up', '--json', '--port', '0', '--data-dir', path.join(root, 'up-data'), '--fake-gpus', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    // Its own deadline, within the test's: the finally below must stop the server whatever happens.
    let deadline: NodeJS.Timeout | undefined;
    const firstLine = new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout }).once('line', resolve);
      child.once('exit', (code) => reject(new Error(`tutti up exited with ${code} before it was up: ${stderr}`)));
      deadline = setTimeout(() => reject(new Error(`tutti up printed no JSON line in 30 s; stderr: ${stderr}`)), 30_000);
    }).finally(() => clearTimeout(deadline));
    try {
      const up = JSON.parse(await firstLine) as { event: string; url: string; gpus: number; fake_gpus: boolean };
      expect(up).toMatchObject({ event: 'up', gpus: 2, fake_gpus: true });
      expect((await new TuttiClient({ baseUrl: up.url }).listNodes()).nodes).toHaveLength(1);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});

describe('exit codes', () => {
  it('2 for bad usage, with a JSON error under --json', async () => {
    const usageErrors = [
      [],
      ['frobnicate'],
      ['ps', '--bogus'],
      ['ps', '--limit', 'many'],
      ['show'],
      ['show', 'abc'],
      ['logs', '7', '--rank', '-1'],
      ['export', 'everything'],
      ['submit', path.join(root, 'no-such-file.yaml')],
      ['sim', '--trace', fixture.trace],
      ['sim', '--trace', fixture.trace, '--cluster', path.join(EXAMPLES, 'clusters/tiny.yaml'), '--partition', 'sideways'],
      ['bench', 'scheduler', '--profile', 'nope', '--nodes', '2', '--pending', '2'],
      ['bench'],
    ];
    for (const args of usageErrors) {
      const run = await runTutti([...args, '--json', '--server', fixture.url]);
      expect({ args, code: run.code }).toEqual({ args, code: 2 });
      const body = JSON.parse(run.stdout) as { error: { code: string; message: string } };
      expect(body.error.message.length, `tutti ${args.join(' ')}`).toBeGreaterThan(0);
      expect(run.stderr.length, `tutti ${args.join(' ')} says what is wrong`).toBeGreaterThan(0);
    }
  });

  it('0 for --help and --version', async () => {
    expect((await runTutti(['--help'])).code).toBe(0);
    expect((await runTutti(['ps', '--help'])).code).toBe(0);
    expect((await runTutti(['--version'])).code).toBe(0);
  });

  it('1 when the server refuses, with its error as JSON', async () => {
    const run = await runTutti(['show', '999999', '--json', '--server', fixture.url]);
    expect(run.code).toBe(1);
    expect(JSON.parse(run.stdout)).toMatchObject({ error: { code: 'job_not_found' } });
  });

  it('3 for every command that needs a server when none answers', async () => {
    for (const command of commandPaths(buildProgram()).filter((c) => !OFFLINE.has(c))) {
      const args = CASES[command]!(fixture);
      const run = await runTutti([...args, '--json', '--server', NO_SERVER]);
      expect({ command, code: run.code }).toEqual({ command, code: 3 });
      expect(JSON.parse(run.stdout)).toMatchObject({ error: { code: 'server_unreachable' } });
      expect(run.stderr).toContain(`no tutti server answers at ${NO_SERVER}`);
    }
  });
});

describe('what each command loads', () => {
  it('commands that talk to a server load neither the server, SQLite, the simulator nor the scheduler', async () => {
    for (const command of commandPaths(buildProgram()).filter((c) => !OFFLINE.has(c))) {
      const run = await runTutti([...CASES[command]!(fixture), '--server', fixture.url], { recordImports: true });
      expect({ command, code: run.code }).toEqual({ command, code: 0 });
      expect(run.imports.length, 'the import recorder saw the CLI load').toBeGreaterThan(0);
      expect({ command, heavy: run.imports.filter((url) => HEAVY_MODULES.test(url)) }).toEqual({ command, heavy: [] });
    }
  });

  it('tutti sim loads the simulator when it runs (so the check above can see it)', async () => {
    const run = await runTutti(['sim', '--trace', fixture.trace, '--cluster', path.join(EXAMPLES, 'clusters/tiny.yaml'), '--policies', 'tutti', '--json'], { recordImports: true });
    expect(run.code).toBe(0);
    expect(run.imports.some((url) => HEAVY_MODULES.test(url))).toBe(true);
  });
});

describe('human output', () => {
  it('show: each rank with its backend and what the backend tells of it (a local rank\'s pid and host)', async () => {
    const job = await new TuttiClient({ baseUrl: fixture.url }).getJob(fixture.ended);
    const { pid, host } = job.tasks![0]!.backend!.details;
    const run = await runTutti(['show', fixture.ended, '--server', fixture.url]);
    expect(run.code).toBe(0);
    const header = run.stdout.split('\n').find((line) => line.startsWith('RANK'));
    expect(header?.split(/\s+/)).toEqual(['RANK', 'NODE', 'GPUS', 'BACKEND', 'STATUS', 'EXIT']);
    expect(run.stdout).toMatch(new RegExp(`\\n0 +\\S+ +- +local: pid ${pid}, host ${host} +exited +0\\n`));
  });
});
