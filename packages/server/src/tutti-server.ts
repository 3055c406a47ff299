/**
 * The composition root: opens the data dir (one server per dir), the store and the backend, re-adopts what ran
 * before, starts the control loop and serves the API. Everything else receives its dependencies from here.
 */
import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { ClusterConfig, NodeInfo } from '@tutti/model';
import { resolveSchedulerSettings } from '@tutti/scheduler';
import { acquireDataDirLock, createPostgresStateStore, createSqliteStateStore, explainDataDirFailure, LOCK_FILE_NAME, MigrationWhileLeadError, PostgresConnectionError, PRIVATE_DIR_MODE, SchemaTooNewError } from '@tutti/store';
import type { PostgresStateStore, StateStore } from '@tutti/store';
import { EXECUTION_BACKEND_KINDS, createLocalBackend, createSlurmBackend, isExecutionBackendKind, readRememberedFakeGpus, rememberFakeGpus } from '@tutti/backends';
import type { SlurmBackendOptions } from '@tutti/backends';
import type { ExecutionBackend } from '@tutti/backends';
import { EventFeed } from './event-feed.ts';
import type { JobController } from './job-controller.ts';
import type { LifecyclePoint } from './job-controller.ts';
import { buildHttpApp } from './http/app.ts';
import { DEFAULT_BODY_LIMITS, checkBodyLimits } from './http/body-parsers.ts';
import { checkBrowserSafetyOptions } from './http/request-guards.ts';
import { DiskFullLog } from './disk-full-log.ts';
import { DEFAULT_MAX_LOG_BYTES, checkMaxLogBytes } from './log-cap.ts';
import { createConsoleLogger } from './logger.ts';
import type { Logger } from './logger.ts';
import { ServerMetrics } from './metrics.ts';
import { ClusterHistory } from './cluster-history.ts';
import { LeaderTerm } from './leader-term.ts';
import type { LeaderTermOptions } from './leader-term.ts';
import { DEFAULT_LEASE_TTL_MS, LeaderElection, checkLeaseTtl, soleLeadership, CONTROL_LEASE } from './leadership.ts';
import type { Leadership } from './leadership.ts';
import { ReplicaControl } from './replica-control.ts';
import { JobTokens } from './job-tokens.ts';

export const TUTTI_VERSION = '0.1.0';

export interface TuttiServerOptions {
  /** Where the database, logs and rank status files live. */
  dataDir: string;
  /** @default '127.0.0.1' — only this machine can reach the API unless asked otherwise. */
  host?: string;
  /** 0 picks a free port. @default 7070 */
  port?: number;
  /**
   * Which execution backend runs the ranks (`tutti up --backend`): one of EXECUTION_BACKEND_KINDS. Everything the
   * server does with ranks (launch, stop, logs, checkpoint and control dirs) goes through it. @default 'local'
   */
  backend?: string;
  /** Simulated GPUs, `N[:MODEL[:MEMORY]]`, for machines without GPUs (or to test). The local backend's only. */
  fakeGpus?: string;
  /**
   * Variables of the server's environment that ranks get besides the allow-list (HOME, USER, locale, TMPDIR; see
   * @tutti/backends' baseRankEnvironment): names, or prefixes ending in `*` (`tutti up --pass-env`).
   */
  passEnv?: readonly string[];
  /** The Open MPI mpirun that starts `launcher: mpi` jobs on the local backend (`tutti up --mpirun`). @default mpirun on PATH */
  mpirun?: string;
  /**
   * With `backend: 'slurm'`: the partition whose nodes tutti schedules (`tutti up --slurm-partition`), each team's
   * partition and account, how often Slurm is asked. The data dir must then be on a file system every node sees.
   */
  slurm?: Omit<SlurmBackendOptions, 'dataDir' | 'now'>;
  /**
   * Teams, quotas and scheduler settings (`tutti up --config FILE`, parsed by `parseClusterConfigYaml`). Nodes
   * listed there are for `tutti sim`: the local backend discovers its own.
   */
  config?: ClusterConfig;
  /** Fake GPUs to use only when the machine has no real ones (`tutti up --demo`). */
  fakeGpusIfNone?: string;
  /** SIGTERM → SIGKILL grace period when a job is cancelled or stopped. @default 30000 */
  stopGraceMs?: number;
  /** Period of the background scheduling tick. @default 1000 */
  tickMs?: number;
  logger?: Logger;
  /**
   * The built web dashboard (packages/web/dist) to serve at `/`; `tutti up` passes it. Without it `/` says how to
   * build and serve the dashboard.
   */
  dashboardDir?: string;
  /**
   * Host names the API answers to besides localhost, IP addresses and the bound host (`tutti up --allowed-host`):
   * other names are refused, so that a web page cannot reach the API through DNS rebinding.
   */
  allowedHosts?: readonly string[];
  /**
   * Origins (`http://host:port`) of web pages allowed to call the API besides the dashboard it serves
   * (`tutti up --allowed-origin`); requests from any other page are refused.
   */
  allowedOrigins?: readonly string[];
  /** The largest request body, i.e. job spec, in bytes (`tutti up --max-spec-bytes`). @default 65536 */
  maxSpecBytes?: number;
  /** The deepest nesting of lists and mappings in a body (`tutti up --max-spec-depth`). @default 32 */
  maxSpecDepth?: number;
  /** How often the queue length and GPU allocation are sampled for the dashboard's charts. @default 5000 */
  clusterSampleMs?: number;
  /** How often GPU gauges are sampled (real GPUs only). @default 10000 */
  gpuSampleMs?: number;
  /** The nvidia-smi program the local backend runs. @default 'nvidia-smi' on PATH */
  nvidiaSmi?: string;
  /** The clock. @default Date.now */
  now?: () => number;
  /** Called right after each durable step of a job's life; the crash-recovery tests kill the server there. */
  onLifecyclePoint?: (point: LifecyclePoint, jobId: string) => void;
  /**
   * The most bytes one rank's log file keeps (`tutti up --max-log-bytes`): past it, the oldest output is dropped and
   * a marker line says how much. At least 64 KiB. @default DEFAULT_MAX_LOG_BYTES (1 GiB)
   */
  maxLogBytes?: number;
  /** The most pages tutti.db may grow to (see SqliteStateStoreOptions.maxPageCount); tests use it to fill the store. */
  databaseMaxPages?: number;
  /**
   * Where the state lives (`tutti up --database`): a PostgreSQL URL (`postgres://USER@HOST:PORT/DATABASE`). Without
   * it, the embedded SQLite file `tutti.db` in the data dir. Logs, checkpoints and the data dir's lock stay in the data
   * dir either way.
   */
  database?: string;
  /**
   * With a PostgreSQL `database`: how long the leader's lease lasts unless renewed (`tutti up --lease-ttl`). A replica
   * that dies leaves the others without a leader for at most this long. @default DEFAULT_LEASE_TTL_MS
   */
  leaseTtlMs?: number;
}

export interface TuttiServer {
  /** e.g. http://127.0.0.1:7070 */
  url: string;
  port: number;
  dataDir: string;
  store: StateStore;
  /** The control loop of this replica's term; throws on a follower (only the leader runs one). */
  readonly controller: JobController;
  /** Who leads: this server alone on SQLite; the lease holder among replicas on PostgreSQL. */
  leadership: Leadership;
  /** Resolves once this replica's term has started or ended after its latest change of role (for tests). */
  leadershipSettled(): Promise<void>;
  inventory: readonly NodeInfo[];
  /**
   * Stops serving and closes the store; a leader gives its lease up first, so that another replica takes over at once.
   * Running jobs keep running and are re-adopted by the next leader.
   */
  close(): Promise<void>;
}

/** A problem the person starting the server can fix (data dir in use, port taken, bad option). */
export class StartupError extends Error {
  override name = 'StartupError';
}

function makeLocalBackend(dataDir: string, fakeGpus: string | undefined, options: Pick<TuttiServerOptions, 'nvidiaSmi' | 'passEnv' | 'mpirun'>): ExecutionBackend {
  try {
    return createLocalBackend({
      dataDir, fakeGpus,
      ...(options.nvidiaSmi !== undefined ? { nvidiaSmi: options.nvidiaSmi } : {}),
      ...(options.passEnv !== undefined ? { passEnv: options.passEnv } : {}),
      ...(options.mpirun !== undefined ? { mpirun: options.mpirun } : {}),
    });
  } catch (error) {
    throw new StartupError(`--fake-gpus: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** The PostgreSQL store of `--database`, or a StartupError of one line saying what is wrong with it and how to fix it. */
async function openPostgresStore(url: string): Promise<PostgresStateStore> {
  try {
    return await createPostgresStateStore({ url, refuseMigrationWhileLeased: CONTROL_LEASE });
  } catch (error) {
    if (error instanceof PostgresConnectionError || error instanceof SchemaTooNewError || error instanceof MigrationWhileLeadError) throw new StartupError(`--database: ${error.message}`);
    throw error;
  }
}

/** The Slurm backend, or a StartupError saying which of its settings is wrong (slurmrestd's URL, its token or key). */
function createOrRefuse(create: () => ExecutionBackend): ExecutionBackend {
  try {
    return create();
  } catch (error) {
    throw new StartupError(`the Slurm backend: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/**
 * Runs a start-up step that creates, opens or writes the data dir. Its failure (read-only, no permission, a damaged
 * database, a directory where a file belongs, no space) becomes a StartupError of one line naming the file and what
 * to do, which `tutti up` prints without a stack trace.
 */
async function inDataDir<T>(file: string, step: () => T | Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    const problem = explainDataDirFailure(error, file);
    if (problem) throw new StartupError(problem.message, { cause: error });
    throw error;
  }
}

export async function startTuttiServer(options: TuttiServerOptions): Promise<TuttiServer> {
  const logger = options.logger ?? createConsoleLogger();
  const now = options.now ?? Date.now;
  const host = options.host ?? '127.0.0.1';
  const dataDir = path.resolve(options.dataDir);
  const bodyLimits = { maxBytes: options.maxSpecBytes ?? DEFAULT_BODY_LIMITS.maxBytes, maxDepth: options.maxSpecDepth ?? DEFAULT_BODY_LIMITS.maxDepth };
  const browserSafety = { boundHost: host, allowedHosts: options.allowedHosts ?? [], allowedOrigins: options.allowedOrigins ?? [] };
  const httpProblem = checkBodyLimits(bodyLimits) ?? checkBrowserSafetyOptions(browserSafety);
  if (httpProblem) throw new StartupError(httpProblem);
  const backendKind = options.backend ?? EXECUTION_BACKEND_KINDS[0];
  if (!isExecutionBackendKind(backendKind)) {
    throw new StartupError(`--backend ${JSON.stringify(backendKind)} is not a backend tutti knows; known backends: ${EXECUTION_BACKEND_KINDS.join(', ')}`);
  }
  if (backendKind === 'slurm' && options.fakeGpus !== undefined) {
    throw new StartupError('--fake-gpus is for the local backend: on Slurm the GPUs are the nodes\' gres (scripts/slurm-dev-cluster.sh makes a cluster with fake ones)');
  }
  if (backendKind !== 'slurm' && options.slurm !== undefined) throw new StartupError('the Slurm options (--slurm-partition, --slurm-rest-url, --slurm-placement) need --backend slurm');
  const maxLogBytes = options.maxLogBytes ?? DEFAULT_MAX_LOG_BYTES;
  const logCapProblem = checkMaxLogBytes(maxLogBytes);
  if (logCapProblem) throw new StartupError(`--max-log-bytes: ${logCapProblem}`);
  const replicated = options.database !== undefined;
  const leaseTtlMs = options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
  if (options.leaseTtlMs !== undefined && !replicated) throw new StartupError('--lease-ttl is for replicas sharing a PostgreSQL --database; a server on its embedded store always leads');
  const leaseProblem = checkLeaseTtl(leaseTtlMs);
  if (leaseProblem) throw new StartupError(`--lease-ttl: ${leaseProblem}`);
  await inDataDir(dataDir, () => mkdir(dataDir, { recursive: true, mode: PRIVATE_DIR_MODE }));

  const cleanups: (() => Promise<void> | void)[] = [];
  const cleanup = async () => {
    for (const step of cleanups.splice(0).reverse()) await step();
  };
  try {
    // Replicas on one PostgreSQL database share the data dir (their ranks' files and logs); the database is opened
    // first so that the lock can name it.
    const postgres = options.database !== undefined ? await openPostgresStore(options.database) : undefined;
    if (postgres) cleanups.push(() => postgres.close());
    const sharedBy = postgres ? { id: await postgres.databaseId(), name: postgres.url } : undefined;
    const lock = await inDataDir(path.join(dataDir, LOCK_FILE_NAME), () => acquireDataDirLock(dataDir, sharedBy ? { sharedBy } : {}));
    if (!lock.ok) throw new StartupError(lock.message);
    cleanups.push(() => lock.release());
    const databasePath = path.join(dataDir, 'tutti.db');
    const diskFull = new DiskFullLog(logger);
    const store: StateStore = postgres
      ?? (await inDataDir(databasePath, () => createSqliteStateStore({ path: databasePath, diskFull, ...(options.databaseMaxPages !== undefined ? { maxPageCount: options.databaseMaxPages } : {}) })));
    if (!postgres) cleanups.push(() => store.close());

    const slurmTeams = Object.fromEntries((options.config?.teams ?? []).flatMap((team) => (team.slurm ? [[team.name, team.slurm]] : [])));
    const createBackend = (fakeGpus: string | undefined): ExecutionBackend => backendKind === 'slurm'
      ? createOrRefuse(() => createSlurmBackend({ dataDir, now, ...(options.passEnv !== undefined ? { passEnv: options.passEnv } : {}), ...options.slurm, teams: { ...slurmTeams, ...options.slurm?.teams } }))
      : makeLocalBackend(dataDir, fakeGpus, options);
    let backend = createBackend(options.fakeGpus);
    let inventory = await backend.inventory().catch(async (error: unknown) => {
      await backend.close();
      throw new StartupError(`the ${backendKind} backend has no inventory: ${error instanceof Error ? error.message : String(error)}`);
    });
    let fakeGpus = options.fakeGpus;
    // Without --fake-gpus on a machine without GPUs, the fake GPUs this data dir ran with come back (jobs may hold
    // them), else --demo's.
    const remembered = options.fakeGpus === undefined ? await readRememberedFakeGpus(dataDir) : undefined;
    const fakeGpusIfNone = remembered ?? options.fakeGpusIfNone;
    if (backendKind === 'local' && fakeGpusIfNone && !options.fakeGpus && inventory.every((node) => node.gpus.length === 0)) {
      await backend.close();
      backend = createBackend(fakeGpusIfNone);
      inventory = await backend.inventory();
      fakeGpus = fakeGpusIfNone;
      if (remembered !== undefined) logger.info(`using the fake GPUs this data dir ran with before (--fake-gpus ${remembered}); pass --fake-gpus to change them`);
    }
    const chosenBackend = backend;
    // Among replicas the server's own backend only reads logs (each term makes its own): made afresh, so that what the
    // inventory read started (a Slurm backend then polls its nodes) does not run on every replica for nothing.
    if (replicated) await chosenBackend.close();
    const logBackend = replicated ? createBackend(fakeGpus) : chosenBackend;
    cleanups.push(() => logBackend.close());
    // The first write of every start (a replica's only write to the database before it leads): a read-only or full
    // disk shows here, before anything else is started.
    if (!replicated) await inDataDir(databasePath, () => store.replaceNodes(inventory, now()));
    // Said once the data dir proved usable, so a start that is refused prints its one line of why and nothing else.
    for (const change of lock.tightened) logger.warn(`made the data dir private (it holds job environments and tokens): ${change}`);
    if (fakeGpus !== undefined) await rememberFakeGpus(dataDir, fakeGpus).catch((error: unknown) => logger.warn(`could not note the fake GPUs in ${dataDir}: ${String(error)}`));

    const feed = new EventFeed(store, logger);
    await feed.start();
    if (replicated) {
      // Other replicas write too: their events (submissions, cancels, the leader's every step) reach this one's SSE
      // streams and, on the leader, its queue. Notified at commit; polled as well, for what a dropped connection missed.
      const watch = await store.watchChanges(() => feed.notify());
      const poll = setInterval(() => feed.notify(), watch.live ? 5000 : 1000);
      poll.unref();
      cleanups.push(async () => {
        clearInterval(poll);
        await watch.close();
      });
    }
    const metrics = new ServerMetrics();
    cleanups.push(() => metrics.close());
    // One profile, with the config's fair_share_half_life as its fair-share halfLifeMs (a different one in args is refused).
    const profileResult = resolveSchedulerSettings(options.config?.scheduler ?? { profile: 'tutti', args: {} });
    if (!profileResult.ok) throw new StartupError(profileResult.error);
    const teams = options.config?.teams ?? [];
    const jobTokens = await inDataDir(dataDir, () => JobTokens.open(dataDir));
    // Known once the server listens (port 0 picks one).
    const api: { url?: string } = {};
    const self = { name: '' };
    let leadership: Leadership & { settled?: () => Promise<void> } = soleLeadership('(starting)', now);
    const currentLeadership: Leadership = { get state() { return leadership.state; }, leaseHeld: () => leadership.leaseHeld() };
    const control = new ReplicaControl({ store, feed, leadership: currentLeadership, profile: profileResult.profile, now });
    const termOptions: Omit<LeaderTermOptions, 'backend' | 'ownsBackend' | 'leaseHeld' | 'fence'> = {
      store,
      replicated,
      feed,
      metrics,
      logger,
      now,
      dataDir,
      stopGraceMs: options.stopGraceMs ?? 30_000,
      tickMs: options.tickMs ?? 1000,
      profile: profileResult.profile,
      teams,
      jobTokens,
      apiUrl: () => api.url,
      diskFull,
      maxLogBytes,
      ...(options.gpuSampleMs !== undefined ? { gpuSampleMs: options.gpuSampleMs } : {}),
      ...(options.onLifecyclePoint ? { onLifecyclePoint: options.onLifecyclePoint } : {}),
      inventoryChanged: (nodes) => (inventory = [...nodes]),
    };
    cleanups.push(async () => {
      await control.leaderTerm?.close();
      control.setTerm(undefined);
    });

    const history = new ClusterHistory({
      read: async () => {
        const [snapshot, running, pendingJobs] = await Promise.all([store.snapshot(), store.listJobsByStatus(['running']), control.pendingCount()]);
        const gpusAllocated = snapshot.allocations.reduce((sum, allocation) => sum + (allocation.fraction ?? 1), 0);
        const gpusTotal = snapshot.nodes.reduce((sum, node) => sum + node.gpus.length, 0);
        return { pendingJobs, runningJobs: running.length, gpusTotal, gpusAllocated };
      },
      now,
      logger,
      ...(options.clusterSampleMs !== undefined ? { intervalMs: options.clusterSampleMs } : {}),
    });
    cleanups.push(() => history.close());

    const startedAt = now();
    const app: FastifyInstance = await buildHttpApp({ store, control, leadership: currentLeadership, backend: logBackend, feed, metrics, logger, inventory: () => inventory, teams, now, version: TUTTI_VERSION, startedAt, history, dashboardDir: options.dashboardDir, jobTokens, diskFull: () => diskFull.current?.message, browserSafety, bodyLimits });
    cleanups.push(() => app.close());
    // Listen first, so that every launched rank gets TUTTI_API_URL; the controller queues what arrives meanwhile
    // and schedules nothing before its start (re-adoption first).
    try {
      await app.listen({ host, port: options.port ?? 7070 });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE') throw new StartupError(`port ${options.port} on ${host} is already in use; pass another --port`);
      if (code === 'EADDRNOTAVAIL') throw new StartupError(`cannot listen on ${host}: no such address on this machine; check --host`);
      throw error;
    }
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : (options.port ?? 7070);
    const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
    api.url = `http://${urlHost}:${port}`;
    self.name = `${hostname()}:${port}#${process.pid}`;
    if (!replicated) {
      leadership = soleLeadership(self.name, now);
      const term = LeaderTerm.create({ ...termOptions, backend: chosenBackend, ownsBackend: false, leaseHeld: () => true });
      control.setTerm(term);
      // Re-adoption reads every running job: a damaged database shows here if not before.
      await inDataDir(databasePath, () => term.start(inventory));
    } else {
      const election = new LeaderElection({
        store,
        self: self.name,
        ttlMs: leaseTtlMs,
        now,
        logger,
        hooks: {
          elected: async (lease) => {
            // A backend of its own per term: the listeners a term registers on it end with it.
            const term = LeaderTerm.create({
              ...termOptions,
              backend: createBackend(fakeGpus),
              ownsBackend: true,
              leaseHeld: () => election.leaseHeld(),
              fence: { lease: CONTROL_LEASE, holder: self.name, epoch: lease.epoch },
            });
            control.setTerm(term);
            try {
              await term.start();
            } catch (error) {
              control.setTerm(undefined);
              await term.close();
              throw error;
            }
          },
          deposed: async () => {
            const term = control.leaderTerm;
            control.setTerm(undefined);
            await term?.close();
          },
        },
      });
      leadership = election;
      // Before the term's own cleanup (registered earlier, so run later): the lease is given up after the term ends.
      cleanups.push(() => election.close());
      await election.start();
      await election.settled();
    }
    await history.start();
    const server: TuttiServer = {
      url: api.url,
      port,
      dataDir,
      store,
      get controller(): JobController {
        const term = control.leaderTerm;
        if (!term) throw new Error(`this replica (${self.name}) does not lead: only the leader runs the control loop`);
        return term.controller;
      },
      get leadership() {
        return leadership;
      },
      leadershipSettled: () => leadership.settled?.() ?? Promise.resolve(),
      get inventory() {
        return inventory;
      },
      close: cleanup,
    };
    return server;
  } catch (error) {
    await cleanup();
    throw error;
  }
}
