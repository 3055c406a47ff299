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

describe('tutti up --backend', () => {
  it('refuses a backend it does not know in one line naming the known ones, and creates nothing', async () => {
    const dataDir = path.join(root, 'data');
    const run = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(process.execPath, [TUTTI, 'up', '--backend', 'slurm', '--data-dir', dataDir, '--port', '0', '--fake-gpus', '1'], { env: { ...process.env, HOME: tmpdir() }, timeout: 30_000 }, (error, _stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stderr });
      });
    });
    const lines = run.stderr.trimEnd().split('\n');
    expect(lines, run.stderr).toHaveLength(1);
    expect(lines[0]).toContain('--backend "slurm"');
    expect(lines[0]).toContain('known backends: local');
    expect(run.code).toBe(1);
    expect(existsSync(dataDir)).toBe(false);
  }, 60_000);
});
