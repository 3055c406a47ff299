/**
 * The Slurm backend against a real Slurm cluster (scripts/slurm-dev-cluster.sh: slurmctld and a slurmd per virtual
 * node, each node in its own network namespace): the backend conformance suite on partition `one` (node n1), and
 * what is Slurm's own — gangs across nodes with each rank on the node tutti placed it on, MASTER_ADDR on the node of
 * rank 0 as the others reach it, a node that goes down.
 */
import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ExecutionBackend, RankHandle } from '../src/execution-backend.ts';
import { createSlurmBackend, type SlurmBackendOptions } from '../src/slurm/slurm-backend.ts';
import { readSlurmRankRef } from '../src/slurm/slurm-rank-ref.ts';
import { describeExecutionBackendConformance, logOf, makeRanks, recordExits, waitUntil, type ConformanceHarness } from './execution-backend-conformance.ts';
import { createSlurmCli } from '../src/slurm/slurm-cli.ts';
import { createSlurmCliControl, type SlurmControl } from '../src/slurm/slurm-control.ts';
import type { SlurmNode } from '../src/slurm/slurm-nodes.ts';
import { createSlurmRestControl, mintSlurmToken, readSlurmJwtKey } from '../src/slurm/slurm-rest.ts';
import { useSlurmDevClusterWithRest, type SlurmDevRest } from './slurm-cluster.ts';

const run = promisify(execFile);
let slurmEnv: Record<string, string> = {};
let slurmRest: SlurmDevRest | undefined;

beforeAll(async () => {
  ({ env: slurmEnv, rest: slurmRest } = await useSlurmDevClusterWithRest());
}, 300_000);

/** Slurm through the dev cluster's slurmrestd alone (none of Slurm's tools), with tokens minted from its JWT key. */
function restControl(): SlurmControl {
  if (!slurmRest) throw new Error('the dev cluster is not up');
  return createSlurmRestControl({ url: slurmRest.url, user: os.userInfo().username, jwtKey: readSlurmJwtKey(slurmRest.jwtKeyFile) });
}

/** Cancels the Slurm jobs of these ranks outright (cleanup after each test). */
async function cancelRanks(handles: readonly RankHandle[]): Promise<void> {
  const ids = [...new Set(handles.map((h) => readSlurmRankRef(h).slurmJobId))];
  if (ids.length > 0) await run('scancel', ['--signal=KILL', ...ids], { env: { ...process.env, ...slurmEnv } }).catch(() => undefined);
}

async function makeSlurmHarness(options: Partial<SlurmBackendOptions> = {}): Promise<ConformanceHarness> {
  // Under the working directory's file system, as a site's shared one: every virtual node sees this machine's files.
  const root = await mkdtemp(join(os.tmpdir(), 'tutti-slurm-backend-'));
  const workdir = join(root, 'work');
  mkdirSync(workdir);
  return {
    workdir,
    createBackend: () => createSlurmBackend({ dataDir: join(root, 'data'), partition: 'one', env: slurmEnv, pollIntervalMs: 200, nodePollIntervalMs: 1_000, launchTimeoutMs: 30_000, ...options }),
    killRanks: cancelRanks,
    // slurmstepd's own line in a stopped task's output.
    // (a job cancelled whole, as slurmrestd stops at the deadline, says JOB).
    stopNotice: /^slurmstepd-\S+: error: \*\*\* (STEP \d+\.\d+|JOB \d+) ON \S+ CANCELLED AT \S+ \*\*\*$/,
    dispose: () => rm(root, { recursive: true, force: true }),
  };
}

describeExecutionBackendConformance('Slurm backend (real Slurm)', () => makeSlurmHarness());

describeExecutionBackendConformance('Slurm backend through slurmrestd (real Slurm, JWT)', () => makeSlurmHarness({ control: restControl() }));

describe('Slurm backend (real Slurm)', () => {
  let harness: ConformanceHarness;
  let backend: ExecutionBackend;
  const launched: RankHandle[] = [];

  beforeEach(async () => {
    harness = await makeSlurmHarness();
    backend = await harness.createBackend();
  });

  afterEach(async () => {
    await cancelRanks(launched.splice(0));
    await backend.close();
    await harness.dispose();
  });

  const shell = (command: string) => ({ kind: 'shell' as const, command });

  // A rank on a node that died is stopped until Slurm gives its job up, while the gang's next attempt already runs.
  it('watches a rank of the next attempt on its own while the same rank of the last attempt is still being stopped', async () => {
    const exits = recordExits(backend);
    const [node] = await backend.inventory();
    const jobId = `next-attempt-${process.pid}`;
    const [last] = await backend.launch({
      jobId, jobName: 'slow-to-stop', workdir: harness.workdir, env: {}, attempt: 1,
      run: shell('trap \'\' TERM; echo ready; while :; do sleep 0.05; done'), ranks: makeRanks(node!, 1),
    });
    launched.push(last!);
    await waitUntil(async () => (await logOf(backend, last!)).includes('ready'), 'the rank to be ready');
    const stopping = backend.stop([last!], { graceMs: 1_500 });
    launched.push(...(await backend.launch({ jobId, jobName: 'next', workdir: harness.workdir, env: {}, attempt: 2, run: shell('sleep 0.3; exit 3'), ranks: makeRanks(node!, 1) })));
    await stopping;
    await waitUntil(() => exits.of(jobId).length >= 2, 'both attempts\' exits');
    expect(exits.of(jobId).map((e) => [e.attempt, e.exitCode]).sort()).toEqual([[1, 137], [2, 3]]);
  });
});

describe('Slurm backend through slurmrestd (real Slurm, JWT)', () => {
  const slurm = (args: string[]) => run(args[0]!, args.slice(1), { env: { ...process.env, ...slurmEnv } });

  it('sees the inventory Slurm\'s tools see: GPUs, CPUs, memory, partitions; a drained node with its reason, back when resumed', async () => {
    const rest = restControl();
    const cli = createSlurmCliControl(createSlurmCli({ env: slurmEnv }));
    const pick = (nodes: SlurmNode[]) => nodes.filter((n) => n.name === 'n1').map(({ name, address, cpus, memoryMiB, gpus, partitions, state, reason }) => ({ name, address, cpus, memoryMiB, gpus, partitions, state, reason }));
    const [viaRest, viaTools] = await Promise.all([rest.nodes(), cli.nodes()]);
    expect(pick(viaRest)).toEqual(pick(viaTools));
    expect(pick(viaRest)[0]).toMatchObject({ address: '10.77.0.11', gpus: [{ type: '', count: 4 }], state: 'ready' });
    try {
      await slurm(['scontrol', 'update', 'nodename=n1', 'state=drain', 'reason=disk check by the admins']);
      const drained = (await rest.nodes()).find((n) => n.name === 'n1');
      expect(drained).toMatchObject({ state: 'draining', reason: 'disk check by the admins' });
      expect(drained?.slurmState).toMatch(/DRAIN/);
    } finally {
      await slurm(['scontrol', 'update', 'nodename=n1', 'state=resume']);
    }
    // Slurm calls a resumed node not responding (`idle*`) until its slurmd answers again.
    await waitUntil(async () => (await rest.nodes()).find((n) => n.name === 'n1')?.state === 'ready', 'n1 to be ready again');
  });

  it('counts the GPUs of other users\' jobs as used, and reads job states as squeue does', async () => {
    const rest = restControl();
    const { stdout } = await slurm(['sbatch', '--parsable', '-p', 'one', '--gres=gpu:3', '-J', 'someone-elses-training', '-o', '/dev/null', '--wrap', 'sleep 60']);
    const id = stdout.trim().split(';')[0]!;
    try {
      await waitUntil(async () => (await rest.jobs([id])).get(id)?.state === 'RUNNING', 'the other job to run');
      expect((await rest.jobs([id])).get(id)).toEqual({ id, state: 'RUNNING', name: 'someone-elses-training', reason: 'n1' });
      expect((await rest.gpusHeldByOthers('tutti.')).get('n1')).toEqual([{ type: '', count: 3 }]);
      expect((await rest.jobsNamed('someone-elses-training')).has(id)).toBe(true);
    } finally {
      await slurm(['scancel', id]);
    }
    await waitUntil(async () => (await rest.jobs([id])).get(id)?.state === 'CANCELLED', 'the other job to be cancelled');
    expect((await rest.gpusHeldByOthers('tutti.')).get('n1')).toBeUndefined();
  });

  it('stop requests reach every rank on a node exactly once, also after the rank whose watcher carried out the first one has ended', async () => {
    const harness = await makeSlurmHarness({ control: restControl() });
    const backend = await harness.createBackend();
    const exits = recordExits(backend);
    let handles: RankHandle[] = [];
    try {
      const [node] = await backend.inventory();
      const jobId = `rest-stop-${process.pid}`;
      // Rank 0 ends on SIGTERM, the others carry on until SIGUSR1.
      handles = await backend.launch({
        jobId, jobName: 'four-ranks', workdir: harness.workdir, env: {}, attempt: 1, ranks: makeRanks(node!, 4),
        run: { kind: 'shell', command: 'trap \'echo "got TERM"; [ "$RANK" = 0 ] && exit 0\' TERM; trap \'echo "got USR1"; sleep 1; exit 0\' USR1; echo ready; while :; do sleep 0.05; done' },
      });
      await waitUntil(async () => (await Promise.all(handles.map((h) => logOf(backend, h)))).every((log) => log.includes('ready')), 'every rank to be ready');
      await backend.stop([handles[0]!], { graceMs: 20_000 });
      await backend.stop(handles.slice(1), { graceMs: 20_000, signal: 'SIGUSR1' });
      await waitUntil(() => exits.of(jobId).length === 4, 'four exits');
      expect(exits.of(jobId).map((e) => [e.rank, e.exitCode, e.lost]).sort()).toEqual([[0, 0, false], [1, 0, false], [2, 0, false], [3, 0, false]]);
      for (const handle of handles) {
        const log = await logOf(backend, handle);
        expect(log.match(/got TERM/g), log).toHaveLength(1);
        expect(log.match(/got USR1/g) ?? [], log).toHaveLength(handle.rank === 0 ? 0 : 1);
      }
    } finally {
      await cancelRanks(handles);
      await backend.close();
      await harness.dispose();
    }
  });

  it('a token slurmctld does not accept is refused with a message that says what to check; an expired one says it expired', async () => {
    const url = slurmRest!.url;
    const forged = createSlurmRestControl({ url, user: 'root', jwtKey: Buffer.alloc(32, 7) });
    await expect(forged.nodes()).rejects.toThrow(/slurmrestd at http:\/\/127\.0\.0\.1:\d+ refused GET \/nodes: .*is the token valid for user root, signed with slurmctld's jwt_key\?/);
    const key = readSlurmJwtKey(slurmRest!.jwtKeyFile);
    const expired = createSlurmRestControl({ url, user: 'root', token: mintSlurmToken(key, 'root', Math.floor(Date.now() / 1000) - 7_200, 3_600) });
    await expect(expired.nodes()).rejects.toThrow(/the token expired at .*: mint another with `scontrol token lifespan=…`/);
    const good = createSlurmRestControl({ url, user: 'root', token: mintSlurmToken(key, 'root', Math.floor(Date.now() / 1000), 600) });
    expect((await good.nodes()).length).toBeGreaterThan(0);
    const closed = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const nowhere = createSlurmRestControl({ url: `http://127.0.0.1:${closed}`, user: 'root', jwtKey: key });
    await expect(nowhere.nodes()).rejects.toThrow(new RegExp(`slurmrestd at http://127\\.0\\.0\\.1:${closed} did not answer GET /nodes: .*ECONNREFUSED`));
    expect(() => createSlurmRestControl({ url: 'slurm-host:6820', user: 'root', jwtKey: key })).toThrow(/must start with http:\/\/ or https:\/\//);
  });
});
