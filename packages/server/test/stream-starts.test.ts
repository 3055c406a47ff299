/**
 * How the two streaming routes start, over real HTTP: a log follow answers its headers at once even while the job
 * waits for GPUs (a client then knows its request was taken), and an event stream opened with an empty
 * Last-Event-ID starts from now instead of replaying the whole history.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeLeavingNothingRunning, isEnded, startTestServer, touch, waitForFileThenExit, waitForJob } from './harness.ts';
import type { TestServer } from './harness.ts';

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await closeLeavingNothingRunning(t);
});

describe('log follow', () => {
  it('answers headers while the job is still pending, then streams its output once it runs', async () => {
    const release = path.join(t.scratch, 'release-holder');
    const holder = await t.client.submitJob({ name: 'holder', resources: { gpus: 4 }, run: waitForFileThenExit(release) });
    await waitForJob(t.client, holder.id, (job) => job.status === 'running');
    const waiting = await t.client.submitJob({ name: 'waiting', resources: { gpus: 1 }, run: ['/bin/sh', '-c', 'echo hello from the waiting job'] });

    const response = await fetch(`${t.server.url}/v1/jobs/${waiting.id}/logs?follow=true`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
    // The headers came while the job could not start: the holder keeps every GPU until released below.
    expect((await t.client.getJob(waiting.id)).status).toBe('pending');

    await touch(release);
    expect(await response.text()).toBe('hello from the waiting job\n');
    expect((await waitForJob(t.client, waiting.id, isEnded)).status).toBe('succeeded');
  });
});

/** Reads SSE frames from a response until `until` returns true for one; returns the frames read. */
async function readEvents(response: Response, until: (event: { type: string; job_id: string }) => boolean): Promise<{ type: string; job_id: string }[]> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const events: { type: string; job_id: string }[] = [];
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return events;
    buffer += decoder.decode(value, { stream: true });
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const data = buffer.slice(0, end).split('\n').find((line) => line.startsWith('data:'));
      buffer = buffer.slice(end + 2);
      if (!data) continue;
      const event = JSON.parse(data.slice(5)) as { type: string; job_id: string };
      events.push(event);
      if (until(event)) {
        await reader.cancel();
        return events;
      }
    }
  }
}

describe('event stream', () => {
  it('starts from now when Last-Event-ID is empty', async () => {
    const earlier = await t.client.submitJob({ name: 'earlier', resources: { gpus: 1 }, run: ['/bin/true'] });
    await waitForJob(t.client, earlier.id, isEnded);

    const response = await fetch(`${t.server.url}/v1/events`, { headers: { accept: 'text/event-stream', 'last-event-id': '' } });
    expect(response.status).toBe(200);
    const later = await t.client.submitJob({ name: 'later', resources: { gpus: 1 }, run: ['/bin/true'] });
    const events = await readEvents(response, (event) => event.job_id === later.id);
    expect(events.filter((event) => event.job_id !== later.id)).toEqual([]);
  });

  it('still resumes after a numeric Last-Event-ID', async () => {
    const response = await fetch(`${t.server.url}/v1/events`, { headers: { accept: 'text/event-stream', 'last-event-id': '0' } });
    const events = await readEvents(response, (event) => event.type === 'submitted');
    expect(events[0]?.job_id).toBe('1');
  });
});
