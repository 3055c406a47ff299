/**
 * The one place where outcomes become HTTP statuses. Handlers return or throw `HttpProblem`s; Fastify's own
 * errors (bad JSON, schema validation) are translated to the same `{error: {code, message, fields}}` body.
 */
import { describeStoreOutage } from '../store-outage.ts';
import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import { JOB_ID_PATTERN, describeBadJobId, formatByteSize } from '@tutti/model';
import type { FieldError } from '@tutti/model';
import { asDiskFull } from '@tutti/store';
import type { Logger } from '../logger.ts';

export type ProblemCode = 'invalid_spec' | 'invalid_request' | 'unauthorized' | 'forbidden' | 'job_not_running' | 'unschedulable' | 'unknown_team' | 'job_not_found' | 'not_found' | 'misdirected_request' | 'payload_too_large' | 'unsupported_media_type' | 'disk_full' | 'not_ready' | 'store_unavailable' | 'internal_error';

const STATUS: Record<ProblemCode, number> = {
  invalid_spec: 400,
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  job_not_running: 409,
  unschedulable: 422,
  unknown_team: 422,
  job_not_found: 404,
  not_found: 404,
  misdirected_request: 421,
  payload_too_large: 413,
  unsupported_media_type: 415,
  // 507 Insufficient Storage: the request was fine and may be sent again once space is freed.
  disk_full: 507,
  // 503: this replica cannot serve now (its store does not answer, or it is re-adopting what ran); another may.
  not_ready: 503,
  // 503: the database did not answer (restarting, unreachable); the request did nothing and may be sent again.
  store_unavailable: 503,
  internal_error: 500,
};

export class HttpProblem extends Error {
  constructor(
    readonly code: ProblemCode,
    message: string,
    readonly fields?: FieldError[],
  ) {
    super(message);
  }
  get status(): number {
    return STATUS[this.code];
  }
  toBody() {
    return { error: { code: this.code, message: this.message, ...(this.fields ? { fields: this.fields } : {}) } };
  }
}

/** The 413 for a body over the limit: what the limit is and how to raise it. */
export function bodyTooLargeProblem(maxBytes: number): HttpProblem {
  return new HttpProblem(
    'payload_too_large',
    `the body is larger than ${formatByteSize(maxBytes)}, the largest job spec this server accepts; keep large data in files the job reads, or start the server with \`tutti up --max-spec-bytes N\``,
  );
}

export function installErrorHandling(app: FastifyInstance, logger: Logger): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const problem = toProblem(error, request);
    if (problem.code === 'internal_error') logger.error(`${request.method} ${request.url} failed`, error);
    void reply.status(problem.status).send(problem.toBody());
  });
  app.setNotFoundHandler((request, reply) => {
    const problem = new HttpProblem('not_found', `no route ${request.method} ${request.url.split('?')[0]}; see /docs for the API`);
    void reply.status(404).send(problem.toBody());
  });
}

function toProblem(error: FastifyError, request: FastifyRequest): HttpProblem {
  if (error instanceof HttpProblem) return error;
  // A write refused for lack of space (SQLite's SQLITE_FULL, ENOSPC): say so, not "internal error". Logged once
  // per episode by the server's DiskFullLog, not per request.
  const full = asDiskFull(error);
  if (full) return new HttpProblem('disk_full', full.message);
  const outage = describeStoreOutage(error);
  if (outage) return new HttpProblem('store_unavailable', `the database could not be reached (${outage}); nothing was done: send the request again in a moment`);
  if (error.validation) {
    const where = error.validationContext ?? 'request';
    const fields = error.validation.map((v) => {
      const missing = (v.params as { missingProperty?: string } | undefined)?.missingProperty;
      const path = [where, ...v.instancePath.split('/').filter(Boolean), ...(missing ? [missing] : [])].join('.');
      const allowed = (v.params as { allowedValues?: unknown[] } | undefined)?.allowedValues;
      // A job id that is not one: say what an id looks like rather than quote the schema's pattern.
      if ((v.params as { pattern?: string } | undefined)?.pattern === JOB_ID_PATTERN) {
        const given = v.instancePath.split('/').filter(Boolean).reduce<unknown>((at, key) => (at as Record<string, unknown> | undefined)?.[key], where === 'params' ? request.params : request.query);
        return { path, message: describeBadJobId(String(given), '`GET /v1/jobs`') };
      }
      return { path, message: `${v.message ?? 'is invalid'}${allowed ? ` (one of: ${allowed.join(', ')})` : ''}` };
    });
    return new HttpProblem('invalid_request', fields.map((f) => `${f.path}: ${f.message}`).join('; '), fields);
  }
  if (error.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || error instanceof SyntaxError) {
    return new HttpProblem('invalid_spec', `the body is not valid JSON: ${error.message}`, [{ path: '', message: error.message }]);
  }
  if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return bodyTooLargeProblem(request.routeOptions.bodyLimit);
  if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return new HttpProblem('unsupported_media_type', 'send the job spec as application/json or application/yaml');
  }
  if (typeof error.statusCode === 'number' && error.statusCode < 500) return new HttpProblem('invalid_request', error.message);
  return new HttpProblem('internal_error', 'internal error; the server log has the details');
}
