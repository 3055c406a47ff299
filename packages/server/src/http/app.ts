/** The REST API (`/v1`), health, metrics and OpenAPI docs. Handlers validate, call the controller or store, and map. */
import path from 'node:path';
import { Readable } from 'node:stream';
import Fastify from 'fastify';
import type { FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { SUBMITTER_ENVIRONMENT_VARIABLES, checkSubmitterEnvironment, withSubmitterEnvironment, describeUnknownTeam, isTeamAdmitted, JOB_ID_PATTERN, JOB_STATUSES, isTerminalJobStatus, parseJobSpecObject, processesPerNodeOf, resolveCheckpointDir, serializeJobSpec } from '@tutti/model';
import type { JobSpec, JobStatus, NodeInfo, TeamConfig } from '@tutti/model';
import { checkFeasibility } from '@tutti/scheduler';
import { InvalidCursorError, JOB_SORT_KEYS } from '@tutti/store';
import type { StateStore } from '@tutti/store';
import type { ExecutionBackend } from '@tutti/backends';
import type { ReplicaControl } from '../replica-control.ts';
import type { Leadership, LeadershipState } from '../leadership.ts';
import { renderLeadership } from '../metrics.ts';
import type { JobTokens } from '../job-tokens.ts';
import { checkProgressFields } from '../progress-tail.ts';
import type { EventFeed } from '../event-feed.ts';
import type { Logger } from '../logger.ts';
import type { ServerMetrics } from '../metrics.ts';
import { computeTeamViews, toEventView, toGpuMetricSampleView, toJobSummaryView, toJobView, toJobWithSpecView, toNodeViews, toProgressView } from '../views.ts';
import { HttpProblem, installErrorHandling } from './errors.ts';
import { API_SCHEMAS, API_TAGS, RESPONSES } from './api-schemas.ts';
import { streamHistoryTrace } from '../history-export.ts';
import { followLog } from './log-follow.ts';
import { resumePoint, serveEventStream } from './event-stream.ts';
import { registerDashboard } from './dashboard.ts';
import { registerRequestGuards } from './request-guards.ts';
import type { RequestGuardOptions } from './request-guards.ts';
import { registerBodyParsers } from './body-parsers.ts';
import { ParsedYamlSpec, YamlSpecParser } from './yaml-spec-parser.ts';
import type { BodyLimits } from './body-parsers.ts';
import type { ClusterHistory } from '../cluster-history.ts';

export interface HttpAppDeps {
  store: StateStore;
  /** The control plane as this replica sees it: its own term's controller while it leads, the store otherwise. */
  control: ReplicaControl;
  /** Who leads (always this server when it is alone on its store). */
  leadership: Leadership;
  /** Where rank logs are read (`readLog`): the server opens no rank's file itself. */
  backend: Pick<ExecutionBackend, 'readLog'>;
  feed: EventFeed;
  metrics: ServerMetrics;
  logger: Logger;
  /** The inventory used to reject jobs that can never fit. */
  inventory: () => readonly NodeInfo[];
  /** Teams and quotas from the configuration. */
  teams: readonly TeamConfig[];
  now: () => number;
  version: string;
  startedAt: number;
  /** Queue length and GPUs allocated over time, for the dashboard's charts. */
  history: ClusterHistory;
  /** The built web dashboard served at `/`; undefined: `/` says how to get it. */
  dashboardDir: string | undefined;
  /** Checks the TUTTI_JOB_TOKEN of progress posts. */
  jobTokens: JobTokens;
  /** While the data dir's disk is full (writes answer 507): what the store said, naming the file; else undefined. */
  diskFull: () => string | undefined;
  /** Which host names and web pages may use the API (see request-guards.ts). */
  browserSafety: Omit<RequestGuardOptions, 'maxBodyBytes'>;
  /** The largest and deepest body (a job spec) accepted. */
  bodyLimits: BodyLimits;
}

/**
 * Page caps of `GET /v1/jobs`: a page of summaries stays about a MiB; a page with specs (each up to the spec size
 * limit) is kept small enough to build without stalling the event loop.
 */
const MAX_JOB_SUMMARY_PAGE = 1000;
const MAX_FULL_JOB_PAGE = 100;
/** Jobs per store read of the history export: each read and its CSV take a few ms of the event loop, no more. */
const EXPORT_PAGE = 250;
const jobIdParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: JOB_ID_PATTERN, description: 'job id' } } } as const;

export async function buildHttpApp(deps: HttpAppDeps): Promise<FastifyInstance> {
  const { store, control, feed, metrics, logger, backend, leadership } = deps;
  const app = Fastify({ logger: false, bodyLimit: deps.bodyLimits.maxBytes, forceCloseConnections: true, ajv: { customOptions: { coerceTypes: true, allErrors: true, removeAdditional: false } } });
  installErrorHandling(app, logger);

  for (const schema of API_SCHEMAS) app.addSchema(schema);
  // Before the plugins: their routes (/docs) are guarded too.
  registerRequestGuards(app, { ...deps.browserSafety, maxBodyBytes: deps.bodyLimits.maxBytes });
  const yamlSpecs = new YamlSpecParser();
  app.addHook('onClose', async () => yamlSpecs.close());
  registerBodyParsers(app, deps.bodyLimits, yamlSpecs);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'tutti API', version: deps.version, description: 'Submit, watch and cancel gang-scheduled GPU jobs.' },
      tags: [...API_TAGS],
    },
    // Components are named by their $id (Job, Error, ...), not def-0, def-1: generated clients get readable types.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  app.get('/healthz', { schema: { summary: 'Liveness: the server answers and its store is open; whether it is still recovering, and whether its disk is full', operationId: 'health', tags: ['server'], response: RESPONSES.health } }, async () => ({
    status: 'ok',
    version: deps.version,
    uptime_s: Math.round((deps.now() - deps.startedAt) / 1000),
    recovering: control.recovering,
    disk_full: deps.diskFull() ?? null,
    role: leadership.state.role,
    replica: leadership.state.self,
    leader: toLeaderView(leadership.state),
  }));

  app.get('/readyz', { schema: { summary: 'Readiness, for a load balancer: the store answers and, on the leader, recovery is done', operationId: 'readiness', tags: ['server'], response: RESPONSES.readiness } }, async (_request, reply) => {
    const storeProblem = await store.countJobsByStatus().then(() => undefined, (error: unknown) => (error instanceof Error ? error.message : String(error)));
    if (storeProblem !== undefined) throw new HttpProblem('not_ready', `this replica cannot read its store: ${storeProblem}`);
    if (control.recovering) throw new HttpProblem('not_ready', 'this replica leads and is re-adopting the jobs that ran before; ready once that is done');
    return reply.status(200).send({ ready: true, role: leadership.state.role, store: 'ok', recovering: false, leader: toLeaderView(leadership.state) });
  });

  app.get('/metrics', { schema: { summary: 'Prometheus metrics', operationId: 'getPrometheusMetrics', tags: ['server'], response: RESPONSES.prometheus } }, async (_request, reply) => {
    const [counts, snapshot] = await Promise.all([store.countJobsByStatus(), store.snapshot()]);
    void reply.type('text/plain; version=0.0.4');
    return metrics.render(counts, snapshot, control.lastProgress(), control.latestGpuSamples()) + renderLeadership(leadership.state);
  });

  app.post(
    '/v1/jobs',
    {
      schema: {
        summary: 'Submit a job (JSON, or YAML with Content-Type: application/yaml)',
        operationId: 'submitJob',
        tags: ['jobs'],
        consumes: ['application/json', 'application/yaml'],
        body: { $ref: 'JobSpec#' } as never,
        response: RESPONSES.submitJob,
        headers: {
          type: 'object',
          properties: {
            'tutti-submit-dir': { type: 'string', description: 'absolute directory a relative workdir is resolved against (the CLI sends its cwd)' },
            'tutti-user': { type: 'string', description: 'who submits the job (the CLI sends the OS user name); letters, digits, . _ @ -' },
          },
        },
      },
      // The hand-written spec parser is the authority (it reports YAML lines and columns); the schema is for /docs.
      validatorCompiler: () => () => true,
    },
    async (request, reply) => {
      const spec = acceptableSpec(request.body, request.headers, deps.inventory(), deps.teams);
      const user = submittingUser(request.headers['tutti-user']);
      const job = await store.createJob(spec, deps.now(), user !== undefined ? { user } : {});
      metrics.countSubmission();
      feed.notify();
      control.enqueue(job);
      return reply.status(201).send(toJobView(job));
    },
  );

  app.post(
    '/v1/jobs/validate',
    {
      schema: {
        summary: 'Check a job spec as a submission would (parse, validate, fit), without submitting it',
        operationId: 'validateJob',
        tags: ['jobs'],
        consumes: ['application/json', 'application/yaml'],
        body: { $ref: 'JobSpec#' } as never,
        response: RESPONSES.validateJob,
        headers: { type: 'object', properties: { 'tutti-submit-dir': { type: 'string' } } },
      },
      validatorCompiler: () => () => true,
    },
    async (request) => {
      const spec = acceptableSpec(request.body, request.headers, deps.inventory(), deps.teams);
      return { valid: true, spec: serializeJobSpec(spec) };
    },
  );

  app.get(
    '/v1/jobs',
    {
      schema: {
        summary: 'List jobs, newest first, a page at a time',
        operationId: 'listJobs',
        tags: ['jobs'],
        response: RESPONSES.listJobs,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            status: { type: 'string', enum: [...JOB_STATUSES] },
            team: { type: 'string', maxLength: 63 },
            user: { type: 'string', pattern: '^[A-Za-z0-9._@-]{1,64}$', description: 'only jobs this user submitted' },
            name: { type: 'string', pattern: '^[a-z0-9-]{1,63}$', description: 'only jobs whose name contains this' },
            sort: { type: 'string', enum: [...JOB_SORT_KEYS], default: 'id', description: 'id is submission order' },
            order: { type: 'string', enum: ['asc', 'desc'], default: 'desc' },
            limit: { type: 'integer', minimum: 1, maximum: MAX_JOB_SUMMARY_PAGE, default: 50, description: `jobs per page: at most ${MAX_JOB_SUMMARY_PAGE}, or ${MAX_FULL_JOB_PAGE} with view=full` },
            cursor: { type: 'string', maxLength: 160 },
            view: { type: 'string', enum: ['summary', 'full'], default: 'summary', description: "summary: what a job list shows, without the spec; full: each job with its normalised spec (specs may be tens of KiB, hence the smaller page)" },
          },
        },
      },
      // The views are built field by field to the documented schema, so nothing needs dropping: JSON.stringify
      // writes a page of 1,000 (~0.5 MB) about ten times faster than the schema's compiled serializer.
      serializerCompiler: () => (data) => JSON.stringify(data),
    },
    async (request) => {
      const { name, sort, order, view, ...query } = request.query as { status?: JobStatus; team?: string; user?: string; name?: string; sort: (typeof JOB_SORT_KEYS)[number]; order: 'asc' | 'desc'; limit?: number; cursor?: string; view: 'summary' | 'full' };
      if (view === 'full' && (query.limit ?? 0) > MAX_FULL_JOB_PAGE) {
        throw new HttpProblem('invalid_request', `querystring.limit: at most ${MAX_FULL_JOB_PAGE} jobs a page with view=full (each carries its whole spec); ask for fewer, or leave out view=full for summaries (up to ${MAX_JOB_SUMMARY_PAGE} a page)`, [
          { path: 'querystring.limit', message: `must be <= ${MAX_FULL_JOB_PAGE} with view=full` },
        ]);
      }
      const pageQuery = { ...query, ...(name !== undefined ? { nameContains: name } : {}), sort: { by: sort, direction: order } };
      const refuseForeignCursor = (error: unknown): never => {
        if (error instanceof InvalidCursorError) throw new HttpProblem('invalid_request', `cursor: ${error.message}; pass the next_cursor of a previous page`, [{ path: 'querystring.cursor', message: 'not a cursor this server produced' }]);
        throw error;
      };
      if (view === 'full') {
        const page = await store.listJobs(pageQuery).catch(refuseForeignCursor);
        return { jobs: page.jobs.map((job) => toJobWithSpecView(job, control.pendingDiagnosis(job.id))), next_cursor: page.nextCursor ?? null };
      }
      const page = await store.listJobSummaries(pageQuery).catch(refuseForeignCursor);
      return { jobs: page.jobs.map((job) => toJobSummaryView(job, control.pendingDiagnosis(job.id))), next_cursor: page.nextCursor ?? null };
    },
  );

  app.get('/v1/jobs/:id', { schema: { summary: 'One job with its ranks, its attempts and its last progress record', operationId: 'getJob', tags: ['jobs'], params: jobIdParams, response: RESPONSES.getJob } }, async (request) => {
    const { id } = request.params as { id: string };
    const job = await requireJob(store, id);
    const [tasks, attempts, progress, energyWh] = await Promise.all([store.getTasks(id), store.listAttempts(id), store.listProgress(id, { last: 1 }), store.jobEnergyWh(id)]);
    return toJobView(job, tasks, control.pendingDiagnosis(id), { attempts, progress: progress.at(-1), now: deps.now(), energyWh });
  });

  app.get(
    '/v1/jobs/:id/gpu-metrics',
    {
      schema: {
        summary: 'GPU gauges (utilization, memory, power, temperature) sampled while the job held its GPUs, oldest first; none on fake GPUs',
        operationId: 'getJobGpuMetrics',
        tags: ['job data'],
        response: RESPONSES.getJobGpuMetrics,
        params: jobIdParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { since: { type: 'string', format: 'date-time', description: 'only samples taken at or after this time (ISO 8601)' }, limit: { type: 'integer', minimum: 1, maximum: 20000 } },
        },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const { since, limit } = request.query as { since?: string; limit?: number };
      await requireJob(store, id);
      const samples = await store.listGpuSamples(id, { ...(since !== undefined ? { since: Date.parse(since) } : {}), ...(limit !== undefined ? { limit } : {}) });
      return { job_id: id, samples: samples.map(toGpuMetricSampleView) };
    },
  );

  app.post(
    '/v1/jobs/:id/progress',
    {
      schema: {
        summary: "Report progress from inside a job: the record a rank may print on stdout, authorised by the job's TUTTI_JOB_TOKEN",
        operationId: 'reportJobProgress',
        tags: ['job data'],
        response: RESPONSES.reportJobProgress,
        params: jobIdParams,
        headers: { type: 'object', properties: { authorization: { type: 'string', description: 'Bearer <TUTTI_JOB_TOKEN>' } } },
        querystring: { type: 'object', additionalProperties: false, properties: { rank: { type: 'integer', minimum: 0, maximum: 1000000, description: 'the reporting rank (default 0)' } } },
        body: {
          type: 'object',
          required: ['tutti'],
          additionalProperties: false,
          properties: { tutti: { type: 'object', description: 'e.g. {"step": 120, "loss": 0.42, "samples_per_s": 910, "checkpoint": "/ckpt/step-120"}' } },
        },
      },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const token = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '')?.[1];
      if (token === undefined) throw new HttpProblem('unauthorized', 'missing job token: send "Authorization: Bearer $TUTTI_JOB_TOKEN" (the token tutti gives the job\'s ranks)');
      // The token is checked before the job's existence, so a wrong token learns nothing about which ids exist.
      if (!deps.jobTokens.verify(id, token)) throw new HttpProblem('forbidden', `this token does not belong to job ${id}: a job may report progress only for itself`);
      const body = (request.body as { tutti: Record<string, unknown> }).tutti;
      const { values, problems } = checkProgressFields(body);
      const fields = problems.map((p) => ({ path: `body.tutti.${p.field}`, message: p.message }));
      if (fields.length > 0) throw new HttpProblem('invalid_request', fields.map((f) => `${f.path}: ${f.message}`).join('; '), fields);
      if (Object.keys(values).length === 0) throw new HttpProblem('invalid_request', 'body.tutti: give at least one field, e.g. {"step": 120, "loss": 0.42}', [{ path: 'body.tutti', message: 'has no fields' }]);
      const { rank } = request.query as { rank?: number };
      const outcome = await control.recordProgress(id, rank ?? 0, values);
      if (outcome === 'not_running') {
        await requireJob(store, id);
        throw new HttpProblem('job_not_running', `job ${id} is not running: progress is recorded only while its ranks run`);
      }
      return reply.status(202).send({ job_id: id, recorded: values });
    },
  );

  app.get(
    '/v1/jobs/:id/metrics',
    {
      schema: {
        summary: "A job's progress records (time series), oldest first: the newest `last`, or those after `after` (a seq)",
        operationId: 'getJobMetrics',
        tags: ['job data'],
        response: RESPONSES.getJobMetrics,
        params: jobIdParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { last: { type: 'integer', minimum: 1, maximum: 10000 }, after: { type: 'integer', minimum: 0 }, limit: { type: 'integer', minimum: 1, maximum: 10000 } },
        },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const { last, after, limit } = request.query as { last?: number; after?: number; limit?: number };
      await requireJob(store, id);
      const records = await store.listProgress(id, { ...(last !== undefined ? { last } : {}), ...(after !== undefined ? { afterSeq: after } : {}), ...(limit !== undefined ? { limit } : {}) });
      return { job_id: id, records: records.map(toProgressView) };
    },
  );

  app.get('/v1/jobs/:id/events', { schema: { summary: "A job's history", operationId: 'listJobEvents', tags: ['job data'], params: jobIdParams, response: RESPONSES.listJobEvents } }, async (request) => {
    const { id } = request.params as { id: string };
    await requireJob(store, id);
    return { events: (await store.listEvents({ jobId: id, limit: 10_000 })).map(toEventView) };
  });

  app.post('/v1/jobs/:id/cancel', { schema: { summary: 'Cancel a job (pending: at once; running: SIGTERM, then SIGKILL after the grace period)', operationId: 'cancelJob', tags: ['jobs'], params: jobIdParams, response: RESPONSES.cancelJob } }, async (request, reply) => {
    const { id } = request.params as { id: string };
    const outcome = await control.cancel(id);
    if (outcome === 'not_found') throw new HttpProblem('job_not_found', `no job with id ${id}`);
    const job = await requireJob(store, id);
    return reply.status(202).send(toJobView(job, await store.getTasks(id)));
  });

  app.get(
    '/v1/jobs/:id/logs',
    {
      schema: {
        summary: "A rank's stdout and stderr; with follow=true the response streams until the job ends",
        operationId: 'getJobLogs',
        tags: ['job data'],
        response: RESPONSES.getJobLogs,
        params: jobIdParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { rank: { type: 'integer', minimum: 0, default: 0 }, follow: { type: 'boolean', default: false }, attempt: { type: 'integer', minimum: 1, description: 'an earlier attempt (default: the current one)' } },
        },
      },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const { rank, follow, attempt } = request.query as { rank: number; follow: boolean; attempt?: number };
      const job = await requireJob(store, id);
      const ranks = processesPerNodeOf(job.spec) * job.spec.numNodes;
      if (rank >= ranks) throw new HttpProblem('invalid_request', `rank ${rank} does not exist: job ${id} has ranks 0..${ranks - 1}`, [{ path: 'querystring.rank', message: `must be 0..${ranks - 1}` }]);
      const abort = new AbortController();
      request.raw.on('close', () => abort.abort());
      void reply.type('text/plain; charset=utf-8').header('cache-control', 'no-store');
      return reply.send(followLog({ store, backend, jobId: id, rank, follow, signal: abort.signal, flushHeaders: () => reply.raw.flushHeaders(), ...(attempt !== undefined ? { attempt } : {}) }));
    },
  );

  app.get('/v1/export/history', { schema: { summary: "Finished jobs as a trace CSV (job_id,submit_time_s,duration_s,num_gpus,gpu_type,user,queue,status) for `tutti sim`", operationId: 'exportHistory', tags: ['cluster'], response: RESPONSES.exportHistory } }, async (_request, reply) => {
    // Streamed a page of the store at a time, at the pace the client reads; a client that goes away stops the reading.
    const clientGone = new AbortController();
    reply.raw.on('close', () => clientGone.abort());
    const csv = streamHistoryTrace((cursor) => store.listRunHistory({ limit: EXPORT_PAGE, ...(cursor !== undefined ? { cursor } : {}) }), clientGone.signal);
    void reply.type('text/csv; charset=utf-8').header('content-disposition', 'attachment; filename="tutti-history.csv"');
    return reply.send(Readable.from(csv, { highWaterMark: 1 }));
  });

  app.get('/v1/teams', { schema: { summary: 'Teams: quota, GPUs used and borrowed, running and pending jobs', operationId: 'listTeams', tags: ['cluster'], response: RESPONSES.listTeams } }, async () => {
    const [snapshot, running] = await Promise.all([store.snapshot(), store.listJobsByStatus(['running'])]);
    return { teams: computeTeamViews(deps.teams, snapshot, running, await control.pendingCountsByTeam(), await control.fairShareState()) };
  });

  app.get(
    '/v1/cluster/history',
    {
      schema: {
        summary: 'Queue length, running jobs and GPUs allocated over the last minutes (sampled in memory by this server)',
        operationId: 'getClusterHistory',
        tags: ['cluster'],
        response: RESPONSES.getClusterHistory,
        querystring: { type: 'object', additionalProperties: false, properties: { minutes: { type: 'integer', minimum: 1, maximum: 1440, default: 60 } } },
      },
    },
    async (request) => {
      const { minutes } = request.query as { minutes: number };
      const samples = deps.history.since(deps.now() - minutes * 60_000);
      return {
        interval_s: deps.history.intervalMs / 1000,
        samples: samples.map((s) => ({ at: new Date(s.at).toISOString(), pending_jobs: s.pendingJobs, running_jobs: s.runningJobs, gpus_total: s.gpusTotal, gpus_allocated: s.gpusAllocated })),
      };
    },
  );

  app.get('/v1/nodes', { schema: { summary: 'Nodes, their GPUs, and which job holds each GPU', operationId: 'listNodes', tags: ['cluster'], response: RESPONSES.listNodes } }, async () => ({ nodes: toNodeViews(await store.snapshot(), control.latestGpuSamples()) }));

  app.get(
    '/v1/events',
    {
      schema: {
        summary: 'Server-sent events of every job (or one with ?job=ID); resume with Last-Event-ID or ?after=SEQ, or start with the newest ?last=N',
        operationId: 'streamEvents',
        tags: ['events'],
        response: RESPONSES.streamEvents,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { job: { type: 'string', pattern: JOB_ID_PATTERN }, after: { type: 'integer', minimum: 0 }, last: { type: 'integer', minimum: 1, maximum: 1000, description: 'replay about this many of the newest events first (of every job)' } },
        },
      },
    },
    async (request, reply) => {
      const { job, after, last } = request.query as { job?: string; after?: number; last?: number };
      const afterSeq = resumePoint({ after, last, lastEventId: request.headers['last-event-id'] }, feed.latestSeq);
      await serveEventStream({ request, reply, store, feed, jobId: job, afterSeq });
    },
  );

  registerDashboard(app, { dir: deps.dashboardDir });
  return app;
}

/**
 * A submitted body (a YAML spec the body parser parsed, or a JSON object) as a spec the local backend can run on this inventory; otherwise
 * the HttpProblem a submission gets: every field error with its path, line and column, a team the cluster does not admit
 * (`isTeamAdmitted`, the same answer `tutti sim` gives), or why it cannot fit.
 */
function acceptableSpec(body: unknown, headers: Readonly<Record<string, string | string[] | undefined>>, inventory: readonly NodeInfo[], teams: readonly TeamConfig[]): JobSpec {
  const submitDir = headers['tutti-submit-dir'];
  const parsed = body instanceof ParsedYamlSpec ? body.result : parseJobSpecObject(body);
  if (!parsed.ok) {
    const first = parsed.errors[0];
    const more = parsed.errors.length > 1 ? ` (and ${parsed.errors.length - 1} more)` : '';
    throw new HttpProblem('invalid_spec', `${first?.path || 'spec'}: ${first?.message ?? 'invalid'}${more}`, parsed.errors);
  }
  const withPaths = resolveCheckpointDir(resolveWorkdir(parsed.value, submitDir));
  if (!withPaths.ok) throw new HttpProblem('invalid_spec', `checkpoint_dir: ${withPaths.errors[0]!.message}`, withPaths.errors);
  const spec = withSubmitterEnvironment(withPaths.value, submitterEnvironment(headers[SUBMIT_ENV_HEADER]));
  if (!isTeamAdmitted(teams, spec.team)) {
    const why = describeUnknownTeam(teams, spec.team);
    throw new HttpProblem('unknown_team', `team: ${why}`, [{ path: 'team', message: why }]);
  }
  const feasibility = checkFeasibility(inventory, spec);
  if (!feasibility.ok) throw new HttpProblem('unschedulable', feasibility.message);
  return spec;
}

/** The submitter's PATH and Python environment (see @tutti/model's submitter-environment.ts), as JSON; the CLI sends it. */
const SUBMIT_ENV_HEADER = 'tutti-submit-env';

function submitterEnvironment(header: string | string[] | undefined): Record<string, string> {
  if (header === undefined) return {};
  let value: unknown;
  try {
    value = JSON.parse(Array.isArray(header) ? (header[0] ?? '') : header);
  } catch {
    throw new HttpProblem('invalid_request', `the ${SUBMIT_ENV_HEADER} header must be a JSON object of the submitter's ${SUBMITTER_ENVIRONMENT_VARIABLES.join(', ')}`);
  }
  const checked = checkSubmitterEnvironment(value, `headers.${SUBMIT_ENV_HEADER}`);
  if (!checked.ok) throw new HttpProblem('invalid_request', `${checked.errors[0]!.path}: ${checked.errors[0]!.message}`, checked.errors);
  return checked.value;
}

async function requireJob(store: StateStore, id: string) {
  const job = await store.getJob(id);
  if (!job) throw new HttpProblem('job_not_found', `no job with id ${id}`);
  return job;
}

/** A relative workdir is relative to where the submitter stood (sent by the CLI); no workdir means that place. */
function resolveWorkdir(spec: JobSpec, submitDir: string | string[] | undefined): JobSpec {
  const base = typeof submitDir === 'string' && path.isAbsolute(submitDir) ? submitDir : undefined;
  if (spec.workdir === undefined) return base ? { ...spec, workdir: base } : spec;
  if (path.isAbsolute(spec.workdir)) return spec;
  if (!base) {
    throw new HttpProblem('invalid_spec', `workdir: '${spec.workdir}' is relative; give an absolute path, or send the directory it is relative to in the tutti-submit-dir header (the CLI sends the spec file's directory)`, [
      { path: 'workdir', message: 'a relative workdir needs the tutti-submit-dir header' },
    ]);
  }
  return { ...spec, workdir: path.resolve(base, spec.workdir) };
}

export { isTerminalJobStatus };

const USER_NAME = /^[A-Za-z0-9._@-]{1,64}$/;

/** The `tutti-user` header: absent is fine (an API client that does not say); malformed is a 400 naming it. */
function submittingUser(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const value = Array.isArray(header) ? header[0] : header;
  if (value !== undefined && USER_NAME.test(value)) return value;
  throw new HttpProblem('invalid_request', `header tutti-user: "${String(value)}" is not a user name (1-64 letters, digits, '.', '_', '@' or '-')`, [{ path: 'headers.tutti-user', message: 'not a user name' }]);
}

/** The leader as the API shows it (`/healthz`, `/readyz`). */
function toLeaderView(state: LeadershipState): { replica: string; epoch: number; lease_expires_at: string | null } | null {
  if (!state.leader) return null;
  const { holder, epoch, expiresAt } = state.leader;
  return { replica: holder, epoch, lease_expires_at: Number.isFinite(expiresAt) ? new Date(expiresAt).toISOString() : null };
}
