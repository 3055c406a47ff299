/**
 * What a control plane that died finds of its local ranks: exit statuses recorded whatever the job's PATH, ranks
 * started but never recorded (`findStarted`), and files only their owner can read.
 */
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLocalBackend, isProcessAlive, rankFiles, readLocalRankRef, signalProcessGroup } from '@tutti/backends';
import type { LocalBackend, RankHandle } from '@tutti/backends';
import type { RunCommand } from '@tutti/model';
import { sleep, waitUntil } from './execution-backend-conformance.ts';

let root: string;
let dataDir: string;
let backends: LocalBackend[];
let launched: RankHandle[];

beforeEach(async () => {
  root = await mkdtemp(join(os.tmpdir(), 'tutti-local-restart-'));
  dataDir = join(root, 'data');
  mkdirSync(join(root, 'work'));
  backends = [];
  launched = [];
});

afterEach(async () => {
  for (const handle of launched) signalProcessGroup(readLocalRankRef(handle).pid, 'SIGKILL');
  for (const backend of backends) await backend.close();
  await rm(root, { recursive: true, force: true });
});

function newBackend(): LocalBackend {
  const backend = createLocalBackend({ dataDir, nodeName: 'box', pollIntervalMs: 50 });
  backends.push(backend);
  return backend;
}

async function launch(backend: LocalBackend, jobId: string, run: RunCommand, options: { env?: Record<string, string>; count?: number } = {}): Promise<RankHandle[]> {
  const ranks = Array.from({ length: options.count ?? 1 }, (_, rank) => ({ rank, localRank: rank, nodeRank: 0, node: 'box', gpus: [] }));
  const handles = await backend.launch({ jobId, jobName: 'test', run, workdir: join(root, 'work'), env: options.env ?? {}, attempt: 1, ranks });
  launched.push(...handles);
  return handles;
}

const modeOf = (path: string) => (statSync(path).mode & 0o777).toString(8);

describe("the rank supervisor does not depend on the job's PATH", () => {
  it.each([
    ['empty', ''],
    ['without mv', join(os.tmpdir(), 'no-such-dir')],
  ])('records the exit status of a job whose PATH is %s, so a new control plane reads exit code 0 back', async (_, jobPath) => {
    const first = newBackend();
    // An absolute program: the job's own PATH finds nothing.
    const handles = await launch(first, 'job-path', { kind: 'argv', argv: ['/bin/sleep', '0.3'] }, { env: { PATH: jobPath } });
    await first.close();
    const { pid, pidStartTime } = readLocalRankRef(handles[0]!);
    await waitUntil(() => !isProcessAlive(pid, pidStartTime), 'the rank to exit while no backend watches');

    const second = newBackend();
    const [observation] = await second.adopt(handles);
    expect(observation).toMatchObject({ state: 'exited', exitCode: 0 });
  });

  it('runs the command with the PATH the job gave, not the supervisor\'s own', async () => {
    const backend = newBackend();
    const [handle] = await launch(backend, 'job-sees-path', { kind: 'shell', command: 'echo "PATH=$PATH"' }, { env: { PATH: '/opt/job/bin' } });
    const log = rankFiles(dataDir, 'job-sees-path', 0, 1).log;
    expect(readLocalRankRef(handle!).logPath).toBe(log);
    await waitUntil(() => readFileSync(log, 'utf8').includes('PATH='), 'the output');
    expect(readFileSync(log, 'utf8').trim()).toBe('PATH=/opt/job/bin');
  });
});

describe('findStarted: ranks launched but not recorded before the control plane died', () => {
  it('finds the running and the exited ranks of the attempt, ready to adopt, and nothing of an attempt never started', async () => {
    const first = newBackend();
    await launch(first, 'unrecorded', { kind: 'shell', command: 'if [ "$RANK" = 1 ]; then exit 4; fi; exec sleep 30' }, { count: 2 });
    await first.close();
    await waitUntil(() => readFileSync(rankFiles(dataDir, 'unrecorded', 1, 1).pid, 'utf8') !== '' && statExists(rankFiles(dataDir, 'unrecorded', 1, 1).exit), 'rank 1 to exit');

    const second = newBackend();
    const found = await second.findStarted('unrecorded', 1, [{ rank: 0, node: 'box' }, { rank: 1, node: 'box' }]);
    expect(found.map((h) => h.rank)).toEqual([0, 1]);
    const observations = await second.adopt(found);
    expect(observations).toEqual([{ jobId: 'unrecorded', rank: 0, state: 'running' }, expect.objectContaining({ rank: 1, state: 'exited', exitCode: 4 })]);
    expect(await second.findStarted('unrecorded', 2, [{ rank: 0, node: 'box' }])).toEqual([]);
    expect(await second.findStarted('never-launched', 1, [{ rank: 0, node: 'box' }])).toEqual([]);
  });

  it('does not take a PID that now belongs to another process for the rank', async () => {
    const files = rankFiles(dataDir, 'reused', 0, 1);
    mkdirSync(join(dataDir, 'jobs', 'reused', 'attempt-1'), { recursive: true });
    // The pid file names a live process that is not a supervisor of this rank: this test's own.
    writeFileSync(files.pid, `${process.pid}\n`);
    expect(await newBackend().findStarted('reused', 1, [{ rank: 0, node: 'box' }])).toEqual([]);
  });
});

describe('files of ranks are private', () => {
  it('creates rank logs, pid and exit files 0600', async () => {
    const backend = newBackend();
    await launch(backend, 'private', { kind: 'shell', command: 'echo secret' });
    const files = rankFiles(dataDir, 'private', 0, 1);
    await waitUntil(() => statExists(files.exit), 'the exit file');
    await sleep(10);
    expect({ log: modeOf(files.log), pid: modeOf(files.pid), exit: modeOf(files.exit) }).toEqual({ log: '600', pid: '600', exit: '600' });
  });
});

function statExists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}
