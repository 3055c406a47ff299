/**
 * The OpenAPI document at /docs/json, as a client generator sees it: valid OpenAPI 3.1 for a real validator, every
 * operation named and typed, TypeScript generated from it (openapi-typescript) equal to the client's wire types, and
 * the bodies the routes really send described by it — with nothing dropped by Fastify's schema serialisation.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import openapiTS, { astToString } from 'openapi-typescript';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobTokens } from '../src/job-tokens.ts';
import { toEventView, toJobView, toNodeViews, toProgressView } from '../src/views.ts';
import { closeLeavingNothingRunning, isEnded, isRunningWithPids, nodeScript, startTestServer, waitForFileThenExit, waitForJob } from './harness.ts';
import type { TestServer } from './harness.ts';

interface MediaType {
  schema?: Record<string, unknown>;
}
interface Operation {
  operationId?: string;
  tags?: string[];
  requestBody?: { content: Record<string, MediaType> };
  responses: Record<string, { description: string; content?: Record<string, MediaType> }>;
}
interface OpenApiDocument {
  openapi: string;
  tags?: { name: string }[];
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Record<string, unknown>> };
}

const repoRoot = fileURLToPath(new URL('../../..', import.meta.url));
let t: TestServer;
let doc: OpenApiDocument;

beforeAll(async () => {
  t = await startTestServer();
  const response = await fetch(`${t.server.url}/docs/json`);
  expect(response.status).toBe(200);
  doc = (await response.json()) as OpenApiDocument;
});
afterAll(() => closeLeavingNothingRunning(t));

function operations(): { method: string; route: string; operation: Operation }[] {
  return Object.entries(doc.paths).flatMap(([route, methods]) => Object.entries(methods).map(([method, operation]) => ({ method, route, operation })));
}

/** The document's `#/components/schemas/X` refs as absolute ids, so each schema compiles on its own. */
const COMPONENTS = 'https://tutti.invalid/components/schemas/';
function withAbsoluteRefs<T>(value: T): T {
  return JSON.parse(JSON.stringify(value).replaceAll('"#/components/schemas/', `"${COMPONENTS}`)) as T;
}

/**
 * JSON Schema 2020-12 in Ajv's strict mode (unknown keywords and formats, keywords that cannot apply are errors),
 * plus the OpenAPI 3.1 dialect's keywords. `required` inside an anyOf branch is valid JSON Schema (JobSpec's
 * "count or fraction"), so only that style rule is off.
 */
function strictJsonSchema2020(): Ajv2020 {
  const ajv = new Ajv2020({ strict: true, strictRequired: false, allowUnionTypes: true, allErrors: true, formats: { 'date-time': (s: string) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(s) && !Number.isNaN(Date.parse(s)) } });
  for (const keyword of ['discriminator', 'xml', 'externalDocs', 'example']) ajv.addKeyword(keyword);
  for (const [name, schema] of Object.entries(withAbsoluteRefs(doc.components.schemas))) ajv.addSchema(schema, `${COMPONENTS}${name}`);
  return ajv;
}

describe('the OpenAPI document at /docs', () => {
  it('is a valid OpenAPI 3.1 document: a real validator finds no error', async () => {
    expect(doc.openapi).toBe('3.1.0');
    const result = await new Validator().validate(doc as unknown as Record<string, unknown>);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
  });

  it('holds only valid JSON Schema 2020-12, components and inline schemas alike (strict: no OpenAPI 3.0 keyword left)', () => {
    const ajv = strictJsonSchema2020();
    for (const name of Object.keys(doc.components.schemas)) expect(() => ajv.getSchema(`${COMPONENTS}${name}`), name).not.toThrow();
    for (const { method, route, operation } of operations()) {
      const inline = [
        ...Object.values(operation.requestBody?.content ?? {}),
        ...Object.values(operation.responses).flatMap((response) => Object.values(response.content ?? {})),
        ...((operation as { parameters?: MediaType[] }).parameters ?? []),
      ];
      for (const media of inline) expect(() => ajv.compile(withAbsoluteRefs(media.schema ?? {})), `${method} ${route}`).not.toThrow();
    }
  });

  it('names and tags every operation and gives every status it answers a described body: JSON, the Error schema for 4xx/5xx, or text', () => {
    const ids = operations().map(({ operation }) => operation.operationId);
    expect(ids.every((id) => typeof id === 'string' && id.length > 0)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    const declaredTags = new Set(doc.tags?.map((tag) => tag.name));
    for (const { method, route, operation } of operations()) {
      const where = `${method} ${route}`;
      expect(operation.tags?.length, where).toBeGreaterThan(0);
      for (const tag of operation.tags ?? []) expect(declaredTags.has(tag), `${where}: tag ${tag}`).toBe(true);
      const statuses = Object.keys(operation.responses);
      expect(statuses.some((status) => status.startsWith('2')), where).toBe(true);
      expect(statuses, where).toContain('5XX');
      for (const [status, response] of Object.entries(operation.responses)) {
        expect(response.description, `${where} ${status}`).not.toBe('Default Response');
        const content = Object.entries(response.content ?? {});
        expect(content.length, `${where} ${status}`).toBeGreaterThan(0);
        for (const [mediaType, media] of content) {
          if (mediaType === 'application/json') {
            expect(media.schema?.$ref, `${where} ${status}`).toMatch(/^#\/components\/schemas\/\w+$/);
            if (!status.startsWith('2')) expect(media.schema?.$ref, `${where} ${status}`).toBe('#/components/schemas/Error');
          } else {
            expect(['text/plain', 'text/csv', 'text/event-stream'], where).toContain(mediaType);
            expect(media.schema, `${where} ${status}`).toMatchObject({ type: 'string' });
          }
        }
      }
    }
    for (const route of ['/v1/jobs', '/v1/jobs/validate']) {
      const body = doc.paths[route]!.post!.requestBody!.content;
      expect(body['application/json']?.schema).toEqual({ $ref: '#/components/schemas/JobSpec' });
      expect(body['application/yaml']?.schema).toEqual({ $ref: '#/components/schemas/JobSpec' });
    }
  });

  it("generates TypeScript types (openapi-typescript) that are exactly the client's wire types, operation by operation", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'tutti-openapi-'));
    try {
      await writeFile(path.join(dir, 'generated.ts'), astToString(await openapiTS(doc as never)));
      const client = (file: string) => JSON.stringify(path.join(repoRoot, 'packages/client/src', file));
      // Equal<A, B> holds only for identical types (optional fields and null included); the two assignments
      // besides it name the field at fault when it does not.
      const sameType = (name: string, generated: string, wire: string) =>
        `export const ${name}: Equal<${generated}, ${wire}> = true;\n` +
        `export const ${name}ToClient = (value: ${generated}): ${wire} => value;\n` +
        `export const ${name}FromClient = (value: ${wire}): ${generated} => value;\n`;
      const viaClient = (operationId: string, status: number) => [`${operationId}${status}`, `Json<'${operationId}', ${status}>`, `Awaited<ReturnType<TuttiClient['${operationId}']>>`] as const;
      const checks = [
        sameType('errorBody', `components['schemas']['Error']`, 'ErrorBody'),
        ...(
          [
            viaClient('health', 200),
            viaClient('readiness', 200),
            viaClient('submitJob', 201),
            viaClient('validateJob', 200),
            viaClient('listJobs', 200),
            viaClient('getJob', 200),
            viaClient('cancelJob', 202),
            viaClient('getJobMetrics', 200),
            viaClient('listJobEvents', 200),
            viaClient('listTeams', 200),
            viaClient('getClusterHistory', 200),
            viaClient('listNodes', 200),
          ] as const
        ).map(([name, generated, wire]) => sameType(name, generated, wire)),
        sameType('gpuMetricSamples', `Json<'getJobGpuMetrics', 200>['samples']`, 'GpuMetricSampleView[]'),
      ];
      await writeFile(
        path.join(dir, 'check.ts'),
        `import type { components, operations } from './generated.ts';\n` +
          `import type { ErrorBody, GpuMetricSampleView } from ${client('api-types.ts')};\n` +
          `import type { TuttiClient } from ${client('client.ts')};\n` +
          `type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;\n` +
          `type Json<Op extends keyof operations, Status extends keyof operations[Op]['responses']> = operations[Op]['responses'][Status] extends { content: { 'application/json': infer Body } } ? Body : never;\n` +
          checks.join(''),
      );
      const program = ts.createProgram([path.join(dir, 'check.ts')], {
        strict: true,
        noEmit: true,
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.ESNext,
        moduleResolution: ts.ModuleResolutionKind.Bundler,
        allowImportingTsExtensions: true,
        skipLibCheck: true,
        lib: ['lib.es2023.d.ts'],
        types: ['node'],
      });
      // The whole program, as `tsc --noEmit` checks it: asking for check.ts's diagnostics alone, before the client's
      // files are checked, misses some differences (TypeScript 5.9 relates the types in another order then).
      const problems = ts.getPreEmitDiagnostics(program).map((d) => `${d.file ? path.basename(d.file.fileName) : ''}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
      expect(problems).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('describes what the routes really send, and the schemas drop nothing the server built', async () => {
    const ajv = strictJsonSchema2020();
    const url = t.server.url;
    /** Fetches a route and checks its body against the schema the document gives for its status and media type. */
    const call = async (method: string, route: string, pathname: string, init: RequestInit = {}) => {
      const response = await fetch(`${url}${pathname}`, { method, ...init });
      const mediaType = (response.headers.get('content-type') ?? '').split(';')[0]!;
      const documented = doc.paths[route]?.[method.toLowerCase()]?.responses;
      const media = (documented?.[String(response.status)] ?? documented?.[`${String(response.status)[0]}XX`])?.content?.[mediaType];
      expect(media, `${method} ${pathname} answered ${response.status} ${mediaType}: not in the document`).toBeDefined();
      const body = mediaType === 'application/json' ? ((await response.json()) as unknown) : await response.text();
      const validate = ajv.compile(withAbsoluteRefs(media!.schema!));
      expect(validate(body) ? [] : validate.errors, `${method} ${pathname}`).toEqual([]);
      return body;
    };
    const recordProgress = 'console.log(JSON.stringify({tutti: {step: 3, loss: 0.25, checkpoint: "/ckpt/3", phase: "warmup", ok: true}}))';
    const done = (await call('POST', '/v1/jobs', '/v1/jobs', {
      headers: { 'content-type': 'application/json', 'tutti-user': 'ada' },
      body: JSON.stringify({ name: 'reports', team: 'vision', priority: 70, resources: { gpus: 1 }, env: { PHASE: 'warmup' }, max_restarts: 1, run: nodeScript(recordProgress) }),
    })) as { id: string };
    await waitForJob(t.client, done.id, isEnded);
    const shared = await t.client.submitJob({ name: 'shared', resources: { gpus: { count: 1, fraction: 0.5, memory: '1GB' } }, run: waitForFileThenExit(path.join(t.scratch, 'never')) });
    await waitForJob(t.client, shared.id, isRunningWithPids);

    const yaml = 'name: checked\nresources:\n  gpus: 2\nrun: [echo, hi]\n';
    await call('POST', '/v1/jobs/validate', '/v1/jobs/validate', { headers: { 'content-type': 'application/yaml' }, body: yaml });
    await call('POST', '/v1/jobs/validate', '/v1/jobs/validate', { headers: { 'content-type': 'application/yaml' }, body: 'name: Bad\nrun: true\n' });
    await call('POST', '/v1/jobs', '/v1/jobs', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'huge', resources: { gpus: 64 }, run: 'true' }) });
    await call('GET', '/healthz', '/healthz');
    await call('GET', '/readyz', '/readyz');
    await call('GET', '/metrics', '/metrics');
    await call('GET', '/v1/jobs', '/v1/jobs?limit=5');
    await call('GET', '/v1/jobs', '/v1/jobs?limit=5&view=full');
    await call('GET', '/v1/jobs', '/v1/jobs?limit=0');
    await call('GET', '/v1/jobs/{id}', '/v1/jobs/999999');
    await call('GET', '/v1/jobs/{id}/gpu-metrics', `/v1/jobs/${done.id}/gpu-metrics`);
    await call('POST', '/v1/jobs/{id}/progress', `/v1/jobs/${done.id}/progress`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tutti: { step: 1 } }) });
    await call('GET', '/v1/jobs/{id}/logs', `/v1/jobs/${done.id}/logs`);
    await call('GET', '/v1/export/history', '/v1/export/history');
    await call('GET', '/v1/teams', '/v1/teams');
    await call('GET', '/v1/cluster/history', '/v1/cluster/history');
    const stream = new AbortController();
    const events = await fetch(`${url}/v1/events`, { signal: stream.signal });
    expect(Object.keys(doc.paths['/v1/events']!.get!.responses[String(events.status)]!.content!)).toEqual([(events.headers.get('content-type') ?? '').split(';')[0]]);
    stream.abort();

    // The JSON on the wire is the view the server built, field for field: serialisation dropped nothing.
    const { store, controller } = t.server;
    const job = (await store.getJob(done.id))!;
    const [tasks, attempts, progress, energyWh] = await Promise.all([store.getTasks(done.id), store.listAttempts(done.id), store.listProgress(done.id, { last: 1 }), store.jobEnergyWh(done.id)]);
    const built = toJobView(job, tasks, controller.pendingDiagnosis(done.id), { attempts, progress: progress.at(-1), now: Date.now(), energyWh });
    const sent = await call('GET', '/v1/jobs/{id}', `/v1/jobs/${done.id}`);
    expect(built.progress?.values).toMatchObject({ phase: 'warmup', ok: true });
    expect(sent).toEqual(JSON.parse(JSON.stringify(built)));
    // A rank's backend details are open-ended (each backend names its own): the schema lets them through.
    expect((sent as { tasks: Array<{ backend: unknown }> }).tasks[0]?.backend).toEqual({ kind: 'local', details: { pid: expect.any(Number), host: expect.any(String) } });
    expect(await call('GET', '/v1/jobs/{id}/metrics', `/v1/jobs/${done.id}/metrics`)).toEqual({ job_id: done.id, records: (await store.listProgress(done.id, {})).map(toProgressView) });
    expect(await call('GET', '/v1/jobs/{id}/events', `/v1/jobs/${done.id}/events`)).toEqual(JSON.parse(JSON.stringify({ events: (await store.listEvents({ jobId: done.id, limit: 10_000 })).map(toEventView) })));
    const nodes = (await call('GET', '/v1/nodes', '/v1/nodes')) as { nodes: { gpus: { shares: unknown[] }[] }[] };
    expect(nodes.nodes.flatMap((node) => node.gpus).some((gpu) => gpu.shares.length > 0)).toBe(true);
    expect(nodes).toEqual({ nodes: toNodeViews(await store.snapshot()) });
    const token = (await JobTokens.open(t.dataDir)).tokenFor(shared.id);
    const values = { step: 9, loss: 0.125, phase: 'eval', ok: false };
    expect(await call('POST', '/v1/jobs/{id}/progress', `/v1/jobs/${shared.id}/progress`, { headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ tutti: values }) })).toEqual({ job_id: shared.id, recorded: values });
    expect(await call('POST', '/v1/jobs/{id}/cancel', `/v1/jobs/${shared.id}/cancel`)).toMatchObject({ id: shared.id, cancel_requested_at: expect.any(String) });
  });
});
