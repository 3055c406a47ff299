/**
 * examples/ddp-torch, the PyTorch DDP example, run through tutti for real: two ranks on CPU with gloo (the fake GPUs
 * only reserve slots; there is no CUDA here). Needs a Python with torch (Debian's python3-torch, which .ci/run
 * installs); without one these tests are skipped and say so.
 */
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobView } from '@tutti/client';
import { pidOf, closeLeavingNothingRunning, isEnded, isRunningWithPids, startTestServer, waitForJob } from './harness.ts';
import type { TestServer } from './harness.ts';

const EXAMPLE = fileURLToPath(new URL('../../../examples/ddp-torch/', import.meta.url));

function findTorchPython(): string | undefined {
  for (const candidate of ['/usr/bin/python3', 'python3']) {
    try {
      execFileSync(candidate, ['-c', 'import torch, torch.distributed as d; assert d.is_gloo_available()'], { stdio: 'ignore', timeout: 60_000 });
      return candidate;
    } catch {
      // not this one
    }
  }
  return undefined;
}

const PYTHON = findTorchPython();
if (!PYTHON) console.warn('[skipped] examples/ddp-torch tests: no python3 with torch (apt-get install python3-torch)');

let t: TestServer | undefined;
afterEach(async () => {
  await closeLeavingNothingRunning(t);
  t = undefined;
});

const job = (name: string, env: Record<string, string>, extra: Record<string, unknown> = {}) => ({
  name,
  resources: { gpus: 2 },
  run: [PYTHON, 'train.py'],
  workdir: EXAMPLE,
  env: { STEPS: '60', CHECKPOINT_EVERY: '20', ...env },
  max_restarts: 1,
  restart_backoff: '0s',
  ...extra,
});

const rankLog = (dataDir: string, id: string, attempt: number, rank = 0) => `${dataDir}/jobs/${id}/attempt-${attempt}/rank-${rank}.log`;
const lastLine = async (file: string) => (await readFile(file, 'utf8')).trim().split('\n').at(-1) ?? '';

async function waitForStep(client: TestServer['client'], id: string, atLeast: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { records } = await client.getJobMetrics(id, { last: 1 });
    if ((records[0]?.step ?? 0) >= atLeast) return;
    if (Date.now() > deadline) throw new Error(`job ${id} never reached step ${atLeast}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe.skipIf(!PYTHON)('examples/ddp-torch through tutti (PyTorch DDP on CPU, gloo; fake GPUs)', () => {
  it('trains, checkpoints and reports progress; killed mid-run, the gang resumes from a checkpoint and ends with the same weights', async () => {
    t = await startTestServer({ fakeGpus: '2' });
    const clean = await t.client.submitJob(job('torch-clean', {}));
    const cleanDone = await waitForJob(t.client, clean.id, isEnded, 120_000);
    expect(cleanDone.status).toBe('succeeded');
    const expected = await lastLine(rankLog(t.dataDir, clean.id, 1));
    expect(expected).toMatch(/^final weights digest: [0-9a-f]{16}$/);
    const records = (await t.client.getJobMetrics(clean.id)).records;
    expect(records.some((r) => r.loss !== null && typeof r.values.samples_per_s === 'number')).toBe(true);
    expect(cleanDone.last_checkpoint).toMatch(/step-000060\.pt$/);

    const killed = await t.client.submitJob(job('torch-killed', { STEP_MS: '40' }));
    await waitForJob(t.client, killed.id, isRunningWithPids, 60_000);
    await waitForStep(t.client, killed.id, 30);
    const running: JobView = await t.client.getJob(killed.id);
    const victimTask = running.tasks?.find((task) => task.rank === 1);
    const victim = victimTask && pidOf(victimTask);
    process.kill(-victim!, 'SIGKILL');
    const done = await waitForJob(t.client, killed.id, isEnded, 120_000);
    expect(done.status).toBe('succeeded');
    expect(done.attempts?.map((a) => a.attempt)).toEqual([1, 2]);
    expect(await readFile(rankLog(t.dataDir, killed.id, 2), 'utf8')).toMatch(/resuming from .*step-0000[24]0\.pt/);
    expect(await lastLine(rankLog(t.dataDir, killed.id, 2))).toBe(expected);
  }, 240_000);

  it('on cancel, every rank stops after the same step and rank 0 checkpoints within the grace period', async () => {
    t = await startTestServer({ fakeGpus: '2' });
    const long = await t.client.submitJob(job('torch-cancel', { STEPS: '100000', STEP_MS: '20', CHECKPOINT_EVERY: '100000' }, { preemption_grace: '30s' }));
    await waitForJob(t.client, long.id, isRunningWithPids, 60_000);
    await waitForStep(t.client, long.id, 10);
    await t.client.cancelJob(long.id);
    const done = await waitForJob(t.client, long.id, isEnded, 60_000);
    expect(done.status).toBe('cancelled');
    const log = await readFile(rankLog(t.dataDir, long.id, 1), 'utf8');
    expect(log).toMatch(/received SIGTERM: stopping after step \d+/);
    expect(log).toMatch(/checkpoint .*step-\d+\.pt \(stop signal SIGTERM\)/);
    expect(done.last_checkpoint).toMatch(/step-\d+\.pt$/);
    // Both ranks exited 0: they stopped together rather than one dying in a collective.
    expect(done.tasks?.map((task) => task.exit_code)).toEqual([0, 0]);
  }, 120_000);
});
