import type { ClusterHistoryView, EventView, ErrorBody, HealthView, ReadinessView, JobListView, JobView, MetricsView, NodeView, SpecValidationView, TeamView } from './api-types.ts';
import type { JobStatus } from '@tutti/model';

/** The server answered with an error status. `body` carries the field errors of a rejected spec. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: ErrorBody,
  ) {
    super(body.error.message);
    this.name = 'ApiError';
  }
  get code(): string {
    return this.body.error.code;
  }
}

/** Nothing answers at the server's address: usually the server is not running. */
export class ServerUnreachableError extends Error {
  constructor(readonly baseUrl: string, cause: unknown) {
    super(`no tutti server answers at ${baseUrl}`, { cause });
    this.name = 'ServerUnreachableError';
  }
}

export interface ClientOptions {
  /** e.g. `http://127.0.0.1:7070` */
  baseUrl: string;
  /**
   * How requests are sent; the global `fetch` by default. The CLI passes one over node:http, which starts much
   * faster than Node's fetch (see packages/cli/src/http-fetch.ts).
   */
  fetch?: FetchFunction;
}

/** The part of `fetch` the client uses: a URL string, method, headers, string body and abort signal. */
export type FetchFunction = (url: string, init: RequestInit) => Promise<Response>;

export interface ListJobsQuery {
  status?: JobStatus;
  team?: string;
  /** Only jobs this user submitted. */
  user?: string;
  /** Only jobs whose name contains this (lowercase letters, digits, '-'). */
  name?: string;
  /** @default 'id' (submission order) */
  sort?: JobSortKey;
  /** @default 'desc' */
  order?: 'asc' | 'desc';
  limit?: number;
  /** The `next_cursor` of the previous page of the same query. */
  cursor?: string;
  /** @default 'summary' */
  view?: JobListViewName;
}

/** `summary` (the default): what a job list shows; `full`: with each job's normalised spec. */
export type JobListViewName = 'summary' | 'full';

export const JOB_SORT_KEYS = ['id', 'name', 'team', 'status', 'priority'] as const;
export type JobSortKey = (typeof JOB_SORT_KEYS)[number];

export interface LogQuery {
  /** @default 0 */
  rank?: number;
  /** Keep reading until the job ends. */
  follow?: boolean;
  /** An earlier attempt's log (default: the current attempt). */
  attempt?: number;
  signal?: AbortSignal;
}

export interface SubmitOptions {
  /** The directory a relative `workdir` is resolved against, and the default workdir (the submitter's cwd). */
  submitDir?: string;
  /** Who submits (the `tutti-user` header): 1-64 letters, digits, '.', '_', '@' or '-'. */
  user?: string;
  /**
   * The submitter's PATH and active Python environment (`pickSubmitterEnvironment(process.env)`): added to the job's
   * env where its spec does not set them (the `tutti-submit-env` header).
   */
  submitterEnv?: Readonly<Record<string, string>>;
}

/** Typed client of tutti's REST API (`/v1`). */
export class TuttiClient {
  readonly baseUrl: string;
  private readonly send: FetchFunction;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.send = options.fetch ?? ((url, init) => fetch(url, init));
  }

  health(): Promise<HealthView> {
    return this.request('GET', '/healthz');
  }

  /** Whether this replica can serve the API (rejects with ApiError `not_ready` when it cannot). */
  readiness(): Promise<ReadinessView> {
    return this.request('GET', '/readyz');
  }

  /** Submits a job spec: a YAML document (string; errors then carry line and column) or a JSON object. */
  submitJob(spec: string | Record<string, unknown>, options: SubmitOptions = {}): Promise<JobView> {
    const headers: Record<string, string> = {};
    if (options.submitDir) headers['tutti-submit-dir'] = options.submitDir;
    if (options.user) headers['tutti-user'] = options.user;
    if (options.submitterEnv && Object.keys(options.submitterEnv).length > 0) headers['tutti-submit-env'] = asciiJson(options.submitterEnv);
    if (typeof spec === 'string') {
      headers['content-type'] = 'application/yaml';
      return this.request('POST', '/v1/jobs', spec, headers);
    }
    headers['content-type'] = 'application/json';
    return this.request('POST', '/v1/jobs', JSON.stringify(spec), headers);
  }

  /**
   * Checks a YAML spec as a submission would, without submitting: resolves with the normalised spec, or rejects
   * with the same ApiError (field errors with line and column) that `submitJob` would.
   */
  validateJob(yaml: string): Promise<SpecValidationView> {
    return this.request('POST', '/v1/jobs/validate', yaml, { 'content-type': 'application/yaml' });
  }

  /** A page of jobs: summaries (at most 1000 a page), or with `view: 'full'` each with its spec (at most 100 a page). */
  listJobs(query: ListJobsQuery = {}): Promise<JobListView> {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
    const qs = params.toString();
    return this.request('GET', `/v1/jobs${qs ? `?${qs}` : ''}`);
  }

  getJob(id: string): Promise<JobView> {
    return this.request('GET', `/v1/jobs/${encodeURIComponent(id)}`);
  }

  cancelJob(id: string): Promise<JobView> {
    return this.request('POST', `/v1/jobs/${encodeURIComponent(id)}/cancel`);
  }

  /** A job's progress records: the newest `last` of them, or those after `after` (a seq). */
  getJobMetrics(id: string, query: { last?: number; after?: number } = {}): Promise<MetricsView> {
    const params = new URLSearchParams();
    if (query.last !== undefined) params.set('last', String(query.last));
    if (query.after !== undefined) params.set('after', String(query.after));
    const qs = params.toString();
    return this.request('GET', `/v1/jobs/${encodeURIComponent(id)}/metrics${qs ? `?${qs}` : ''}`);
  }

  /** Finished jobs as a trace CSV that `tutti sim --trace` replays. */
  async exportHistory(): Promise<string> {
    const response = await this.fetch('/v1/export/history', { method: 'GET' });
    await throwIfError(response);
    return response.text();
  }

  /** Queue length and GPUs allocated over the last `minutes` (default 60), sampled by the server. */
  getClusterHistory(query: { minutes?: number } = {}): Promise<ClusterHistoryView> {
    return this.request('GET', `/v1/cluster/history${query.minutes !== undefined ? `?minutes=${query.minutes}` : ''}`);
  }

  listTeams(): Promise<{ teams: TeamView[] }> {
    return this.request('GET', '/v1/teams');
  }

  listNodes(): Promise<{ nodes: NodeView[] }> {
    return this.request('GET', '/v1/nodes');
  }

  listJobEvents(id: string): Promise<{ events: EventView[] }> {
    return this.request('GET', `/v1/jobs/${encodeURIComponent(id)}/events`);
  }

  /** A rank's log as a stream of text chunks; with `follow`, the stream ends when the job ends. */
  async *logs(id: string, options: LogQuery = {}): AsyncGenerator<string> {
    const params = new URLSearchParams({ rank: String(options.rank ?? 0), follow: String(options.follow ?? false) });
    if (options.attempt !== undefined) params.set('attempt', String(options.attempt));
    const response = await this.fetch(`/v1/jobs/${encodeURIComponent(id)}/logs?${params}`, { method: 'GET', signal: options.signal });
    await throwIfError(response);
    if (!response.body) return;
    const decoder = new TextDecoder();
    for await (const chunk of readChunks(response.body)) {
      yield decoder.decode(chunk, { stream: true });
    }
  }

  /** The same log as lines, without their '\n'; a last line that has none comes when the log ends. */
  async *logLines(id: string, options: LogQuery = {}): AsyncGenerator<string> {
    let partial = '';
    for await (const chunk of this.logs(id, options)) {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      yield* lines;
    }
    if (partial) yield partial;
  }

  /**
   * The server's event stream (SSE) as parsed events: resumes after `afterSeq` when given, or starts with the
   * newest `last` events already stored; otherwise only events from now on.
   */
  async *events(options: { jobId?: string; afterSeq?: number; last?: number; signal?: AbortSignal } = {}): AsyncGenerator<EventView> {
    const params = new URLSearchParams();
    if (options.jobId) params.set('job', options.jobId);
    if (options.afterSeq !== undefined) params.set('after', String(options.afterSeq));
    else if (options.last !== undefined) params.set('last', String(options.last));
    const qs = params.toString();
    const response = await this.fetch(`/v1/events${qs ? `?${qs}` : ''}`, { method: 'GET', signal: options.signal, headers: { accept: 'text/event-stream' } });
    await throwIfError(response);
    if (!response.body) return;
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of readChunks(response.body)) {
      buffer += decoder.decode(chunk, { stream: true });
      let boundary: number;
      while ((boundary = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, boundary);
        buffer = buffer.slice(boundary + 2);
        const data = frame.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
        if (data) yield JSON.parse(data) as EventView;
      }
    }
  }

  /** A GET of JSON for helpers that extend the client (see gpu-metrics.ts). */
  getJson<T>(path: string): Promise<T> {
    return this.request('GET', path);
  }

  private async request<T>(method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<T> {
    const response = await this.fetch(path, { method, body, headers });
    await throwIfError(response);
    return (await response.json()) as T;
  }

  private async fetch(path: string, init: RequestInit): Promise<Response> {
    try {
      return await this.send(`${this.baseUrl}${path}`, init);
    } catch (error) {
      if ((error as Error).name === 'AbortError') throw error;
      throw new ServerUnreachableError(this.baseUrl, error);
    }
  }
}

/** A response body's chunks through a reader: browsers without async-iterable streams read it too. */
async function* readChunks(body: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    // Ends the request when the caller stops early (break, abort).
    await reader.cancel().catch(() => undefined);
  }
}

async function throwIfError(response: Response): Promise<void> {
  if (response.ok) return;
  const text = await response.text();
  let body: ErrorBody;
  try {
    body = JSON.parse(text) as ErrorBody;
    if (!body?.error?.message) throw new Error('not an error body');
  } catch {
    body = { error: { code: `http_${response.status}`, message: text || response.statusText } };
  }
  throw new ApiError(response.status, body);
}

/** JSON with every character outside printable ASCII escaped: a header value must be plain bytes. */
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
