/**
 * `tutti up`: the control plane in the foreground, until Ctrl-C. With --demo it also runs a 2-rank job. Only this
 * command needs the server's code (and SQLite): the CLI imports this module when `tutti up` runs, never before.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFile } from 'node:fs/promises';
import { formatFieldErrors, parseClusterConfigYaml } from '@tutti/model';
import type { ClusterConfig } from '@tutti/model';
import { StartupError, startTuttiServer } from '@tutti/server';
import type { TuttiServer } from '@tutti/server';
import { TuttiClient } from '@tutti/client';
import { currentUser } from './current-user.ts';
import { CliFailure, EXIT } from './cli-failure.ts';

export interface UpOptions {
  port: number;
  host: string;
  dataDir: string;
  /** `--database` (or TUTTI_DATABASE): a PostgreSQL URL for the state; tutti.db in the data dir without it. */
  database?: string;
  /** `--lease-ttl` in seconds: with a database, how long the leader's lease lasts unless renewed. */
  leaseTtl?: number;
  /** `--backend`: which execution backend runs the ranks (see EXECUTION_BACKEND_KINDS). */
  backend?: string;
  /** `--slurm-partition`: with the Slurm backend, the partition tutti schedules and submits to. */
  slurmPartition?: string;
  /** `--slurm-rest-url`: reach Slurm through the site's slurmrestd instead of its tools. */
  slurmRestUrl?: string;
  /** `--slurm-user`: the Slurm user tutti's jobs run as through slurmrestd (default: this user). */
  slurmUser?: string;
  /** `--slurm-jwt-key`: the site's JWT key file, to mint slurmrestd tokens with (else SLURM_JWT's token). */
  slurmJwtKey?: string;
  /** `--slurm-placement`: who chooses the nodes, `tutti` (pinned, the default) or `slurm`. */
  slurmPlacement?: string;
  /** `--slurm-mpi`: the MPI plugin `launcher: mpi` jobs start with (`srun --mpi=…`); default pmix, else pmi2, of what Slurm offers. */
  slurmMpi?: string;
  /** `--mpirun`: the Open MPI mpirun `launcher: mpi` jobs start with on the local backend (default: mpirun on PATH). */
  mpirun?: string;
  fakeGpus?: string;
  /** `--pass-env` (repeatable, comma-separated): variables of this environment ranks get besides the allow-list. */
  passEnv?: string[];
  grace: number;
  demo: boolean;
  /** Teams, quotas and scheduler settings (YAML). */
  config?: string;
  /** Each rank log's size cap in bytes (`--max-log-bytes`); the server's default (1 GiB) when absent. */
  maxLogBytes?: number;
  /** Host names answered besides localhost, IP addresses and --host (`--allowed-host`, repeatable). */
  allowedHost?: string[];
  /** Origins of web pages that may call the API besides the dashboard (`--allowed-origin`, repeatable). */
  allowedOrigin?: string[];
  /** The largest job spec in bytes (`--max-spec-bytes`); the server's default (64 KiB) when absent. */
  maxSpecBytes?: number;
  /** The deepest nesting in a job spec (`--max-spec-depth`); the server's default (32) when absent. */
  maxSpecDepth?: number;
  /** Say what started (and the demo's output) as JSON lines on stdout; people's text goes to stderr either way. */
  json: boolean;
}

/** The demo job: two ranks that print their torchrun environment and talk to each other over MASTER_ADDR:PORT. */
const DEMO_SCRIPT = fileURLToPath(new URL('../../../examples/ddp-hello/ddp_hello.mjs', import.meta.url));
/** A first job to try, shown relative to the current directory: a checkout's, or any for an installed tutti. */
const HELLO_SPEC = fileURLToPath(new URL('../../../examples/hello.yaml', import.meta.url));
/** The built web dashboard (`npm run build`); the same path from src/ and from the dist/ bundle. */
const DASHBOARD_DIR = fileURLToPath(new URL('../../web/dist', import.meta.url));

export async function runUp(options: UpOptions): Promise<void> {
  let server: TuttiServer;
  try {
    const config = options.config ? await readClusterConfig(options.config) : undefined;
    server = await startTuttiServer({
      config,
      dataDir: options.dataDir,
      host: options.host,
      port: options.port,
      ...(options.database !== undefined ? { database: options.database } : {}),
      ...(options.leaseTtl !== undefined ? { leaseTtlMs: options.leaseTtl * 1000 } : {}),
      ...(options.backend !== undefined ? { backend: options.backend } : {}),
      ...slurmOptions(options),
      fakeGpus: options.fakeGpus,
      ...(options.passEnv !== undefined ? { passEnv: options.passEnv } : {}),
      ...(options.mpirun !== undefined ? { mpirun: options.mpirun } : {}),
      fakeGpusIfNone: options.demo && !options.fakeGpus ? '4' : undefined,
      stopGraceMs: options.grace * 1000,
      dashboardDir: DASHBOARD_DIR,
      ...(options.maxLogBytes !== undefined ? { maxLogBytes: options.maxLogBytes } : {}),
      allowedHosts: options.allowedHost ?? [],
      allowedOrigins: options.allowedOrigin ?? [],
      ...(options.maxSpecBytes !== undefined ? { maxSpecBytes: options.maxSpecBytes } : {}),
      ...(options.maxSpecDepth !== undefined ? { maxSpecDepth: options.maxSpecDepth } : {}),
    });
  } catch (error) {
    if (error instanceof StartupError) throw new CliFailure(`cannot start: ${error.message}`, EXIT.failed, 'cannot_start');
    throw error;
  }
  const gpus = server.inventory.reduce((n, node) => n + node.gpus.length, 0);
  const fake = server.inventory.some((node) => node.gpus.some((g) => g.uuid.startsWith('FAKE')));
  if (options.json) {
    writeJsonLine({ event: 'up', url: server.url, data_dir: server.dataDir, nodes: server.inventory.map((n) => ({ name: n.name, gpus: n.gpus.length })), gpus, fake_gpus: fake });
  }
  process.stderr.write(
    [
      `tutti is up at ${server.url}`,
      `  data dir  ${server.dataDir}`,
      `  state     ${options.database !== undefined ? `PostgreSQL ${describeDatabase(options.database)}` : `${path.join(server.dataDir, 'tutti.db')} (SQLite)`}`,
      ...(options.database !== undefined ? [`  replica   ${describeRole(server)}`] : []),
      `  nodes     ${server.inventory.map((n) => n.name).join(', ')} with ${gpus} GPU${gpus === 1 ? '' : 's'}${fake ? ' (fake: for trying tutti without GPUs)' : ''}`,
      `  dashboard ${server.url}/`,
      `  API docs  ${server.url}/docs`,
      `  try       npx tutti submit ${path.relative(process.cwd(), HELLO_SPEC)} --watch   |   npx tutti ps   |   npx tutti nodes`,
      ...(options.host !== '127.0.0.1' && options.host !== 'localhost' && options.host !== '::1'
        ? [`  warning   the API listens on ${options.host} without authentication: anyone who can reach it can run commands as this user`]
        : []),
      'Ctrl-C stops the control plane; running jobs keep running and are re-adopted by the next `tutti up`.',
      '',
    ].join('\n'),
  );
  const stop = once(server);
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  if (options.demo) await runDemo(server, options.json);
}

/** The Slurm backend's settings from `tutti up`'s options (and SLURM_JWT, a token for slurmrestd). */
function slurmOptions(options: UpOptions): { slurm?: { partition?: string; placement?: 'tutti' | 'slurm'; mpi?: string; rest?: { url: string; user?: string; token?: string; jwtKeyFile?: string } } } {
  const placement = options.slurmPlacement;
  if (placement !== undefined && placement !== 'tutti' && placement !== 'slurm') {
    throw new CliFailure(`--slurm-placement ${JSON.stringify(placement)}: give tutti (tutti's placement pins the nodes) or slurm (Slurm chooses them)`, EXIT.usage);
  }
  if (options.slurmRestUrl === undefined && (options.slurmUser !== undefined || options.slurmJwtKey !== undefined)) {
    throw new CliFailure('--slurm-user and --slurm-jwt-key are for slurmrestd: give its address with --slurm-rest-url', EXIT.usage);
  }
  const token = process.env.SLURM_JWT;
  const rest = options.slurmRestUrl !== undefined
    ? {
        url: options.slurmRestUrl,
        ...(options.slurmUser !== undefined ? { user: options.slurmUser } : {}),
        ...(options.slurmJwtKey !== undefined ? { jwtKeyFile: options.slurmJwtKey } : token ? { token } : {}),
      }
    : undefined;
  if (options.slurmMpi !== undefined && !/^[A-Za-z0-9_]+$/.test(options.slurmMpi)) {
    throw new CliFailure(`--slurm-mpi ${JSON.stringify(options.slurmMpi)}: give one of the plugins \`srun --mpi=list\` names, e.g. pmix or pmi2`, EXIT.usage);
  }
  if (options.slurmPartition === undefined && rest === undefined && placement === undefined && options.slurmMpi === undefined) return {};
  return {
    slurm: {
      ...(options.slurmPartition !== undefined ? { partition: options.slurmPartition } : {}),
      ...(placement !== undefined ? { placement } : {}),
      ...(options.slurmMpi !== undefined ? { mpi: options.slurmMpi } : {}),
      ...(rest ? { rest } : {}),
    },
  };
}

/** A PostgreSQL URL as the banner shows it: host, port and database, never the user's password. */
function describeDatabase(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.host}${parsed.pathname}`;
  } catch {
    return '(unparsable URL)';
  }
}

/** One JSON document per line (NDJSON): `tutti up --json` keeps writing while it runs. */
function writeJsonLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** Reads and validates `--config`; a bad file stops `tutti up` with every problem, its path, line and column. */
async function readClusterConfig(file: string): Promise<ClusterConfig> {
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new StartupError(`--config ${file}: ${error.code === 'ENOENT' ? 'no such file' : error.message}`);
  });
  const parsed = parseClusterConfigYaml(text);
  if (!parsed.ok) throw new StartupError(`--config ${file} is not valid:\n${formatFieldErrors(parsed.errors).replace(/^/gm, '  ')}`);
  if (parsed.value.nodes.length > 0) process.stderr.write(`note: the ${parsed.value.nodes.length} nodes in ${file} are for \`tutti sim\`; tutti up uses the nodes it discovers\n`);
  return parsed.value;
}

function once(server: TuttiServer): () => void {
  let stopping = false;
  return () => {
    if (stopping) return;
    stopping = true;
    process.stderr.write('\nstopping the control plane (jobs keep running)…\n');
    void server.close().then(() => process.exit(0));
  };
}

/** Under --json the demo's rank 0 output and its end are JSON lines (`demo_log`, `demo_ended`) on stdout. */
async function runDemo(server: TuttiServer, json: boolean): Promise<void> {
  const client = new TuttiClient({ baseUrl: server.url });
  const user = currentUser();
  const job = await client.submitJob(
    {
      name: 'ddp-hello-demo',
      resources: { gpus: 2 },
      run: [process.execPath, DEMO_SCRIPT],
      env: { DEMO_STEPS: '3' },
      max_duration: '5m',
    },
    user !== undefined ? { user } : {},
  );
  process.stderr.write(`demo: submitted job ${job.id} (2 ranks, 2 GPUs); its rank 0 output follows\n`);
  for await (const line of client.logLines(job.id, { rank: 0, follow: true })) {
    if (json) writeJsonLine({ event: 'demo_log', job_id: job.id, rank: 0, line });
    else process.stdout.write(`  rank 0 | ${line}\n`);
  }
  const done = await client.getJob(job.id);
  if (json) writeJsonLine({ event: 'demo_ended', job: done });
  process.stderr.write(
    `demo: job ${job.id} ${done.status} (${done.end_reason ?? ''}). See it with \`npx tutti show ${job.id}\` and \`npx tutti logs ${job.id} --rank 1\`.\n` +
      'tutti keeps running: submit your own jobs, or Ctrl-C to stop.\n',
  );
}

/** This replica's role as the banner says it: leading at an epoch, or following which replica. */
function describeRole(server: TuttiServer): string {
  const { role, self, leader } = server.leadership.state;
  if (role === 'leader') return `${self}, leading the control plane (epoch ${leader?.epoch ?? '?'})`;
  return `${self}, following ${leader ? `${leader.holder} (epoch ${leader.epoch})` : 'no leader yet'}: it serves the API and takes over if the leader goes`;
}
