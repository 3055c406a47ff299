/**
 * The `tutti` command's table: every command, its options and what it prints. Every command has --json for
 * scripts; errors name what went wrong and how to fix it (main.ts turns them into messages and exit codes).
 *
 * Only the client is loaded up front: `up`, `sim` and `bench` import the server, the simulator and the scheduler
 * when they run, so that `tutti ps` and the other client commands start in a fraction of the time.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Argument, Command, Option } from 'commander';
import { TuttiClient, describeEstimatedStart, formatGpuCount, formatRankBackend, getJobGpuMetrics, parseHistoryTrace } from '@tutti/client';
import type { JobSummaryView, JobView } from '@tutti/client';
import { pickSubmitterEnvironment } from '@tutti/model';
import { describeGpus, describeState, formatAge, renderTable, truncate } from './format.ts';
import { currentUser } from './current-user.ts';
import { registerSimCommand } from './sim-command.ts';
import { parseByteSize, parseInteger, parseJobId, parsePassEnv } from './arguments.ts';
import { CliFailure, EXIT } from './cli-failure.ts';
import { httpFetch } from './http-fetch.ts';
import type { UpOptions } from './up.ts';
import type { SchedulerBenchOptions } from './bench-run.ts';

export const DEFAULT_SERVER = 'http://127.0.0.1:7070';

/** A fresh program: main.ts runs one; tests walk its command table. */
export function buildProgram(): Command {
  const program = new Command('tutti')
    .description('tutti: run gang-scheduled GPU jobs on this machine (and, later, on a cluster)')
    .version('0.1.0')
    .addOption(new Option('--server <url>', 'tutti server to talk to').env('TUTTI_SERVER').default(DEFAULT_SERVER))
    .option('--json', 'print machine-readable JSON on stdout (errors too: {"error": {"code", "message"}})', false)
    .showHelpAfterError()
    // Usage errors throw (main.ts gives them exit code 2) instead of exiting with commander's 1; subcommands
    // inherit this, so it must come before them.
    .exitOverride();

  function client(): TuttiClient {
    return new TuttiClient({ baseUrl: program.opts<{ server: string }>().server, fetch: httpFetch });
  }
  function json(): boolean {
    return program.opts<{ json: boolean }>().json;
  }
  function print(value: unknown, human: () => string): void {
    process.stdout.write(`${json() ? JSON.stringify(value, null, 2) : human()}\n`);
  }

  program
    .command('up')
    .description('start the control plane in the foreground (SQLite state and local processes on this machine)')
    .option('--port <port>', 'HTTP port', parseInteger('--port'), 7070)
    .option('--host <address>', 'address to bind (127.0.0.1 keeps the API private to this machine)', '127.0.0.1')
    .option('--data-dir <dir>', 'where state and logs live', path.join(process.env.HOME ?? '.', '.tutti'))
    // No default here: the server's EXECUTION_BACKEND_KINDS has it (and the list an unknown one is refused with).
    .addOption(new Option('--database <url>', 'keep the state in PostgreSQL (postgres://USER@HOST:PORT/DATABASE) instead of tutti.db in the data dir; replicas started on one database share the work: one leads, all serve the API').env('TUTTI_DATABASE'))
    .option('--lease-ttl <seconds>', 'with --database: how long the leader\'s lease lasts unless renewed, i.e. the longest a dead leader holds the cluster up (default 8)', parseInteger('--lease-ttl', 1))
    .option('--backend <kind>', 'what runs the ranks: local (processes on this machine, the default) or slurm (a Slurm cluster through sbatch/srun on this login node)')
    .option('--slurm-partition <name>', 'with --backend slurm: the partition whose nodes tutti schedules and submits to (default: every node, Slurm\'s default partition)')
    .option('--slurm-rest-url <url>', 'with --backend slurm: reach Slurm through the site\'s slurmrestd (http://host:port) instead of its tools; the token comes from SLURM_JWT or --slurm-jwt-key')
    .option('--slurm-jwt-key <file>', 'with --slurm-rest-url: the site\'s JWT key (slurm.conf jwt_key), to mint and renew tokens with')
    .option('--slurm-user <name>', 'with --slurm-rest-url: the Slurm user the jobs run as (default: this user)')
    .option('--slurm-placement <who>', 'with --backend slurm: tutti (its topology-aware placement pins the nodes, the default) or slurm (Slurm chooses nodes of the shape tutti found)')
    .option('--slurm-mpi <plugin>', 'with --backend slurm: the MPI plugin launcher: mpi jobs start with (srun --mpi=PLUGIN; default pmix, else pmi2, of what srun --mpi=list offers)')
    .option('--mpirun <path>', 'the Open MPI mpirun that starts launcher: mpi jobs on the local backend (default: mpirun on PATH)')
    .option('--fake-gpus <N[:MODEL[:MEMORY]]>', 'simulate N GPUs (e.g. 4, 8:H100, 8:H100:80GB) on a machine without them')
    .option('--pass-env <names>', 'variables of this environment that every rank gets (repeatable, comma-separated; NAME or PREFIX_*), e.g. NCCL_SOCKET_IFNAME,LD_LIBRARY_PATH,HF_*; otherwise ranks get only HOME, USER, LOGNAME, SHELL, LANG, LC_*, TZ, TMPDIR and a system PATH, plus their job\'s env', (names: string, all: string[] = []) => [...all, ...parsePassEnv(names)])
    .option('--grace <seconds>', 'SIGTERM → SIGKILL grace period when stopping a job', parseInteger('--grace'), 30)
    .option('--demo', 'submit a 2-rank demo job and show it run (uses 4 fake GPUs if the machine has none)', false)
    .option('--config <file>', 'teams, quotas and scheduler settings (YAML; see examples/clusters)')
    .option('--max-log-bytes <size>', 'the most one rank\'s log keeps (e.g. 1GiB, 512MiB, or bytes); past it the oldest output is dropped', parseByteSize('--max-log-bytes'))
    .option('--allowed-host <name>', 'also answer requests addressed to this host name (repeatable); localhost, IP addresses and --host always are', (name: string, names: string[] = []) => [...names, name])
    .option('--allowed-origin <origin>', 'let web pages from this origin call the API, e.g. http://localhost:5173 (repeatable); the dashboard always may', (origin: string, origins: string[] = []) => [...origins, origin])
    .option('--max-spec-bytes <bytes>', 'the largest job spec (request body) accepted, in bytes (default 65536)', parseInteger('--max-spec-bytes', 1024))
    .option('--max-spec-depth <levels>', 'the deepest nesting of lists and mappings a job spec may have (default 32)', parseInteger('--max-spec-depth', 8))
    .action(async (options: Omit<UpOptions, 'json'>) => {
      const { runUp } = await import('./up.ts');
      await runUp({ ...options, json: json() });
    });

  program
    .command('submit')
    .argument('<file>', 'job spec, YAML or JSON')
    .description('submit a job')
    .option('-w, --watch', 'follow the job: its events, and rank 0\'s output, until it ends; exit with its exit code (with --json: print only the ended job)', false)
    .option('--no-inherit-env', 'do not send this shell\'s PATH and active virtualenv (VIRTUAL_ENV, CONDA_PREFIX); the ranks then get a system PATH plus the spec\'s env')
    .action(async (file: string, options: { watch: boolean; inheritEnv: boolean }) => {
      const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
        throw new CliFailure(`cannot read ${file}: ${error.code === 'ENOENT' ? 'no such file' : error.message}`, EXIT.usage);
      });
      const specDir = path.dirname(path.resolve(file));
      const user = currentUser();
      const submitterEnv = options.inheritEnv ? pickSubmitterEnvironment(process.env) : {};
      const job = await client().submitJob(text, { submitDir: specDir, submitterEnv, ...(user !== undefined ? { user } : {}) });
      if (!options.watch) {
        print(job, () => `submitted job ${job.id} (${job.name}): ${job.status}${job.pending_reason ? ` — ${job.pending_reason}` : ''}`);
        return;
      }
      process.stderr.write(`submitted job ${job.id} (${job.name})\n`);
      const final = await watchJob(job.id);
      if (json()) print(final, () => '');
      if (final.status !== 'succeeded') process.exitCode = final.exit_code && final.exit_code > 0 ? Math.min(final.exit_code, 255) : EXIT.failed;
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
      let jobs: JobSummaryView[];
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
    .argument('<id>', 'job id', parseJobId)
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
          `  resources  ${job.num_nodes} node${job.num_nodes === 1 ? '' : 's'} × ${formatGpuCount(job.gpus_per_node)}`,
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
          lines.push('', renderTable(['RANK', 'NODE', 'GPUS', 'BACKEND', 'STATUS', 'EXIT'], job.tasks.map((t) => [String(t.rank), t.node, t.gpus.join(',') || '-', formatRankBackend(t.backend) ?? '-', t.status, t.exit_code === null ? '-' : String(t.exit_code)])));
        }
        if (events.length > 0) lines.push('', ...events.map((e) => `  ${e.at}  ${e.type.padEnd(16)} ${e.message}`));
        return lines.join('\n');
      });
    });

  program
    .command('metrics')
    .argument('<id>', 'job id', parseJobId)
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
    .argument('<id>', 'job id', parseJobId)
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
          ...(diagnosis.estimated_start_at ? [`  starts     ${describeEstimatedStart(diagnosis, Date.now()) ?? ''} (around ${diagnosis.estimated_start_at})`] : []),
        ].join('\n');
      });
    });

  program
    .command('export')
    .addArgument(new Argument('<what>', 'what to export').choices(['history']))
    .description('export finished jobs as a trace CSV, to replay your own workload with `tutti sim --trace FILE` (--json: an array of rows)')
    .action(async () => {
      const csv = await client().exportHistory();
      if (json()) print(parseHistoryTrace(csv), () => '');
      else process.stdout.write(csv);
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
    .argument('<id>', 'job id', parseJobId)
    .description("a rank's output (stdout and stderr); --json: {job_id, rank, attempt, lines}, or with -f one {job_id, rank, attempt, line} per line (NDJSON)")
    .option('-f, --follow', 'keep printing until the job ends', false)
    .option('--rank <n>', 'which rank', parseInteger('--rank'), 0)
    .option('--attempt <n>', 'an earlier attempt (default: the current one)', parseInteger('--attempt', 1))
    .action(async (id: string, options: { follow: boolean; rank: number; attempt?: number }) => {
      const c = client();
      const query = { rank: options.rank, follow: options.follow, ...(options.attempt !== undefined ? { attempt: options.attempt } : {}) };
      if (!json()) {
        for await (const chunk of c.logs(id, query)) process.stdout.write(chunk);
        return;
      }
      // The attempt whose log this is: the one asked for, or the job's current one once it has output (a pending job
      // followed with -f has none yet).
      const attempt = async () => options.attempt ?? (await c.getJob(id)).attempt;
      if (!options.follow) {
        const lines: string[] = [];
        for await (const line of c.logLines(id, query)) lines.push(line);
        print({ job_id: id, rank: options.rank, attempt: await attempt(), lines }, () => '');
        return;
      }
      let current: number | undefined;
      for await (const line of c.logLines(id, query)) {
        current ??= await attempt();
        process.stdout.write(`${JSON.stringify({ job_id: id, rank: options.rank, attempt: current, line })}\n`);
      }
    });

  program
    .command('cancel')
    .argument('<id>', 'job id', parseJobId)
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
            const head = `${n.name}  ${n.state}${n.state_reason !== null ? ` (${n.state_reason})` : ''}  ${n.address}  ${n.cpus} CPUs  ${Math.round(n.memory_mib / 1024)} GiB  GPUs ${used}/${n.gpus.length} in use`;
            if (n.gpus.length === 0) return `${head}\n  (no GPUs)`;
            const holders = (g: (typeof n.gpus)[number]) => (g.shares.length > 0 ? g.shares.map((s) => `${s.job_id} (${s.fraction})`).join(' ') : (g.job_id ?? '-'));
            const gauges = (g: (typeof n.gpus)[number]) => (g.metrics ? `${g.metrics.utilization_pct ?? '-'}% ${g.metrics.power_w ?? '-'} W` : '-');
            const table = renderTable(['GPU', 'TYPE', 'MEMORY', 'JOB', 'UTIL/POWER', 'UUID'], n.gpus.map((g) => [String(g.index), g.type, `${Math.round(g.memory_mib / 1024)} GiB`, holders(g), gauges(g), g.uuid]));
            return `${head}\n${table.replace(/^/gm, '  ')}`;
          })
          .join('\n\n'),
      );
    });

  program
    .command('status')
    .description('the server: version, uptime, whether it is ready, and which replica leads the control plane (epoch)')
    .action(async () => {
      const health = await client().health();
      const readiness = await client().readiness().then(
        () => 'ready',
        (error: unknown) => `not ready: ${error instanceof Error ? error.message : String(error)}`,
      );
      const leader = health.leader;
      print({ ...health, readiness }, () =>
        [
          `server    ${program.opts<{ server: string }>().server}  tutti ${health.version}, up ${health.uptime_s} s, ${readiness}${health.recovering ? ' (re-adopting the jobs that ran before)' : ''}`,
          `replica   ${health.replica}  ${health.role}`,
          `leader    ${leader ? `${leader.replica}  epoch ${leader.epoch}${leader.lease_expires_at !== null ? `  lease until ${leader.lease_expires_at}` : ''}` : 'none (a replica takes over once the lease runs out)'}`,
          ...(health.disk_full !== null ? [`disk full ${health.disk_full}`] : []),
        ].join('\n'),
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
    .action(async (options: SchedulerBenchOptions) => {
      const { runSchedulerBenchCommand } = await import('./bench-run.ts');
      const result = runSchedulerBenchCommand(options, json());
      print(result.figures, () => result.text);
    });

  /**
   * Prints a job's events (stderr) and rank 0's output (stdout) until it ends; returns the final job. Under --json
   * it prints neither, so that stdout holds only the ended job (`tutti logs ID --json` has the output).
   */
  async function watchJob(id: string): Promise<JobView> {
    const c = client();
    const abort = new AbortController();
    const logs = json()
      ? Promise.resolve()
      : (async () => {
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

  return program;
}
