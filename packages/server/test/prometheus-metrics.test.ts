/**
 * `/metrics` of a real server (fake GPUs, a running job, a fractional one) read by a strict parser of Prometheus's
 * text exposition format, then checked against Prometheus's naming conventions: counters end in `_total`, nothing
 * else does, and the process metrics every scraper expects are there.
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { closeLeavingNothingRunning, isRunningWithPids, startTestServer, touch, waitForFileThenExit, waitForJob } from './harness.ts';
import type { TestServer } from './harness.ts';

type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Family {
  name: string;
  type: MetricType;
  help: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * Parses the text exposition format (version 0.0.4) strictly: every line is a HELP, a TYPE or a sample; a family's
 * TYPE comes once, before its samples, and its samples are contiguous; sample names belong to the family (with the
 * `_bucket`/`_sum`/`_count` suffixes only for histograms); label values are quoted and escaped; values are floats.
 * Throws with the line number on anything else.
 */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  if (!text.endsWith('\n')) throw new Error('the exposition must end with a newline');
  let current: Family | undefined;
  const closed = new Set<string>();
  const familyOf = (sampleName: string): Family | undefined => {
    for (const candidate of [sampleName, sampleName.replace(/_(bucket|sum|count)$/, '')]) {
      const family = families.get(candidate);
      if (family && (candidate === sampleName || family.type === 'histogram' || family.type === 'summary')) return family;
    }
    return undefined;
  };
  text
    .slice(0, -1)
    .split('\n')
    .forEach((line, i) => {
      const fail = (why: string): never => {
        throw new Error(`line ${i + 1}: ${why}: ${line}`);
      };
      if (line === '') fail('empty line');
      const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (meta) {
        const [, kind, name, rest] = meta as unknown as [string, string, string, string];
        if (!NAME.test(name)) fail('invalid metric name');
        if (current && current.name !== name) closed.add(current.name);
        if (closed.has(name)) fail('family declared again after other families');
        let family = families.get(name);
        if (!family) families.set(name, (family = { name, type: 'untyped', help: '', samples: [] }));
        current = family;
        if (kind === 'TYPE') {
          if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest)) fail('unknown type');
          if (family.samples.length > 0) fail('TYPE after samples');
          family.type = rest as MetricType;
        } else family.help = rest;
        return;
      }
      if (line.startsWith('#')) fail('a comment that is neither HELP nor TYPE');
      const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
      if (!sample) fail('not a sample line');
      const [, name, , labelText, valueText] = sample as unknown as [string, string, string | undefined, string | undefined, string];
      const family = familyOf(name);
      if (!family) return fail('sample of a family without HELP/TYPE');
      if (family !== current) fail('samples of a family are not contiguous');
      const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : valueText === 'NaN' ? NaN : Number(valueText);
      if (Number.isNaN(value) && valueText !== 'NaN') fail('value is not a number');
      const labels: Record<string, string> = {};
      if (labelText !== undefined && labelText !== '') {
        const pair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
        let at = 0;
        while (at < labelText.length) {
          pair.lastIndex = at;
          const match = pair.exec(labelText);
          if (!match) fail('malformed labels');
          const [whole, labelName, raw] = match as unknown as [string, string, string];
          if (!LABEL_NAME.test(labelName) || labelName in labels) fail('bad or repeated label name');
          labels[labelName] = raw.replace(/\\(.)/g, (_m, c: string) => (c === 'n' ? '\n' : c));
          at += whole.length;
        }
      }
      family.samples.push({ name, labels, value });
    });
  return families;
}

let t: TestServer | undefined;
afterEach(async () => {
  await closeLeavingNothingRunning(t);
  t = undefined;
});

describe('/metrics', () => {
  it('is valid exposition text named by the conventions, with the process metrics', async () => {
    t = await startTestServer();
    const whole = await t.client.submitJob({ name: 'whole', resources: { gpus: 2 }, run: waitForFileThenExit(path.join(t.scratch, 'release')) });
    const halfA = await t.client.submitJob({ name: 'half-a', resources: { gpus: 0.5 }, run: waitForFileThenExit(path.join(t.scratch, 'release')) });
    const halfB = await t.client.submitJob({ name: 'half-b', resources: { gpus: 0.5 }, run: waitForFileThenExit(path.join(t.scratch, 'release')) });
    for (const job of [whole, halfA, halfB]) await waitForJob(t.client, job.id, isRunningWithPids);

    const response = await fetch(`${t.server.url}/metrics`);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
    const families = parseExposition(await response.text());

    for (const family of families.values()) {
      expect(family.help, `${family.name} has HELP`).not.toBe('');
      expect(family.type, `${family.name} has a TYPE`).not.toBe('untyped');
      if (family.type === 'counter') expect(family.name, 'a counter ends in _total').toMatch(/_total$/);
      else expect(family.name, `a ${family.type} does not end in _total`).not.toMatch(/_total$/);
    }
    // The default process and runtime metrics, under the names other Node services export.
    for (const [name, type] of [
      ['process_cpu_seconds_total', 'counter'],
      ['process_cpu_user_seconds_total', 'counter'],
      ['process_resident_memory_bytes', 'gauge'],
      ['process_start_time_seconds', 'gauge'],
      ['nodejs_eventloop_lag_p99_seconds', 'gauge'],
      ['nodejs_heap_size_used_bytes', 'gauge'],
    ] as const) {
      expect(families.get(name)?.type, name).toBe(type);
    }
    const value = (name: string, labels: Record<string, string> = {}): number | undefined =>
      families.get(name)?.samples.find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
    expect(value('process_resident_memory_bytes')).toBeGreaterThan(1024 * 1024);
    const startedAt = value('process_start_time_seconds')!;
    expect(startedAt).toBeLessThanOrEqual(Date.now() / 1000);
    expect(startedAt).toBeGreaterThan(Date.now() / 1000 - 24 * 3600);

    // The inventory gauge, and the GPUs by state: two whole GPUs and one GPU shared by two halves are 3 GPUs.
    expect(value('tutti_gpu_capacity')).toBe(4);
    expect(value('tutti_gpus', { state: 'allocated' })).toBe(3);
    expect(value('tutti_gpus', { state: 'free' })).toBe(1);
    expect(value('tutti_job_submissions_total')).toBe(3);
    expect(value('tutti_jobs', { status: 'running' })).toBe(3);
    await touch(path.join(t.scratch, 'release'));
  });
});
