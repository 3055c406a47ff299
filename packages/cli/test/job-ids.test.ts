/**
 * Something that is not a job id, where one belongs: the CLI says what an id looks like and where to find one
 * (before asking any server), and so does the API's 400, instead of quoting its schema's regular expression.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError } from '@tutti/client';
import { startTestServer } from '../../server/test/harness.ts';
import type { TestServer } from '../../server/test/harness.ts';
import { runTutti } from './run-cli.ts';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.close();
});

describe('a bad job id', () => {
  it('is a usage error of the CLI that says what a job id looks like, for every command that takes one', async () => {
    for (const args of [['show', 'abc'], ['why', 'job-7'], ['metrics', '7x'], ['logs', ''], ['cancel', '-3']]) {
      const run = await runTutti([...args, '--server', t.server.url]);
      expect({ args, code: run.code }).toEqual({ args, code: 2 });
      expect(run.stderr).toContain(`job id must be a number like 42, got '${args[1]}'`);
      expect(run.stderr).toContain('`tutti ps --all` lists the jobs');
      expect(run.stderr).not.toMatch(/pattern|\^\[0-9\]/);
    }
  });

  it('gets a 400 from the API that says what a job id looks like', async () => {
    const error = await t.client.getJob('abc').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).status).toBe(400);
    expect((error as ApiError).message).toContain("job id must be a number like 42, got 'abc'");
    expect((error as ApiError).message).not.toMatch(/pattern|\^\[0-9\]/);

    const events = await fetch(`${t.server.url}/v1/events?job=seven`);
    expect(events.status).toBe(400);
    const body = (await events.json()) as { error: { message: string; fields: Array<{ path: string; message: string }> } };
    expect(body.error.fields).toEqual([{ path: 'querystring.job', message: expect.stringContaining("job id must be a number like 42, got 'seven'") }]);
  });
});
