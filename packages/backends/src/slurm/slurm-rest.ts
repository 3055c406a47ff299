/**
 * Slurm reached through slurmrestd, Slurm's REST API, where a site runs it: for a control plane on a machine that is
 * not a login node (no Slurm tools, no munge key), authenticated with JSON Web Tokens (`AuthAltTypes=auth/jwt`).
 *
 * The token is either minted here from the site's JWT key (HS256, as `scontrol token` does; short-lived and renewed
 * before it expires) or given (`SLURM_JWT`, from `scontrol token lifespan=…`; it is not renewed, so an expired one
 * is an error that says so). Every request carries `X-SLURM-USER-NAME` and `X-SLURM-USER-TOKEN`.
 *
 * The API is OpenAPI v0.0.38 (Slurm 22.05; later Slurm versions serve it too until they drop it):
 *   GET /slurm/v0.0.38/nodes          nodes, their gres, state and flags, partitions
 *   GET /slurm/v0.0.38/jobs           every job slurmctld knows, the same JSON as `squeue --json`
 *   POST /slurm/v0.0.38/job/submit    {script, job: {…}} → {job_id}
 *   DELETE /slurm/v0.0.38/job/{id}    ?signal=KILL: cancels the job
 * What it cannot do, and how the backend does without: signal one step (its DELETE with another signal cancels the
 * job, see `SlurmControl.signalsSteps`); say the topology (racks come from `scontrol show topology` when Slurm's
 * tools are there too, else there are none).
 */
import { baseRankEnvironment } from '../rank-environment.ts';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { SlurmCli, SlurmJobState } from './slurm-cli.ts';
import { SlurmCommandError } from './slurm-cli.ts';
import { createSlurmCliControl, type SlurmControl } from './slurm-control.ts';
import { parseGpusHeldByOthers } from './slurm-held-gpus.ts';
import { parseGpuGres, toNodeState, type SlurmNode } from './slurm-nodes.ts';
import type { SlurmJobRequest } from './slurm-submission.ts';

export const SLURM_REST_API = 'v0.0.38';
/** How long one request may take before it counts as failed (slurmctld busy or unreachable). */
const REQUEST_TIMEOUT_MS = 30_000;
/** How long one read of every job answers every caller (see `allJobs`). */
const JOBS_FRESH_MS = 250;
/** A token minted here lives this long, and is renewed when less than a quarter of it is left. */
const MINTED_TOKEN_LIFESPAN_S = 3_600;

export interface SlurmRestOptions {
  /** slurmrestd's address: `http://host:port` (or `https://…` behind a site's proxy). */
  url: string;
  /** The Slurm user the jobs run as (the token's user). */
  user: string;
  /** A token the site gave (`scontrol token`): used as is, never renewed. */
  token?: string;
  /** The site's JWT key (`AuthAltParameters=jwt_key=…`): tokens are minted with it, and renewed. */
  jwtKey?: Buffer;
  /** Environment of the batch script (slurmrestd demands one; `sbatch --export=ALL` passes the caller's). @default the control plane's */
  jobEnvironment?: Readonly<Record<string, string>>;
  /** Slurm's tools, if this machine has them too: for the topology, which the API does not say. */
  cli?: SlurmCli;
  /** Clock for tokens (seconds come from it). @default Date.now */
  now?: () => number;
}

/** A JSON Web Token as Slurm's auth/jwt takes it: HS256, `sun` the user name, `iat` and `exp` in epoch seconds. */
export function mintSlurmToken(key: Buffer, user: string, issuedAtS: number, lifespanS: number): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ exp: issuedAtS + lifespanS, iat: issuedAtS, sun: user })}`;
  return `${unsigned}.${createHmac('sha256', key).update(unsigned).digest('base64url')}`;
}

/** The expiry (epoch seconds) a token claims, if it can be read. */
function tokenExpiry(token: string): number | undefined {
  try {
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown };
    return typeof claims.exp === 'number' ? claims.exp : undefined;
  } catch {
    return undefined;
  }
}

/** Reads the site's JWT key file, with an error that says what is wrong with it. */
export function readSlurmJwtKey(path: string): Buffer {
  let key: Buffer;
  try {
    key = readFileSync(path);
  } catch (error) {
    throw new Error(`cannot read the Slurm JWT key ${path}: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (key.length < 16) throw new Error(`the Slurm JWT key ${path} has ${key.length} bytes: slurmctld's jwt_key is at least 16 (usually 32 random bytes)`);
  return key;
}

export function createSlurmRestControl(options: SlurmRestOptions): SlurmControl {
  let base: URL;
  try {
    base = new URL(options.url);
  } catch {
    throw new Error(`the slurmrestd URL ${JSON.stringify(options.url)} is not a URL: give it as http://host:port`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error(`the slurmrestd URL ${options.url} must start with http:// or https://`);
  if (!options.token && !options.jwtKey) throw new Error('slurmrestd needs a token: give the site\'s JWT key (to mint tokens) or a token from `scontrol token`');
  if (!/^[a-z_][a-z0-9_.-]*\$?$/i.test(options.user)) throw new Error(`the Slurm user ${JSON.stringify(options.user)} is not a user name`);
  const now = options.now ?? Date.now;
  const via = `slurmrestd at ${base.origin}`;
  let minted: { token: string; expiresAtS: number } | undefined;
  /** Slurm's tools, for the one thing the API does not say: the racks. */
  const tools = options.cli ? createSlurmCliControl(options.cli) : undefined;
  let lastRacks = new Map<string, string>();
  let toolsWarned = false;

  function token(): string {
    if (options.jwtKey) {
      const nowS = Math.floor(now() / 1000);
      if (!minted || minted.expiresAtS - nowS < MINTED_TOKEN_LIFESPAN_S / 4) {
        minted = { token: mintSlurmToken(options.jwtKey, options.user, nowS, MINTED_TOKEN_LIFESPAN_S), expiresAtS: nowS + MINTED_TOKEN_LIFESPAN_S };
      }
      return minted.token;
    }
    return options.token as string;
  }

  /** One request; resolves with the answer's JSON, rejects with what slurmrestd said (its `errors`). */
  async function request(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<Record<string, unknown>> {
    const what = `${method} ${path}`;
    const url = new URL(`/slurm/${SLURM_REST_API}${path}`, base);
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: { 'X-SLURM-USER-NAME': options.user, 'X-SLURM-USER-TOKEN': token(), ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (error) {
      const cause = error instanceof Error ? ((error.cause as Error | undefined)?.message ?? error.message) : String(error);
      throw new SlurmCommandError(what, `${via} did not answer ${what}: ${cause}`, '');
    }
    const text = await response.text();
    let answer: Record<string, unknown>;
    try {
      answer = JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new SlurmCommandError(what, `${via} answered ${what} with HTTP ${response.status} and no JSON: ${text.slice(0, 200)}`, text);
    }
    const errors = Array.isArray(answer.errors) ? (answer.errors as Array<Record<string, unknown>>) : [];
    if (response.ok && errors.length === 0) return answer;
    const said = errors.map((e) => String(e.description ?? e.error ?? JSON.stringify(e))).join('; ') || `HTTP ${response.status}`;
    // slurmctld refuses a bad token without saying so: slurmrestd then answers "Unspecified error".
    const expiry = options.jwtKey ? undefined : tokenExpiry(options.token as string);
    const hint = /Unspecified error|Authentication|Protocol authentication/i.test(said)
      ? expiry !== undefined && expiry * 1000 <= now()
        ? ` (the token expired at ${new Date(expiry * 1000).toISOString()}: mint another with \`scontrol token lifespan=…\`)`
        : ` (is the token valid for user ${options.user}, signed with slurmctld's jwt_key?)`
      : '';
    throw new SlurmCommandError(what, `${via} refused ${what}: ${said}${hint}`, text);
  }

  const readAllJobs = async (): Promise<Array<Record<string, unknown>>> => {
    const answer = await request('GET', '/jobs');
    if (!Array.isArray(answer.jobs)) throw new SlurmCommandError('GET /jobs', `${via} answered GET /jobs with no "jobs" list`, '');
    return answer.jobs as Array<Record<string, unknown>>;
  };
  /**
   * The API has one way to read jobs, every job at once (its filters are ignored, as squeue --json's are), and the
   * backend asks for jobs from several places at a time: the rank poll, each launch waiting for its ranks, the
   * inventory. So one read serves every caller within JOBS_FRESH_MS: with 200 launches under way, one request a
   * quarter second, not 200 a second (slurmrestd and slurmctld render the whole list each time).
   */
  let jobsRead: { at: number; jobs: Promise<Array<Record<string, unknown>>> } | undefined;
  const allJobs = (): Promise<Array<Record<string, unknown>>> => {
    if (jobsRead && performance.now() - jobsRead.at < JOBS_FRESH_MS) return jobsRead.jobs;
    const read = { at: performance.now(), jobs: readAllJobs() };
    jobsRead = read;
    read.jobs.catch(() => {
      if (jobsRead === read) jobsRead = undefined;
    });
    return read.jobs;
  };

  return {
    via,
    signalsSteps: false,
    async nodes() {
      const answer = await request('GET', '/nodes');
      if (!Array.isArray(answer.nodes)) throw new SlurmCommandError('GET /nodes', `${via} answered GET /nodes with no "nodes" list`, '');
      return (answer.nodes as unknown[]).flatMap((node) => {
        const read = slurmNodeFromRest(node);
        return read ? [read] : [];
      });
    },
    async racks() {
      if (!tools) return new Map();
      try {
        lastRacks = await tools.racks();
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        if (!toolsWarned) {
          // Slurm's tools are optional here: without them (or their configuration) there are no racks, which is
          // worth saying once, not worth refusing to schedule. Racks read before are kept.
          toolsWarned = true;
          process.emitWarning(`racks unknown: slurmrestd does not say Slurm's topology, and \`scontrol show topology\` failed here (${message})`);
        }
      }
      return lastRacks;
    },
    async gpusHeldByOthers(ownJobNamePrefix) {
      return parseGpusHeldByOthers(JSON.stringify({ jobs: await allJobs() }), ownJobNamePrefix);
    },
    async jobs(ids) {
      const wanted = new Set(ids);
      if (wanted.size === 0) return new Map();
      return new Map((await allJobs()).map(slurmJobFromRest).filter((job) => job !== undefined && wanted.has(job.id)).map((job) => [job!.id, job!]));
    },
    async jobsNamed(name) {
      const named = (await allJobs()).map(slurmJobFromRest).filter((job): job is SlurmJobState => job !== undefined && job.name === name);
      return new Map(named.sort((a, b) => Number(a.id) - Number(b.id)).map((job) => [job.id, job]));
    },
    async submit(job) {
      const answer = await request('POST', '/job/submit', { script: job.batchScript, job: restJobFields(job, options.jobEnvironment ?? batchEnvironment(process.env)) });
      // A list read before this job existed must not tell anyone it is gone.
      jobsRead = undefined;
      const id = answer.job_id;
      if (typeof id !== 'number' && typeof id !== 'string') throw new SlurmCommandError('POST /job/submit', `${via} answered the submission with no job_id`, '');
      return String(id);
    },
    async signalStep() {
      throw new Error(`${via} cannot signal one step of a job: stop requests go to the ranks' shims instead`);
    },
    async cancel(slurmJobId) {
      await request('DELETE', `/job/${encodeURIComponent(slurmJobId)}?signal=KILL`);
    },
  };
}

/** slurmrestd's job fields for a job request: sbatch's options by their long names (see slurm-control.ts). */
export function restJobFields(job: SlurmJobRequest, environment: Readonly<Record<string, string>>): Record<string, unknown> {
  return {
    name: job.name,
    nodes: job.nodes,
    ...(job.nodeList !== undefined ? { nodelist: job.nodeList.join(',') } : {}),
    tasks_per_node: job.tasksPerNode,
    ...(job.gres !== undefined ? { gres: job.gres } : {}),
    ...(job.timeLimitMinutes !== undefined ? { time_limit: job.timeLimitMinutes } : {}),
    ...(job.partition !== undefined ? { partition: job.partition } : {}),
    ...(job.account !== undefined ? { account: job.account } : {}),
    // `requeue: false` is taken and ignored by 22.05; `no_requeue` is what works.
    no_requeue: true,
    current_working_directory: job.workdir,
    standard_output: job.outputFile,
    open_mode: 'append',
    environment,
  };
}

/**
 * The batch script's environment: the ranks' base (the shim keeps no more of it, see slurm-rank-shim.ts) with the
 * control plane's PATH, where the batch script finds srun. Never the rest of the control plane's environment: it
 * would be stored with the job in slurmctld.
 */
function batchEnvironment(env: NodeJS.ProcessEnv): Record<string, string> {
  return { ...baseRankEnvironment(env), ...(env.PATH !== undefined ? { PATH: env.PATH } : {}) };
}

/**
 * A node of `GET /nodes` as `scontrol -o show node` would say it: `state` is the base state in lower case and
 * `state_flags` its flags (`DRAIN`, `NOT_RESPONDING`, …), joined here as scontrol joins them (`IDLE+DRAIN`).
 */
export function slurmNodeFromRest(value: unknown): SlurmNode | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const node = value as Record<string, unknown>;
  if (typeof node.name !== 'string' || node.name === '') return undefined;
  const base = typeof node.state === 'string' ? node.state.toUpperCase() : 'UNKNOWN';
  const flags = Array.isArray(node.state_flags) ? node.state_flags.map((f) => String(f).toUpperCase()) : [];
  const slurmState = [base, ...flags].join('+');
  const reason = typeof node.reason === 'string' ? node.reason.trim() : '';
  return {
    name: node.name,
    address: typeof node.address === 'string' && node.address !== '' ? node.address : node.name,
    cpus: typeof node.cpus === 'number' ? node.cpus : 0,
    memoryMiB: typeof node.real_memory === 'number' ? node.real_memory : 0,
    gpus: parseGpuGres(typeof node.gres === 'string' ? node.gres : undefined),
    partitions: Array.isArray(node.partitions) ? node.partitions.map(String) : [],
    slurmState,
    state: toNodeState(slurmState),
    ...(reason !== '' ? { reason } : {}),
  };
}

/**
 * A job of `GET /jobs` as squeue's `%i|%T|%R|%j` says it: `reason` is why it waits, else its nodes. `job_state` is
 * a string in 22.05 and a list of states in later API versions (the first is the base state).
 */
export function slurmJobFromRest(value: unknown): SlurmJobState | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const job = value as Record<string, unknown>;
  if (typeof job.job_id !== 'number' && typeof job.job_id !== 'string') return undefined;
  const state = Array.isArray(job.job_state) ? String(job.job_state[0] ?? 'UNKNOWN') : String(job.job_state ?? 'UNKNOWN');
  const reason = typeof job.state_reason === 'string' && job.state_reason !== 'None' ? job.state_reason : typeof job.nodes === 'string' ? job.nodes : '';
  return { id: String(job.job_id), state, name: typeof job.name === 'string' ? job.name : '', reason };
}
