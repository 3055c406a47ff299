/**
 * `launcher: mpi` on the local backend, with Open MPI's real mpirun: the whole ExecutionBackend conformance suite with
 * every launch started by mpirun, then what is MPI's own — the launcher's files, mpirun's failures told as the
 * launch's, no mpirun left after a stop or a restart, findStarted. Needs mpirun (Debian: openmpi-bin, which .ci/run
 * installs); without it these tests are skipped and say so.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  LaunchError,
  createLocalBackend,
  isProcessAlive,
  readLocalRankRef,
  readProcessArgs,
  rankFiles,
  signalProcessGroup,
  type ExecutionBackend,
  type LaunchRequest,
  type LocalBackend,
  type RankHandle,
} from '@tutti/backends';
import { MPI_ATTEMPT_FILES, makeMpiRankScript, mpiHostFile, mpirunArgs, parseOpenMpiVersion, splitRankEnvironments, summarizeMpirunOutput } from '../src/local/mpi-launch.ts';
import { describeExecutionBackendConformance, recordExits, sleep, waitUntil, type ConformanceHarness } from './execution-backend-conformance.ts';

function hasMpirun(): boolean {
  try {
    return execFileSync('mpirun', ['--version'], { encoding: 'utf8', timeout: 30_000 }).includes('Open MPI');
  } catch {
    return false;
  }
}

const MPIRUN = hasMpirun();
if (!MPIRUN) console.warn('[skipped] local backend launcher: mpi tests: no Open MPI mpirun (apt-get install openmpi-bin)');

/** The backend with every launch asking for `launcher: mpi`: what the conformance suite launches, mpirun starts. */
function throughMpirun(backend: LocalBackend): ExecutionBackend {
  return { ...backend, launch: (request: LaunchRequest) => backend.launch({ ...request, launcher: 'mpi' }) };
}

/** Every live process whose argv mentions `text` (mpirun, a rank supervisor of a job's files). */
function processesMentioning(text: string): Array<{ pid: number; args: string[] }> {
  const found: Array<{ pid: number; args: string[] }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const args = readProcessArgs(pid);
    if (args !== undefined && args.some((arg) => arg.includes(text)) && isProcessAlive(pid, 0)) found.push({ pid, args });
  }
  return found;
}

async function killRankGroups(handles: readonly RankHandle[]): Promise<void> {
  for (const handle of handles) signalProcessGroup(readLocalRankRef(handle).pid, 'SIGKILL');
  await waitUntil(() => handles.every((h) => !isProcessAlive(readLocalRankRef(h).pid, readLocalRankRef(h).pidStartTime)), 'killed ranks to be gone', 5_000);
}

describe.skipIf(!MPIRUN)('local backend, launcher: mpi (Open MPI mpirun)', () => {
  describeExecutionBackendConformance('local backend, every launch through mpirun', async (): Promise<ConformanceHarness> => {
    const root = await mkdtemp(join(os.tmpdir(), 'tutti-local-mpi-'));
    const workdir = join(root, 'work');
    mkdirSync(workdir);
    return {
      workdir,
      createBackend: () => throughMpirun(createLocalBackend({ dataDir: join(root, 'data'), pollIntervalMs: 50 })),
      killRanks: async (handles) => {
        await killRankGroups(handles);
        // Their mpirun exits once its ranks are gone: wait for it, so that no test leaves one behind.
        await waitUntil(() => processesMentioning(root).length === 0, 'every process of the test to be gone', 10_000);
      },
      dispose: () => rm(root, { recursive: true, force: true }),
    };
  });

  describe('what is MPI\'s own', () => {
    let root: string;
    let dataDir: string;
    let backends: LocalBackend[] = [];

    beforeEach(async () => {
      root = await mkdtemp(join(os.tmpdir(), 'tutti-local-mpi-'));
      dataDir = join(root, 'data');
      mkdirSync(join(root, 'work'));
    });

    afterEach(async () => {
      for (const backend of backends) await backend.close();
      backends = [];
      for (const { pid } of processesMentioning(root)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }
      await rm(root, { recursive: true, force: true });
    });

    function newBackend(options: { mpirun?: string } = {}): LocalBackend {
      const backend = createLocalBackend({ dataDir, nodeName: 'box', pollIntervalMs: 50, ...options });
      backends.push(backend);
      return backend;
    }

    const request = (jobId: string, command: string, count: number, extra: Partial<LaunchRequest> = {}): LaunchRequest => ({
      jobId, jobName: jobId, run: { kind: 'shell', command }, workdir: join(root, 'work'), env: {}, attempt: 1, launcher: 'mpi',
      ranks: Array.from({ length: count }, (_, rank) => ({ rank, localRank: rank, nodeRank: 0, node: 'box', gpus: [] })),
      ...extra,
    });

    const attemptFile = (jobId: string, name: string) => join(dataDir, 'jobs', jobId, 'attempt-1', name);

    it('mpirun starts the ranks, each its own rank supervisor: OMPI_COMM_WORLD_RANK is RANK, each log holds its own rank\'s output, mpirun\'s own goes to mpirun.log', async () => {
      const backend = newBackend();
      const exits = recordExits(backend);
      const handles = await backend.launch(request('hello', 'echo "rank $RANK of $WORLD_SIZE: mpi $OMPI_COMM_WORLD_RANK of $OMPI_COMM_WORLD_SIZE, local $LOCAL_RANK, log $TUTTI_RANK_LOG"', 3));
      expect((await exits.waitFor('hello', 3)).map((e) => [e.rank, e.exitCode])).toEqual([[0, 0], [1, 0], [2, 0]]);
      for (const handle of handles) {
        const files = rankFiles(dataDir, 'hello', handle.rank, 1);
        expect(readFileSync(files.log, 'utf8')).toBe(`rank ${handle.rank} of 3: mpi ${handle.rank} of 3, local ${handle.rank}, log ${files.log}\n`);
        // The handle names the rank's own supervisor, which wrote its pid file.
        expect(readLocalRankRef(handle).pid).toBe(Number(readFileSync(files.pid, 'utf8')));
      }
      expect(existsSync(attemptFile('hello', MPI_ATTEMPT_FILES.launcherLog))).toBe(true);
      expect(readFileSync(attemptFile('hello', MPI_ATTEMPT_FILES.hostFile), 'utf8')).toBe('localhost slots=3\n');
      // mpirun exits by itself once its ranks have, and its supervisor records its status.
      await waitUntil(() => existsSync(attemptFile('hello', MPI_ATTEMPT_FILES.launcherExit)), 'mpirun to exit');
      expect(readFileSync(attemptFile('hello', MPI_ATTEMPT_FILES.launcherExit), 'utf8').trim()).toBe('0');
      expect(processesMentioning(root)).toEqual([]);
    });

    it('a rank that fails does not take the others down (tutti stops them, with the job\'s grace): each reports its own exit', async () => {
      const backend = newBackend();
      const exits = recordExits(backend);
      const handles = await backend.launch(request('one-fails', 'if [ "$RANK" = 1 ]; then exit 3; fi; trap \'echo "stopping"; exit 0\' TERM; echo ready; while :; do sleep 0.05; done', 3));
      expect((await exits.waitFor('one-fails', 1)).map((e) => [e.rank, e.exitCode])).toEqual([[1, 3]]);
      await sleep(500);
      expect(exits.of('one-fails')).toHaveLength(1);
      await backend.stop(handles, { graceMs: 10_000 });
      expect(exits.of('one-fails').map((e) => [e.rank, e.exitCode, e.lost])).toEqual([[0, 0, false], [1, 3, false], [2, 0, false]]);
      // (The shell may also report its `sleep` child killed by the same signal.)
      expect(readFileSync(rankFiles(dataDir, 'one-fails', 2, 1).log, 'utf8')).toMatch(/^ready\n(.*\n)*stopping\n$/);
      expect(processesMentioning(root)).toEqual([]);
    });

    it('a stop whose grace runs out SIGKILLs every rank and leaves no process behind, mpirun included', async () => {
      const backend = newBackend();
      const exits = recordExits(backend);
      const handles = await backend.launch(request('stubborn', 'trap \'\' TERM; sleep 60 & echo ready; wait', 4));
      await waitUntil(() => handles.every((h) => readFileSync(rankFiles(dataDir, 'stubborn', h.rank, 1).log, 'utf8').includes('ready')), 'every rank ready');
      expect(processesMentioning(join(dataDir, 'jobs', 'stubborn')).some((p) => p.args.some((a) => a.endsWith('/mpirun')))).toBe(true);
      await backend.stop(handles, { graceMs: 300 });
      expect(exits.of('stubborn').map((e) => [e.exitCode, e.signal, e.lost])).toEqual(Array.from({ length: 4 }, () => [137, 'SIGKILL', false]));
      expect(processesMentioning(root)).toEqual([]);
    });

    it('after a restart, adopted MPI ranks are watched and stopped as any, and their mpirun ends with them', async () => {
      const first = newBackend();
      const handles = await first.launch(request('restarted', 'trap \'echo "got TERM"; exit 5\' TERM; echo ready; while :; do sleep 0.05; done', 2));
      await waitUntil(() => handles.every((h) => readFileSync(rankFiles(dataDir, 'restarted', h.rank, 1).log, 'utf8').includes('ready')), 'both ranks ready');
      await first.close();

      const second = newBackend();
      const exits = recordExits(second);
      const stored = JSON.parse(JSON.stringify(handles)) as RankHandle[];
      expect((await second.adopt(stored)).map((o) => o.state)).toEqual(['running', 'running']);
      await second.stop(stored, { graceMs: 10_000 });
      expect(exits.of('restarted').map((e) => [e.rank, e.exitCode])).toEqual([[0, 5], [1, 5]]);
      expect(processesMentioning(root)).toEqual([]);
    });

    it('findStarted finds the ranks mpirun started though no handle was recorded; when some are missing it kills mpirun, so that it starts no more', async () => {
      const first = newBackend();
      await first.launch(request('unrecorded', 'exec sleep 60', 2));
      await first.close();
      const second = newBackend();
      const found = await second.findStarted('unrecorded', 1, [{ rank: 0, node: 'box' }, { rank: 1, node: 'box' }]);
      expect(found.map((h) => h.rank)).toEqual([0, 1]);
      expect((await second.adopt(found)).map((o) => o.state)).toEqual(['running', 'running']);
      await second.stop(found, { graceMs: 0, signal: 'SIGKILL' });

      // mpirun had started rank 0 only when the control plane died (rank 1's pid file is gone: as if never written).
      const third = newBackend();
      await third.launch(request('half-started', 'exec sleep 60', 2));
      await third.close();
      const fourth = newBackend();
      const rank1 = rankFiles(dataDir, 'half-started', 1, 1);
      await rm(rank1.pid);
      const mpirunPid = Number(readFileSync(attemptFile('half-started', MPI_ATTEMPT_FILES.launcherPid), 'utf8'));
      const partial = await fourth.findStarted('half-started', 1, [{ rank: 0, node: 'box' }, { rank: 1, node: 'box' }]);
      expect(partial.map((h) => h.rank)).toEqual([0]);
      await waitUntil(() => !isProcessAlive(mpirunPid, 0), 'mpirun to be killed');
      await fourth.stop(partial, { graceMs: 0, signal: 'SIGKILL' });
      for (const { pid } of processesMentioning(root)) signalProcessGroup(pid, 'SIGKILL');
    });

    it('mpirun\'s own failure (more ranks than slots it is given) fails the launch with its words, which rank 0\'s log keeps too; nothing is left running', async () => {
      // An mpirun that is given a host file of too few slots: a wrapper that rewrites the one the backend wrote.
      const wrapper = join(root, 'mpirun-one-slot');
      execFileSync('/bin/sh', ['-c', `printf '%s\\n' '#!/bin/sh' 'for a in "$@"; do case "$a" in */${MPI_ATTEMPT_FILES.hostFile}) echo "localhost slots=1" > "$a";; esac; done' 'exec mpirun "$@"' > ${wrapper} && chmod +x ${wrapper}`]);
      const narrow = newBackend({ mpirun: wrapper });
      const exits = recordExits(narrow);
      const failure = await narrow.launch(request('too-few-slots', 'echo hi', 2)).catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(LaunchError);
      expect((failure as LaunchError).message).toMatch(/^mpirun could not start the 2 ranks of job too-few-slots on node box: There are not enough slots available/);
      expect(readFileSync(rankFiles(dataDir, 'too-few-slots', 0, 1).log, 'utf8')).toMatch(/mpirun could not start the ranks[\s\S]*not enough slots/);
      await sleep(200);
      expect(exits.of('too-few-slots')).toEqual([]);
      expect(processesMentioning(join(dataDir, 'jobs', 'too-few-slots'))).toEqual([]);
    });

    it('without Open MPI\'s mpirun, a launch fails saying what to install', async () => {
      const backend = newBackend({ mpirun: join(root, 'no-such-mpirun') });
      const error = await backend.launch(request('no-mpirun', 'echo hi', 1)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LaunchError);
      expect((error as LaunchError).message).toMatch(/launcher: mpi needs Open MPI's mpirun on node box.*apt-get install openmpi-bin/);
      expect(statSync(join(dataDir)).isDirectory()).toBe(true);
    });
  });
});

describe('mpi-launch.ts: the host file, mpirun\'s arguments and the rank script (pure)', () => {
  it('gives mpirun one slot per rank on this machine', () => {
    expect(mpiHostFile(4)).toBe('localhost slots=4\n');
  });

  it('reads Open MPI\'s version from mpirun --version, and nothing from another MPI\'s', () => {
    expect(parseOpenMpiVersion('mpirun (Open MPI) 4.1.4\n\nReport bugs to http://www.open-mpi.org/community/help/\n')).toEqual({ major: 4, minor: 1, text: '4.1.4' });
    expect(parseOpenMpiVersion('mpirun (Open MPI) 5.0.3rc1\n')).toEqual({ major: 5, minor: 0, text: '5.0.3rc1' });
    expect(parseOpenMpiVersion('HYDRA build details:\n    Version:                                 4.0.2\n')).toBeUndefined();
  });

  it('runs the rank script under mpirun unbound, without stdin, leaving a failed rank\'s peers to tutti; as root only when root', () => {
    const base = { hostFile: '/d/mpi-hostfile', ranks: 4, rankScript: '/d/mpi-rank.sh', command: ['python3', 'train.py', '--lr', '0.1'], openMpiMajor: 4 };
    expect(mpirunArgs({ ...base, asRoot: false })).toEqual([
      '--hostfile', '/d/mpi-hostfile', '-np', '4', '--bind-to', 'none', '--stdin', 'none', '--mca', 'orte_abort_on_non_zero_status', '0',
      '/bin/sh', '/d/mpi-rank.sh', 'python3', 'train.py', '--lr', '0.1',
    ]);
    expect(mpirunArgs({ ...base, asRoot: true })[0]).toBe('--allow-run-as-root');
    // Open MPI 5 (PRRTE) has no ORTE settings.
    expect(mpirunArgs({ ...base, asRoot: false, openMpiMajor: 5 })).not.toContain('--mca');
  });

  it('puts what every rank has alike in mpirun\'s environment, and what differs, or some rank lacks, in each rank\'s own', () => {
    const { common, perRank } = splitRankEnvironments([
      { PATH: '/bin', WORLD_SIZE: '2', RANK: '0', ONLY_ZERO: 'x' },
      { PATH: '/bin', WORLD_SIZE: '2', RANK: '1' },
    ]);
    expect(common).toEqual({ PATH: '/bin', WORLD_SIZE: '2' });
    expect(perRank).toEqual([{ RANK: '0', ONLY_ZERO: 'x' }, { RANK: '1' }]);
    expect(splitRankEnvironments([{ A: '1' }])).toEqual({ common: { A: '1' }, perRank: [{}] });
  });

  it('writes a rank script that picks its rank by OMPI_COMM_WORLD_RANK, refuses one the job has not, and becomes the rank supervisor', () => {
    const script = makeMpiRankScript({
      jobId: 'job-7', attempt: 2, supervisor: '/data/bin/rank-supervisor.sh',
      ranks: [0, 1].map((rank) => ({ rank, env: { RANK: String(rank), QUOTED: `it's "${rank}"`, 'BAD-NAME': 'x' }, files: { log: `/a dir/rank-${rank}.log`, pid: `/a dir/rank-${rank}.pid`, exit: `/a dir/rank-${rank}.exit` } })),
    });
    expect(script).toContain('case "${OMPI_COMM_WORLD_RANK-}" in');
    expect(script).toContain(`  1)\n    export RANK='1' QUOTED='it'\\''s "1"'\n    tutti_log='/a dir/rank-1.log' tutti_pid='/a dir/rank-1.pid' tutti_exit='/a dir/rank-1.exit' ;;`);
    expect(script).not.toContain('BAD-NAME');
    expect(script).toMatch(/\*\) echo "tutti: mpirun started rank .*(ranks 0-1).*exit 70 ;;/);
    expect(script.trimEnd().split('\n').slice(-2)).toEqual(['exec >>"$tutti_log" 2>&1', `exec /bin/sh '/data/bin/rank-supervisor.sh' "$tutti_pid" "$tutti_exit" "$@"`]);
    // Run by sh for a rank the job has not, it says so and exits 70 before touching any file.
    const refused = (() => {
      try {
        execFileSync('/bin/sh', ['-c', script, 'mpi-rank.sh', 'true'], { env: { OMPI_COMM_WORLD_RANK: '5', PATH: '/usr/bin:/bin' }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
        return undefined;
      } catch (error) {
        return error as { status: number; stderr: string };
      }
    })();
    expect(refused?.status).toBe(70);
    expect(refused?.stderr).toBe("tutti: mpirun started rank '5', which job job-7 does not have (ranks 0-1): is this Open MPI's mpirun?\n");
  });

  it('tells what mpirun said in one line: the first paragraph of its first boxed message, else its last lines', () => {
    const slots = [
      '--------------------------------------------------------------------------',
      'There are not enough slots available in the system to satisfy the 5',
      'slots that were requested by the application:',
      '',
      '  /bin/true',
      '',
      'Either request fewer slots for your application, or make more slots',
      '--------------------------------------------------------------------------',
    ].join('\n');
    expect(summarizeMpirunOutput(slots)).toBe('There are not enough slots available in the system to satisfy the 5 slots that were requested by the application:');
    expect(summarizeMpirunOutput('a\nb\n\nc\nd\n')).toBe('b c d');
    expect(summarizeMpirunOutput('  \n')).toBeUndefined();
    expect(summarizeMpirunOutput(`---------------\n${'x'.repeat(500)}\n---------------\n`, 20)).toBe(`${'x'.repeat(17)}...`);
  });
});
