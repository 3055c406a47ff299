/**
 * `npm run bench:failover`: how long replicas on PostgreSQL go without a leader when it dies (see
 * docs/high-availability.md and docs/benchmarks.md).
 *
 * Two `tutti up --database` replicas (the CLI bundle, real processes) share a fresh database on the PostgreSQL of
 * scripts/pg-dev.sh and one data dir, on 4 fake GPUs, with the default lease unless BENCH_LEASE_TTL says otherwise.
 * Two jobs run throughout (adopted by every new leader). Each round: the leader is found (GET /healthz), killed with
 * SIGKILL, and a 1-GPU job is submitted through the survivor at once; timed from the kill to
 *   - "leads": the survivor's /healthz says it leads (polled every 20 ms), and
 *   - "first cycle": the new leader's first placement, the probe job's `scheduled` event (its own clock: one machine),
 *     which includes its recovery (adopting the running jobs) and its first cycle.
 * Then a replica is started in place of the killed one, and the next round waits until it serves.
 *
 * Options (env): BENCH_FAILOVER_ROUNDS (kills, default 20), BENCH_LEASE_TTL (seconds, default: tutti's, 8).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TuttiClient } from '@tutti/client';
import type { HealthView } from '@tutti/client';
import { createTestDatabase } from '../packages/store/test/postgres-dev-server.ts';

const TUTTI = fileURLToPath(new URL('../packages/cli/dist/tutti.mjs', import.meta.url));
const ROUNDS = Number(process.env.BENCH_FAILOVER_ROUNDS ?? 20);
const LEASE_TTL_S = process.env.BENCH_LEASE_TTL !== undefined ? Number(process.env.BENCH_LEASE_TTL) : undefined;

interface Replica {
  child: ChildProcess;
  client: TuttiClient;
  exited: Promise<void>;
}

const say = (line: string) => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function startReplica(dataDir: string, database: string): Promise<Replica> {
  const args = [TUTTI, 'up', '--json', '--port', '0', '--data-dir', dataDir, '--database', database, '--fake-gpus', '4', ...(LEASE_TTL_S !== undefined ? ['--lease-ttl', String(LEASE_TTL_S)] : [])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let out = '';
  let err = '';
  child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split('\n').find((l) => l.includes('"event":"up"'));
      if (line) resolve((JSON.parse(line) as { url: string }).url);
    });
    child.once('exit', (code) => reject(new Error(`a replica exited with ${code}: ${out}${err}`)));
  });
  return { child, client: new TuttiClient({ baseUrl: url }), exited };
}

async function health(replica: Replica): Promise<HealthView | undefined> {
  return replica.client.health().catch(() => undefined);
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function main(): Promise<void> {
  const database = await createTestDatabase();
  const root = await mkdtemp(path.join(tmpdir(), 'tutti-bench-failover-'));
  const dataDir = path.join(root, 'data');
  let replicas = [await startReplica(dataDir, database.url)];
  replicas.push(await startReplica(dataDir, database.url));
  const leadsMs: number[] = [];
  const firstCycleMs: number[] = [];
  try {
    const first = replicas[0]!.client;
    const long = [
      await first.submitJob({ name: 'long-1', resources: { gpus: 1 }, run: 'sleep 100000' }),
      await first.submitJob({ name: 'long-2', resources: { gpus: 1 }, run: 'sleep 100000' }),
    ];
    for (const job of long) while ((await first.getJob(job.id)).status !== 'running') await sleep(50);
    say(`failover: ${ROUNDS} kill -9 of the leader; 2 replicas on PostgreSQL (scripts/pg-dev.sh, same machine), lease ${LEASE_TTL_S ?? 8} s, 2 jobs running throughout`);
    say(`machine: ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`);
    for (let round = 1; round <= ROUNDS; round++) {
      const states = await Promise.all(replicas.map(health));
      const leaderIndex = states.findIndex((s) => s?.role === 'leader');
      if (leaderIndex < 0) throw new Error(`round ${round}: no replica leads: ${JSON.stringify(states)}`);
      const leader = replicas[leaderIndex]!;
      const survivor = replicas[1 - leaderIndex]!;
      // A little time in the lease's period, so that kills do not always land right after a renewal.
      await sleep(Math.random() * 2000);
      leader.child.kill('SIGKILL');
      const killedAt = Date.now();
      await leader.exited;
      const probe = await survivor.client.submitJob({ name: `probe-${round}`, resources: { gpus: 1 }, run: 'true' });
      while ((await health(survivor))?.role !== 'leader') await sleep(20);
      const leadsAt = Date.now();
      let scheduledAt: number | undefined;
      while (scheduledAt === undefined) {
        const events = (await survivor.client.listJobEvents(probe.id)).events;
        const scheduled = events.find((e) => e.type === 'scheduled');
        if (scheduled) scheduledAt = Date.parse(scheduled.at);
        else await sleep(20);
      }
      leadsMs.push(leadsAt - killedAt);
      firstCycleMs.push(scheduledAt - killedAt);
      say(`  round ${String(round).padStart(2)}: leads after ${leadsAt - killedAt} ms, first placement after ${scheduledAt - killedAt} ms`);
      replicas = [survivor, await startReplica(dataDir, database.url)];
    }
    const summary = (name: string, values: number[]) => {
      const sorted = [...values].sort((a, b) => a - b);
      say(`${name}: p50 ${(percentile(sorted, 50) / 1000).toFixed(2)} s, p90 ${(percentile(sorted, 90) / 1000).toFixed(2)} s, p99 ${(percentile(sorted, 99) / 1000).toFixed(2)} s (of ${sorted.length}: the p99 is the slowest), min ${(sorted[0]! / 1000).toFixed(2)} s`);
    };
    summary('kill -9 → a follower leads', leadsMs);
    summary('kill -9 → the new leader\'s first placement', firstCycleMs);
  } finally {
    // The long jobs' ranks would outlive their servers, by design: cancelled first.
    const client = replicas[0]!.client;
    for (const job of (await client.listJobs({ status: 'running' }).catch(() => ({ jobs: [] }))).jobs) await client.cancelJob(job.id).catch(() => undefined);
    for (let i = 0; i < 100 && ((await client.listJobs({ status: 'running' }).catch(() => ({ jobs: [] }))).jobs.length > 0); i++) await sleep(100);
    for (const replica of replicas) {
      replica.child.kill('SIGKILL');
      await replica.exited;
    }
    await database.drop();
    await rm(root, { recursive: true, force: true });
  }
}

await main();
