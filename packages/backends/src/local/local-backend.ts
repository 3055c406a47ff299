/**
 * The local backend: every rank is a detached process on this machine.
 *
 *   control plane (node)
 *     └─ /bin/sh rank-supervisor.sh …      one per rank; session + process group leader; writes rank-<r>.exit
 *          └─ ( "$@" )                      the user's command: /bin/sh -c "…" or the argv, run directly
 *               └─ whatever it starts       same process group, unless it leaves it on purpose
 *
 * The supervisor is a few lines of sh, not a Node process, so a launch costs one fork+exec per rank. Ranks do not
 * depend on the control plane: their logs are files they hold open themselves, and their exit status is a file
 * that a later control plane reads when it adopts them. See README.md for the whole story.
 */
import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { closeSync, openSync, rmSync } from 'node:fs';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import type { NodeInfo, NodeState } from '@tutti/model';
import { formatFieldErrors } from '@tutti/model';
import type {
  ExecutionBackend,
  GpuReading,
  LaunchRequest,
  NodeStateChange,
  RankExit,
  RankHandle,
  RankLaunch,
  RankObservation,
  StopOptions,
} from '../execution-backend.ts';
import { LaunchError, isSafeJobId, verifyLaunchRequest } from '../launch-request.ts';
import { readRankErrorFileSync } from '../rank-error-file.ts';
import { baseRankEnvironment, computeRankEnvironment, type PythonEnvironment } from '../rank-environment.ts';
import { parseFakeGpus } from './fake-gpus.ts';
import { findFreePorts } from './free-port.ts';
import { PYTHON_HELPERS_DIR, pythonEnvironmentAt } from '../python-environment.ts';
import { LOCAL_BACKEND_KIND, localRankRef, readLocalRankRef, type LocalRankRef } from './local-rank-ref.ts';
import { LOCAL_NODE_ADDRESS, discoverLocalInventory, runProgram, type LocalInventory } from './local-inventory.ts';
import { NVIDIA_SMI_METRICS_ARGS, parseNvidiaSmiMetrics } from './nvidia-smi.ts';
import {
  isProcessAlive,
  listLiveProcessGroups,
  processGroupExists,
  readProcStat,
  readProcessArgs,
  readProcessStartTime,
  signalProcessGroup,
} from './process-info.ts';
import { prepareLocalAttempt, readLocalLog, writeLocalStopDeadline } from './attempt-files.ts';
import { endMpiLaunchers, findOpenMpiRun, killMpiLauncher, readMpirunFailure, startMpiRanks, type OpenMpiRun } from './mpi-run.ts';
import { trimLog } from './log-trim.ts';
import {
  PRIVATE_FILE_MODE,
  RANK_SUPERVISOR_SCRIPT,
  attemptDirectory,
  exitCodeForSignal,
  jobDirectory,
  rankFiles,
  readExitFile,
  supervisorScriptPath,
  type RankFiles,
} from './rank-files.ts';

export type SpawnFunction = (command: string, args: readonly string[], options: SpawnOptions) => ChildProcess;

export interface LocalBackendOptions {
  /** Where rank logs and status files live (`<dataDir>/jobs/<jobId>/`). Must be the same after a restart. */
  dataDir: string;
  /** `N[:TYPE[:MEMORY]]`: pretend this machine has these GPUs (see `parseFakeGpus`). */
  fakeGpus?: string;
  /** The node's name; ranks must be placed on it. @default os.hostname() */
  nodeName?: string;
  /** Clock for `startedAt`, `RankExit.at` and `NodeStateChange.at`. @default Date.now */
  now?: () => number;
  /** How often ranks adopted from an earlier control plane are checked. @default 500 */
  pollIntervalMs?: number;
  /** The nvidia-smi program. @default 'nvidia-smi' */
  nvidiaSmi?: string;
  /** Starts processes; tests replace it to make a spawn fail. @default child_process.spawn */
  spawnProcess?: SpawnFunction;
  /**
   * Variables of the server's environment ranks get besides the allow-list (see `baseRankEnvironment`): names, or
   * prefixes ending in `*` (`tutti up --pass-env`).
   */
  passEnv?: readonly string[];
  /** The server's environment ranks take their base from. @default process.env */
  serverEnv?: Readonly<Record<string, string | undefined>>;
  /**
   * Open MPI's mpirun, which starts the ranks of a `launcher: mpi` job (see mpi-launch.ts): a path, or a name looked
   * up on the server's PATH, then on the usual system directories. @default 'mpirun'
   */
  mpirun?: string;
}

export interface LocalBackend extends ExecutionBackend {
  readonly kind: 'local';
  readonly nodeName: string;
  readonly dataDir: string;
  /** The inventory with where its GPUs came from and any warnings. Discovered once, then cached. */
  localInventory(): Promise<LocalInventory>;
}

/** The shell that runs the supervisor. */
const SHELL = '/bin/sh';
/** How often adopted ranks are checked while a stop waits for them. */
const STOP_POLL_MS = 20;
/** How long a rolled-back launch waits for its killed ranks to be gone. */
const ROLLBACK_WAIT_MS = 10_000;
/**
 * How long `stop` waits, after the ranks have exited, for the rest of their process groups to be gone: a
 * SIGKILLed child can outlive its supervisor by a few milliseconds, and a zombie nobody reaps would hold it forever.
 */
const GROUP_DRAIN_MS = 2_000;
/**
 * How often ranks that mpirun started are checked at most: no exit event tells of them (they are mpirun's children),
 * and a rank's end is what the control plane acts on (the job's end, stopping a failed rank's peers).
 */
const MPI_RANK_POLL_MS = 100;

/** A rank this instance watches: one it spawned (`child` set) or one it adopted (polled). */
interface WatchedRank {
  key: string;
  handle: RankHandle;
  /** The handle's ref, checked: the process to watch and signal. */
  process: LocalRankRef;
  files: RankFiles;
  child?: ChildProcess;
  /** Started by mpirun for this instance (`launcher: mpi`): polled at least every MPI_RANK_POLL_MS. */
  startedByMpirun?: boolean;
  /** stop() sent SIGKILL: a death without a status file is then our kill, not a loss. */
  killedByStop: boolean;
  /** Part of a launch that was rolled back: its exit is not reported (the launch never returned it). */
  silent: boolean;
  /** Set once the exit has been handled. */
  exit?: RankExit;
  waiters: Array<() => void>;
}

const keyOf = (jobId: string, rank: number) => `${jobId}\u0000${rank}`;

function valueOf<T>(result: PromiseSettledResult<T>): T {
  if (result.status === 'rejected') throw result.reason;
  return result.value;
}

/**
 * Creates the local backend. Does no I/O until used; throws only for a malformed `fakeGpus`.
 */
export function createLocalBackend(options: LocalBackendOptions): LocalBackend {
  if (options.fakeGpus !== undefined) {
    const parsed = parseFakeGpus(options.fakeGpus);
    if (!parsed.ok) throw new Error(formatFieldErrors(parsed.errors));
  }
  // Absolute: the supervisor resolves its file arguments from the rank's workdir.
  const dataDir = resolvePath(options.dataDir);
  const nodeName = options.nodeName ?? os.hostname();
  /** The machine the ranks run on, kept in each handle: a pid means something only there. */
  const host = os.hostname();
  const now = options.now ?? Date.now;
  const pollIntervalMs = options.pollIntervalMs ?? 500;
  const spawnProcess: SpawnFunction = options.spawnProcess ?? ((command, args, spawnOptions) => nodeSpawn(command, [...args], spawnOptions));
  const address = LOCAL_NODE_ADDRESS;
  /** What every rank starts from: never the server's own environment (see rank-environment.ts). */
  const baseEnv = baseRankEnvironment(options.serverEnv ?? process.env, options.passEnv);

  const watched = new Map<string, WatchedRank>();
  const listeners: Array<(exit: RankExit) => void> = [];
  const nodeStateListeners: Array<(change: NodeStateChange) => void> = [];
  /** The node's state once reported (`ready` once its inventory is known); undefined before. */
  let nodeState: NodeStateChange | undefined;
  let closed = false;
  let inventoryPromise: Promise<LocalInventory> | undefined;
  let supervisorPromise: Promise<string> | undefined;
  /** Open MPI's mpirun, found once, on the first `launcher: mpi` launch. */
  let mpirunPromise: Promise<OpenMpiRun> | undefined;
  let pollTimer: NodeJS.Timeout | undefined;
  let stopsInFlight = 0;

  function ensureOpen(what: string): void {
    if (closed) throw new Error(`the local backend is closed: cannot ${what}`);
  }

  // ---- reporting ---------------------------------------------------------------------------------------------

  /** Handles a rank's exit exactly once: forget it, clean up its process group, tell the listeners. */
  function finish(record: WatchedRank, exit: Omit<RankExit, 'jobId' | 'rank'>): void {
    if (record.exit !== undefined || closed) return;
    // A failed rank may have said why (torch's @record writes it as the process dies): read before anyone reports it.
    // Under mpirun, what mpirun said (an MPI_Abort of some rank, which made mpirun kill the others) when the rank did not.
    const error = !exit.lost && exit.exitCode !== 0 ? readRankErrorFileSync(record.files.error) ?? readMpirunFailure(dataDir, record.handle.jobId, record.handle.attempt) : undefined;
    const full: RankExit = {
      jobId: record.handle.jobId, rank: record.handle.rank, ...exit, ...(error !== undefined ? { error } : {}),
      ...(record.handle.attempt !== undefined ? { attempt: record.handle.attempt } : {}),
    };
    record.exit = full;
    watched.delete(record.key);
    killLeftovers(record.process);
    // The last rank of an attempt mpirun started: mpirun must not outlive it (see mpi-run.ts).
    const { jobId, attempt } = record.handle;
    if (![...watched.values()].some((r) => r.handle.jobId === jobId && r.handle.attempt === attempt)) endMpiLaunchers(dataDir, [{ jobId, ...(attempt !== undefined ? { attempt } : {}) }]).catch(() => undefined);
    if (!record.silent) {
      for (const listener of listeners) {
        try {
          listener(full);
        } catch (error) {
          process.emitWarning(`a rank-exit listener threw: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
    }
    for (const wake of record.waiters.splice(0)) wake();
  }

  /**
   * Kills what is left of a finished rank's process group: a background process the command forgot must not hold
   * GPUs the scheduler now thinks are free. Skipped when the PID already belongs to a different live process: the
   * kernel does not reuse a PID while it still names a process group, so then our group is empty anyway.
   */
  function killLeftovers(rankProcess: LocalRankRef): void {
    const current = readProcStat(rankProcess.pid);
    const reused = current !== undefined && current.state !== 'Z' && rankProcess.pidStartTime !== 0 && current.startTime !== rankProcess.pidStartTime;
    if (!reused) signalProcessGroup(rankProcess.pid, 'SIGKILL');
  }

  function waitForExit(record: WatchedRank): Promise<void> {
    if (record.exit !== undefined || closed) return Promise.resolve();
    return new Promise((resolve) => record.waiters.push(resolve));
  }

  // ---- spawned ranks -------------------------------------------------------------------------------------------

  function onSpawnedExit(record: WatchedRank, code: number | null, signal: NodeJS.Signals | null): void {
    const recorded = readExitFile(record.files.exit);
    if (recorded !== undefined) {
      finish(record, { exitCode: recorded.exitCode, ...(recorded.signal ? { signal: recorded.signal } : {}), lost: false, at: now() });
    } else if (signal !== null) {
      // The supervisor itself was killed (SIGKILL from stop() or from someone else): the signal is the answer.
      finish(record, { exitCode: exitCodeForSignal(signal), signal, lost: false, at: now() });
    } else {
      finish(record, { exitCode: code, lost: false, at: now() });
    }
  }

  // ---- adopted ranks -------------------------------------------------------------------------------------------

  function pollAdopted(): void {
    for (const record of [...watched.values()]) {
      if (record.child !== undefined || record.exit !== undefined) continue;
      if (isProcessAlive(record.process.pid, record.process.pidStartTime)) continue;
      // The supervisor writes the status before it exits, so once it is gone the file is there, or never will be.
      const recorded = readExitFile(record.files.exit);
      if (recorded !== undefined) {
        finish(record, { exitCode: recorded.exitCode, ...(recorded.signal ? { signal: recorded.signal } : {}), lost: false, at: recorded.writtenAt });
      } else if (record.killedByStop) {
        finish(record, { exitCode: exitCodeForSignal('SIGKILL'), signal: 'SIGKILL', lost: false, at: now() });
      } else {
        finish(record, { exitCode: null, lost: true, at: now() });
      }
    }
  }

  function schedulePoll(): void {
    if (closed || pollTimer !== undefined) return;
    if (![...watched.values()].some((r) => r.child === undefined)) return;
    const mpiRanks = [...watched.values()].some((r) => r.startedByMpirun === true);
    const delay = stopsInFlight > 0 ? Math.min(pollIntervalMs, STOP_POLL_MS) : mpiRanks ? Math.min(pollIntervalMs, MPI_RANK_POLL_MS) : pollIntervalMs;
    pollTimer = setTimeout(() => {
      pollTimer = undefined;
      pollAdopted();
      schedulePoll();
    }, delay);
    // Watching alone does not keep the process alive; a stop() in progress does.
    if (stopsInFlight === 0) pollTimer.unref();
  }

  function reschedulePoll(): void {
    if (pollTimer !== undefined) clearTimeout(pollTimer);
    pollTimer = undefined;
    schedulePoll();
  }

  type Adoption = { observation: RankObservation; record?: WatchedRank };

  /** Adopts one rank; a handle it refuses (another backend's, a malformed ref) is `lost`, saying why. */
  function adoptOne(handle: RankHandle): Adoption {
    const { jobId, rank } = handle;
    let rankProcess: LocalRankRef;
    try {
      rankProcess = readLocalRankRef(handle);
    } catch (error) {
      return { observation: { jobId, rank, state: 'lost', detail: error instanceof Error ? error.message : String(error) } };
    }
    const existing = watched.get(keyOf(jobId, rank));
    if (existing !== undefined) return { observation: { jobId, rank, state: 'running' }, record: existing };
    if (handle.node !== nodeName) {
      return { observation: { jobId, rank, state: 'lost', detail: `the rank ran on node "${handle.node}", but this local backend runs node "${nodeName}"` } };
    }
    if (!isSafeJobId(jobId)) return { observation: { jobId, rank, state: 'lost', detail: `job id "${jobId}" cannot name a directory` } };
    const files = rankFiles(dataDir, jobId, rank, handle.attempt);
    const exited = (): Adoption | undefined => {
      const recorded = readExitFile(files.exit);
      if (recorded === undefined) return undefined;
      killLeftovers(rankProcess);
      const error = recorded.exitCode !== 0 ? readRankErrorFileSync(files.error) : undefined;
      return {
        observation: {
          jobId, rank, state: 'exited', exitCode: recorded.exitCode, finishedAt: recorded.writtenAt,
          ...(recorded.signal ? { signal: recorded.signal } : {}), ...(error !== undefined ? { error } : {}),
        },
      };
    };
    const before = exited();
    if (before) return before;
    if (isProcessAlive(rankProcess.pid, rankProcess.pidStartTime)) {
      const record: WatchedRank = { key: keyOf(jobId, rank), handle: { ...handle }, process: rankProcess, files, killedByStop: false, silent: false, waiters: [] };
      watched.set(record.key, record);
      return { observation: { jobId, rank, state: 'running' }, record };
    }
    // It may have written its status between the two looks.
    const after = exited();
    if (after) return after;
    killLeftovers(rankProcess);
    return {
      observation: {
        jobId, rank, state: 'lost',
        detail: `process ${rankProcess.pid} is gone (or its PID now belongs to another process) and left no exit status in ${files.exit}`,
      },
    };
  }

  /**
   * A rank the control plane launched but never recorded: its supervisor wrote `rank-<r>.pid` as its first act. The
   * PID is the rank's only while that process still runs the supervisor on this very pid file (checked on its
   * argv, so a reused PID is never taken for the rank); a rank that exited left its `.exit` file, read by `adopt`.
   * A supervisor killed before it wrote its pid file is not found: it dies at once, having started nothing.
   */
  async function findStartedRank(jobId: string, attempt: number, rank: number): Promise<RankHandle | undefined> {
    const files = rankFiles(dataDir, jobId, rank, attempt);
    const [pidText, pidInfo] = await Promise.all([readFile(files.pid, 'utf8').catch(() => undefined), stat(files.pid).catch(() => undefined)]);
    const pid = pidText === undefined ? Number.NaN : Number(pidText.trim());
    if (!Number.isSafeInteger(pid) || pid <= 0 || pidInfo === undefined) return undefined;
    const handle = (pidStartTime: number): RankHandle => ({
      backend: LOCAL_BACKEND_KIND, jobId, rank, node: nodeName, attempt, startedAt: Math.round(pidInfo.mtimeMs),
      ref: localRankRef({ pid, pidStartTime, logPath: files.log, host }),
    });
    if (readExitFile(files.exit) !== undefined) return handle(-1);
    const args = readProcessArgs(pid);
    const runsSupervisor = args === undefined ? isProcessAlive(pid, 0) : args[1] === supervisorScriptPath(dataDir) && args[2] === files.pid;
    if (!runsSupervisor) return readExitFile(files.exit) !== undefined ? handle(-1) : undefined;
    return handle(readProcessStartTime(pid) ?? 0);
  }

  // ---- launch --------------------------------------------------------------------------------------------------

  async function installSupervisor(): Promise<string> {
    const path = supervisorScriptPath(dataDir);
    const current = await readFile(path, 'utf8').catch(() => undefined);
    if (current === RANK_SUPERVISOR_SCRIPT) return path;
    await mkdir(dirname(path), { recursive: true });
    // Replace by rename: a running supervisor keeps reading the old file, never a half-written new one.
    const temporary = `${path}.${process.pid}.tmp`;
    // Run as `/bin/sh <script>`, so its owner's read permission is all it needs.
    await writeFile(temporary, RANK_SUPERVISOR_SCRIPT, { mode: 0o700 });
    await rename(temporary, path);
    return path;
  }

  function ensureSupervisor(): Promise<string> {
    supervisorPromise ??= installSupervisor().catch((error: unknown) => {
      supervisorPromise = undefined;
      throw error;
    });
    return supervisorPromise;
  }

  async function resolveWorkdir(workdir: string | undefined, jobDir: string): Promise<string> {
    if (workdir === undefined) return jobDir;
    let info;
    try {
      info = await stat(workdir);
    } catch {
      throw new LaunchError('WorkdirMissing', `workdir ${workdir} does not exist on node ${nodeName}`);
    }
    if (!info.isDirectory()) throw new LaunchError('WorkdirMissing', `workdir ${workdir} is not a directory`);
    return workdir;
  }

  interface SpawnContext {
    request: LaunchRequest;
    supervisor: string;
    argv: readonly string[];
    cwd: string;
    masterPort: number;
    coordinatorPort: number;
    pythonEnv?: PythonEnvironment;
  }

  /** A rank's whole environment (rank-environment.ts): for the ranks tutti starts, and those mpirun starts. */
  function rankEnvironment(context: SpawnContext, rank: RankLaunch, files: RankFiles): Record<string, string> {
    const { request } = context;
    return computeRankEnvironment({
      jobId: request.jobId, jobName: request.jobName, ranks: request.ranks, rank,
      ...(request.launcher !== undefined ? { launcher: request.launcher } : {}),
      masterAddr: address, masterPort: context.masterPort, coordinatorPort: context.coordinatorPort,
      logPath: files.log, errorFile: files.error, base: baseEnv, jobEnv: request.env,
      ...(context.pythonEnv !== undefined ? { pythonEnv: context.pythonEnv } : {}),
      ...(request.runtimeEnv !== undefined ? { runtimeEnv: request.runtimeEnv } : {}),
      ...(request.attempt !== undefined ? { attempt: request.attempt } : {}),
      ...(request.restarts !== undefined ? { restarts: request.restarts } : {}),
      ...(request.preemptions !== undefined ? { preemptions: request.preemptions } : {}),
      cpus: request.cpus ?? os.availableParallelism(),
      pythonHelpersDir: PYTHON_HELPERS_DIR,
    });
  }

  /** Starts one rank. Synchronous, so that a launch's ranks start back to back. */
  function spawnRank(context: SpawnContext, rank: RankLaunch, failure: { error?: Error }): WatchedRank {
    const { request } = context;
    const files = rankFiles(dataDir, request.jobId, rank.rank, request.attempt);
    // A relaunch of the same job must not find the previous attempt's status.
    for (const stale of [files.exit, `${files.exit}.tmp`, files.pid, files.error]) rmSync(stale, { force: true });
    const env = rankEnvironment(context, rank, files);
    // Created private: a rank's output may hold secrets. The supervisor writes its pid into a file made private here.
    const logFd = openSync(files.log, 'a', PRIVATE_FILE_MODE);
    closeSync(openSync(files.pid, 'w', PRIVATE_FILE_MODE));
    let child: ChildProcess;
    try {
      child = spawnProcess(SHELL, [context.supervisor, files.pid, files.exit, ...context.argv], {
        cwd: context.cwd,
        env,
        detached: true,
        stdio: ['ignore', logFd, logFd],
      });
    } finally {
      closeSync(logFd);
    }
    // Spawn failures arrive as an 'error' event on the next tick; later errors (a failed kill) are not fatal.
    child.on('error', (error) => {
      failure.error ??= error;
    });
    const pid = child.pid;
    if (pid === undefined) throw new LaunchError('SpawnFailed', `could not start rank ${rank.rank} of job ${request.jobId}`);
    child.unref();
    const rankProcess: LocalRankRef = { pid, pidStartTime: readProcessStartTime(pid) ?? 0, logPath: files.log, host };
    const handle: RankHandle = {
      backend: LOCAL_BACKEND_KIND,
      jobId: request.jobId,
      rank: rank.rank,
      node: nodeName,
      ...(request.attempt !== undefined ? { attempt: request.attempt } : {}),
      startedAt: now(),
      ref: localRankRef(rankProcess),
    };
    const record: WatchedRank = { key: keyOf(request.jobId, rank.rank), handle, process: rankProcess, files, child, killedByStop: false, silent: false, waiters: [] };
    watched.set(record.key, record);
    child.once('exit', (code, signal) => onSpawnedExit(record, code, signal));
    return record;
  }

  /**
   * Waits (at most GROUP_DRAIN_MS) until no live process is left in these process groups. Zombies do not count:
   * they hold no memory or devices, and some inits take seconds to reap them.
   */
  async function drainProcessGroups(pgids: readonly number[]): Promise<void> {
    const deadline = performance.now() + GROUP_DRAIN_MS;
    const stillLive = (groups: readonly number[]) => {
      const existing = groups.filter(processGroupExists);
      if (existing.length === 0) return existing;
      const live = listLiveProcessGroups();
      return live === undefined ? existing : existing.filter((g) => live.has(g));
    };
    let left = stillLive(pgids);
    while (left.length > 0 && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      left = stillLive(left);
    }
  }

  async function rollBack(started: readonly WatchedRank[]): Promise<void> {
    for (const record of started) {
      record.silent = true;
      signalProcessGroup(record.process.pid, 'SIGKILL');
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(started.map(waitForExit)),
      new Promise((resolve) => (timer = setTimeout(resolve, ROLLBACK_WAIT_MS))),
    ]);
    clearTimeout(timer);
    await drainProcessGroups(started.map((r) => r.process.pid));
  }

  // ---- launcher: mpi ---------------------------------------------------------------------------------------------

  /**
   * `launcher: mpi`: mpirun starts the ranks (mpi-run.ts), each as a rank supervisor of its own, which is then
   * watched as an adopted rank is (polled: its parent is mpirun, not this process).
   */
  async function launchThroughMpirun(context: SpawnContext): Promise<RankHandle[]> {
    const { request } = context;
    mpirunPromise ??= findOpenMpiRun(options.mpirun ?? 'mpirun', process.env.PATH, nodeName).catch((error: unknown) => {
      mpirunPromise = undefined;
      throw error;
    });
    const mpirun = await mpirunPromise;
    const ranks = [...request.ranks].sort((a, b) => a.rank - b.rank).map((rank) => {
      const files = rankFiles(dataDir, request.jobId, rank.rank, request.attempt);
      return { rank: rank.rank, env: rankEnvironment(context, rank, files), files };
    });
    const started = await startMpiRanks({
      dataDir, jobId: request.jobId, ...(request.attempt !== undefined ? { attempt: request.attempt } : {}), nodeName, mpirun,
      supervisor: context.supervisor, command: context.argv, cwd: context.cwd, ranks, spawnProcess,
    });
    const startedAt = now();
    const records = started.map(({ rank, pid, pidStartTime }): WatchedRank => {
      const files = rankFiles(dataDir, request.jobId, rank, request.attempt);
      const rankProcess: LocalRankRef = { pid, pidStartTime, logPath: files.log, host };
      const handle: RankHandle = {
        backend: LOCAL_BACKEND_KIND, jobId: request.jobId, rank, node: nodeName,
        ...(request.attempt !== undefined ? { attempt: request.attempt } : {}),
        startedAt, ref: localRankRef(rankProcess),
      };
      return { key: keyOf(request.jobId, rank), handle, process: rankProcess, files, startedByMpirun: true, killedByStop: false, silent: false, waiters: [] };
    });
    for (const record of records) watched.set(record.key, record);
    reschedulePoll();
    return records.map((r) => r.handle);
  }

  /** A second launch of a running job would overwrite its status files and lose track of its ranks. */
  function assertNotRunning(request: LaunchRequest): void {
    const running = request.ranks.find((r) => watched.has(keyOf(request.jobId, r.rank)));
    if (running) throw new LaunchError('InvalidRequest', `rank ${running.rank} of job ${request.jobId} is still running`);
  }

  async function launch(request: LaunchRequest): Promise<RankHandle[]> {
    ensureOpen('launch');
    const problems = verifyLaunchRequest(request);
    if (problems.length > 0) throw new LaunchError('InvalidRequest', `cannot launch job ${request.jobId}: ${problems.join('; ')}`);
    const elsewhere = request.ranks.find((r) => r.node !== nodeName);
    if (elsewhere) {
      throw new LaunchError('WrongNode', `rank ${elsewhere.rank} of job ${request.jobId} is placed on node "${elsewhere.node}", but this local backend runs node "${nodeName}"`);
    }
    assertNotRunning(request);

    if (request.workdir !== undefined && !isAbsolute(request.workdir)) {
      throw new LaunchError('WorkdirMissing', `workdir "${request.workdir}" is not an absolute path`);
    }
    const jobDir = jobDirectory(dataDir, request.jobId);
    const filesDir = attemptDirectory(dataDir, request.jobId, request.attempt);
    // Independent I/O in parallel; all of it settles before a failure is thrown, so nothing runs on after a reject.
    const [workdirResult, supervisorResult, portsResult] = await Promise.allSettled([
      resolveWorkdir(request.workdir, jobDir),
      mkdir(filesDir, { recursive: true }).then(ensureSupervisor),
      findFreePorts(address, 2),
    ]);
    const cwd = valueOf(workdirResult);
    const supervisor = valueOf(supervisorResult);
    const [masterPort, coordinatorPort] = valueOf(portsResult) as [number, number];
    ensureOpen('launch');
    assertNotRunning(request);
    const argv = request.run.kind === 'shell' ? [SHELL, '-c', request.run.command] : request.run.argv;
    const pythonEnv = request.pythonEnv === undefined ? undefined : pythonEnvironmentAt(request.pythonEnv);
    const context: SpawnContext = { request, supervisor, argv, cwd, masterPort, coordinatorPort, ...(pythonEnv ? { pythonEnv } : {}) };
    if (request.launcher === 'mpi') return launchThroughMpirun(context);
    const started: WatchedRank[] = [];
    const failure: { error?: Error } = {};
    try {
      for (const rank of [...request.ranks].sort((a, b) => a.rank - b.rank)) started.push(spawnRank(context, rank, failure));
    } catch (error) {
      await new Promise((resolve) => setImmediate(resolve));
      await rollBack(started);
      const base = error instanceof LaunchError ? error.message : `could not start job ${request.jobId}`;
      const reason = failure.error?.message ?? (error instanceof LaunchError ? undefined : error instanceof Error ? error.message : String(error));
      throw new LaunchError('SpawnFailed', reason === undefined ? base : `${base}: ${reason}`, { cause: failure.error ?? error });
    }
    return started.map((r) => r.handle);
  }

  // ---- stop ----------------------------------------------------------------------------------------------------

  function sendSignal(record: WatchedRank, signal: NodeJS.Signals): void {
    if (record.exit !== undefined) return;
    if (signal === 'SIGKILL') record.killedByStop = true;
    // A spawned rank without an exit event has not been reaped, so its PID is still ours. An adopted one is
    // checked first, so that a reused PID's group is never signalled.
    if (record.child === undefined && !isProcessAlive(record.process.pid, record.process.pidStartTime)) return;
    signalProcessGroup(record.process.pid, signal);
  }

  async function stop(handles: readonly RankHandle[], options: StopOptions): Promise<void> {
    ensureOpen('stop');
    const signal = options.signal ?? 'SIGTERM';
    const graceMs = options.graceMs ?? 30_000;
    // Every handle is checked before any rank is signalled: a refused one stops nothing.
    for (const handle of handles) readLocalRankRef(handle);
    const pending: WatchedRank[] = [];
    for (const handle of handles) {
      // A handle this instance does not watch yet is adopted on the spot (if it still runs).
      const record = watched.get(keyOf(handle.jobId, handle.rank)) ?? adoptOne(handle).record;
      if (record !== undefined && record.exit === undefined) pending.push(record);
    }
    if (pending.length === 0) return;
    stopsInFlight++;
    reschedulePoll();
    // Exit events of unref'd children and the poll timer do not keep Node alive on their own.
    const keepAlive = setInterval(() => {}, 60_000);
    try {
      for (const record of pending) sendSignal(record, signal);
      const allExited = Promise.all(pending.map(waitForExit));
      let graceTimer: NodeJS.Timeout | undefined;
      const inTime = await Promise.race([
        allExited.then(() => true),
        new Promise<boolean>((resolve) => (graceTimer = setTimeout(() => resolve(false), graceMs))),
      ]);
      clearTimeout(graceTimer);
      if (!inTime) for (const record of pending) sendSignal(record, 'SIGKILL');
      await allExited;
      if (closed && pending.some((r) => r.exit === undefined)) {
        throw new Error('the local backend was closed before the stopped ranks had exited');
      }
      await drainProcessGroups(pending.map((r) => r.process.pid));
      // The ranks of a `launcher: mpi` job are over: so must their mpirun be.
      await endMpiLaunchers(dataDir, pending.map((r) => r.handle));
    } finally {
      stopsInFlight--;
      clearInterval(keepAlive);
      reschedulePoll();
    }
  }

  // ---- the backend ---------------------------------------------------------------------------------------------

  function localInventory(): Promise<LocalInventory> {
    inventoryPromise ??= discoverLocalInventory({
      nodeName,
      address,
      ...(options.fakeGpus !== undefined ? { fakeGpus: options.fakeGpus } : {}),
      ...(options.nvidiaSmi !== undefined ? { nvidiaSmi: options.nvidiaSmi } : {}),
    }).then(
      (inventory) => {
        reportNodeState(inventory.node.state);
        return inventory;
      },
      (error: unknown) => {
        inventoryPromise = undefined;
        throw error;
      },
    );
    return inventoryPromise;
  }

  /** Tells the node-state listeners of a change (nothing when the state is the one already reported). */
  function reportNodeState(state: NodeState): void {
    if (closed || nodeState?.state === state) return;
    const change: NodeStateChange = { node: nodeName, state, at: now() };
    nodeState = change;
    for (const listener of nodeStateListeners) callNodeStateListener(listener, change);
  }

  function callNodeStateListener(listener: (change: NodeStateChange) => void, change: NodeStateChange): void {
    try {
      listener(change);
    } catch (error) {
      process.emitWarning(`a node-state listener threw: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  return {
    kind: 'local',
    nodeName,
    dataDir,
    localInventory,
    async inventory(): Promise<NodeInfo[]> {
      return [(await localInventory()).node];
    },
    launch,
    stop,
    async adopt(handles) {
      ensureOpen('adopt');
      const observations = handles.map((handle) => adoptOne(handle).observation);
      schedulePoll();
      return observations;
    },
    async findStarted(jobId, attempt, ranks) {
      ensureOpen('find started ranks');
      if (!isSafeJobId(jobId)) return [];
      const found = (await Promise.all(ranks.filter((r) => r.node === nodeName).map((r) => findStartedRank(jobId, attempt, r.rank)))).filter((handle) => handle !== undefined);
      // A gang launched anew must not meet ranks an mpirun still starting the old one starts later.
      if (found.length < ranks.length) await killMpiLauncher(dataDir, jobId, attempt);
      return found;
    },
    async prepareAttempt(request) {
      ensureOpen('prepare an attempt');
      if (!isSafeJobId(request.jobId)) throw new LaunchError('InvalidRequest', `cannot prepare job ${JSON.stringify(request.jobId)}: not a safe job id`);
      return prepareLocalAttempt(dataDir, request);
    },
    async writeStopDeadline(handles, deadline) {
      // The deadline file is the job's (one control dir per job on this node): only the handle's job is needed.
      await writeLocalStopDeadline(dataDir, handles.filter((h) => h.backend === LOCAL_BACKEND_KIND && isSafeJobId(h.jobId)), deadline);
    },
    readLog(rank, readOptions) {
      if (!isSafeJobId(rank.jobId)) return (async function* () {})();
      return readLocalLog(dataDir, rank, readOptions);
    },
    async logSize(rank) {
      if (!isSafeJobId(rank.jobId)) return 0;
      return (await stat(rankFiles(dataDir, rank.jobId, rank.rank, rank.attempt).log).catch(() => undefined))?.size ?? 0;
    },
    async capLog(rank, maxBytes) {
      if (!isSafeJobId(rank.jobId)) return undefined;
      return trimLog(rankFiles(dataDir, rank.jobId, rank.rank, rank.attempt).log, maxBytes);
    },
    onRankExit(listener) {
      listeners.push(listener);
    },
    onNodeState(listener) {
      nodeStateListeners.push(listener);
      if (nodeState !== undefined) callNodeStateListener(listener, nodeState);
    },
    async sampleGpus(): Promise<GpuReading> {
      const local = await localInventory();
      // Fake GPUs have no gauges: report nothing rather than invent figures.
      if (local.gpuSource !== 'nvidia-smi') return { samples: [] };
      const at = now();
      const result = await runProgram(options.nvidiaSmi ?? 'nvidia-smi', NVIDIA_SMI_METRICS_ARGS, 10_000);
      if (result.kind !== 'ok') return { samples: [], warning: `nvidia-smi metrics query failed: ${result.kind === 'failed' ? result.message : 'nvidia-smi not found'}` };
      const parsed = parseNvidiaSmiMetrics(result.stdout);
      if (!parsed.ok) return { samples: [], warning: `could not read nvidia-smi metrics: ${formatFieldErrors(parsed.errors)}` };
      return { samples: parsed.value.map((gpu) => ({ at, node: nodeName, gpuIndex: gpu.index, utilizationPct: gpu.utilizationPct, memoryUsedMiB: gpu.memoryUsedMiB, memoryTotalMiB: gpu.memoryTotalMiB, powerW: gpu.powerW, temperatureC: gpu.temperatureC })) };
    },
    async close() {
      if (closed) return;
      closed = true;
      if (pollTimer !== undefined) clearTimeout(pollTimer);
      pollTimer = undefined;
      for (const record of watched.values()) for (const wake of record.waiters.splice(0)) wake();
      watched.clear();
    },
  };
}
