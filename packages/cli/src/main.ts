/** The `tutti` command. Every command has --json for scripts; errors name what went wrong and how to fix it. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ApiError, ServerUnreachableError, TuttiClient, getJobGpuMetrics } from '@tutti/client';
import type { JobView } from '@tutti/client';
import { StartupError } from '@tutti/server';
import { describeGpus, describeState, formatAge, renderTable, truncate } from './format.ts';
import { runUp } from './up.ts';
import { currentUser } from './current-user.ts';
import { registerSimCommand } from './sim-command.ts';
import { checkSchedulerBenchOptions, formatSchedulerBench, runSchedulerBench } from '@tutti/sim';

const DEFAULT_SERVER = 'http://127.0.0.1:7070';

/** Exit codes: 0 ok, 1 the request was refused or the job failed, 2 usage, 3 no server. */
class CliFailure extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

const program = new Command('tutti')
  .description('tutti: run gang-scheduled GPU jobs on this machine (and, later, on a cluster)')
  .version('0.1.0')
  .addOption(new Option('--server <url>', 'tutti server to talk to').env('TUTTI_SERVER').default(DEFAULT_SERVER))
  .option('--json', 'print machine-readable JSON', false)
  .showHelpAfterError();

function client(): TuttiClient {
  return new TuttiClient({ baseUrl: program.opts<{ server: string }>().server });
}
function json(): boolean {
  return program.opts<{ json: boolean }>().json;
}
function print(value: unknown, human: () => string): void {
  process.stdout.write(`${json() ? JSON.stringify(value, null, 2) : human()}\n`);
}
function parseInteger(name: string, min = 0) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}, got '${value}'`);
    return n;
  };
}

program
  .command('up')
  .description('start the control plane in the foreground (SQLite state and local processes on this machine)')
  .option('--port <port>', 'HTTP port', parseInteger('--port'), 7070)
  .option('--host <address>', 'address to bind (127.0.0.1 keeps the API private to this machine)', '127.0.0.1')
  .option('--data-dir <dir>', 'where state and logs live', path.join(process.env.HOME ?? '.', '.tutti'))
  .option('--fake-gpus <N[:MODEL[:MEMORY]]>', 'simulate N GPUs (e.g. 4, 8:H100, 8:H100:80GB) on a machine without them')
  .option('--grace <seconds>', 'SIGTERM → SIGKILL grace period when stopping a job', parseInteger('--grace'), 30)
  .option('--demo', 'submit a 2-rank demo job and show it run (uses 4 fake GPUs if the machine has none)', false)
  .option('--config <file>', 'teams, quotas and scheduler settings (YAML; see examples/clusters)')
  .action(async (options: { port: number; host: string; dataDir: string; fakeGpus?: string; grace: number; demo: boolean; config?: string }) => {
    await runUp(options);
  });

program
  .command('submit')
  .argument('<file>', 'job spec, YAML or JSON')
  .description('submit a job')
  .option('-w, --watch', 'follow the job: its events, and rank 0\'s output, until it ends; exit with its exit code', false)
  .action(async (file: string, options: { watch: boolean }) => {
    const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
      throw new CliFailure(`cannot read ${file}: ${error.code === 'ENOENT' ? 'no such file' : error.message}`, 2);
    });
    const specDir = path.dirname(path.resolve(file));
    const user = currentUser();
    const job = await client().submitJob(text, { submitDir: specDir, ...(user !== undefined ? { user } : {}) });
    if (!options.watch) {
      print(job, () => `submitted job ${job.id} (${job.name}): ${job.status}${job.pending_reason ? ` — ${job.pending_reason}` : ''}`);
      return;
    }
    process.stderr.write(`submitted job ${job.id} (${job.name})\n`);
    const final = await watchJob(job.id);
    if (json()) print(final, () => '');
    if (final.status !== 'succeeded') process.exitCode = final.exit_code && final.exit_code > 0 ? Math.min(final.exit_code, 255) : 1;
  });

program
  .command('ps')
  .description('list jobs (pending and running; --all for finished ones too)')
  .option('-a, --all', 'include finished jobs', false)
  .option('--team <team>', 'only this team')
  .option('--user <user>', 'only jobs this user submitted')
  .option('--mine', 'only jobs you submitted', false)
  .option('--limit <n>', 'at most this many', parseInteger('--limit', 1), 50)
  .action(async (options: { all: boolean; team?: string; user?: string; mine: boolean; limit: number }) => {
    const c = client();
    const user = options.mine ? currentUser() : options.user;
    const filter = { team: options.team, ...(user !== undefined ? { user } : {}), limit: options.limit };
    let jobs: JobView[];
    if (options.all) {
      jobs = (await c.listJobs(filter)).jobs;
    } else {
      const [running, pending] = await Promise.all([c.listJobs({ ...filter, status: 'running' }), c.listJobs({ ...filter, status: 'pending' })]);
      jobs = [...running.jobs, ...pending.jobs].sort((a, b) => Number(b.id) - Number(a.id)).slice(0, options.limit);
    }
    const now = Date.now();
    print({ jobs }, () =>
      jobs.length === 0
        ? options.all
          ? 'no jobs yet: submit one with `tutti submit FILE`'
          : 'no pending or running jobs (`tutti ps --all` shows finished ones)'
        : renderTable(
            ['ID', 'NAME', 'TEAM', 'USER', 'PRI', 'STATUS', 'GPUS', 'AGE', 'REASON'],
            jobs.map((j) => [j.id, j.name, j.team, j.user ?? '-', String(j.priority), j.status, describeGpus(j), formatAge(j.created_at, now), truncate(describeState(j), 70)]),
          ),
    );
  });

program
  .command('show')
  .argument('<id>', 'job id')
  .description('one job: status, why it waits or how it ended, its ranks and history')
  .action(async (id: string) => {
    const c = client();
    const job = await c.getJob(id);
    const { events } = await c.listJobEvents(id);
    print({ ...job, events }, () => {
      const lines = [
        `job ${job.id}  ${job.name}`,
        `  status     ${job.status}${job.exit_code !== null ? ` (exit code ${job.exit_code})` : ''}`,
        ...(job.pending_reason ? [`  waiting    ${job.pending_reason}${job.pending_diagnosis ? ` [${job.pending_diagnosis.code}]` : ''}`] : []),
        ...(job.end_reason ? [`  ended      ${job.end_reason}`] : []),
        `  team       ${job.team}   priority ${job.priority}${job.user ? `   submitted by ${job.user}` : ''}`,
        `  resources  ${job.num_nodes} node${job.num_nodes === 1 ? '' : 's'} × ${job.gpus_per_node} GPU${job.gpus_per_node === 1 ? '' : 's'}`,
        `  submitted  ${job.created_at}`,
        ...(job.started_at ? [`  started    ${job.started_at}`] : []),
        ...(job.finished_at ? [`  finished   ${job.finished_at}`] : []),
        ...(job.attempt > 0 ? [`  attempt    ${job.attempt}   restarts ${job.restarts} of ${job.max_restarts}`] : []),
        ...(job.progress ? [`  progress   ${Object.entries(job.progress.values).map(([k, v]) => `${k}=${String(v)}`).join(' ')}  (attempt ${job.progress.attempt}, ${job.progress.at})`] : []),
        ...(job.last_checkpoint ? [`  checkpoint ${job.last_checkpoint}`] : []),
        ...(job.usage ? [`  usage      ${job.usage.gpu_hours.toFixed(3)} GPU-hours, ${job.usage.energy_wh === null ? 'energy not measured (no GPU power readings)' : `${job.usage.energy_wh.toFixed(1)} Wh`}`] : []),
      ];
      if ((job.attempts ?? []).length > 1) {
        lines.push('', renderTable(['ATTEMPT', 'STARTED', 'FINISHED', 'EXIT', 'REASON'], (job.attempts ?? []).map((a) => [String(a.attempt), a.started_at ?? '-', a.finished_at ?? 'running', a.exit_code === null ? '-' : String(a.exit_code), a.reason ?? '-'])));
      }
      if (job.tasks && job.tasks.length > 0) {
        lines.push('', renderTable(['RANK', 'NODE', 'GPUS', 'PID', 'STATUS', 'EXIT'], job.tasks.map((t) => [String(t.rank), t.node, t.gpus.join(',') || '-', t.pid ? String(t.pid) : '-', t.status, t.exit_code === null ? '-' : String(t.exit_code)])));
      }
      if (events.length > 0) lines.push('', ...events.map((e) => `  ${e.at}  ${e.type.padEnd(16)} ${e.message}`));
      return lines.join('\n');
    });
  });

program
  .command('metrics')
  .argument('<id>', 'job id')
  .description('a job\'s progress records ({"tutti": {...}} lines its ranks printed, or posts with TUTTI_JOB_TOKEN), oldest first, and its GPUs\' latest gauges')
  .option('--last <n>', 'only the newest n records', parseInteger('--last'), 20)
  .action(async (id: string, options: { last: number }) => {
    const c = client();
    const view = await c.getJobMetrics(id, { last: options.last });
    const gpu = await getJobGpuMetrics(c, id);
    const samples = gpu.available ? gpu.samples : [];
    print({ ...view, gpu_samples: samples }, () => {
      const parts: string[] = [];
      if (view.records.length === 0) parts.push(`job ${id} has reported no progress yet (print {"tutti": {"step": N, "loss": X}} lines on stdout)`);
      else {
        const fields = [...new Set(view.records.flatMap((r) => Object.keys(r.values)))].filter((f) => f !== 'checkpoint');
        parts.push(renderTable(
          ['AT', 'ATTEMPT', 'RANK', ...fields.map((f) => f.toUpperCase()), 'CHECKPOINT'],
          view.records.map((r) => [r.at, String(r.attempt), String(r.rank), ...fields.map((f) => (r.values[f] === undefined ? '-' : String(r.values[f]))), r.checkpoint ?? '-']),
        ));
      }
      const latest = new Map(samples.map((s) => [`${s.node}/${s.gpuIndex}`, s]));
      const figure = (v: number | null, unit: string) => (v === null ? '-' : `${v}${unit}`);
      if (latest.size === 0) parts.push('', 'no GPU metrics (fake GPUs, or not sampled yet)');
      else {
        parts.push('', renderTable(['GPU', 'AT', 'UTIL', 'MEMORY', 'POWER', 'TEMP'], [...latest.values()].map((s) => [
          `${s.node}/${s.gpuIndex}`, s.at, figure(s.utilizationPct, '%'), s.memoryUsedMiB === null ? '-' : `${s.memoryUsedMiB}/${s.memoryTotalMiB ?? '?'} MiB`, figure(s.powerW, ' W'), figure(s.temperatureC, ' °C'),
        ])));
      }
      return parts.join('\n');
    });
  });

program
  .command('why')
  .argument('<id>', 'job id')
  .description('why a job is pending: which scheduler step stopped it, its place in its team\'s queue, and when it should start')
  .action(async (id: string) => {
    const job = await client().getJob(id);
    const diagnosis = job.pending_diagnosis;
    print({ id: job.id, status: job.status, pending_reason: job.pending_reason, diagnosis }, () => {
      if (job.status !== 'pending') return `job ${id} is ${job.status}${job.end_reason ? `: ${job.end_reason}` : ''}; it is not waiting`;
      if (!diagnosis) return `job ${id} is pending: ${job.pending_reason ?? 'waiting for the next scheduling cycle'}`;
      return [
        `job ${id} (${job.name}) is pending`,
        `  why        ${diagnosis.message}`,
        `  stopped by ${diagnosis.plugin} [${diagnosis.code}]`,
        ...(diagnosis.position ? [`  queue      ${diagnosis.position.index} of ${diagnosis.position.of} pending in team ${diagnosis.position.team}`] : []),
        ...(diagnosis.estimated_start_at ? [`  starts     around ${diagnosis.estimated_start_at}`] : []),
      ].join('\n');
    });
  });

program
  .command('export')
  .argument('<what>', 'what to export: history')
  .description('export finished jobs as a trace CSV, to replay your own workload with `tutti sim --trace FILE`')
  .action(async (what: string) => {
    if (what !== 'history') throw new CliFailure(`export: unknown '${what}'; try \`tutti export history > trace.csv\``, 2);
    process.stdout.write(await client().exportHistory());
  });

program
  .command('queues')
  .description('teams in fair-share order: quota, GPUs in use and borrowed, recent (decayed) use, running and pending jobs')
  .action(async () => {
    const { teams } = await client().listTeams();
    const amounts = (a: Record<string, number> | null) => (a && Object.keys(a).length > 0 ? Object.entries(a).map(([type, n]) => `${type}:${n}`).join(' ') : '-');
    print({ teams }, () =>
      teams.length === 0
        ? 'no teams yet: jobs name their team with `team:`, and `tutti up --config` sets quotas'
        : renderTable(
            ['ORDER', 'TEAM', 'WEIGHT', 'QUOTA', 'USED', 'BORROWED', 'RECENT GPU-H', 'RUNNING', 'PENDING'],
            [...teams]
              .sort((a, b) => a.fair_share.position - b.fair_share.position)
              .map((t) => [String(t.fair_share.position), t.name, String(t.weight), amounts(t.quota), amounts(t.used), amounts(t.borrowed), t.fair_share.decayed_gpu_hours.toFixed(2), String(t.running_jobs), String(t.pending_jobs)]),
          ),
    );
  });

program
  .command('logs')
  .argument('<id>', 'job id')
  .description("a rank's output (stdout and stderr)")
  .option('-f, --follow', 'keep printing until the job ends', false)
  .option('--rank <n>', 'which rank', parseInteger('--rank'), 0)
  .option('--attempt <n>', 'an earlier attempt (default: the current one)', parseInteger('--attempt', 1))
  .action(async (id: string, options: { follow: boolean; rank: number; attempt?: number }) => {
    for await (const chunk of client().logs(id, { rank: options.rank, follow: options.follow, ...(options.attempt !== undefined ? { attempt: options.attempt } : {}) })) process.stdout.write(chunk);
  });

program
  .command('cancel')
  .argument('<id>', 'job id')
  .description('cancel a job: a pending one at once; a running one gets SIGTERM, then SIGKILL after the grace period')
  .action(async (id: string) => {
    const job = await client().cancelJob(id);
    print(job, () => (job.status === 'cancelled' ? `job ${id} cancelled` : job.status === 'running' ? `job ${id} is stopping (SIGTERM sent to every rank)` : `job ${id} had already ended: ${job.status}`));
  });

program
  .command('nodes')
  .description('nodes and GPUs, and which job holds each GPU')
  .action(async () => {
    const { nodes } = await client().listNodes();
    print({ nodes }, () =>
      nodes
        .map((n) => {
          const used = n.gpus.filter((g) => g.job_id !== null).length;
          const head = `${n.name}  ${n.state}  ${n.address}  ${n.cpus} CPUs  ${Math.round(n.memory_mib / 1024)} GiB  GPUs ${used}/${n.gpus.length} in use`;
          if (n.gpus.length === 0) return `${head}\n  (no GPUs)`;
          const holders = (g: (typeof n.gpus)[number]) => (g.shares.length > 0 ? g.shares.map((s) => `${s.job_id} (${s.fraction})`).join(' ') : (g.job_id ?? '-'));
          const gauges = (g: (typeof n.gpus)[number]) => (g.metrics ? `${g.metrics.utilization_pct ?? '-'}% ${g.metrics.power_w ?? '-'} W` : '-');
          const table = renderTable(['GPU', 'TYPE', 'MEMORY', 'JOB', 'UTIL/POWER', 'UUID'], n.gpus.map((g) => [String(g.index), g.type, `${Math.round(g.memory_mib / 1024)} GiB`, holders(g), gauges(g), g.uuid]));
          return `${head}\n${table.replace(/^/gm, '  ')}`;
        })
        .join('\n\n'),
    );
  });

registerSimCommand(program, json);

const bench = program.command('bench').description('measure parts of tutti on this machine');
bench
  .command('scheduler')
  .description('full scheduling cycles on a busy synthetic cluster: cycle time, placements/s, the cost of one arrival, and how it grows with nodes and pending jobs')
  .option('--nodes <n>', 'nodes', parseInteger('--nodes', 1), 1250)
  .option('--gpus-per-node <n>', 'GPUs per node', parseInteger('--gpus-per-node', 1), 8)
  .option('--pending <n>', 'pending jobs', parseInteger('--pending', 0), 50_000)
  .option('--teams <n>', 'teams with quotas', parseInteger('--teams', 1), 100)
  .option('--profile <name>', 'scheduler profile (tutti, fifo, fifo-backfill, greedy, ...)', 'tutti')
  .option('--rounds <n>', 'timed cycles per figure', parseInteger('--rounds', 1), 15)
  .action((options: { nodes: number; gpusPerNode: number; pending: number; teams: number; profile: string; rounds: number }) => {
    const problem = checkSchedulerBenchOptions(options);
    if (problem) throw new CliFailure(problem, 2);
    if (!json()) process.stderr.write(`timing full cycles at ${options.nodes} nodes × ${options.gpusPerNode} GPUs, ${options.pending} pending jobs (and at other sizes for the growth tables)...\n`);
    const result = runSchedulerBench(options);
    print(result, () => formatSchedulerBench(result));
  });


/** Prints a job's events (stderr) and rank 0's output (stdout) until it ends; returns the final job. */
async function watchJob(id: string): Promise<JobView> {
  const c = client();
  const abort = new AbortController();
  const logs = (async () => {
    for await (const chunk of c.logs(id, { rank: 0, follow: true, signal: abort.signal })) process.stdout.write(chunk);
  })().catch(() => undefined);
  try {
    for await (const event of c.events({ jobId: id, afterSeq: 0, signal: abort.signal })) {
      if (!json()) process.stderr.write(`[job ${id}] ${event.type}: ${event.message}\n`);
      if (event.type === 'succeeded' || event.type === 'failed' || event.type === 'cancelled') break;
    }
  } finally {
    // Rank 0's last lines, for at most 2 s; the timer must not keep the process alive once they are in.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([logs, new Promise((resolve) => (timer = setTimeout(resolve, 2000)))]);
    clearTimeout(timer);
    abort.abort();
  }
  return c.getJob(id);
}

function explain(error: unknown): { message: string; exitCode: number } {
  if (error instanceof ServerUnreachableError) {
    return { message: `${error.message}.\nStart one with \`npx tutti up\` (add --fake-gpus 4 on a machine without GPUs), or point --server / TUTTI_SERVER at a running one.`, exitCode: 3 };
  }
  if (error instanceof ApiError) {
    const fields = error.body.error.fields ?? [];
    const details = fields.length > 1 || (fields[0] && !error.message.startsWith(fields[0].path))
      ? `\n${fields.map((f) => `  ${f.path || '(document)'}: ${f.message}${f.line !== undefined ? ` (line ${f.line}, column ${f.column ?? 1})` : ''}`).join('\n')}`
      : fields[0]?.line !== undefined ? ` (line ${fields[0].line}, column ${fields[0].column ?? 1})` : '';
    return { message: `${error.status === 422 ? 'unschedulable' : 'error'}: ${error.message}${details}`, exitCode: 1 };
  }
  if (error instanceof CliFailure) return { message: error.message, exitCode: error.exitCode };
  if (error instanceof StartupError) return { message: `cannot start: ${error.message}`, exitCode: 1 };
  return { message: error instanceof Error ? (error.stack ?? error.message) : String(error), exitCode: 1 };
}

try {
  await program.parseAsync(process.argv);
} catch (error) {
  const { message, exitCode } = explain(error);
  if (json()) process.stdout.write(`${JSON.stringify(error instanceof ApiError ? error.body : { error: { code: 'cli_error', message } }, null, 2)}\n`);
  process.stderr.write(`tutti: ${message}\n`);
  process.exitCode = exitCode;
}
