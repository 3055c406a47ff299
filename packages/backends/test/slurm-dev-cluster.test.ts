/**
 * The real Slurm cluster the Slurm backend is tested against (scripts/slurm-dev-cluster.sh): munge, slurmctld and a
 * slurmd per virtual node, each node in its own network namespace with its own address. What a gang across nodes
 * needs of it: ranks on two nodes, their Slurm ids consistent, fake GPUs bound, and a rendezvous at the first node's
 * address over a real interface — which a wrong address (127.0.0.1, where no rank of node 2 is listening) fails.
 *
 * The cluster is started by .ci/run before the tests; `up` is idempotent, so the test also starts it when run alone,
 * and then stops it again. Needs root (namespaces, daemons), as CI has.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSlurmNodes, toNodeInfo } from '../src/slurm/slurm-nodes.ts';
import { makeSlurmRankShim } from '../src/slurm/slurm-rank-shim.ts';
import { RANK_ENVIRONMENT_VARIABLES, computeRankEnvironment } from '../src/rank-environment.ts';
import type { RankLaunch } from '../src/execution-backend.ts';

const run = promisify(execFile);
const SCRIPT = path.resolve(__dirname, '../../../scripts/slurm-dev-cluster.sh');

let startedHere = false;
let env: NodeJS.ProcessEnv = process.env;
let scratch = '';

/** One rank of a rendezvous: rank 0 listens at MASTER_ADDR, every other rank connects and says who and where it is. */
const RENDEZVOUS = `
const net = require('net');
const rank = Number(process.env.SLURM_PROCID), size = Number(process.env.SLURM_NTASKS);
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

beforeAll(async () => {
  startedHere = (await run('bash', [SCRIPT, 'status']).then(() => false, () => true));
  const { stdout } = await run('bash', [SCRIPT, 'up'], { timeout: 240_000 });
  const conf = /export SLURM_CONF=(\S+)/.exec(stdout)?.[1];
  if (!conf) throw new Error(`scripts/slurm-dev-cluster.sh up printed no SLURM_CONF: ${stdout}`);
  env = { ...process.env, SLURM_CONF: conf };
  scratch = await mkdtemp(path.join(tmpdir(), 'tutti-slurm-'));
  await writeFile(path.join(scratch, 'rendezvous.js'), RENDEZVOUS);
}, 300_000);

afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
  if (startedHere) await run('bash', [SCRIPT, 'down']);
});

/** `srun` of the rendezvous over 2 nodes × 2 ranks with 2 fake GPUs each. */
function rendezvous(masterAddr: string, port: number, timeoutS: number) {
  return run('srun', ['-N2', '--ntasks-per-node=2', '--gres=gpu:2', `--time=0:${timeoutS}`, '--export=ALL', 'node', path.join(scratch, 'rendezvous.js')], {
    env: { ...env, MASTER_ADDR: masterAddr, MASTER_PORT: String(port) },
    timeout: timeoutS * 1000,
  });
}

describe('the Slurm dev cluster (scripts/slurm-dev-cluster.sh, real Slurm)', () => {
  it('lists every virtual node idle with its fake GPUs', async () => {
    const { stdout } = await run('sinfo', ['-h', '-N', '-o', '%N %t %G'], { env });
    expect(stdout.trim().split('\n').sort()).toEqual(['n1 idle gpu:2', 'n2 idle gpu:2']);
  });

  it('runs a 2-node gang whose four ranks meet at the first node\'s address, each node on its own address', async () => {
    const { stdout } = await rendezvous('10.77.0.11', 29_511, 30);
    const ranks = (JSON.parse(stdout.trim()) as Array<{ rank: number; local: number; node: number; ips: string[]; gpus: string }>).sort((a, b) => a.rank - b.rank);
    expect(ranks.map((r) => [r.rank, r.node, r.local])).toEqual([[0, 0, 0], [1, 0, 1], [2, 1, 0], [3, 1, 1]]);
    expect(ranks.map((r) => r.ips)).toEqual([['10.77.0.11'], ['10.77.0.11'], ['10.77.0.12'], ['10.77.0.12']]);
    expect(ranks.every((r) => r.gpus === '0,1')).toBe(true);
  });

  it('is read as tutti nodes: each with its own address and fake GPUs; a drained one says why, and comes back when resumed', async () => {
    const nodes = async () => parseSlurmNodes((await run('scontrol', ['-o', 'show', 'node'], { env })).stdout);
    expect((await nodes()).map((node) => toNodeInfo(node)).map((n) => [n.name, n.address, n.gpus.length, n.state])).toEqual([['n1', '10.77.0.11', 2, 'ready'], ['n2', '10.77.0.12', 2, 'ready']]);
    await run('scontrol', ['update', 'nodename=n2', 'state=drain', 'reason=bad DIMM in slot 3'], { env });
    try {
      expect((await nodes()).map((n) => [n.name, n.state, n.reason])).toEqual([['n1', 'ready', undefined], ['n2', 'draining', 'bad DIMM in slot 3']]);
    } finally {
      await run('scontrol', ['update', 'nodename=n2', 'state=resume'], { env });
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

  it('gives each rank of a 2-node gang, through the rank shim, the environment the local backend computes for the same layout', async () => {
    const shim = path.join(scratch, 'rank-shim.sh');
    const logs = path.join(scratch, 'logs', 'rank-{rank}.log');
    const jobEnv = { QUOTE: "it's \"quoted\" $HOME", RANK: 'overridden by tutti' };
    const runtimeEnv = { TUTTI_CHECKPOINT_DIR: '/ckpt/job-7' };
    await writeFile(shim, makeSlurmRankShim({ jobId: '7', jobName: 'ddp', attempt: 2, masterPort: 29_513, nodeAddresses: { n1: '10.77.0.11', n2: '10.77.0.12' }, rankLogPattern: logs, rankExitPattern: path.join(scratch, 'env-rank-{rank}.exit'), jobEnv, runtimeEnv }));
    // Each rank writes its environment to its own file (the namespaces share the file system): four ranks' long lines
    // on srun's one stdout can interleave.
    const dump = `require('fs').writeFileSync(${JSON.stringify(scratch)} + '/env-' + process.env.SLURM_PROCID + '.json', JSON.stringify(process.env))`;
    await run('srun', ['-N2', '--ntasks-per-node=2', '--gres=gpu:2', '--time=0:30', '--export=ALL', 'sh', shim, 'node', '-e', dump], { env, timeout: 30_000 });
    const seen = await Promise.all([0, 1, 2, 3].map(async (rank) => JSON.parse(await readFile(path.join(scratch, `env-${rank}.json`), 'utf8')) as Record<string, string>));
    // srun's block layout: ranks 0 and 1 on n1 (node 0), 2 and 3 on n2; Slurm binds both fake GPUs on each node.
    const ranks: RankLaunch[] = [0, 1, 2, 3].map((rank) => ({ rank, localRank: rank % 2, nodeRank: Math.floor(rank / 2), node: `n${Math.floor(rank / 2) + 1}`, gpus: [0, 1] }));
    const names = [...RANK_ENVIRONMENT_VARIABLES, 'QUOTE', 'TUTTI_CHECKPOINT_DIR'];
    const pick = (e: Record<string, string>) => Object.fromEntries(names.map((name) => [name, e[name]]));
    expect(seen.map(pick)).toEqual(ranks.map((rank) => pick(computeRankEnvironment({
      jobId: '7', jobName: 'ddp', ranks, rank, masterAddr: '10.77.0.11', masterPort: 29_513, logPath: logs.replace('{rank}', String(rank.rank)), jobEnv, runtimeEnv, attempt: 2,
    }))));
  });

  it('records each rank\'s own exit status through the shim', async () => {
    const exitFile = path.join(scratch, 'codes-rank-{rank}.exit');
    const shim = path.join(scratch, 'exit-shim.sh');
    await writeFile(shim, makeSlurmRankShim({ jobId: '8', jobName: 'codes', attempt: 1, masterPort: 29_514, nodeAddresses: { n1: '10.77.0.11', n2: '10.77.0.12' }, rankLogPattern: path.join(scratch, 'codes-{rank}.log'), rankExitPattern: exitFile, jobEnv: {} }));
    const exitOf = async (rank: number) => (await readFile(exitFile.replace('{rank}', String(rank)), 'utf8')).trim();
    // Rank r exits with 10 + r: srun reports a failure, every rank's own code is on its node.
    await expect(run('srun', ['-N2', '--ntasks-per-node=2', '--time=0:30', '--export=ALL', 'sh', shim, 'sh', '-c', 'exit $((10 + SLURM_PROCID))'], { env, timeout: 30_000 })).rejects.toThrow();
    expect(await Promise.all([0, 1, 2, 3].map(exitOf))).toEqual(['10', '11', '12', '13']);
  });

  it('fails the same gang when MASTER_ADDR is 127.0.0.1: node 2 has its own loopback', async () => {
    // Rank 0 listens on node 1's loopback; the ranks of node 2 knock on their own and never get through, so rank 0
    // never hears all four and the step runs into its time limit.
    const failed = (await rendezvous('127.0.0.1', 29_512, 8).then(() => undefined, (error: unknown) => error)) as { stdout?: string } | undefined;
    expect(failed).toBeDefined();
    expect(failed?.stdout ?? '').toBe('');
  });
});
