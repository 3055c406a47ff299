/**
 * The JSON Schemas (2020-12, as OpenAPI 3.1 uses) of what the REST API answers, and the response maps each route
 * puts in its `schema.response`. They are the OpenAPI document's components (`#/components/schemas/<$id>`), and
 * Fastify serialises every JSON answer with them: a field missing here would be dropped from the wire, so each
 * schema lists every field of its wire type in packages/client/src/api-types.ts. test/openapi.test.ts holds them
 * to that: it generates TypeScript from the document and checks it is the same type as the client's, both ways.
 */
import { JOB_STATUSES, jobSpecJsonSchema } from '@tutti/model';
import type { DiagnosisCode, NodeState, TaskStatus } from '@tutti/model';

/** Every value of a string union, checked complete by the compiler (a new member must be added here). */
function enumOf<T extends string>(members: Record<T, true>): T[] {
  return Object.keys(members) as T[];
}

const TASK_STATUSES = enumOf<TaskStatus>({ starting: true, running: true, exited: true, lost: true });
const NODE_STATES = enumOf<NodeState>({ ready: true, draining: true, down: true });
const DIAGNOSIS_CODES = enumOf<DiagnosisCode>({
  InsufficientGpus: true,
  InsufficientNodes: true,
  GpuTypeUnavailable: true,
  QueuedBehindHigherPriority: true,
  InsufficientHostResources: true,
  NeverFits: true,
  QuotaExceeded: true,
  WaitingForReclaim: true,
  WaitingForReservation: true,
  Reserved: true,
  BlockedByQueueHead: true,
  TopologyUnavailable: true,
});

const ref = (id: string) => ({ $ref: `${id}#` });
const timestamp = { type: 'string', format: 'date-time' } as const;
const nullableTimestamp = { type: ['string', 'null'], format: 'date-time' } as const;
const nullableString = { type: ['string', 'null'] } as const;
const nullableInteger = { type: ['integer', 'null'] } as const;
const nullableNumber = { type: ['number', 'null'] } as const;
/** A JSON object whose keys are not fixed (a spec, a progress record's values, an event's data). */
const openObject = { type: 'object', additionalProperties: true } as const;
const gpusByType = { type: 'object', additionalProperties: { type: 'number' }, description: 'GPUs per GPU type (`*` = any type)' } as const;

/** An object whose every listed property is required: the wire types leave none out (absent values are null). */
function record(properties: Record<string, unknown>, extra: { optional?: string[]; description?: string } = {}) {
  const optional = new Set(extra.optional ?? []);
  return {
    type: 'object',
    ...(extra.description !== undefined ? { description: extra.description } : {}),
    required: Object.keys(properties).filter((key) => !optional.has(key)),
    additionalProperties: false,
    properties,
  };
}

const errorSchema = {
  $id: 'Error',
  description: 'Every 4xx and 5xx answer: a stable code, a sentence for people and, for bad input, each field at fault.',
  ...record({
    error: record({
      code: { type: 'string', description: 'Stable machine-readable code: invalid_spec, invalid_request, unschedulable, job_not_found, ...' },
      message: { type: 'string' },
      fields: {
        type: 'array',
        items: record(
          {
            path: { type: 'string', description: 'e.g. resources.gpus, querystring.limit' },
            message: { type: 'string' },
            line: { type: 'integer', description: '1-based, when the input was YAML' },
            column: { type: 'integer' },
          },
          { optional: ['line', 'column'] },
        ),
      },
    }, { optional: ['fields'] }),
  }),
};

const leaderSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['replica', 'epoch', 'lease_expires_at'],
  properties: {
    replica: { type: 'string', description: 'the leading replica (host:port#pid)' },
    epoch: { type: 'integer', description: 'the lease\'s fencing epoch: +1 at every change of leader' },
    lease_expires_at: { type: ['string', 'null'], format: 'date-time', description: 'when its lease runs out unless renewed; null for a server alone on its store' },
  },
} as const;

const healthSchema = {
  $id: 'Health',
  ...record({
    status: { type: 'string', enum: ['ok'] },
    version: { type: 'string' },
    uptime_s: { type: 'integer' },
    recovering: { type: 'boolean', description: 'true until the jobs that ran before a (re)start are re-adopted: nothing is scheduled meanwhile' },
    disk_full: { type: ['string', 'null'], description: 'while the data dir\'s disk is full (writes answer 507): which file, and what to do' },
    role: { type: 'string', enum: ['leader', 'follower'], description: 'whether this replica runs the control loop (one does; a server alone on its store always leads)' },
    replica: { type: 'string', description: "this replica's name in the leader lease: host:port#pid" },
    leader: { ...leaderSchema, type: ['object', 'null'], description: 'who leads, as this replica last read it; null while no one does' },
  }),
};

const readinessSchema = {
  $id: 'Readiness',
  ...record({
    ready: { type: 'boolean', description: 'true: a load balancer may send this replica requests' },
    role: { type: 'string', enum: ['leader', 'follower'] },
    store: { type: 'string', description: '"ok", or why the store could not be read' },
    recovering: { type: 'boolean' },
    leader: { ...leaderSchema, type: ['object', 'null'] },
  }),
};

const taskSchema = {
  $id: 'Task',
  description: 'One rank: one process.',
  ...record({
    rank: { type: 'integer' },
    local_rank: { type: 'integer' },
    node_rank: { type: 'integer' },
    node: { type: 'string' },
    gpus: { type: 'array', items: { type: 'integer' }, description: 'GPU indices on the node visible to this rank' },
    backend: {
      anyOf: [
        record({
          kind: { type: 'string', description: 'the backend that runs the rank, e.g. local' },
          details: { type: 'object', additionalProperties: { type: ['string', 'number'] }, description: 'what that backend tells of the rank: for a local rank its pid and host' },
        }),
        { type: 'null' },
      ],
      description: 'the backend running the rank and its details; null until the rank is launched',
    },
    status: { type: 'string', enum: TASK_STATUSES },
    exit_code: nullableInteger,
    started_at: nullableTimestamp,
    finished_at: nullableTimestamp,
  }),
};

const attemptSchema = {
  $id: 'Attempt',
  description: "One run of a job's gang.",
  ...record({
    attempt: { type: 'integer' },
    started_at: nullableTimestamp,
    finished_at: { ...nullableTimestamp, description: 'null while the attempt runs' },
    exit_code: nullableInteger,
    reason: { ...nullableString, description: 'why the attempt ended; null while it runs' },
    tasks: { type: 'array', items: ref('Task') },
  }),
};

const progressSchema = {
  $id: 'Progress',
  description: 'One progress record a rank reported.',
  ...record({
    seq: { type: 'integer' },
    attempt: { type: 'integer' },
    rank: { type: 'integer' },
    at: timestamp,
    step: nullableInteger,
    loss: nullableNumber,
    checkpoint: nullableString,
    values: { ...openObject, description: 'every field of the record, as reported' },
  }),
};

/** `resources` of a job as its normalised spec has them: per node. */
const jobResourcesSchema = {
  $id: 'JobResources',
  description: 'What the job asked for on each node, as its normalised spec says it.',
  ...record(
    {
      gpus: record(
        {
          count: { type: 'integer', description: 'whole GPUs per node; 1 for a share of one GPU; 0 for a CPU-only job' },
          fraction: { type: 'number', description: 'a share of one GPU (0 < fraction < 1); absent for whole GPUs' },
          type: { type: 'array', items: { type: 'string' }, description: 'acceptable GPU types in order of preference; empty for any' },
          memory: { type: 'string', description: 'GPU memory each GPU (or the share) needs, e.g. 40GiB; absent when not asked' },
        },
        { optional: ['fraction', 'memory'] },
      ),
      cpus: { type: 'number' },
      memory: { type: 'string', description: 'host memory per node, e.g. 64GiB' },
    },
    { optional: ['cpus', 'memory'] },
  ),
};

/** What a job list shows of each job; one job (Job) adds its spec and detail to these. */
const jobSummaryProperties = {
  id: { type: 'string' },
  name: { type: 'string' },
  team: { type: 'string' },
  user: { ...nullableString, description: 'who submitted it (the tutti-user header); null when the submitter did not say' },
  priority: { type: 'integer' },
  status: { type: 'string', enum: [...JOB_STATUSES] },
  pending_reason: { ...nullableString, description: 'why a pending job waits, in words; null when not pending' },
  pending_diagnosis: {
    ...record({
      plugin: { type: 'string' },
      code: { type: 'string', enum: DIAGNOSIS_CODES },
      message: { type: 'string' },
      position: { ...record({ team: { type: 'string' }, index: { type: 'integer', description: '1 = next' }, of: { type: 'integer' } }), type: ['object', 'null'] },
      estimated_start_at: { ...nullableTimestamp, description: 'an estimate, given when a reservation exists and its time rests on something' },
      estimated_start_basis: { ...nullableString, description: 'what estimated_start_at rests on, e.g. "if job 51 takes its max_duration"; null with no estimate' },
    }),
    type: ['object', 'null'],
    description: 'the pending reason as data: which scheduler plugin stopped the job and its stable code',
  },
  created_at: timestamp,
  started_at: nullableTimestamp,
  finished_at: nullableTimestamp,
  exit_code: nullableInteger,
  end_reason: { ...nullableString, description: 'why the job ended; null until it ends' },
  cancel_requested_at: nullableTimestamp,
  // A share of one GPU is a fraction (0.5): a number, not an integer, or serialisation would round it away.
  gpus_per_node: { type: 'number', description: 'GPUs per node; a share of one GPU as its fraction' },
  num_nodes: { type: 'integer' },
  resources: ref('JobResources'),
  attempt: { type: 'integer', description: "the latest attempt's number; 0 before the job first starts" },
  restarts: { type: 'integer', description: 'restarts counted against max_restarts (preemptions are not counted)' },
  max_restarts: { type: 'integer' },
  last_checkpoint: nullableString,
  not_before: { ...nullableTimestamp, description: 'a pending job waiting out its restart backoff is not started before this' },
  spec: { ...openObject, description: 'the spec as submitted, normalised (see JobSpec)' },
};

const jobSummarySchema = {
  $id: 'JobSummary',
  description: 'A job as GET /v1/jobs lists it; its spec only with view=full.',
  ...record(jobSummaryProperties, { optional: ['spec'] }),
};

const jobSchema = {
  $id: 'Job',
  description: 'One job: its summary, its normalised spec and, on GET /v1/jobs/{id}, its ranks, attempts, last progress record and usage.',
  ...record(
    {
      ...jobSummaryProperties,
      tasks: { type: 'array', items: ref('Task'), description: 'one entry per rank of the latest attempt; on GET /v1/jobs/{id}' },
      attempts: { type: 'array', items: ref('Attempt'), description: 'every attempt, oldest first; on GET /v1/jobs/{id}' },
      progress: { anyOf: [ref('Progress'), { type: 'null' }], description: 'the last progress record; on GET /v1/jobs/{id}' },
      usage: {
        ...record({ gpu_hours: { type: 'number' }, energy_wh: { ...nullableNumber, description: 'null without power readings (fake GPUs)' } }),
        description: 'what the job consumed over all its attempts; on GET /v1/jobs/{id}',
      },
    },
    { optional: ['tasks', 'attempts', 'progress', 'usage'] },
  ),
};

const jobListSchema = {
  $id: 'JobList',
  ...record({ jobs: { type: 'array', items: ref('JobSummary') }, next_cursor: { ...nullableString, description: 'pass as cursor for the next page; null on the last page' } }),
};

const specValidationSchema = {
  $id: 'SpecValidation',
  description: 'The spec as the server would accept it; nothing is submitted.',
  ...record({ valid: { type: 'boolean', enum: [true] }, spec: { ...openObject, description: 'the normalised spec, as Job.spec would show it' } }),
};

const gpuMetricSampleSchema = {
  $id: 'GpuMetricSample',
  ...record({
    at: timestamp,
    node: { type: 'string' },
    gpuIndex: { type: 'integer' },
    utilizationPct: nullableNumber,
    memoryUsedMiB: nullableNumber,
    memoryTotalMiB: nullableNumber,
    powerW: nullableNumber,
    temperatureC: nullableNumber,
  }),
};

const jobGpuMetricsSchema = { $id: 'JobGpuMetrics', ...record({ job_id: { type: 'string' }, samples: { type: 'array', items: ref('GpuMetricSample') } }) };

const progressAcceptedSchema = {
  $id: 'ProgressAccepted',
  ...record({ job_id: { type: 'string' }, recorded: { type: 'object', additionalProperties: { type: ['string', 'number', 'boolean'] }, description: 'the fields recorded' } }),
};

const jobMetricsSchema = { $id: 'JobMetrics', ...record({ job_id: { type: 'string' }, records: { type: 'array', items: ref('Progress') } }) };

const eventSchema = {
  $id: 'Event',
  description: "One entry of a job's history; seq is global and increasing.",
  ...record({ seq: { type: 'integer' }, job_id: { type: 'string' }, at: timestamp, type: { type: 'string' }, message: { type: 'string' }, data: { ...openObject, type: ['object', 'null'] } }),
};

const eventListSchema = { $id: 'EventList', ...record({ events: { type: 'array', items: ref('Event') } }) };

const teamSchema = {
  $id: 'Team',
  description: "A team's share of the cluster: its quota, what it uses now, what of that is borrowed, what waits.",
  ...record({
    name: { type: 'string' },
    weight: { type: 'number' },
    quota: { ...gpusByType, description: 'guaranteed GPUs per type (`*` = any type); empty for a team with no quota' },
    borrowing_limit: { ...gpusByType, type: ['object', 'null'] },
    lending_limit: { ...gpusByType, type: ['object', 'null'] },
    used: { ...gpusByType, description: "GPUs held by the team's running jobs, per type" },
    borrowed: { ...gpusByType, description: 'the part of used beyond the quota, per type' },
    running_jobs: { type: 'integer' },
    pending_jobs: { type: 'integer' },
    fair_share: record({ decayed_gpu_hours: { type: 'number' }, share: { type: 'number' }, position: { type: 'integer', description: '1 = served first' } }),
  }),
};

const teamListSchema = { $id: 'TeamList', ...record({ teams: { type: 'array', items: ref('Team') } }) };

const gpuSchema = {
  $id: 'Gpu',
  ...record({
    index: { type: 'integer' },
    uuid: { type: 'string' },
    type: { type: 'string' },
    product: { type: 'string' },
    memory_mib: { type: 'number' },
    nvlink_peers: { type: 'array', items: { type: 'integer' } },
    job_id: { ...nullableString, description: 'the job holding this GPU (for a shared GPU: the first of its sharers); null when free' },
    shares: { type: 'array', items: record({ job_id: { type: 'string' }, fraction: { type: 'number' }, memory_mib: nullableNumber }) },
    metrics: {
      ...record({ at: timestamp, utilization_pct: nullableNumber, memory_used_mib: nullableNumber, power_w: nullableNumber, temperature_c: nullableNumber }),
      type: ['object', 'null'],
      description: 'the latest gauges; null when not measured (fake GPUs) or not yet sampled',
    },
  }),
};

const nodeSchema = {
  $id: 'Node',
  ...record({
    name: { type: 'string' },
    address: { type: 'string' },
    state: { type: 'string', enum: NODE_STATES },
    state_reason: { ...nullableString, description: 'why the node is draining or down, as its backend says (Slurm: the reason it was drained with); null when it does not say' },
    cpus: { type: 'number' },
    memory_mib: { type: 'number' },
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    gpus: { type: 'array', items: ref('Gpu') },
  }),
};

const nodeListSchema = { $id: 'NodeList', ...record({ nodes: { type: 'array', items: ref('Node') } }) };

const clusterHistorySchema = {
  $id: 'ClusterHistory',
  description: 'The samples of the last minutes, oldest first (kept in the server memory).',
  ...record({
    interval_s: { type: 'number' },
    samples: {
      type: 'array',
      items: record({ at: timestamp, pending_jobs: { type: 'integer' }, running_jobs: { type: 'integer' }, gpus_total: { type: 'number' }, gpus_allocated: { type: 'number', description: 'a fractional share counts as its fraction' } }),
    },
  }),
};

/** The job-spec schema of @tutti/model as a 2020-12 component: its draft-07 `$schema` would mark it as another dialect. */
const { $schema: _draft07, ...jobSpecSchema } = { ...jobSpecJsonSchema, $id: 'JobSpec' };

/** Every shared schema, for `app.addSchema`: Fastify resolves the `$ref`s, @fastify/swagger lists them as components. */
export const API_SCHEMAS: readonly Record<string, unknown>[] = [
  errorSchema,
  jobSpecSchema,
  healthSchema,
  readinessSchema,
  taskSchema,
  attemptSchema,
  progressSchema,
  jobResourcesSchema,
  jobSummarySchema,
  jobSchema,
  jobListSchema,
  specValidationSchema,
  gpuMetricSampleSchema,
  jobGpuMetricsSchema,
  progressAcceptedSchema,
  jobMetricsSchema,
  eventSchema,
  eventListSchema,
  teamSchema,
  teamListSchema,
  gpuSchema,
  nodeSchema,
  nodeListSchema,
  clusterHistorySchema,
];

/** The groups of operations in /docs, in the order shown. */
export const API_TAGS = [
  { name: 'jobs', description: 'Submit, validate, list, inspect and cancel jobs' },
  { name: 'job data', description: "What a job produced: its logs, progress records, GPU gauges and history" },
  { name: 'cluster', description: 'Nodes and GPUs, teams and quotas, the cluster over time, finished jobs as a trace' },
  { name: 'events', description: 'Server-sent events of every job' },
  { name: 'server', description: 'Liveness and Prometheus metrics' },
] as const;

export type ApiTag = (typeof API_TAGS)[number]['name'];

const json = (description: string, schema: unknown) => ({ description, content: { 'application/json': { schema } } });
const text = (mediaType: string, description: string) => ({ description, content: { [mediaType]: { schema: { type: 'string', description } } } });
const problem = (description: string) => json(description, ref('Error'));

/**
 * Answers any route may give: a web page or host name the request guards refuse (request-guards.ts), a server fault
 * or a store that cannot write (507 disk_full).
 */
const ANY_ROUTE = {
  403: problem('forbidden: sent by a web page whose origin may not use the API (the message names the tutti up flag that allows it)'),
  421: problem('misdirected_request: sent to a host name this server does not answer to (DNS rebinding guard)'),
  '5xx': problem('internal_error; disk_full (507) when the store or a log cannot be written; store_unavailable (503) while the database cannot be reached (retry: nothing was done)'),
} as const;
/** What the guards answer a request with a body (any POST): too large, or not JSON or YAML. */
const BODY_ERRORS = {
  413: problem('payload_too_large: the body is larger than the server accepts (tutti up --max-spec-bytes)'),
  415: problem('unsupported_media_type: a body must be application/json or application/yaml'),
} as const;
const BAD_REQUEST = { 400: problem('invalid_request: a query parameter, path parameter or header is malformed (fields name which)') } as const;
const NO_SUCH_JOB = { 404: problem('job_not_found: no job with this id') } as const;
const SPEC_ERRORS = {
  400: problem('invalid_spec: the body is not a valid job spec (fields name each field at fault, with YAML line and column); invalid_request: a header is malformed'),
  ...BODY_ERRORS,
  422: problem('unschedulable: the job can never fit this cluster (the message says why); unknown_team: the cluster config lists teams and not this one (the message names them)'),
} as const;

/** `schema.response` of each route: every status it answers, with its body. */
export const RESPONSES = {
  health: { 200: json('the server answers and its store is open', ref('Health')), ...ANY_ROUTE },
  readiness: { 200: json('this replica can serve the API: its store answers and, if it leads, recovery is done', ref('Readiness')), 503: problem('not_ready: the store does not answer, or this leader is still re-adopting what ran before'), ...ANY_ROUTE },
  prometheus: { 200: text('text/plain', 'Prometheus text exposition format 0.0.4'), ...ANY_ROUTE },
  submitJob: { 201: json('the job, accepted and pending', ref('Job')), ...SPEC_ERRORS, ...ANY_ROUTE },
  validateJob: { 200: json('the spec as a submission would store it', ref('SpecValidation')), ...SPEC_ERRORS, ...ANY_ROUTE },
  listJobs: { 200: json('a page of job summaries (with view=full, each with its spec), newest first by default', ref('JobList')), ...BAD_REQUEST, ...ANY_ROUTE },
  getJob: { 200: json('the job with its spec, ranks, attempts, last progress record and usage', ref('Job')), ...BAD_REQUEST, ...NO_SUCH_JOB, ...ANY_ROUTE },
  getJobGpuMetrics: { 200: json("the job's GPU samples, oldest first (none on fake GPUs)", ref('JobGpuMetrics')), ...BAD_REQUEST, ...NO_SUCH_JOB, ...ANY_ROUTE },
  reportJobProgress: {
    202: json('the fields recorded', ref('ProgressAccepted')),
    400: problem('invalid_request: a field of body.tutti is malformed (fields name which), or none was given; invalid_spec: the body is not JSON, repeats a key or nests too deep'),
    401: problem('unauthorized: no Authorization: Bearer token'),
    ...ANY_ROUTE,
    403: problem("forbidden: the token does not belong to this job, or a web page's origin may not use the API"),
    ...NO_SUCH_JOB,
    409: problem('job_not_running: progress is recorded only while the ranks run'),
    ...BODY_ERRORS,
  },
  getJobMetrics: { 200: json("the job's progress records, oldest first", ref('JobMetrics')), ...BAD_REQUEST, ...NO_SUCH_JOB, ...ANY_ROUTE },
  listJobEvents: { 200: json("the job's history, oldest first", ref('EventList')), ...BAD_REQUEST, ...NO_SUCH_JOB, ...ANY_ROUTE },
  cancelJob: {
    202: json('the job, with cancel_requested_at set (an ended job is returned as it is)', ref('Job')),
    400: problem('invalid_request: the id is not a job id; invalid_spec: a body was sent and is not JSON (none is needed)'),
    ...NO_SUCH_JOB,
    ...BODY_ERRORS,
    ...ANY_ROUTE,
  },
  getJobLogs: {
    200: text('text/plain', "the rank's stdout and stderr as they were written; with follow=true the body streams until the job ends"),
    ...BAD_REQUEST,
    ...NO_SUCH_JOB,
    ...ANY_ROUTE,
  },
  exportHistory: {
    200: text('text/csv', 'one line per finished job: job_id,submit_time_s,duration_s,num_gpus,gpu_type,user,queue,status (a tutti sim trace)'),
    ...ANY_ROUTE,
  },
  listTeams: { 200: json('every configured team and every team with jobs, by name', ref('TeamList')), ...ANY_ROUTE },
  getClusterHistory: { 200: json('the samples of the last minutes, oldest first', ref('ClusterHistory')), ...BAD_REQUEST, ...ANY_ROUTE },
  listNodes: { 200: json('every node with its GPUs and which job holds each', ref('NodeList')), ...ANY_ROUTE },
  streamEvents: {
    200: text('text/event-stream', 'server-sent events: `id` is the event seq, `event` its type, `data` an Event as JSON; comments keep the connection alive'),
    ...BAD_REQUEST,
    ...ANY_ROUTE,
  },
} as const;
