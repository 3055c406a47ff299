/**
 * `tutti up --backend`: the backend is chosen where the server is put together, and one tutti does not know is
 * refused in one line naming the known ones — before anything is created in the data dir. The real command.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { useSlurmDevClusterWithRest, type SlurmDevRest } from '../../backends/test/slurm-cluster.ts';

const TUTTI = fileURLToPath(new URL('../bin/tutti.js', import.meta.url));

let root: string;
beforeAll(() => {
  root = mkdtempSync(path.join(tmpdir(), 'tutti-up-backend-'));
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

const HELLO = fileURLToPath(new URL('../../../examples/hello.yaml', import.meta.url));

/** Runs the CLI; answers its exit code, stdout and stderr. */
function tutti(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [TUTTI, ...args], { timeout: 50_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
    });
  });
}

/** Runs `tutti up ARGS` on a data dir of its own; answers its exit code and stderr. */
function up(dataDir: string, args: readonly string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [TUTTI, 'up', '--data-dir', dataDir, '--port', '0', ...args], { env: { ...process.env, HOME: tmpdir() }, timeout: 30_000 }, (error, _stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stderr });
    });
  });
}

describe('tutti up --backend', () => {
  it('refuses a backend it does not know in one line naming the known ones, and creates nothing', async () => {
    const dataDir = path.join(root, 'data');
    const run = await up(dataDir, ['--backend', 'kubernetes', '--fake-gpus', '1']);
    const lines = run.stderr.trimEnd().split('\n');
    expect(lines, run.stderr).toHaveLength(1);
    expect(lines[0]).toContain('--backend "kubernetes"');
    expect(lines[0]).toContain('known backends: local, slurm');
    expect(run.code).toBe(1);
    expect(existsSync(dataDir)).toBe(false);
  }, 60_000);

  it('refuses options of the other backend in one line saying whose they are, and creates nothing', async () => {
    const fake = await up(path.join(root, 'fake'), ['--backend', 'slurm', '--fake-gpus', '1']);
    expect(fake.stderr.trimEnd().split('\n')).toEqual(["tutti: cannot start: --fake-gpus is for the local backend: on Slurm the GPUs are the nodes' gres (scripts/slurm-dev-cluster.sh makes a cluster with fake ones)"]);
    const partition = await up(path.join(root, 'partition'), ['--slurm-partition', 'gpu', '--fake-gpus', '1']);
    expect(partition.stderr.trimEnd().split('\n')).toEqual(['tutti: cannot start: the Slurm options (--slurm-partition, --slurm-rest-url, --slurm-placement) need --backend slurm']);
    for (const run of [fake, partition]) expect(run.code).toBe(1);
    expect(existsSync(path.join(root, 'fake')) || existsSync(path.join(root, 'partition'))).toBe(false);
  }, 60_000);
});

describe('tutti up --backend slurm --slurm-rest-url (real Slurm through slurmrestd)', () => {
  let rest: SlurmDevRest;
  beforeAll(async () => {
    ({ rest } = await useSlurmDevClusterWithRest());
  }, 300_000);

  it('starts on the nodes slurmrestd reports, with tokens minted from the site\'s JWT key', async () => {
    const dataDir = path.join(root, 'rest');
    const child = spawn(process.execPath, [TUTTI, 'up', '--json', '--data-dir', dataDir, '--port', '0', '--backend', 'slurm', '--slurm-partition', 'one', '--slurm-rest-url', rest.url, '--slurm-jwt-key', rest.jwtKeyFile], {
      // No SLURM_CONF: Slurm's tools are not how it reaches Slurm.
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: tmpdir() }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const lines = createInterface({ input: child.stdout });
    try {
      const first = await new Promise<string>((resolve, reject) => {
        lines.once('line', resolve);
        child.once('exit', (code) => reject(new Error(`tutti up exited ${code}: ${stderr}`)));
      });
      const up = JSON.parse(first) as { url: string };
      expect(up).toMatchObject({ event: 'up', nodes: [{ name: 'n1', gpus: 4 }], gpus: 4, fake_gpus: false });
      // A job end to end: submitted, run by Slurm on n1 through slurmrestd, its log read back.
      const submitted = await tutti(['submit', HELLO, '--watch', '--json', '--server', up.url]);
      const job = JSON.parse(submitted.stdout) as { id: string; status: string };
      expect(job.status, submitted.stderr).toBe('succeeded');
      expect((await tutti(['logs', job.id, '--server', up.url])).stdout).toContain(`hello from job ${job.id} on `);
    } finally {
      child.kill('SIGINT');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  }, 120_000);

  it('refuses slurmrestd without a token or key, and a key without slurmrestd, in one line each', async () => {
    const noToken = await up(path.join(root, 'no-token'), ['--backend', 'slurm', '--slurm-rest-url', rest.url]);
    expect(noToken.stderr.trimEnd().split('\n')).toEqual(["tutti: cannot start: the Slurm backend: slurmrestd needs a token: set SLURM_JWT (from `scontrol token lifespan=…`) or give the site's JWT key file (--slurm-jwt-key)"]);
    const noUrl = await up(path.join(root, 'no-url'), ['--backend', 'slurm', '--slurm-jwt-key', rest.jwtKeyFile]);
    expect(noUrl.stderr.trimEnd().split('\n')).toEqual(['tutti: --slurm-user and --slurm-jwt-key are for slurmrestd: give its address with --slurm-rest-url']);
    expect([noToken.code, noUrl.code]).toEqual([1, 2]);
  }, 60_000);
});
