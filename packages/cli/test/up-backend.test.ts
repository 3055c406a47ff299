/**
 * `tutti up --backend`: the backend is chosen where the server is put together, and one tutti does not know is
 * refused in one line naming the known ones — before anything is created in the data dir. The real command.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const TUTTI = fileURLToPath(new URL('../bin/tutti.js', import.meta.url));

let root: string;
beforeAll(() => {
  root = mkdtempSync(path.join(tmpdir(), 'tutti-up-backend-'));
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

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
    expect(partition.stderr.trimEnd().split('\n')).toEqual(['tutti: cannot start: the Slurm options (--slurm-partition) need --backend slurm']);
    for (const run of [fake, partition]) expect(run.code).toBe(1);
    expect(existsSync(path.join(root, 'fake')) || existsSync(path.join(root, 'partition'))).toBe(false);
  }, 60_000);
});
