/**
 * `launcher: mpi` on the local backend, the part that does I/O: finds Open MPI's mpirun, writes the launch's files
 * (mpi-launch.ts makes them), starts mpirun under the rank supervisor and waits until it has started every rank, and
 * ends the launcher once a stop has ended the ranks. See mpi-launch.ts for the process tree and why it is so.
 */
import { accessSync, closeSync, constants as fsConstants, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { LaunchError } from '../launch-request.ts';
import { SANE_PATH } from '../rank-environment.ts';
import { runProgram } from './local-inventory.ts';
import { MPI_ATTEMPT_FILES, makeMpiRankScript, mpiHostFile, mpirunArgs, parseOpenMpiVersion, splitRankEnvironments, summarizeMpirunOutput } from './mpi-launch.ts';
import { isProcessAlive, listLiveProcessGroups, processGroupExists, readProcStat, readProcessArgs, readProcessStartTime, signalProcessGroup } from './process-info.ts';
import { PRIVATE_FILE_MODE, attemptDirectory, supervisorScriptPath, type RankFiles } from './rank-files.ts';

/** How long mpirun may take to start every rank before the launch gives up. */
export const MPI_START_TIMEOUT_MS = 60_000;
/** How often the ranks' pid files are read while mpirun starts them. */
const START_POLL_MS = 10;
/**
 * How long mpirun is given to exit by itself once its ranks are gone (it takes a few ms when they exited), before its
 * group is SIGKILLed. Open MPI 4.1's mpirun told to let the other ranks run (`orte_abort_on_non_zero_status 0`) hangs
 * for good once a rank's first process was killed by a signal — what a stop's SIGKILL does.
 */
const LAUNCHER_DRAIN_MS = 1_000;
/** How long a SIGKILLed launcher's group may take to be gone. */
const KILLED_GROUP_DRAIN_MS = 2_000;

/** Open MPI's mpirun, found and checked. */
export interface OpenMpiRun {
  path: string;
  version: { major: number; minor: number; text: string };
}

/**
 * Finds `program` (a path, or a name looked up on the server's PATH and then on SANE_PATH) and checks that it is Open
 * MPI's mpirun (`--version`). Rejects with a LaunchError that says what is missing and how to get it.
 */
export async function findOpenMpiRun(program: string, serverPath: string | undefined, nodeName: string): Promise<OpenMpiRun> {
  const path = program.includes('/') ? program : [...(serverPath ?? '').split(':'), ...SANE_PATH.split(':')].filter((dir) => dir !== '').map((dir) => join(dir, program)).find(isExecutable);
  if (path === undefined || !isExecutable(path)) {
    throw new LaunchError('SpawnFailed', `launcher: mpi needs Open MPI's mpirun on node ${nodeName}, and there is no ${program} ${program.includes('/') ? '' : 'on its PATH '}(install Open MPI: apt-get install openmpi-bin)`);
  }
  const result = await runProgram(path, ['--version'], 30_000);
  const version = result.kind === 'ok' ? parseOpenMpiVersion(result.stdout) : undefined;
  if (version === undefined) {
    const said = result.kind === 'ok' ? result.stdout.trim().split('\n')[0] : result.kind === 'failed' ? result.message : 'not found';
    throw new LaunchError('SpawnFailed', `launcher: mpi needs Open MPI's mpirun on node ${nodeName}, but ${path} --version says "${said}"`);
  }
  return { path, version };
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export interface StartMpiRanksInput {
  dataDir: string;
  jobId: string;
  attempt?: number;
  nodeName: string;
  mpirun: OpenMpiRun;
  /** The rank supervisor script (installed by the backend). */
  supervisor: string;
  /** The job's command as an argv (`/bin/sh -c …` for a shell command). */
  command: readonly string[];
  cwd: string;
  /** Every rank's environment and files, index r: rank r's. */
  ranks: ReadonlyArray<{ rank: number; env: Readonly<Record<string, string>>; files: RankFiles }>;
  spawnProcess: (command: string, args: readonly string[], options: SpawnOptions) => ChildProcess;
  /** @default MPI_START_TIMEOUT_MS */
  startTimeoutMs?: number;
}

/** A rank mpirun started: its supervisor's pid (= its process group) and start time (-1 when it was gone already). */
export interface StartedMpiRank {
  rank: number;
  pid: number;
  pidStartTime: number;
}

/**
 * Starts the ranks through mpirun and resolves once every rank's supervisor has written its pid file, with those pids.
 * mpirun's failure to start them (too few slots, a missing program), a rank without a process group of its own, or
 * the timeout rejects with a LaunchError carrying mpirun's words, after killing whatever had started; mpirun's
 * output is appended to rank 0's log then, so that the job's log says it too.
 */
export async function startMpiRanks(input: StartMpiRanksInput): Promise<StartedMpiRank[]> {
  const dir = attemptDirectory(input.dataDir, input.jobId, input.attempt);
  const file = (name: string) => join(dir, name);
  const launcherPid = file(MPI_ATTEMPT_FILES.launcherPid);
  const launcherExit = file(MPI_ATTEMPT_FILES.launcherExit);
  const launcherLog = file(MPI_ATTEMPT_FILES.launcherLog);
  const { common, perRank } = splitRankEnvironments(input.ranks.map((r) => r.env));
  const ranks = input.ranks.map((r, i) => ({ rank: r.rank, env: perRank[i] ?? {}, files: r.files }));
  // A relaunch of the same attempt must not find the previous one's status or pids.
  for (const r of input.ranks) for (const stale of [r.files.exit, `${r.files.exit}.tmp`, r.files.pid, r.files.error]) rmSync(stale, { force: true });
  for (const stale of [launcherPid, launcherExit, `${launcherExit}.tmp`]) rmSync(stale, { force: true });
  writeFileSync(file(MPI_ATTEMPT_FILES.hostFile), mpiHostFile(input.ranks.length), { mode: PRIVATE_FILE_MODE });
  // Run as `/bin/sh <script>`: its owner's read permission is all it needs. It holds the job's environment: private.
  writeFileSync(file(MPI_ATTEMPT_FILES.rankScript), makeMpiRankScript({ jobId: input.jobId, ...(input.attempt !== undefined ? { attempt: input.attempt } : {}), supervisor: input.supervisor, ranks }), { mode: PRIVATE_FILE_MODE });
  // Made here, private (a rank's output may hold secrets); the ranks and the supervisors only write into them.
  for (const r of input.ranks) {
    closeSync(openSync(r.files.log, 'a', PRIVATE_FILE_MODE));
    closeSync(openSync(r.files.pid, 'w', PRIVATE_FILE_MODE));
  }
  closeSync(openSync(launcherPid, 'w', PRIVATE_FILE_MODE));
  const args = mpirunArgs({
    hostFile: file(MPI_ATTEMPT_FILES.hostFile), ranks: input.ranks.length, rankScript: file(MPI_ATTEMPT_FILES.rankScript),
    command: input.command, asRoot: process.getuid?.() === 0, openMpiMajor: input.mpirun.version.major,
  });
  const logFd = openSync(launcherLog, 'a', PRIVATE_FILE_MODE);
  let child: ChildProcess;
  try {
    child = input.spawnProcess('/bin/sh', [input.supervisor, launcherPid, launcherExit, input.mpirun.path, ...args], {
      cwd: input.cwd, env: common, detached: true, stdio: ['ignore', logFd, logFd],
    });
  } finally {
    closeSync(logFd);
  }
  let launcherGone = false;
  let spawnError: Error | undefined;
  child.on('error', (error) => {
    spawnError ??= error;
    launcherGone = true;
  });
  child.once('exit', () => (launcherGone = true));
  child.unref();
  if (child.pid === undefined) {
    await new Promise((resolve) => setImmediate(resolve));
    throw new LaunchError('SpawnFailed', `could not start mpirun for job ${input.jobId}${spawnError ? `: ${spawnError.message}` : ''}`, { cause: spawnError });
  }
  const launcher = child.pid;

  const started = new Map<number, StartedMpiRank>();
  const readStarted = async () => {
    for (const r of input.ranks) {
      if (started.has(r.rank)) continue;
      const pid = Number((await readFile(r.files.pid, 'utf8').catch(() => '')).trim());
      if (!Number.isSafeInteger(pid) || pid <= 0) continue;
      started.set(r.rank, { rank: r.rank, pid, pidStartTime: readProcessStartTime(pid) ?? -1 });
    }
  };
  const fail = async (why: string): Promise<never> => {
    signalProcessGroup(launcher, 'SIGKILL');
    for (const rank of started.values()) {
      // A rank that is not a group leader (the check below) is killed by its pid.
      if (!signalProcessGroup(rank.pid, 'SIGKILL') && isProcessAlive(rank.pid, rank.pidStartTime)) killProcess(rank.pid);
    }
    await waitForGroupsToGo([launcher, ...[...started.values()].map((r) => r.pid)], 10_000);
    const output = await readFile(launcherLog, 'utf8').catch(() => '');
    const said = summarizeMpirunOutput(output);
    const rankZero = input.ranks.find((r) => r.rank === 0);
    if (rankZero !== undefined && output.trim() !== '') {
      await appendPrivate(rankZero.files.log, `[tutti: mpirun could not start the ranks: ${why}; what it said:]\n${output.endsWith('\n') ? output : `${output}\n`}`);
    }
    throw new LaunchError('SpawnFailed', `mpirun could not start the ${input.ranks.length} ranks of job ${input.jobId} on node ${input.nodeName}: ${said ?? why} (mpirun's output: ${launcherLog})`, { cause: spawnError });
  };

  const deadline = performance.now() + (input.startTimeoutMs ?? MPI_START_TIMEOUT_MS);
  for (;;) {
    const gone = launcherGone;
    await readStarted();
    for (const rank of started.values()) {
      // Signals reach a rank through its process group, which Open MPI gives each process it starts: make sure.
      const stat = readProcStat(rank.pid);
      if (stat !== undefined && stat.state !== 'Z' && stat.startTime === rank.pidStartTime && stat.processGroup !== rank.pid) {
        return fail(`rank ${rank.rank} (pid ${rank.pid}) is not the leader of a process group of its own, so tutti could not stop it: is this Open MPI's mpirun?`);
      }
    }
    if (started.size === input.ranks.length) return input.ranks.map((r) => started.get(r.rank) as StartedMpiRank);
    if (gone) return fail(spawnError ? spawnError.message : `it exited having started ${started.size} of them`);
    if (performance.now() > deadline) return fail(`it had started ${started.size} of them after ${Math.round((input.startTimeoutMs ?? MPI_START_TIMEOUT_MS) / 1000)} s`);
    await new Promise((resolve) => setTimeout(resolve, START_POLL_MS));
  }
}

function killProcess(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone meanwhile
  }
}

async function appendPrivate(path: string, text: string): Promise<void> {
  try {
    const fd = openSync(path, 'a', PRIVATE_FILE_MODE);
    try {
      writeFileSync(fd, text);
    } finally {
      closeSync(fd);
    }
  } catch {
    // The failure is in the launch error already.
  }
}

/** Waits (at most `timeoutMs`) until these process groups have no live member: zombies hold nothing and do not count. */
async function waitForGroupsToGo(pgids: readonly number[], timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (liveGroups(pgids).length > 0 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
}

function liveGroups(pgids: readonly number[]): number[] {
  const existing = pgids.filter(processGroupExists);
  if (existing.length === 0) return existing;
  const live = listLiveProcessGroups();
  return live === undefined ? existing : existing.filter((group) => live.has(group));
}

/**
 * The launcher of an MPI attempt while it runs: the pid in `mpirun.pid`, if that process is still the launcher's
 * supervisor on that very file (checked on its argv, so that a reused pid is never taken for it). Undefined for an
 * attempt that was not launched by mpirun, or whose launcher is gone.
 */
export async function findMpiLauncher(dataDir: string, jobId: string, attempt: number | undefined): Promise<number | undefined> {
  const pidFile = join(attemptDirectory(dataDir, jobId, attempt), MPI_ATTEMPT_FILES.launcherPid);
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  const args = readProcessArgs(pid);
  if (args === undefined || args[1] !== supervisorScriptPath(dataDir) || args[2] !== pidFile) return undefined;
  return isProcessAlive(pid, 0) ? pid : undefined;
}

/**
 * Ends the launchers of these ranks' attempts once their ranks are over (after a stop): mpirun exits by itself when
 * its last rank has, and is given LAUNCHER_DRAIN_MS for it; whatever is left of its process group is then SIGKILLed,
 * so that a stop leaves nothing of the job behind. Nothing for attempts that mpirun did not launch.
 */
export async function endMpiLaunchers(dataDir: string, ranks: ReadonlyArray<{ jobId: string; attempt?: number }>): Promise<void> {
  const attempts = new Map(ranks.map((r) => [`${r.jobId}\u0000${r.attempt ?? ''}`, r]));
  await Promise.all(
    [...attempts.values()].map(async ({ jobId, attempt }) => {
      const launcher = await findMpiLauncher(dataDir, jobId, attempt);
      if (launcher === undefined) return;
      await waitForGroupsToGo([launcher], LAUNCHER_DRAIN_MS);
      if (liveGroups([launcher]).length === 0) return;
      signalProcessGroup(launcher, 'SIGKILL');
      await waitForGroupsToGo([launcher], KILLED_GROUP_DRAIN_MS);
    }),
  );
}

/**
 * For `findStarted` when not every rank of an MPI attempt was found: kills its launcher, so that mpirun, still
 * starting the gang when the control plane died, cannot start the missing ranks after the gang is launched anew.
 */
export async function killMpiLauncher(dataDir: string, jobId: string, attempt: number): Promise<void> {
  const launcher = await findMpiLauncher(dataDir, jobId, attempt);
  if (launcher !== undefined) signalProcessGroup(launcher, 'SIGKILL');
}

/**
 * What mpirun said went wrong with an attempt it launched, when it said something: the first of its boxed messages
 * ("MPI_ABORT was invoked on rank 1 in communicator MPI_COMM_WORLD with errorcode 3. …"), in one line. A failed rank's
 * exit carries it, so that the job's failure reason tells why mpirun killed the other ranks too. Undefined for an
 * attempt mpirun did not launch, or about which it said nothing of the kind.
 */
export function readMpirunFailure(dataDir: string, jobId: string, attempt: number | undefined): string | undefined {
  let text: string;
  try {
    text = readFileSync(join(attemptDirectory(dataDir, jobId, attempt), MPI_ATTEMPT_FILES.launcherLog), 'utf8');
  } catch {
    return undefined;
  }
  return /^-{10,}$/m.test(text) ? summarizeMpirunOutput(text) : undefined;
}
