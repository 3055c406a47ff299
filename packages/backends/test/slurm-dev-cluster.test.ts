/**
 * The real Slurm cluster the Slurm backend is tested against (scripts/slurm-dev-cluster.sh): munge, slurmctld and a
 * slurmd per virtual node, each node in its own network namespace with its own address. What a gang across nodes
 * needs of it: ranks on two nodes, their Slurm ids consistent, fake GPUs bound, and a rendezvous at the first node's
 * address over a real interface — which a wrong address (127.0.0.1, where no rank of node 2 is listening) fails.
 *
 * Partition `two` (n2, n3); see slurm-cluster.ts for how test files share the cluster. Needs root, as CI has.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSlurmNodes, toNodeInfo } from '../src/slurm/slurm-nodes.ts';
import { useSlurmDevCluster } from './slurm-cluster.ts';

const run = promisify(execFile);

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
  env = { ...process.env, ...(await useSlurmDevCluster()) };
  scratch = await mkdtemp(path.join(tmpdir(), 'tutti-slurm-'));
  await writeFile(path.join(scratch, 'rendezvous.js'), RENDEZVOUS);
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
