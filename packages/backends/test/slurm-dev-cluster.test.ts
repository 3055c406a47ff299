/**
 * The real Slurm cluster the Slurm backend is tested against (scripts/slurm-dev-cluster.sh): munge, slurmctld and a
 * slurmd per virtual node, each node in its own network namespace with its own address. What a gang across nodes
 * needs of it: ranks on two nodes, their Slurm ids consistent, fake GPUs bound, and a rendezvous at the first node's
 * address over a real interface — which a wrong address (127.0.0.1, where no rank of node 2 is listening) fails.
 *
 * Also the Slurm backend on that cluster where it reads what only a real Slurm says: racks from Slurm's topology, GPUs
 * other users' jobs hold, and a gang whose node order is not Slurm's.
 *
 * Partition `two` (n2, n3); see slurm-cluster.ts for how test files share the cluster. Needs root, as CI has.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { NodeInfo } from '@tutti/model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RankLaunch } from '../src/execution-backend.ts';
import { attemptDirectory } from '../src/local/rank-files.ts';
import { LAUNCHER_VARIABLES, SANE_PATH, TUTTI_RANK_VARIABLES, computeRankEnvironment } from '../src/rank-environment.ts';
import { createSlurmBackend, type SlurmBackend } from '../src/slurm/slurm-backend.ts';
import { parseSlurmNodes, toNodeInfo } from '../src/slurm/slurm-nodes.ts';
import { readSlurmRankRef } from '../src/slurm/slurm-rank-ref.ts';
import { SLURM_RANK_FILES, slurmRankFile } from '../src/slurm/slurm-submission.ts';
import { recordExits, waitUntil } from './execution-backend-conformance.ts';
import { SLURM_DEV_CLUSTER_SCRIPT, useSlurmDevCluster } from './slurm-cluster.ts';

const run = promisify(execFile);

let env: NodeJS.ProcessEnv = process.env;
let scratch = '';

/**
 * One rank of a rendezvous: rank 0 listens at MASTER_ADDR, every other rank connects and says who and where it is.
 * The rank and world size are torchrun's (RANK, WORLD_SIZE) where set, as tutti sets them, else Slurm's.
 */
const RENDEZVOUS = `
const net = require('net');
const rank = Number(process.env.RANK ?? process.env.SLURM_PROCID), size = Number(process.env.WORLD_SIZE ?? process.env.SLURM_NTASKS);
const addr = process.env.MASTER_ADDR, port = Number(process.env.MASTER_PORT);
const ips = Object.values(require('os').networkInterfaces()).flat().filter((i) => i.family === 'IPv4' && !i.internal).map((i) => i.address);
const me = { rank, local: Number(process.env.SLURM_LOCALID), node: Number(process.env.SLURM_NODEID), ips, gpus: process.env.CUDA_VISIBLE_DEVICES };
if (rank === 0) {
  const heard = [me];
  const server = net.createServer((socket) => socket.on('data', (d) => {
    heard.push(JSON.parse(d.toString()));
    socket.end();
    if (heard.length === size) { console.log(JSON.stringify(heard)); server.close(); }
  }));
  server.listen(port, addr);
} else {
  const connect = () => { const c = net.connect(port, addr, () => c.write(JSON.stringify(me))); c.on('error', () => setTimeout(connect, 100)); };
  connect();
}`;

/**
 * A rank of a gang launched through the backend: writes its environment and its node's eth0 address to its own file
 * (srun's output of several ranks interleaves), meets the others (rendezvous.js), then waits for the test's `release`.
 */
const GANG_RANK = `
const fs = require('fs'), path = require('path');
const eth0 = (require('os').networkInterfaces().eth0 || []).filter((i) => i.family === 'IPv4').map((i) => i.address);
fs.writeFileSync(path.join(__dirname, 'env-' + process.env.RANK + '.json'), JSON.stringify({ env: process.env, eth0 }));
require('./rendezvous.js');
const release = setInterval(() => { if (fs.existsSync(path.join(__dirname, 'release'))) clearInterval(release); }, 50);`;

let slurmEnv: Record<string, string> = {};

beforeAll(async () => {
  slurmEnv = await useSlurmDevCluster();
  env = { ...process.env, ...slurmEnv };
  scratch = await mkdtemp(path.join(tmpdir(), 'tutti-slurm-'));
  await writeFile(path.join(scratch, 'rendezvous.js'), RENDEZVOUS);
  await writeFile(path.join(scratch, 'gang-rank.js'), GANG_RANK);
}, 300_000);

afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** `srun` of the rendezvous over the 2 nodes of partition `two` (n2, n3) × 2 ranks with 2 fake GPUs each. */
function rendezvous(masterAddr: string, port: number, timeoutS: number) {
  return run('srun', ['-p', 'two', '-N2', '--ntasks-per-node=2', '--gres=gpu:2', `--time=0:${timeoutS}`, '--export=ALL', 'node', path.join(scratch, 'rendezvous.js')], {
    env: { ...env, MASTER_ADDR: masterAddr, MASTER_PORT: String(port) },
    timeout: timeoutS * 1000,
  });
}

describe('the Slurm dev cluster (scripts/slurm-dev-cluster.sh, real Slurm)', () => {
  it('lists every virtual node with its fake GPUs, in partitions that do not overlap', async () => {
    const { stdout } = await run('sinfo', ['-h', '-N', '-p', 'one,two,three', '-o', '%N %P %G'], { env });
    expect(stdout.trim().split('\n').sort()).toEqual(['n1 one gpu:4', 'n2 two gpu:4', 'n3 two gpu:4', 'n4 three gpu:4', 'n5 three gpu:4', 'n6 three gpu:4']);
  });

  it('runs a 2-node gang whose four ranks meet at the first node\'s address, each node on its own address', async () => {
    const { stdout } = await rendezvous('10.77.0.12', 29_511, 30);
    const ranks = (JSON.parse(stdout.trim()) as Array<{ rank: number; local: number; node: number; ips: string[]; gpus: string }>).sort((a, b) => a.rank - b.rank);
    expect(ranks.map((r) => [r.rank, r.node, r.local])).toEqual([[0, 0, 0], [1, 0, 1], [2, 1, 0], [3, 1, 1]]);
    expect(ranks.map((r) => r.ips)).toEqual([['10.77.0.12'], ['10.77.0.12'], ['10.77.0.13'], ['10.77.0.13']]);
    expect(ranks.every((r) => r.gpus === '0,1')).toBe(true);
  });

  it('is read as tutti nodes: each with its own address and fake GPUs; a drained one says why, and comes back when resumed', async () => {
    const nodes = async () => parseSlurmNodes((await run('scontrol', ['-o', 'show', 'node', 'n2,n3'], { env })).stdout);
    expect((await nodes()).map((node) => toNodeInfo(node)).map((n) => [n.name, n.address, n.gpus.length, n.state])).toEqual([['n2', '10.77.0.12', 4, 'ready'], ['n3', '10.77.0.13', 4, 'ready']]);
    await run('scontrol', ['update', 'nodename=n3', 'state=drain', 'reason=bad DIMM in slot 3'], { env });
    try {
      expect((await nodes()).map((n) => [n.name, n.state, n.reason])).toEqual([['n2', 'ready', undefined], ['n3', 'draining', 'bad DIMM in slot 3']]);
    } finally {
      await run('scontrol', ['update', 'nodename=n3', 'state=resume'], { env });
    }
    // Resumed, Slurm pings the node first: for a moment it is IDLE+NOT_RESPONDING (down), then IDLE.
    const deadline = Date.now() + 15_000;
    let states = (await nodes()).map((n) => n.state);
    while (states.join() !== 'ready,ready' && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      states = (await nodes()).map((n) => n.state);
    }
    expect(states).toEqual(['ready', 'ready']);
  });

  it('fails the same gang when MASTER_ADDR is 127.0.0.1: node 2 has its own loopback', async () => {
    // Rank 0 listens on node 1's loopback; the ranks of node 2 knock on their own and never get through, so rank 0
    // never hears all four and the step runs into its time limit.
    const failed = (await rendezvous('127.0.0.1', 29_512, 8).then(() => undefined, (error: unknown) => error)) as { stdout?: string } | undefined;
    expect(failed).toBeDefined();
    expect(failed?.stdout ?? '').toBe('');
  });
});

describe('the Slurm backend on the dev cluster (partition two)', () => {
  const slurmBackend = (name: string): SlurmBackend =>
    createSlurmBackend({ dataDir: path.join(scratch, name), partition: 'two', env: slurmEnv, pollIntervalMs: 200, nodePollIntervalMs: 300, launchTimeoutMs: 60_000 });
  const nodeNamed = (nodes: readonly NodeInfo[], name: string) => nodes.find((n) => n.name === name);
  /** Cancels a plain Slurm job and waits until it holds nothing (a cancelled job is COMPLETING for a moment). */
  async function cancelAndWait(slurmJobId: string): Promise<void> {
    await run('scancel', [slurmJobId], { env }).catch(() => undefined);
    const gone = async () => (await run('squeue', ['-h', '-j', slurmJobId, '-o', '%T'], { env }).then((r) => r.stdout, () => '')).trim() === '';
    await waitUntil(gone, `Slurm job ${slurmJobId} to be over`, 30_000);
  }

  it('puts each node in its rack: its leaf switch in Slurm\'s topology', async () => {
    // What Slurm itself says (the dev cluster's topology.conf): s1 holds n1-n3, a spine above the three leaf switches.
    const { stdout } = await run('scontrol', ['show', 'topology'], { env });
    expect(stdout).toMatch(/^SwitchName=s1 Level=0 .*Nodes=n\[1-3\]$/m);
    expect(stdout).toMatch(/^SwitchName=spine Level=1 .*Switches=s\[1-3\]$/m);
    const backend = slurmBackend('racks');
    try {
      expect((await backend.inventory()).map((n) => [n.name, n.labels?.['rack']])).toEqual([['n2', 's1'], ['n3', 's1']]);
    } finally {
      await backend.close();
    }
  });

  it('sees GPUs that another user\'s Slurm job holds as used, and free again once it is cancelled; tells a listener each time', async () => {
    const backend = slurmBackend('others');
    const told: NodeInfo[][] = [];
    backend.onInventoryChange?.((nodes) => told.push(nodes));
    const n2 = async () => nodeNamed(await backend.inventory(), 'n2');
    let slurmJobId = '';
    try {
      expect((await n2())?.gpus.length).toBe(4);
      slurmJobId = (await run('sbatch', ['--parsable', '--gres=gpu:3', '-p', 'two', '-w', 'n2', `--output=${path.join(scratch, 'other-user.out')}`, '--wrap', 'sleep 60'], { env })).stdout.trim();
      await waitUntil(async () => (await n2())?.gpus.length === 1, 'n2 to have 1 schedulable GPU', 30_000);
      expect((await n2())?.labels?.['slurm_gpus_used_by_others']).toBe('3');
      await waitUntil(() => told.some((nodes) => nodeNamed(nodes, 'n2')?.gpus.length === 1), 'a listener to hear that n2 has 1 GPU left', 10_000);
      await run('scancel', [slurmJobId], { env });
      slurmJobId = '';
      await waitUntil(async () => (await n2())?.gpus.length === 4, 'n2 to have its 4 GPUs again', 30_000);
      expect((await n2())?.labels?.['slurm_gpus_used_by_others']).toBeUndefined();
      await waitUntil(() => nodeNamed(told.at(-1) ?? [], 'n2')?.gpus.length === 4, 'a listener to hear that n2 has 4 GPUs again', 10_000);
    } finally {
      if (slurmJobId) await cancelAndWait(slurmJobId);
      await backend.close();
    }
  });

  it('keeps the GPUs tutti placed its own running rank on when another user\'s job takes GPUs of the same node', async () => {
    const backend = slurmBackend('own-and-others');
    const n2 = async () => nodeNamed(await backend.inventory(), 'n2');
    const workdir = path.join(scratch, 'own-work');
    await mkdir(workdir, { recursive: true });
    const [mine] = await backend.launch({ jobId: `own-${process.pid}`, jobName: 'own', workdir, env: {}, attempt: 1, run: { kind: 'shell', command: 'sleep 60' }, ranks: [{ rank: 0, localRank: 0, nodeRank: 0, node: 'n2', gpus: [2, 3] }] });
    let slurmJobId = '';
    try {
      // Slurm bound the first two free GPUs to tutti's rank; the other job gets the two left. tutti's own job is not
      // "held by others", and its GPUs 2 and 3 stay in the inventory, as its allocation names them.
      slurmJobId = (await run('sbatch', ['--parsable', '--gres=gpu:2', '-p', 'two', '-w', 'n2', `--output=${path.join(scratch, 'other-user-2.out')}`, '--wrap', 'sleep 60'], { env })).stdout.trim();
      await waitUntil(async () => (await n2())?.labels?.['slurm_gpus_used_by_others'] === '2', 'n2 to count 2 GPUs held by others', 30_000);
      expect((await n2())?.gpus.map((g) => g.index)).toEqual([2, 3]);
    } finally {
      if (slurmJobId) await cancelAndWait(slurmJobId);
      await backend.stop([mine!], { graceMs: 1_000 }).catch(() => undefined);
      // Its Slurm job is another instance's to the next test's backend: over before that one looks.
      await cancelAndWait(readSlurmRankRef(mine!).slurmJobId);
      await backend.close();
    }
  });

  it('runs a 2-node x 2-rank gang with node rank 0 on n3 (not Slurm\'s first node): each rank on its node with computeRankEnvironment\'s variables, meeting at n3', async () => {
    const backend = slurmBackend('gang');
    const exits = recordExits(backend);
    const workdir = path.join(scratch, 'gang-work');
    await mkdir(workdir, { recursive: true });
    const jobId = `reverse-gang-${process.pid}`;
    const ranks: RankLaunch[] = [
      { rank: 0, localRank: 0, nodeRank: 0, node: 'n3', gpus: [0, 1] },
      { rank: 1, localRank: 1, nodeRank: 0, node: 'n3', gpus: [0, 1] },
      { rank: 2, localRank: 0, nodeRank: 1, node: 'n2', gpus: [0, 1] },
      { rank: 3, localRank: 1, nodeRank: 1, node: 'n2', gpus: [0, 1] },
    ];
    const jobEnv = { GANG_NOTE: 'it\'s "quoted" $HOME' };
    const launched = await backend.launch({ jobId, jobName: 'reverse', workdir, env: jobEnv, attempt: 1, run: { kind: 'shell', command: `exec node ${path.join(scratch, 'gang-rank.js')}` }, ranks });
    try {
      expect(launched.map((h) => [h.rank, h.node])).toEqual([[0, 'n3'], [1, 'n3'], [2, 'n2'], [3, 'n2']]);
      const envFile = (rank: number) => path.join(scratch, `env-${rank}.json`);
      await waitUntil(async () => (await Promise.all(ranks.map((r) => readFile(envFile(r.rank)).then(() => true, () => false)))).every(Boolean), 'every rank\'s environment file', 30_000);
      // While the gang runs, its own Slurm job is not "held by others": both nodes keep their 4 GPUs for tutti.
      expect((await backend.inventory()).map((n) => [n.name, n.gpus.length, n.labels?.['slurm_gpus_used_by_others']])).toEqual([['n2', 4, undefined], ['n3', 4, undefined]]);
      await writeFile(path.join(scratch, 'release'), '');
      await waitUntil(() => exits.of(jobId).length === 4, 'the four ranks\' exits', 30_000);
      expect(exits.of(jobId).map((e) => [e.rank, e.exitCode])).toEqual([[0, 0], [1, 0], [2, 0], [3, 0]]);

      const seen = await Promise.all(ranks.map(async (r) => JSON.parse(await readFile(envFile(r.rank), 'utf8')) as { env: Record<string, string>; eth0: string[] }));
      const masterPort = Number(seen[0]?.env['MASTER_PORT']);
      const coordinatorPort = Number(seen[0]?.env['JAX_COORDINATOR_ADDRESS']?.split(':')[1]);
      const attemptDir = attemptDirectory(path.join(scratch, 'gang'), jobId, 1);
      for (const r of ranks) {
        const { env: rankEnv, eth0 } = seen[r.rank]!;
        const expected = computeRankEnvironment({
          jobId, jobName: 'reverse', ranks, rank: r, masterAddr: '10.77.0.13', masterPort, coordinatorPort, attempt: 1, jobEnv,
          logPath: slurmRankFile(attemptDir, SLURM_RANK_FILES.log, r.rank), errorFile: slurmRankFile(attemptDir, SLURM_RANK_FILES.error, r.rank),
          base: {}, cpus: 1,
        });
        // OMP_NUM_THREADS is the task's CPUs (nproc, as Slurm binds them) ÷ its node's ranks: not known here.
        const names = [...LAUNCHER_VARIABLES['per-gpu'], ...TUTTI_RANK_VARIABLES, 'JAX_LOCAL_DEVICE_IDS', 'TORCH_NCCL_ASYNC_ERROR_HANDLING', 'NCCL_ASYNC_ERROR_HANDLING', 'GANG_NOTE'];
        const tuttis = (e: Record<string, string | undefined>) => Object.fromEntries(names.map((name) => [name, e[name]]));
        expect(Number(rankEnv['OMP_NUM_THREADS'])).toBeGreaterThanOrEqual(1);
        // Nothing of the control plane's own environment but the allow-list reaches a rank.
        expect(Object.keys(rankEnv).filter((name) => name.startsWith('npm_') || name === 'VITEST' || name === 'NODE_ENV')).toEqual([]);
        expect(rankEnv['PATH']).toBe(SANE_PATH);
        expect(tuttis(rankEnv), `rank ${r.rank}`).toEqual(tuttis(expected));
        // On the node tutti placed it on, Slurm's GPUs bound as tutti's placement says (2 per node).
        expect([rankEnv['SLURMD_NODENAME'], eth0, rankEnv['CUDA_VISIBLE_DEVICES']]).toEqual([r.node, [r.node === 'n3' ? '10.77.0.13' : '10.77.0.12'], '0,1']);
      }
      // Rank 0 (on n3) heard every rank at MASTER_ADDR:MASTER_PORT, each from its own node's address.
      const log0 = await readFile(slurmRankFile(attemptDir, SLURM_RANK_FILES.log, 0), 'utf8');
      const heard = (JSON.parse(log0.trim().split('\n').at(-1) ?? '[]') as Array<{ rank: number; ips: string[] }>).sort((a, b) => a.rank - b.rank);
      expect(heard.map((h) => [h.rank, h.ips])).toEqual([[0, ['10.77.0.13']], [1, ['10.77.0.13']], [2, ['10.77.0.12']], [3, ['10.77.0.12']]]);
    } finally {
      await writeFile(path.join(scratch, 'release'), '').catch(() => undefined);
      await backend.stop(launched, { graceMs: 1_000 }).catch(() => undefined);
      await backend.close();
    }
  });

  describe('with placement: \'slurm\' (Slurm chooses the nodes)', () => {
    /** Launches a gang that meets at MASTER_ADDR from a directory of its own; answers its handles and ranks' environments. */
    async function placedBySlurm(name: string, ranks: RankLaunch[]) {
      const dir = path.join(scratch, name);
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, 'rendezvous.js'), RENDEZVOUS);
      await writeFile(path.join(dir, 'gang-rank.js'), GANG_RANK);
      const backend = createSlurmBackend({ dataDir: path.join(dir, 'data'), partition: 'two', env: slurmEnv, pollIntervalMs: 200, nodePollIntervalMs: 300, launchTimeoutMs: 60_000, placement: 'slurm' });
      const exits = recordExits(backend);
      const jobId = `${name}-${process.pid}`;
      const handles = await backend.launch({ jobId, jobName: name, workdir: dir, env: {}, attempt: 1, run: { kind: 'shell', command: `exec node ${path.join(dir, 'gang-rank.js')}` }, ranks });
      try {
        await writeFile(path.join(dir, 'release'), '');
        await waitUntil(() => exits.of(jobId).length === ranks.length, 'every rank\'s exit', 30_000);
        expect(exits.of(jobId).map((e) => e.exitCode)).toEqual(ranks.map(() => 0));
        const seen = await Promise.all(ranks.map(async (r) => (JSON.parse(await readFile(path.join(dir, `env-${r.rank}.json`), 'utf8')) as { env: Record<string, string>; eth0: string[] })));
        const log0 = await readFile(slurmRankFile(attemptDirectory(path.join(dir, 'data'), jobId, 1), SLURM_RANK_FILES.log, 0), 'utf8');
        const heard = (JSON.parse(log0.trim().split('\n').at(-1) ?? '[]') as Array<{ rank: number; ips: string[] }>).sort((a, b) => a.rank - b.rank);
        return { handles, seen, heard };
      } finally {
        await backend.stop(handles, { graceMs: 1_000 }).catch(() => undefined);
        await backend.close();
      }
    }
    const pick = (env: Record<string, string>) => [env['SLURMD_NODENAME'], env['RANK'], env['LOCAL_RANK'], env['NODE_RANK'], env['LOCAL_WORLD_SIZE'], env['WORLD_SIZE'], env['MASTER_ADDR']];

    it('runs a gang placed on n2, whose GPUs another user\'s job took, on n3: its handles say n3, and its ranks meet at n3\'s address', async () => {
      const other = (await run('sbatch', ['--parsable', '--gres=gpu:3', '-p', 'two', '-w', 'n2', `--output=${path.join(scratch, 'other-user-3.out')}`, '--wrap', 'sleep 120'], { env })).stdout.trim();
      try {
        await waitUntil(async () => (await run('squeue', ['-h', '-j', other, '-o', '%T'], { env })).stdout.trim() === 'RUNNING', 'the other user\'s job to run', 30_000);
        const { handles, seen, heard } = await placedBySlurm('moved', [
          { rank: 0, localRank: 0, nodeRank: 0, node: 'n2', gpus: [0] },
          { rank: 1, localRank: 1, nodeRank: 0, node: 'n2', gpus: [1] },
        ]);
        expect(handles.map((h) => [h.rank, h.node])).toEqual([[0, 'n3'], [1, 'n3']]);
        expect(seen.map((s) => pick(s.env))).toEqual([['n3', '0', '0', '0', '2', '2', '10.77.0.13'], ['n3', '1', '1', '0', '2', '2', '10.77.0.13']]);
        expect(heard.map((h) => h.ips)).toEqual([['10.77.0.13'], ['10.77.0.13']]);
      } finally {
        await cancelAndWait(other);
      }
    });

    it('numbers a 2-node gang\'s nodes in Slurm\'s order, whatever order tutti placed them in, and the ranks meet on the first', async () => {
      const { handles, seen, heard } = await placedBySlurm('block', [
        { rank: 0, localRank: 0, nodeRank: 0, node: 'n3', gpus: [0] },
        { rank: 1, localRank: 1, nodeRank: 0, node: 'n3', gpus: [1] },
        { rank: 2, localRank: 0, nodeRank: 1, node: 'n2', gpus: [0] },
        { rank: 3, localRank: 1, nodeRank: 1, node: 'n2', gpus: [1] },
      ]);
      expect(handles.map((h) => [h.rank, h.node])).toEqual([[0, 'n2'], [1, 'n2'], [2, 'n3'], [3, 'n3']]);
      expect(seen.map((s) => pick(s.env))).toEqual([
        ['n2', '0', '0', '0', '2', '4', '10.77.0.12'], ['n2', '1', '1', '0', '2', '4', '10.77.0.12'],
        ['n3', '2', '0', '1', '2', '4', '10.77.0.12'], ['n3', '3', '1', '1', '2', '4', '10.77.0.12'],
      ]);
      expect(heard.map((h) => [h.rank, h.ips])).toEqual([[0, ['10.77.0.12']], [1, ['10.77.0.12']], [2, ['10.77.0.13']], [3, ['10.77.0.13']]]);
    });
  });

  // A node that dies comes back (revived) before Slurm declares it down: Slurm then keeps the job running for good,
  // holding the GPUs of every node of the gang, though its processes died with the node.
  it('cancels the Slurm job of a gang whose node died once its other ranks are out, though the node comes back before Slurm gives the job up', async () => {
    const backend = slurmBackend('node-died');
    const exits = recordExits(backend);
    const downs: string[] = [];
    backend.onNodeState((change) => {
      if (change.state === 'down') downs.push(change.node);
    });
    const jobId = 'node-died';
    const ranks: RankLaunch[] = [
      { rank: 0, localRank: 0, nodeRank: 0, node: 'n2', gpus: [0] },
      { rank: 1, localRank: 0, nodeRank: 1, node: 'n3', gpus: [0] },
    ];
    const handles = await backend.launch({ jobId, jobName: 'gang', env: {}, attempt: 1, run: { kind: 'shell', command: "trap 'exit 0' TERM; while :; do sleep 0.1; done" }, ranks });
    const { slurmJobId } = readSlurmRankRef(handles[0]!);
    let revived = false;
    try {
      await run('bash', [SLURM_DEV_CLUSTER_SCRIPT, 'crash', 'n3']);
      await waitUntil(() => downs.includes('n3'), 'the backend to see n3 down', 60_000);
      // What the control plane does for a gang with a lost rank: it stops the ranks still running.
      await backend.stop([handles[0]!], { graceMs: 5_000 });
      await run('bash', [SLURM_DEV_CLUSTER_SCRIPT, 'revive', 'n3']);
      revived = true;
      await exits.waitFor(jobId, 2);
      expect(exits.of(jobId).map((e) => [e.rank, e.exitCode, e.lost])).toEqual([[0, 0, false], [1, null, true]]);
      const running = async () => (await run('squeue', ['-h', '-j', slurmJobId, '-o', '%T'], { env }).then((r) => r.stdout, () => '')).trim();
      // Cancelled: Slurm keeps it COMPLETING until the revived node confirms the kill, which its new slurmd cannot.
      await waitUntil(async () => (await running()) !== 'RUNNING', `Slurm job ${slurmJobId} to be cancelled`, 30_000);
      expect(await running()).toMatch(/^(COMPLETING|CANCELLED|)$/);
    } finally {
      if (!revived) await run('bash', [SLURM_DEV_CLUSTER_SCRIPT, 'revive', 'n3']);
      await run('scancel', [slurmJobId], { env }).catch(() => undefined);
      // What an administrator does about a job stuck COMPLETING on a node: set it down (Slurm ends the job) and resume it.
      await run('scontrol', ['update', 'nodename=n3', 'state=down', 'reason=test: a job stuck completing'], { env });
      await run('scontrol', ['update', 'nodename=n3', 'state=resume'], { env });
      await waitUntil(async () => (await run('sinfo', ['-h', '-n', 'n3', '-o', '%t'], { env })).stdout.trim() === 'idle', 'n3 to be idle again', 60_000);
      await backend.close();
    }
  }, 120_000);
});
