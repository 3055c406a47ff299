/**
 * The Slurm backend: tutti drives a real Slurm cluster through Slurm's own tools on a login node, and keeps its own
 * scheduling on top (quotas, fair share, gang restarts, preemption with a grace). One attempt of a tutti job is one
 * Slurm job (`sbatch`) whose one step (`srun`) runs every rank: see slurm-submission.ts for the job and
 * slurm-rank-shim.ts for each rank's environment.
 *
 * The data dir must be on a file system that the control plane and every node see at the same path (as a Slurm
 * site's home or project file system is): each rank writes its log, a `started` file and its exit status there, and
 * the control plane reads them. So a rank's exit code is its own even with Slurm's accounting off, and a new control
 * plane finds the ranks that ran or ended while it was down.
 *
 *   <dataDir>/jobs/<jobId>/attempt-<n>/   slurm-batch.sh, slurm-hostfile, rank-shim.sh, slurm-job-id, slurm-batch.log,
 *                                          rank-<r>.log, rank-<r>.started, rank-<r>.exit
 *
 * What Slurm is asked, and how often: for the inventory (every `nodePollIntervalMs`, for node state changes and
 * `onInventoryChange`) `scontrol -o show node`, `scontrol show topology` (racks) and one `squeue --json` (GPUs that
 * other jobs hold, slurm-held-gpus.ts); `squeue` for the state of the Slurm jobs of ranks whose exit is not recorded
 * yet (every `pollIntervalMs`), `sbatch` per launch, `scancel` per stop. Nothing per rank.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { cp, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { resolve as resolvePath } from 'node:path';
import type { NodeInfo } from '@tutti/model';
import type {
  AttemptDirectories,
  ExecutionBackend,
  GpuReading,
  LaunchRequest,
  LogTrim,
  NodeStateChange,
  PrepareAttemptRequest,
  RankExit,
  RankHandle,
  RankLogRef,
  RankObservation,
  ReadLogOptions,
  StartedRankQuery,
  StopOptions,
} from '../execution-backend.ts';
import { LaunchError, verifyLaunchRequest } from '../launch-request.ts';
import { readRankLog } from '../rank-log.ts';
import { prepareLocalAttempt, writeLocalStopDeadline } from '../local/attempt-files.ts';
import { trimLog } from '../local/log-trim.ts';
import { readRankErrorFileSync } from '../rank-error-file.ts';
import { PYTHON_HELPERS_DIR } from '../python-environment.ts';
import { PRIVATE_FILE_MODE, attemptDirectory, exitCodeForSignal, jobDirectory, readExitFile } from '../local/rank-files.ts';
import { createSlurmCli, isEndedSlurmState, scancelSignalName, type SlurmCli, type SlurmJobState } from './slurm-cli.ts';
import { createSlurmCliControl, type SlurmControl } from './slurm-control.ts';
import { createSlurmRestControl, readSlurmJwtKey } from './slurm-rest.ts';
import { toNodeInfo, type SlurmNode } from './slurm-nodes.ts';
import { makeSlurmRankShim } from './slurm-rank-shim.ts';
import { SLURM_BACKEND_KIND, readSlurmRankRef, slurmRankRef } from './slurm-rank-ref.ts';
import {
  SLURM_ATTEMPT_FILES, SLURM_RANK_FILES, chooseSlurmMpiPlugin, isBlockLayout, makeSlurmSubmission, parseSrunMpiList, slurmJobLayout, slurmJobName, slurmJobNamePrefix, slurmRankFile,
} from './slurm-submission.ts';

export interface SlurmBackendOptions {
  /** Where jobs' files live: on a file system every node sees at the same path. Must be the same after a restart. */
  dataDir: string;
  /** The partition tutti's jobs run in, and whose nodes are its inventory. @default every node, Slurm's default partition */
  partition?: string;
  /** Per team: the partition and account its jobs are submitted with (`--partition`, `--account`). */
  teams?: Readonly<Record<string, { partition?: string; account?: string }>>;
  /** GPU memory (MiB) by tutti GPU type: Slurm's gres does not say it. */
  gpuMemoryMiB?: Readonly<Record<string, number>>;
  /** Environment for Slurm's tools (SLURM_CONF, …), over the control plane's own. */
  env?: Readonly<Record<string, string>>;
  /** Runs Slurm's tools; tests may wrap it. @default createSlurmCli({ env }) */
  cli?: SlurmCli;
  /**
   * Reach Slurm through slurmrestd, Slurm's REST API, instead of its tools (slurm-rest.ts): for a control plane on a
   * machine that is not a login node. Slurm's tools, where they are there too, still tell the racks.
   */
  rest?: SlurmRestSettings;
  /** How Slurm is reached, made by the caller (tests). @default from `rest`, else Slurm's tools through `cli` */
  control?: SlurmControl;
  /** Clock for `startedAt`, exits and node changes. @default Date.now */
  now?: () => number;
  /** How often the Slurm jobs of running ranks are checked (an exit file is read at once). @default 1000 */
  pollIntervalMs?: number;
  /** How often the inventory is read again, for node state changes and `onInventoryChange`. @default 5000 */
  nodePollIntervalMs?: number;
  /** How long a launch waits for Slurm to start every rank before it gives up and cancels the job. @default 120000 */
  launchTimeoutMs?: number;
  /**
   * Who chooses the nodes. `tutti` (the default): the nodes tutti's topology-aware placement chose are pinned
   * (`--nodelist`). `slurm`: Slurm chooses nodes of the shape tutti's placement found (as many nodes, ranks and GPUs
   * per node), as a site that trusts its own node selection prefers; the ranks' handles then name the nodes they run
   * on, which the control plane records. A placement of uneven ranks per node is pinned even then.
   */
  placement?: 'tutti' | 'slurm';
  /**
   * Variables of a task's environment kept besides the allow-list (see `baseRankEnvironment`): names, or prefixes
   * ending in `*` (`tutti up --pass-env`). Slurm passes down the control plane's environment; the rest is dropped.
   */
  passEnv?: readonly string[];
  /**
   * Slurm's MPI plugin for `launcher: mpi` jobs (`srun --mpi=<plugin>`: `pmix`, `pmi2`, …). @default pmix, else pmi2,
   * of what `srun --mpi=list` offers, asked once
   */
  mpi?: string;
}

/** How to reach slurmrestd: its URL, the Slurm user jobs run as, and a token or the key to mint tokens with. */
export interface SlurmRestSettings {
  /** `http://host:port` of the site's slurmrestd. */
  url: string;
  /** The Slurm user tutti's jobs run as. @default the control plane's user */
  user?: string;
  /** A token from `scontrol token lifespan=…` (not renewed: mint a long enough one). */
  token?: string;
  /** The site's JWT key file (slurm.conf's `AuthAltParameters=jwt_key=…`): tokens are minted from it and renewed. */
  jwtKeyFile?: string;
}

function createSlurmRestControlFrom(settings: SlurmRestSettings, cli: SlurmCli): SlurmControl {
  if (settings.token === undefined && settings.jwtKeyFile === undefined) {
    throw new Error('slurmrestd needs a token: set SLURM_JWT (from `scontrol token lifespan=…`) or give the site\'s JWT key file (--slurm-jwt-key)');
  }
  return createSlurmRestControl({
    url: settings.url, user: settings.user ?? userInfo().username, cli,
    ...(settings.jwtKeyFile !== undefined ? { jwtKey: readSlurmJwtKey(settings.jwtKeyFile) } : { token: settings.token as string }),
  });
}

export interface SlurmBackend extends ExecutionBackend {
  readonly kind: 'slurm';
  readonly dataDir: string;
}

/** A rank this instance watches, launched or adopted. */
interface WatchedRank {
  key: string;
  handle: RankHandle;
  slurmJobId: string;
  /** Slurm's name for the rank's job: a job of another name under that id is not this rank's. */
  slurmJobName: string;
  exitFile: string;
  /** The GPU indices tutti placed it on, when this instance launched it (an adopted rank's are not known). */
  gpus?: readonly number[];
  /** stop() sent SIGKILL: an end without an exit file is then our kill, not a loss. */
  killedByStop: boolean;
  /** When every watched rank of its Slurm job was seen to have exited: its exit waits for Slurm's release (`pollOnce`). */
  allExitedAt?: number;
  exit?: RankExit;
  waiters: Array<() => void>;
}

/**
 * A rank of one attempt: a rank of the next attempt is another rank (the last attempt's may still be being stopped
 * on a node that died when the next one starts).
 */
const keyOf = (ref: { jobId: string; rank: number; attempt?: number }) => `${ref.jobId}\u0000${ref.attempt ?? ''}\u0000${ref.rank}`;
/** How often a launch looks for its ranks' `started` files. */
const LAUNCH_POLL_MS = 100;
/** While a stop waits, rank exits are looked for this often. */
const STOP_POLL_MS = 100;
/** How long a rolled-back launch waits for its Slurm job to be gone. */
const ROLLBACK_WAIT_MS = 15_000;
/** After SIGKILL, how long before the whole Slurm job is cancelled (a step on a node that is down hears nothing). */
const KILL_SETTLE_MS = 10_000;
/** The longest a rank's recorded exit waits for its Slurm job to end before it is reported anyway. */
const RELEASE_WAIT_MS = 10_000;
/** How many reported exits are remembered (see `reported`). */
const REPORTED_KEPT = 10_000;
/**
 * End states of a Slurm job that Slurm itself ended (a node of it set down or failed, an administrator's scancel, its
 * time limit, Slurm's own preemption): Slurm sent its ranks SIGTERM, and a rank that then checkpointed and exited 0,
 * as a rank should when asked to stop, did not finish its work. tutti's own stops signal the step instead, and the
 * job then ends COMPLETED or FAILED.
 */
const ENDED_BY_SLURM = new Set(['NODE_FAIL', 'CANCELLED', 'TIMEOUT', 'PREEMPTED', 'DEADLINE', 'BOOT_FAIL']);
/** squeue's reasons for a job held by a node that is down, drained or not responding. */
const NODE_UNAVAILABLE_REASON = /ReqNodeNotAvail|NodeDown|NodeNotAvail|UnavailableNodes/;
/** The step that runs the ranks: the batch script's one srun. */
const RANK_STEP = 0;

const delay = (ms: number): Promise<'delay'> => new Promise((resolve) => setTimeout(() => resolve('delay'), ms).unref());

export function createSlurmBackend(options: SlurmBackendOptions): SlurmBackend {
  const dataDir = resolvePath(options.dataDir);
  const cli = options.cli ?? createSlurmCli(options.env ? { env: options.env } : {});
  const control = options.control ?? (options.rest ? createSlurmRestControlFrom(options.rest, cli) : createSlurmCliControl(cli));
  const now = options.now ?? Date.now;
  const pollIntervalMs = options.pollIntervalMs ?? 1_000;
  const nodePollIntervalMs = options.nodePollIntervalMs ?? 5_000;
  const launchTimeoutMs = options.launchTimeoutMs ?? 120_000;
  /** Tells this control plane's Slurm jobs from another's that shares the cluster (see `slurmJobName`). */
  const instance = createHash('sha256').update(dataDir).digest('hex').slice(0, 8);

  const watched = new Map<string, WatchedRank>();
  /** Ranks whose exit this instance reported, newest last: a later stop of one must not report it again. */
  const reported = new Set<string>();
  const exitListeners: Array<(exit: RankExit) => void> = [];
  const nodeListeners: Array<(change: NodeStateChange) => void> = [];
  const inventoryListeners: Array<(nodes: NodeInfo[]) => void> = [];
  /** The inventory last told to `onInventoryChange` listeners, as JSON. */
  let lastToldInventory: string | undefined;
  /** The last state reported per node (in inventory order). */
  const nodeStates = new Map<string, NodeStateChange>();
  let lastInventory: { nodes: SlurmNode[]; at: number } | undefined;
  let closed = false;
  let pollTimer: NodeJS.Timeout | undefined;
  let nodeTimer: NodeJS.Timeout | undefined;
  let polling: Promise<void> | undefined;
  /** Stop requests written (see `requestStop`): tells two requests in the same millisecond apart. */
  let stopRequests = 0;

  function ensureOpen(what: string): void {
    if (closed) throw new Error(`the Slurm backend is closed: cannot ${what}`);
  }

  const nameOf = (jobId: string, attempt: number | undefined) => slurmJobName(instance, jobId, attempt ?? 1);
  const attemptDirOf = (jobId: string, attempt: number | undefined) => attemptDirectory(dataDir, jobId, attempt);

  // ---- inventory and node states -------------------------------------------------------------------------------

  async function readNodes(): Promise<SlurmNode[]> {
    const nodes = await control.nodes();
    const inPartition = options.partition === undefined ? nodes : nodes.filter((n) => n.partitions.includes(options.partition as string));
    lastInventory = { nodes: inPartition, at: now() };
    noteNodeStates(inPartition);
    return inPartition;
  }

  function noteNodeStates(nodes: readonly SlurmNode[]): void {
    if (closed) return;
    for (const node of nodes) {
      const previous = nodeStates.get(node.name);
      if (previous && previous.state === node.state) continue;
      const change: NodeStateChange = { node: node.name, state: node.state, at: now(), ...(node.reason !== undefined ? { reason: node.reason } : {}) };
      nodeStates.set(node.name, change);
      for (const listener of nodeListeners) callSafely(() => listener(change), 'a node-state listener');
    }
    startNodePolling();
  }

  function startNodePolling(): void {
    if (nodeTimer || closed) return;
    nodeTimer = setInterval(() => void readInventory().catch(() => undefined), nodePollIntervalMs);
    nodeTimer.unref();
  }

  /** The nodes as tutti schedules them: with their racks, less the GPUs that other Slurm jobs hold. */
  async function readInventory(): Promise<NodeInfo[]> {
    const [nodes, racks, held] = await Promise.all([readNodes(), control.racks(), control.gpusHeldByOthers(slurmJobNamePrefix(instance))]);
    const ownGpus = new Map<string, Set<number>>();
    for (const record of watched.values()) {
      const onNode = ownGpus.get(record.handle.node) ?? new Set<number>();
      for (const gpu of record.gpus ?? []) onNode.add(gpu);
      ownGpus.set(record.handle.node, onNode);
    }
    const infos = nodes.map((node) => {
      const rack = racks.get(node.name);
      const heldByOthers = held.get(node.name);
      const own = ownGpus.get(node.name);
      return toNodeInfo(node, options.gpuMemoryMiB, { ...(rack !== undefined ? { rack } : {}), ...(heldByOthers ? { heldByOthers } : {}), ...(own ? { ownGpus: own } : {}) });
    });
    const told = JSON.stringify(infos);
    if (!closed && told !== lastToldInventory) {
      lastToldInventory = told;
      for (const listener of inventoryListeners) callSafely(() => listener(structuredClone(infos)), 'an inventory listener');
    }
    return infos;
  }

  async function inventory(): Promise<NodeInfo[]> {
    ensureOpen('read the inventory');
    return readInventory();
  }

  // ---- exits ---------------------------------------------------------------------------------------------------

  function finish(record: WatchedRank, exit: Omit<RankExit, 'jobId' | 'rank'>): void {
    if (record.exit !== undefined || closed) return;
    const full: RankExit = { jobId: record.handle.jobId, rank: record.handle.rank, ...exit, ...(record.handle.attempt !== undefined ? { attempt: record.handle.attempt } : {}) };
    record.exit = full;
    watched.delete(record.key);
    reported.add(record.key);
    // Kept for the stops that may still name the rank; the oldest are forgotten (their exit files or ended Slurm
    // jobs still tell a later stop that they are over).
    if (reported.size > REPORTED_KEPT) reported.delete(reported.values().next().value as string);
    for (const listener of exitListeners) callSafely(() => listener(full), 'a rank-exit listener');
    for (const wake of record.waiters.splice(0)) wake();
  }

  /** A rank whose exit file is there is over, with its own code. */
  function finishFromExitFile(record: WatchedRank): boolean {
    const recorded = readExitFile(record.exitFile);
    if (!recorded) return false;
    const error = recorded.exitCode !== 0 ? readRankErrorFileSync(slurmRankFile(attemptDirOf(record.handle.jobId, record.handle.attempt), SLURM_RANK_FILES.error, record.handle.rank)) : undefined;
    finish(record, { exitCode: recorded.exitCode, lost: false, at: recorded.writtenAt, ...(recorded.signal ? { signal: recorded.signal } : {}), ...(error !== undefined ? { error } : {}) });
    return true;
  }

  /** squeue for these Slurm job ids (ended ones included while Slurm keeps them; see MinJobAge). */
  function slurmJobs(ids: Iterable<string>): Promise<Map<string, SlurmJobState>> {
    return control.jobs([...ids]);
  }

  /** Whether the Slurm job of `record` has no process left: ended, forgotten by Slurm, or another job under that id. */
  function slurmJobIsOver(record: Pick<WatchedRank, 'slurmJobId' | 'slurmJobName'>, jobs: ReadonlyMap<string, SlurmJobState>): SlurmJobState | 'gone' | undefined {
    const job = jobs.get(record.slurmJobId);
    if (!job || job.name !== record.slurmJobName) return 'gone';
    return isEndedSlurmState(job.state) ? job : undefined;
  }

  /**
   * One look at every watched rank: exit files first, then Slurm for the ranks that have none. The last ranks of a
   * Slurm job are reported once Slurm has released the job's allocation (its job ended), not as soon as their exit
   * files appear: Slurm holds the nodes a few seconds longer (the step's and the batch script's completion), and a
   * job placed on them meanwhile would wait in Slurm's queue while tutti's scheduler counts it as started.
   */
  async function pollOnce(): Promise<void> {
    const records = [...watched.values()];
    const exits = new Map(records.flatMap((record) => {
      const recorded = readExitFile(record.exitFile);
      return recorded ? [[record, recorded] as const] : [];
    }));
    // A rank on a node that is down runs no more, whatever Slurm still says of its job.
    const onDownNode = (record: WatchedRank) => nodeStates.get(record.handle.node)?.state === 'down';
    const stillRunning = new Set(records.filter((r) => !exits.has(r) && !onDownNode(r)).map((r) => r.slurmJobId));
    const report = (record: WatchedRank) => {
      const recorded = exits.get(record)!;
      finish(record, { exitCode: recorded.exitCode, lost: false, at: recorded.writtenAt, ...(recorded.signal ? { signal: recorded.signal } : {}) });
    };
    // A rank that exited while others of its Slurm job run is told at once: it may have failed, and the gang must stop.
    for (const record of exits.keys()) if (stillRunning.has(record.slurmJobId)) report(record);
    const waiting = records.filter((r) => r.exit === undefined);
    if (waiting.length === 0) return;
    const jobs = await slurmJobs(waiting.map((r) => r.slurmJobId));
    for (const record of waiting) {
      const over = slurmJobIsOver(record, jobs);
      if (exits.has(record)) {
        const since = (record.allExitedAt ??= now());
        if (over && over !== 'gone' && !record.killedByStop && ENDED_BY_SLURM.has(over.state)) {
          // Not the rank's own end, whatever code it exited with: the gang is lost, as if its node had died.
          finish(record, { exitCode: null, lost: true, at: now() });
          process.emitWarning(`rank ${record.handle.rank} of job ${record.handle.jobId} is lost: Slurm ended job ${record.slurmJobId} ${over.state}, so its exit with code ${exits.get(record)?.exitCode} was not its own`);
        } else if (over || now() - since >= RELEASE_WAIT_MS) report(record);
        continue;
      }
      if (!over && onDownNode(record) && !stillRunning.has(record.slurmJobId)) {
        // Every other rank of its job is out and this one's node is down: Slurm may keep the job running until it
        // declares the node down, or for good when the node comes back first (its processes died with it), holding
        // the GPUs of every node of the job. The rank is lost and the job cancelled, as tutti's own stop.
        for (const other of waiting) if (other.slurmJobId === record.slurmJobId) other.killedByStop = true;
        finish(record, { exitCode: null, lost: true, at: now() });
        void control.cancel(record.slurmJobId).catch(() => undefined);
        continue;
      }
      if (!over || finishFromExitFile(record)) continue;
      if (record.killedByStop) {
        finish(record, { exitCode: exitCodeForSignal('SIGKILL'), signal: 'SIGKILL', lost: false, at: now() });
      } else {
        const why = over === 'gone' ? `Slurm no longer knows job ${record.slurmJobId}` : `Slurm job ${record.slurmJobId} ended ${over.state}${over.reason && over.reason !== 'None' ? ` (${over.reason})` : ''}`;
        finish(record, { exitCode: null, lost: true, at: now() });
        process.emitWarning(`rank ${record.handle.rank} of job ${record.handle.jobId} is lost: ${why} and the rank left no exit status`);
      }
    }
  }

  function poll(): Promise<void> {
    polling ??= pollOnce().catch(() => undefined).finally(() => { polling = undefined; });
    return polling;
  }

  function ensurePolling(): void {
    if (pollTimer || closed) return;
    pollTimer = setInterval(() => {
      if (watched.size === 0) return;
      void poll();
    }, pollIntervalMs);
    pollTimer.unref();
  }

  function watch(handle: RankHandle, slurmJobId: string, gpus?: readonly number[]): WatchedRank {
    const key = keyOf(handle);
    const existing = watched.get(key);
    if (existing) return existing;
    const record: WatchedRank = {
      key, handle, slurmJobId, slurmJobName: nameOf(handle.jobId, handle.attempt), ...(gpus ? { gpus } : {}),
      exitFile: slurmRankFile(attemptDirOf(handle.jobId, handle.attempt), SLURM_RANK_FILES.exit, handle.rank),
      killedByStop: false, waiters: [],
    };
    watched.set(key, record);
    ensurePolling();
    return record;
  }

  function waitForExit(record: WatchedRank): Promise<void> {
    if (record.exit !== undefined || closed) return Promise.resolve();
    return new Promise((resolve) => record.waiters.push(resolve));
  }

  // ---- launch --------------------------------------------------------------------------------------------------

  /**
   * tutti's Python helpers (python-environment.ts) where every node sees them: copied into the data dir, which is on
   * the shared file system, once per backend. Undefined (and the ranks do without) when they cannot be copied.
   */
  let pythonHelpersPromise: Promise<string | undefined> | undefined;
  function ensurePythonHelpers(): Promise<string | undefined> {
    pythonHelpersPromise ??= (async () => {
      const target = `${dataDir}/python-helpers`;
      try {
        await cp(PYTHON_HELPERS_DIR, target, { recursive: true, force: true });
        return target;
      } catch {
        return undefined;
      }
    })();
    return pythonHelpersPromise;
  }

  /** Slurm's MPI plugin for `launcher: mpi`: the option's, else chosen once from `srun --mpi=list`. */
  let mpiPluginPromise: Promise<string> | undefined;
  function slurmMpiPlugin(jobId: string): Promise<string> {
    if (options.mpi !== undefined) return Promise.resolve(options.mpi);
    mpiPluginPromise ??= cli.run('srun', ['--mpi=list']).then(
      (output) => {
        const offered = parseSrunMpiList(output);
        const plugin = chooseSlurmMpiPlugin(offered);
        if (plugin === undefined) {
          throw new LaunchError('SpawnFailed', `launcher: mpi needs an MPI plugin in Slurm (pmix or pmi2), and \`srun --mpi=list\` offers only ${offered.join(', ') || 'none'}: build Slurm with PMIx, or name the plugin to use (the Slurm backend's mpi option)`);
        }
        return plugin;
      },
      (error: unknown) => {
        throw new LaunchError('SpawnFailed', `launcher: mpi: could not ask Slurm for its MPI plugins (srun --mpi=list): ${error instanceof Error ? error.message : String(error)}; name the plugin to use (the Slurm backend's mpi option)`, { cause: error });
      },
    );
    // A failed look is asked again at the next MPI launch; the error names the job that met it.
    return mpiPluginPromise.catch((error: unknown) => {
      mpiPluginPromise = undefined;
      throw error instanceof LaunchError ? new LaunchError(error.code, `cannot launch job ${jobId}: ${error.message}`, { cause: error }) : error;
    });
  }

  async function launch(request: LaunchRequest): Promise<RankHandle[]> {
    ensureOpen('launch');
    const problems = verifyLaunchRequest(request);
    if (problems.length > 0) throw new LaunchError('InvalidRequest', `invalid launch request for job ${request.jobId}: ${problems.join('; ')}`);
    const layout = slurmJobLayout(request.ranks);
    if ('error' in layout) throw new LaunchError('InvalidRequest', `invalid launch request for job ${request.jobId}: ${layout.error}`);
    const nodes = new Map((lastInventory && now() - lastInventory.at < nodePollIntervalMs ? lastInventory.nodes : await readNodes()).map((n) => [n.name, n]));
    const unknown = layout.nodes.filter((n) => !nodes.has(n.node)).map((n) => n.node);
    if (unknown.length > 0) {
      throw new LaunchError('WrongNode', `job ${request.jobId} was placed on ${unknown.join(', ')}, which ${unknown.length === 1 ? 'is' : 'are'} not in this Slurm backend's inventory (${[...nodes.keys()].join(', ') || 'no nodes'})`);
    }
    if (request.workdir !== undefined && !isDirectory(request.workdir)) {
      throw new LaunchError('WorkdirMissing', `the workdir ${request.workdir} of job ${request.jobId} does not exist or is not a directory`);
    }
    const attempt = request.attempt ?? 1;
    const attemptDir = attemptDirOf(request.jobId, request.attempt);
    const jobName = nameOf(request.jobId, request.attempt);
    const first = nodes.get(layout.nodes[0]!.node)!;
    const rankZeroNode = nodes.get(layout.nodeOfRank[0]!)!;
    const team = request.team !== undefined ? options.teams?.[request.team] : undefined;
    const placedBySlurm = options.placement === 'slurm' && isBlockLayout(layout, request.ranks);
    const partition = team?.partition ?? options.partition;
    const gpuType = slurmGpuType(first, request);
    const mpiPlugin = request.launcher === 'mpi' ? await slurmMpiPlugin(request.jobId) : undefined;
    const submission = makeSlurmSubmission({
      request, layout, jobName, attemptDir,
      workdir: request.workdir ?? jobDirectory(dataDir, request.jobId),
      ...(gpuType !== undefined ? { gpuType } : {}),
      ...(partition !== undefined ? { partition } : {}),
      ...(team?.account !== undefined ? { account: team.account } : {}),
      ...(request.timeLimitMs !== undefined ? { timeLimitMs: request.timeLimitMs } : {}),
      placedBySlurm,
      ...(mpiPlugin !== undefined ? { mpiPlugin } : {}),
    });
    const pythonHelpersDir = await ensurePythonHelpers();
    const shim = makeSlurmRankShim({
      jobId: request.jobId, jobName: request.jobName, attempt,
      layout: placedBySlurm
        ? { kind: 'slurm', nodes: layout.nodes.length, ranksPerNode: layout.nodes[0]!.ranks, gpusPerNode: layout.nodes[0]!.gpus }
        : { kind: 'pinned', masterAddr: rankZeroNode.address, nodes: Object.fromEntries(layout.nodes.map((n) => [n.node, { nodeRank: n.nodeRank, ranks: n.ranks, gpus: n.gpus }])) },
      rankLogPattern: `${attemptDir}/${SLURM_RANK_FILES.log}`, rankExitPattern: `${attemptDir}/${SLURM_RANK_FILES.exit}`,
      rankStartedPattern: `${attemptDir}/${SLURM_RANK_FILES.started}`, rankErrorPattern: `${attemptDir}/${SLURM_RANK_FILES.error}`,
      jobEnv: request.env, ...(request.runtimeEnv ? { runtimeEnv: request.runtimeEnv } : {}),
      ...(request.launcher !== undefined ? { launcher: request.launcher } : {}),
      ...(request.restarts !== undefined ? { restarts: request.restarts } : {}),
      ...(request.preemptions !== undefined ? { preemptions: request.preemptions } : {}),
      ...(request.cpus !== undefined ? { cpus: request.cpus } : {}),
      ...(request.pythonEnv !== undefined ? { pythonEnv: request.pythonEnv } : {}),
      ...(pythonHelpersDir !== undefined ? { pythonHelpersDir } : {}),
      ...(options.passEnv !== undefined ? { passEnv: options.passEnv } : {}),
      ...(control.signalsSteps ? {} : { stopRequestFile: `${attemptDir}/${SLURM_ATTEMPT_FILES.stopRequest}` }),
    });
    try {
      await mkdir(attemptDir, { recursive: true, mode: 0o700 });
      if (request.workdir === undefined) await mkdir(jobDirectory(dataDir, request.jobId), { recursive: true, mode: 0o700 });
      // A launch of the same attempt again (after a crash cut the first short) must not find the first one's files.
      await Promise.all(request.ranks.flatMap((r) => [SLURM_RANK_FILES.exit, SLURM_RANK_FILES.started, SLURM_RANK_FILES.error].map((p) => rm(slurmRankFile(attemptDir, p, r.rank), { force: true }))));
      await rm(`${attemptDir}/${SLURM_ATTEMPT_FILES.slurmJobId}`, { force: true });
      // And no stop request, or the shims' marks of one carried out (`<stop-request>.lock.<node>`, `.done.<node>`).
      const stale = (await readdir(attemptDir)).filter((name) => name.startsWith(SLURM_ATTEMPT_FILES.stopRequest));
      await Promise.all(stale.map((name) => rm(`${attemptDir}/${name}`, { recursive: true, force: true })));
      await writeFile(`${attemptDir}/${SLURM_ATTEMPT_FILES.shim}`, shim, { mode: PRIVATE_FILE_MODE });
      await writeFile(`${attemptDir}/${SLURM_ATTEMPT_FILES.hostFile}`, submission.hostFile, { mode: PRIVATE_FILE_MODE });
      await writeFile(`${attemptDir}/${SLURM_ATTEMPT_FILES.batchScript}`, submission.job.batchScript, { mode: 0o700 });
    } catch (error) {
      throw new LaunchError('SpawnFailed', `could not write the files of job ${request.jobId} in ${attemptDir}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
    let slurmJobId: string;
    try {
      slurmJobId = await control.submit(submission.job);
    } catch (error) {
      throw new LaunchError('SpawnFailed', `Slurm refused job ${request.jobId}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
    await writeFile(`${attemptDir}/${SLURM_ATTEMPT_FILES.slurmJobId}`, `${slurmJobId}\n`, { mode: PRIVATE_FILE_MODE }).catch(() => undefined);

    const started = await waitForRanksToStart(request, attemptDir, slurmJobId, jobName).catch(async (error: unknown) => {
      await cancelAndWait(slurmJobId, jobName);
      throw error;
    });
    const handles = request.ranks.map((r) => r).sort((a, b) => a.rank - b.rank).map((r): RankHandle => ({
      backend: SLURM_BACKEND_KIND, jobId: request.jobId, rank: r.rank, node: started[r.rank]?.node ?? r.node,
      ...(request.attempt !== undefined ? { attempt: request.attempt } : {}),
      startedAt: started[r.rank]?.at ?? now(), ref: slurmRankRef({ slurmJobId }),
    }));
    // tutti's GPU indices name GPUs of the placed node: of a node Slurm chose instead, the control plane picks them.
    for (const handle of handles) watch(handle, slurmJobId, placedBySlurm ? undefined : request.ranks.find((r) => r.rank === handle.rank)?.gpus);
    return handles;
  }

  /** Resolves with each rank's start (its `started` file's time and the node it wrote there) once every rank has started. */
  async function waitForRanksToStart(request: LaunchRequest, attemptDir: string, slurmJobId: string, jobName: string): Promise<RankStart[]> {
    const deadline = now() + launchTimeoutMs;
    const started: RankStart[] = [];
    let lastSlurmLook = 0;
    let state: SlurmJobState | undefined;
    for (;;) {
      ensureOpen('launch');
      let all = true;
      for (const r of request.ranks) {
        if (started[r.rank] !== undefined) continue;
        const start = readRankStart(slurmRankFile(attemptDir, SLURM_RANK_FILES.started, r.rank));
        if (start === undefined) all = false;
        else started[r.rank] = start;
      }
      if (all) return started;
      if (now() - lastSlurmLook >= 1_000) {
        lastSlurmLook = now();
        state = (await slurmJobs([slurmJobId]).catch(() => new Map<string, SlurmJobState>())).get(slurmJobId);
        const over = slurmJobIsOver({ slurmJobId, slurmJobName: jobName }, new Map(state ? [[slurmJobId, state]] : []));
        // A node of the job died before tutti's inventory said so: Slurm holds the job, or ends it, for that node.
        const waitsForNode = state?.state === 'PENDING' && NODE_UNAVAILABLE_REASON.test(state.reason);
        if (waitsForNode || (over && state)) {
          const lost = await unavailableNodesOf(request).catch(() => [] as string[]);
          if (waitsForNode || lost.length > 0) {
            throw new LaunchError('NodeUnavailable', `Slurm job ${slurmJobId} of job ${request.jobId} cannot run on ${lost.length > 0 ? lost.join(', ') : 'its nodes'} now (Slurm: ${state?.state ?? 'gone'}, ${state?.reason ?? 'no reason'}); it was cancelled`);
          }
          const log = await readFile(`${attemptDir}/${SLURM_ATTEMPT_FILES.batchLog}`, 'utf8').catch(() => '');
          const tail = log.trim().split('\n').slice(-3).join('; ');
          throw new LaunchError('SpawnFailed', `Slurm job ${slurmJobId} of job ${request.jobId} ended ${state?.state} before every rank started${tail ? `: ${tail}` : ''}`);
        }
      }
      if (now() > deadline) {
        const why = state?.state === 'PENDING' ? `it is still pending in Slurm (${state.reason})` : `not every rank started (Slurm says ${state?.state ?? 'nothing'})`;
        throw new LaunchError('SpawnFailed', `Slurm job ${slurmJobId} of job ${request.jobId} did not start within ${Math.round(launchTimeoutMs / 1000)} s: ${why}; it was cancelled`);
      }
      await new Promise((resolve) => setTimeout(resolve, LAUNCH_POLL_MS));
    }
  }

  /** The nodes of a launch that Slurm says cannot take work now (read afresh, so node listeners hear it too). */
  async function unavailableNodesOf(request: LaunchRequest): Promise<string[]> {
    const byName = new Map((await readNodes()).map((n) => [n.name, n]));
    return [...new Set(request.ranks.map((r) => r.node))].filter((name) => byName.get(name)?.state !== 'ready');
  }

  /** Cancels a Slurm job at once (a rolled-back launch) and waits, within bounds, for it to be over. */
  async function cancelAndWait(slurmJobId: string, jobName: string): Promise<void> {
    if (control.signalsSteps) await control.signalStep(slurmJobId, RANK_STEP, 'SIGKILL').catch(() => undefined);
    await control.cancel(slurmJobId).catch(() => undefined);
    const deadline = Date.now() + ROLLBACK_WAIT_MS;
    while (Date.now() < deadline) {
      const jobs = await slurmJobs([slurmJobId]).catch(() => undefined);
      if (jobs && slurmJobIsOver({ slurmJobId, slurmJobName: jobName }, jobs)) return;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  // ---- stop ----------------------------------------------------------------------------------------------------

  /**
   * The signal to every process of the ranks' step, in each Slurm job of these ranks: through Slurm where it can
   * signal a step; else as a stop request the ranks' shims carry out. Not by cancelling the job, even for SIGKILL:
   * Slurm cancels with SIGTERM first and SIGKILL only after its KillWait.
   */
  async function signalSteps(records: readonly WatchedRank[], signal: NodeJS.Signals): Promise<void> {
    const jobs = new Map(records.map((r) => [r.slurmJobId, r.handle]));
    await Promise.all([...jobs].map(([id, handle]) => control.signalsSteps
      ? control.signalStep(id, RANK_STEP, signal).catch(() => undefined)
      : requestStop(attemptDirOf(handle.jobId, handle.attempt), signal).catch(() => undefined)));
  }

  /** Writes a stop request for the shims (slurm-rank-shim.ts): a new line each time, so each is carried out once. */
  async function requestStop(attemptDir: string, signal: NodeJS.Signals): Promise<void> {
    const file = `${attemptDir}/${SLURM_ATTEMPT_FILES.stopRequest}`;
    await writeFile(`${file}.tmp`, `${now()}-${++stopRequests} ${scancelSignalName(signal)}\n`, { mode: PRIVATE_FILE_MODE });
    await rename(`${file}.tmp`, file);
  }

  async function stop(handles: readonly RankHandle[], stopOptions: StopOptions): Promise<void> {
    ensureOpen('stop ranks');
    const signal = stopOptions.signal ?? 'SIGTERM';
    // Every handle is checked before anything is signalled.
    const refs = handles.map((handle) => ({ handle, ref: readSlurmRankRef(handle) }));
    const records = refs.map(({ handle, ref }) => watched.get(keyOf(handle)) ?? watchUnlessOver(handle, ref.slurmJobId));
    const live = records.filter((r): r is WatchedRank => r !== undefined && r.exit === undefined);
    if (live.length === 0) return;
    const fastPoll = setInterval(() => void poll(), STOP_POLL_MS);
    try {
      if (signal === 'SIGKILL') for (const record of live) record.killedByStop = true;
      // Every process of the job's one step (the ranks and their shims), not `--full`: the batch script is srun
      // itself, which stays to see the ranks out. A stop signal to the job as a whole would cancel it (TERM, then
      // KILL after Slurm's KillWait), whatever grace tutti gives.
      await signalSteps(live, signal);
      const allOut = Promise.all(live.map(waitForExit)).then(() => 'out' as const);
      if ((await Promise.race([allOut, delay(stopOptions.graceMs)])) === 'delay') {
        const left = live.filter((r) => r.exit === undefined);
        for (const record of left) record.killedByStop = true;
        await signalSteps(left, 'SIGKILL');
        // A step on a node that went down hears nothing: cancelling the job makes Slurm give it up.
        if ((await Promise.race([allOut, delay(KILL_SETTLE_MS)])) === 'delay') {
          await Promise.all([...new Set(left.map((r) => r.slurmJobId))].map((id) => control.cancel(id).catch(() => undefined)));
        }
        await allOut;
      }
      if (closed) throw new Error('the Slurm backend was closed while a stop was waiting for its ranks');
    } finally {
      clearInterval(fastPoll);
    }
  }

  // ---- adoption ------------------------------------------------------------------------------------------------

  /** Watches a rank this instance does not watch, unless its exit is known already: recorded, or reported here. */
  function watchUnlessOver(handle: RankHandle, slurmJobId: string): WatchedRank | undefined {
    const key = keyOf(handle);
    if (reported.has(key)) return undefined;
    if (readExitFile(slurmRankFile(attemptDirOf(handle.jobId, handle.attempt), SLURM_RANK_FILES.exit, handle.rank))) return undefined;
    return watch(handle, slurmJobId);
  }

  async function adopt(handles: readonly RankHandle[]): Promise<RankObservation[]> {
    ensureOpen('adopt ranks');
    const checked = handles.map((handle) => {
      try {
        return { handle, ref: readSlurmRankRef(handle) };
      } catch (error) {
        return { handle, error: error instanceof Error ? error.message : String(error) };
      }
    });
    const jobs = await slurmJobs(checked.flatMap((c) => ('ref' in c && c.ref ? [c.ref.slurmJobId] : [])));
    return checked.map((c): RankObservation => {
      const { handle } = c;
      if (!('ref' in c) || !c.ref) return { jobId: handle.jobId, rank: handle.rank, state: 'lost', detail: c.error ?? 'unreadable handle' };
      if (watched.has(keyOf(handle))) return { jobId: handle.jobId, rank: handle.rank, state: 'running' };
      const attemptDir = attemptDirOf(handle.jobId, handle.attempt);
      const recorded = readExitFile(slurmRankFile(attemptDir, SLURM_RANK_FILES.exit, handle.rank));
      const slurmJobName = nameOf(handle.jobId, handle.attempt);
      const slurmJob = jobs.get(c.ref.slurmJobId);
      // As in pollOnce, but CANCELLED is left out: a stop of the last server's may have cancelled the job itself.
      if (recorded && slurmJob?.name === slurmJobName && ENDED_BY_SLURM.has(slurmJob.state) && slurmJob.state !== 'CANCELLED') {
        return { jobId: handle.jobId, rank: handle.rank, state: 'lost', detail: `Slurm ended job ${c.ref.slurmJobId} ${slurmJob.state}, so rank ${handle.rank}'s exit with code ${recorded.exitCode} was not its own` };
      }
      if (recorded) {
        const error = recorded.exitCode !== 0 ? readRankErrorFileSync(slurmRankFile(attemptDir, SLURM_RANK_FILES.error, handle.rank)) : undefined;
        return { jobId: handle.jobId, rank: handle.rank, state: 'exited', exitCode: recorded.exitCode, finishedAt: recorded.writtenAt, ...(recorded.signal ? { signal: recorded.signal } : {}), ...(error !== undefined ? { error } : {}) };
      }
      const over = slurmJobIsOver({ slurmJobId: c.ref.slurmJobId, slurmJobName }, jobs);
      if (fileTime(slurmRankFile(attemptDir, SLURM_RANK_FILES.started, handle.rank)) === undefined) {
        return { jobId: handle.jobId, rank: handle.rank, state: 'lost', detail: `rank ${handle.rank} of job ${handle.jobId} never started in Slurm job ${c.ref.slurmJobId}` };
      }
      if (over) {
        const why = over === 'gone' ? `Slurm no longer knows job ${c.ref.slurmJobId}` : `Slurm job ${c.ref.slurmJobId} ended ${over.state}`;
        return { jobId: handle.jobId, rank: handle.rank, state: 'lost', detail: `${why}, and rank ${handle.rank} left no exit status` };
      }
      watch(handle, c.ref.slurmJobId);
      return { jobId: handle.jobId, rank: handle.rank, state: 'running' };
    });
  }

  async function findStarted(jobId: string, attempt: number, ranks: readonly StartedRankQuery[]): Promise<RankHandle[]> {
    ensureOpen('find started ranks');
    const attemptDir = attemptDirOf(jobId, attempt);
    let slurmJobId = (await readFile(`${attemptDir}/${SLURM_ATTEMPT_FILES.slurmJobId}`, 'utf8').catch(() => '')).trim();
    if (!/^\d+$/.test(slurmJobId)) {
      // The control plane died between sbatch's answer and writing it down: Slurm knows the job by its name.
      const byName = await control.jobsNamed(nameOf(jobId, attempt)).catch(() => new Map<string, SlurmJobState>());
      slurmJobId = [...byName.keys()].at(-1) ?? '';
    }
    if (!/^\d+$/.test(slurmJobId)) return [];
    const found = ranks.flatMap((query): RankHandle[] => {
      const start = readRankStart(slurmRankFile(attemptDir, SLURM_RANK_FILES.started, query.rank));
      if (start === undefined) return [];
      return [{ backend: SLURM_BACKEND_KIND, jobId, rank: query.rank, node: start.node ?? query.node, attempt, startedAt: start.at, ref: slurmRankRef({ slurmJobId }) }];
    });
    if (found.length < ranks.length) {
      // A launch the crash cut before every rank started (its job still queued, say): the caller launches the gang
      // anew, so this Slurm job must not start the rest later beside it. Cancelled as a failed launch is.
      const jobName = nameOf(jobId, attempt);
      const jobs = await slurmJobs([slurmJobId]).catch(() => undefined);
      if (jobs === undefined || !slurmJobIsOver({ slurmJobId, slurmJobName: jobName }, jobs)) await cancelAndWait(slurmJobId, jobName);
    }
    return found;
  }

  // ---- files ---------------------------------------------------------------------------------------------------

  /** Whether a rank is over: its exit recorded, or its Slurm job (named in its attempt dir) has no process left. */
  async function rankHasEnded(ref: RankLogRef): Promise<boolean> {
    const attemptDir = attemptDirOf(ref.jobId, ref.attempt);
    if (readExitFile(slurmRankFile(attemptDir, SLURM_RANK_FILES.exit, ref.rank))) return true;
    const record = watched.get(keyOf(ref));
    if (record) return record.exit !== undefined;
    const slurmJobId = (await readFile(`${attemptDir}/${SLURM_ATTEMPT_FILES.slurmJobId}`, 'utf8').catch(() => '')).trim();
    if (!/^\d+$/.test(slurmJobId)) return false;
    const jobs = await slurmJobs([slurmJobId]).catch(() => undefined);
    return jobs !== undefined && slurmJobIsOver({ slurmJobId, slurmJobName: nameOf(ref.jobId, ref.attempt) }, jobs) !== undefined;
  }

  const logPathOf = (ref: RankLogRef) => slurmRankFile(attemptDirOf(ref.jobId, ref.attempt), SLURM_RANK_FILES.log, ref.rank);

  return {
    kind: 'slurm',
    dataDir,
    // An exit waits at most RELEASE_WAIT_MS for Slurm's release, seen at the next poll.
    exitReportDelayMs: RELEASE_WAIT_MS + pollIntervalMs,
    inventory,
    launch,
    stop,
    adopt,
    findStarted,
    // Slurm does not report GPU gauges to a login node; reading them means running nvidia-smi on every node.
    sampleGpus: async (): Promise<GpuReading> => ({ samples: [] }),
    prepareAttempt: (request: PrepareAttemptRequest): Promise<AttemptDirectories> => prepareLocalAttempt(dataDir, request),
    writeStopDeadline: (handles: readonly RankHandle[], deadline: number) => writeLocalStopDeadline(dataDir, handles, deadline),
    readLog: (ref: RankLogRef, readOptions?: ReadLogOptions) => readRankLog(logPathOf(ref), readOptions ?? {}, () => rankHasEnded(ref)),
    logSize: async (ref: RankLogRef) => (await stat(logPathOf(ref)).catch(() => undefined))?.size ?? 0,
    capLog: (ref: RankLogRef, maxBytes: number): Promise<LogTrim | undefined> => trimLog(logPathOf(ref), maxBytes),
    onRankExit(listener) {
      exitListeners.push(listener);
    },
    onNodeState(listener) {
      nodeListeners.push(listener);
      for (const change of nodeStates.values()) callSafely(() => listener(change), 'a node-state listener');
    },
    onInventoryChange(listener) {
      inventoryListeners.push(listener);
      startNodePolling();
    },
    async close() {
      if (closed) return;
      closed = true;
      if (pollTimer) clearInterval(pollTimer);
      if (nodeTimer) clearInterval(nodeTimer);
      for (const record of watched.values()) for (const wake of record.waiters.splice(0)) wake();
      watched.clear();
    },
  };
}

/** The Slurm gres type of the GPUs a launch was placed on: the inventory node's GPU product, when Slurm typed them. */
function slurmGpuType(node: SlurmNode, request: LaunchRequest): string | undefined {
  const typed = node.gpus.filter((g) => g.type !== '');
  if (typed.length === 0 || request.ranks.every((r) => r.gpus.length === 0)) return undefined;
  // One type on the node: ask for it; several: any GPU of the count (tutti's placement chose by type already).
  return typed.length === 1 ? typed[0]?.type : undefined;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** A rank's start: when its shim made its `started` file, and the node it wrote there (none in a file it left empty). */
interface RankStart {
  at: number;
  node?: string;
}

/** The `started` file of a rank, or undefined when the rank has not started. */
function readRankStart(path: string): RankStart | undefined {
  const at = fileTime(path);
  if (at === undefined) return undefined;
  let node = '';
  try {
    node = readFileSync(path, 'utf8').trim();
  } catch {
    // Made and then gone (a launch of the same attempt again removed it): its time is all there is.
  }
  return { at, ...(node !== '' ? { node } : {}) };
}

/** A file's modification time (epoch ms), or undefined when it does not exist. */
function fileTime(path: string): number | undefined {
  try {
    return Math.round(statSync(path).mtimeMs);
  } catch {
    return undefined;
  }
}

function callSafely(call: () => void, what: string): void {
  try {
    call();
  } catch (error) {
    process.emitWarning(`${what} threw: ${error instanceof Error ? error.message : String(error)}`);
  }
}
