/**
 * What of whose environment reaches a rank, through the real commands: `tutti up --pass-env` passes the operator's
 * named variables and nothing else of the server's environment; `tutti submit` sends the submitter's PATH and active
 * virtualenv (the job then runs that virtualenv's programs), and `--no-inherit-env` sends none.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TUTTI, runTutti } from './run-cli.ts';

let root: string;
let server: ChildProcess | undefined;
let url = '';

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'tutti-rank-env-'));
  const env = { ...process.env, HOME: root, TUTTI_PASSED_ONE: 'passed', TUTTI_PASSED_TWO: 'also passed', TUTTI_SERVER_SECRET: 'never in a rank' };
  server = spawn(process.execPath, [TUTTI, 'up', '--port', '0', '--data-dir', path.join(root, 'data'), '--fake-gpus', '1', '--pass-env', 'TUTTI_PASSED_*'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  url = await new Promise<string>((resolve, reject) => {
    let output = '';
    const onData = (data: Buffer) => {
      output += data.toString();
      const found = /tutti is up at (http:\/\/\S+)/.exec(output)?.[1];
      if (found) resolve(found);
    };
    server!.stdout?.on('data', onData);
    server!.stderr?.on('data', onData);
    server!.on('exit', (code) => reject(new Error(`tutti up exited with ${code}: ${output}`)));
  });
}, 60_000);

afterAll(async () => {
  server?.kill('SIGTERM');
  await new Promise((resolve) => (server?.exitCode !== null ? resolve(undefined) : server.once('exit', resolve)));
  await rm(root, { recursive: true, force: true });
});

/** Submits a job that prints its environment, from a shell whose PATH and VIRTUAL_ENV point at a virtualenv; answers the variables. */
async function rankEnvironment(name: string, extraArgs: string[]): Promise<Record<string, string>> {
  const venv = path.join(root, `${name}-venv`);
  await mkdir(path.join(venv, 'bin'), { recursive: true });
  // A program only this "virtualenv" has, found through the PATH the CLI sent.
  await writeFile(path.join(venv, 'bin', 'only-in-venv'), '#!/bin/sh\necho "only-in-venv ran"\n');
  await chmod(path.join(venv, 'bin', 'only-in-venv'), 0o755);
  const spec = path.join(root, `${name}.yaml`);
  await writeFile(spec, `name: ${name}\nrun: "(only-in-venv || true) && env"\n`);
  const run = await runTutti(['submit', spec, '--watch', '--server', url, ...extraArgs], {
    env: { PATH: `${venv}/bin:${process.env.PATH ?? '/usr/bin:/bin'}`, VIRTUAL_ENV: venv },
    timeoutMs: 60_000,
  });
  expect(run.code, run.stderr).toBe(0);
  const lines = run.stdout.split('\n');
  const variables = lines.filter((line) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(line)).map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]);
  return { ...Object.fromEntries(variables), RAN_VENV_PROGRAM: String(lines.includes('only-in-venv ran')) };
}

describe('a rank\'s environment, from tutti up and tutti submit', () => {
  it('gets what --pass-env names and the submitter\'s virtualenv, and nothing else of the server\'s environment', async () => {
    const env = await rankEnvironment('inherits', []);
    expect(env).toMatchObject({ TUTTI_PASSED_ONE: 'passed', TUTTI_PASSED_TWO: 'also passed', VIRTUAL_ENV: path.join(root, 'inherits-venv'), RAN_VENV_PROGRAM: 'true' });
    expect(env.PATH?.startsWith(`${path.join(root, 'inherits-venv')}/bin:`)).toBe(true);
    expect(env.TUTTI_SERVER_SECRET).toBeUndefined();
    expect(Object.keys(env).filter((name) => name.startsWith('npm_'))).toEqual([]);
  }, 90_000);

  it('with --no-inherit-env gets a system PATH and no virtualenv', async () => {
    const env = await rankEnvironment('clean', ['--no-inherit-env']);
    expect(env.PATH).toBe('/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
    expect(env.VIRTUAL_ENV).toBeUndefined();
    expect(env.RAN_VENV_PROGRAM).toBe('false');
    expect(env.TUTTI_PASSED_ONE).toBe('passed');
  }, 90_000);
});
