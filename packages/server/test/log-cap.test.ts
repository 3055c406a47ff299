/**
 * Rank logs are capped (`tutti up --max-log-bytes`): a job that prints far more than the cap ends with a log no
 * larger than the cap, which starts with a marker saying how much was dropped and ends with the job's newest
 * output, and the job's events say that its log was trimmed. A real server, a real rank writing to its log.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pidOf, closeLeavingNothingRunning, isEnded, nodeScript, startTestServer, touch, waitForJob } from './harness.ts';
import type { TestServer } from './harness.ts';

const CAP = 64 * 1024;
const LINES = 40_000;
const LINE_BYTES = 61; // "line 00000 " + 49 dots + "\n"

describe('rank log cap', () => {
  let t: TestServer | undefined;
  afterAll(async () => {
    await closeLeavingNothingRunning(t);
  });

  it('keeps a chatty job\'s log within the cap, with a marker line and the newest output', async () => {
    t = await startTestServer({ maxLogBytes: CAP });
    const release = path.join(t.scratch, 'release');
    // Prints ~2.4 MB (37 times the cap) in bursts, waits until released (so trims happen while it runs), then
    // prints its last lines, among them a progress record.
    const job = await t.client.submitJob({
      name: 'chatty',
      resources: { gpus: 0 },
      run: nodeScript(
        `const fs=require('fs');let i=0;` +
          `function burst(){for(let k=0;k<2000&&i<${LINES};k++,i++)fs.writeSync(1,'line '+String(i).padStart(5,'0')+' '+'.'.repeat(49)+'\\n');` +
          `if(i<${LINES})setTimeout(burst,20);else wait()}` +
          `function wait(){if(fs.existsSync(process.argv[1])){console.log(JSON.stringify({tutti:{step:7}}));console.log('the last line');process.exit(0)}setTimeout(wait,25)}` +
          `burst()`,
        release,
      ),
    });
    // Wait for all the output, then let the job end.
    const running = await waitForJob(t.client, job.id, (j) => j.status === 'running' && (j.tasks ?? []).length > 0 && pidOf(j.tasks![0]!) !== null);
    const logPath = path.join(t.dataDir, 'jobs', job.id, `attempt-${running.attempt ?? 1}`, 'rank-0.log');
    const events = async () => (await t!.client.listJobEvents(job.id)).events;
    while (!(await events()).some((e) => e.type === 'log_trimmed')) await new Promise((r) => setTimeout(r, 50));
    await touch(release);
    const ended = await waitForJob(t.client, job.id, isEnded);
    expect(ended.status).toBe('succeeded');

    let text = '';
    for await (const chunk of t.client.logs(job.id, { rank: 0 })) text += chunk;
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(CAP);
    expect(statSync(logPath).size).toBeLessThanOrEqual(CAP);
    const lines = text.split('\n');
    const marker = /^\[tutti: (\d+) bytes of earlier output dropped: log cap 64 KiB\]$/.exec(lines[0]!);
    expect(marker, lines[0]).not.toBeNull();
    const dropped = Number(marker![1]);
    expect(dropped).toBeGreaterThan(LINES * LINE_BYTES - CAP);
    // The newest output is kept whole: complete lines after the marker, ending with the job's last words.
    expect(lines.slice(1, -3).every((line) => /^line \d{5} \.{49}$/.test(line))).toBe(true);
    expect(lines.at(-2)).toBe('the last line');
    expect(lines.at(-4)).toBe(`line ${String(LINES - 1).padStart(5, '0')} ${'.'.repeat(49)}`);

    const trims = (await events()).filter((e) => e.type === 'log_trimmed');
    expect(trims[0]!.message).toMatch(/^rank 0's log passed the log cap of 64 KiB: \d+ bytes of its oldest output dropped/);
    // The progress record printed after the trims was still read.
    expect((await t.client.getJobMetrics(job.id)).records.map((r) => r.step)).toContain(7);
  }, 60_000);
});
