/**
 * GPU metrics and per-job tokens, end to end through a real server and real ranks. This machine has no GPU: the
 * "real GPU" case runs the local backend's nvidia-smi path against a script that replays output recorded on an
 * 8×H100 box (packages/backends/test/fixtures/nvidia-smi), which is the only part that is not real.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { closeLeavingNothingRunning, isEnded, isRunningWithPids, nodeScript, startTestServer, touch, waitForFileThenExit, waitForJob } from './harness.ts';
import type { TestServer } from './harness.ts';

const FIXTURES = fileURLToPath(new URL('../../backends/test/fixtures/nvidia-smi/', import.meta.url));

let t: TestServer | undefined;
afterEach(async () => {
  await closeLeavingNothingRunning(t);
  t = undefined;
});

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('GPU metrics', () => {
  it('samples each GPU, attributes the samples to the job holding it, and reports its energy (nvidia-smi replaying an 8×H100 recording: no GPU here)', async () => {
    const scratchScript = path.join(process.env.TMPDIR ?? '/tmp', `tutti-nvidia-smi-${process.pid}-${Date.now()}`);
    await writeFile(scratchScript, [
      '#!/bin/sh',
      `case "$1" in topo) cat '${FIXTURES}h100-sxm-8x.topo-m.txt';; --query-gpu=index,uuid,name,*) cat '${FIXTURES}h100-sxm-8x.query-gpu.csv';; *) cat '${FIXTURES}h100-sxm-8x.query-metrics.csv';; esac`,
    ].join('\n'), { mode: 0o755 });
    t = await startTestServer({ fakeGpus: undefined, nvidiaSmi: scratchScript, gpuSampleMs: 100 });
    expect(t.server.inventory[0]?.gpus.map((g) => g.type)).toEqual(['H100', 'H100', 'H100', 'H100', 'H100', 'H100', 'H100', 'H100']);

    const release = path.join(t.scratch, 'release');
    const job = await t.client.submitJob({ name: 'four-gpus', resources: { gpus: 4 }, run: waitForFileThenExit(release) });
    const running = await waitForJob(t.client, job.id, isRunningWithPids);
    const held = [...new Set((running.tasks ?? []).flatMap((task) => task.gpus))].sort();
    expect(held).toHaveLength(4);

    const samples = await until('two rounds of samples of the job\'s GPUs', async () => {
      const { samples } = await t!.client.getJson<{ samples: Array<{ gpuIndex: number; powerW: number | null; utilizationPct: number | null; at: string }> }>(`/v1/jobs/${job.id}/gpu-metrics`);
      return new Set(samples.map((s) => s.at)).size >= 2 ? samples : undefined;
    });
    // Only the GPUs the job holds are attributed to it, with the figures nvidia-smi printed for them.
    expect([...new Set(samples.map((s) => s.gpuIndex))].sort()).toEqual(held);
    const recordedPower = [688.41, 671.02, 690.55, 664.87, 69.74, 70.12, 68.9, 71.38];
    for (const sample of samples) expect(sample.powerW).toBe(recordedPower[sample.gpuIndex]);

    const nodes = await t.client.listNodes();
    const gpu0 = nodes.nodes[0]?.gpus.find((g) => g.index === 0);
    expect(gpu0?.metrics).toMatchObject({ utilization_pct: 100, power_w: 688.41, temperature_c: 64 });

    const metricsText = await (await fetch(`${t.server.url}/metrics`)).text();
    expect(metricsText).toMatch(new RegExp(`tutti_gpu_power_watts\\{node="[^"]+",gpu="${held[0]}",job_id="${job.id}"\\} ${recordedPower[held[0]!]}`));
    expect(metricsText).toMatch(/tutti_gpu_utilization_ratio\{node="[^"]+",gpu="0",job_id="[^"]*"\} 1\b/);

    await touch(release);
    const done = await waitForJob(t.client, job.id, isEnded);
    expect(done.status).toBe('succeeded');
    const detail = await t.client.getJob(job.id);
    // Four GPUs for the time it ran (each GPU counted once, though every rank lists all four).
    const heldMs = Date.parse(detail.finished_at!) - Date.parse(detail.started_at!);
    expect(detail.usage?.gpu_hours).toBeCloseTo((4 * heldMs) / 3_600_000, 6);
    // Energy is what its samples drew: Σ power × interval, so at least one sample's worth of its GPUs' draw.
    expect(detail.usage?.energy_wh).toBeGreaterThan(0);
  });

  it('invents no GPU figures on fake GPUs', async () => {
    t = await startTestServer({ fakeGpus: '2', gpuSampleMs: 50 });
    const job = await t.client.submitJob({ name: 'fake', resources: { gpus: 1 }, run: nodeScript('setTimeout(() => {}, 300)') });
    await waitForJob(t.client, job.id, isEnded);
    const { samples } = await t.client.getJson<{ samples: unknown[] }>(`/v1/jobs/${job.id}/gpu-metrics`);
    expect(samples).toEqual([]);
    const detail = await t.client.getJob(job.id);
    expect(detail.usage?.energy_wh).toBeNull();
    expect(detail.usage?.gpu_hours).toBeGreaterThan(0);
    expect((await t.client.listNodes()).nodes[0]?.gpus.every((g) => g.metrics === null)).toBe(true);
    expect(await (await fetch(`${t.server.url}/metrics`)).text()).not.toMatch(/^tutti_gpu_power_watts\{/m);
  });
});

describe('hang detection on GPUs', () => {
  it('declares a job hung when all its GPUs stay idle while its processes live, even though it prints progress (nvidia-smi replay: no GPU here)', async () => {
    const script = path.join(process.env.TMPDIR ?? '/tmp', `tutti-nvidia-smi-idle-${process.pid}-${Date.now()}`);
    const idle = Array.from({ length: 8 }, (_, i) => `${i}, GPU-idle-${i}, 0, 1, 81559, 69.5, 30`).join('\n');
    await writeFile(script, [
      '#!/bin/sh',
      `case "$1" in topo) cat '${FIXTURES}h100-sxm-8x.topo-m.txt';; --query-gpu=index,uuid,name,*) cat '${FIXTURES}h100-sxm-8x.query-gpu.csv';; *) printf '%s\\n' '${idle.replace(/\n/g, "' '")}';; esac`,
    ].join('\n'), { mode: 0o755 });
    t = await startTestServer({ fakeGpus: undefined, nvidiaSmi: script, gpuSampleMs: 100 });
    // Prints a progress record every 100 ms, so only the GPUs' idleness can call it hung.
    const chatty = nodeScript('let step = 0; setInterval(() => console.log(JSON.stringify({ tutti: { step: step++ } })), 100);');
    const job = await t.client.submitJob({ name: 'idle-gpus', resources: { gpus: 2 }, run: chatty, hang_timeout: '1s', max_restarts: 0 });
    const done = await waitForJob(t.client, job.id, isEnded, 20_000);
    expect(done.status).toBe('failed');
    const events = (await t.client.listJobEvents(job.id)).events;
    expect(events.find((e) => e.type === 'hung')?.message).toMatch(/every GPU of the job idle \(0% utilization\) for 1s/);
    expect((await t.client.getJobMetrics(job.id)).records.length).toBeGreaterThan(3);
  });
});

/** A rank that posts one progress record for its own job and one for `OTHER_JOB`, and prints the statuses. */
const POSTER = `
const post = async (id, token) => (await fetch(process.env.TUTTI_API_URL + '/v1/jobs/' + id + '/progress?rank=' + process.env.RANK, {
  method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: 'Bearer ' + token } : {}) },
  body: JSON.stringify({ tutti: { step: 7, loss: 0.5, samples_per_s: 910 } }),
})).status;
(async () => {
  console.log('own=' + await post(process.env.TUTTI_JOB_ID, process.env.TUTTI_JOB_TOKEN));
  console.log('other=' + await post(process.env.OTHER_JOB, process.env.TUTTI_JOB_TOKEN));
  console.log('none=' + await post(process.env.TUTTI_JOB_ID, ''));
  const fs = require('fs'); (function w() { if (fs.existsSync(process.env.RELEASE)) process.exit(0); setTimeout(w, 25); })();
})();
`;

describe('per-job token (TUTTI_JOB_TOKEN)', () => {
  it('lets a job post progress for itself only', async () => {
    t = await startTestServer({ fakeGpus: '2' });
    const release = path.join(t.scratch, 'release');
    const other = await t.client.submitJob({ name: 'other', resources: { gpus: 1 }, run: waitForFileThenExit(release) });
    await waitForJob(t.client, other.id, isRunningWithPids);
    const poster = await t.client.submitJob({ name: 'poster', resources: { gpus: 1 }, env: { OTHER_JOB: other.id, RELEASE: release }, run: nodeScript(POSTER) });
    await waitForJob(t.client, poster.id, isRunningWithPids);

    const log = path.join(t.dataDir, 'jobs', poster.id, 'attempt-1', 'rank-0.log');
    const { readFile } = await import('node:fs/promises');
    const statuses = await until('the poster to print its three statuses', async () => {
      const text = await readFile(log, 'utf8').catch(() => '');
      return /none=\d+/.test(text) ? text : undefined;
    });
    expect(statuses).toMatch(/own=202/);
    expect(statuses).toMatch(/other=403/);
    expect(statuses).toMatch(/none=401/);

    const mine = await t.client.getJobMetrics(poster.id);
    expect(mine.records.map((r) => [r.step, r.loss, r.values.samples_per_s])).toEqual([[7, 0.5, 910]]);
    expect((await t.client.getJobMetrics(other.id)).records).toEqual([]);
    await touch(release);
    await waitForJob(t.client, poster.id, isEnded);
  });

  it('rejects a malformed record with the field named, and a post for a job that is not running', async () => {
    t = await startTestServer({ fakeGpus: '1' });
    const job = await t.client.submitJob({ name: 'quick', resources: { gpus: 1 }, run: nodeScript('') });
    await waitForJob(t.client, job.id, isEnded);
    const tokens = await import('../src/job-tokens.ts').then((m) => m.JobTokens.open(t!.dataDir));
    const post = (body: unknown) => fetch(`${t!.server.url}/v1/jobs/${job.id}/progress`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${tokens.tokenFor(job.id)}` }, body: JSON.stringify(body),
    });
    const bad = await post({ tutti: { step: -1, loss: [1] } });
    expect(bad.status).toBe(400);
    const badBody = (await bad.json()) as { error: { fields: Array<{ path: string }> } };
    expect(badBody.error.fields.map((f) => f.path).sort()).toEqual(['body.tutti.loss', 'body.tutti.step']);
    const ended = await post({ tutti: { step: 1 } });
    expect(ended.status).toBe(409);
    expect(((await ended.json()) as { error: { message: string } }).error.message).toMatch(/is not running/);
  });
});
