/**
 * Replicas of one control plane on a real PostgreSQL (scripts/pg-dev.sh): each replica a real `tutti up --database`
 * process (fixtures/replica.ts), all sharing one data dir, on fake GPUs. One leads (the lease), all serve the API.
 *
 * - kill -9 of the leader while jobs run and others wait: a follower leads, adopts the running ranks, starts the
 *   waiting jobs (also one submitted through it), none lost and none started twice; an event stream cut by the
 *   leader's death resumes on the follower without a gap.
 * - SIGSTOP of the leader past its lease, then SIGCONT: it finds itself deposed; nothing it had under way runs twice,
 *   and the database refuses writes fenced at its old epoch.
 * - PostgreSQL restarted while submitters hammer every replica: the replicas reconnect, one leads again, and every
 *   submission answered 201 is a job that runs.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiError } from '@tutti/client';
import type { TuttiClient } from '@tutti/client';
import type { EventView, HealthView } from '@tutti/client';
import { createPostgresStateStore, FencedError } from '@tutti/store';
import { createTestDatabase, PG_DEV_SCRIPT } from '../../store/test/postgres-dev-server.ts';
import { runTutti } from '../../cli/test/run-cli.ts';
import { isEnded, nodeScript, touch, waitForJob } from './harness.ts';
import { leading, startReplicaProcess, waitFor } from './replica-process.ts';
import type { ReplicaProcess } from './replica-process.ts';

/** Short, so that the tests wait seconds, not the default's 8: what a lease does does not depend on its length. */
const LEASE_TTL_MS = 2000;
const run = promisify(execFile);

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

type Replica = ReplicaProcess;

function startReplica(dataDir: string, database: string, gpus: string, leaseTtlMs = LEASE_TTL_MS): Promise<Replica> {
  return startReplicaProcess({ dataDir, database, gpus, leaseTtlMs }).then((replica) => {
    cleanups.push(replica.kill);
    return replica;
  });
}

async function sharedDataDir(): Promise<{ dataDir: string; markers: string; release: string }> {
  const root = await mkdtemp(path.join(tmpdir(), 'tutti-replicas-'));
  cleanups.push(() => rm(root, { recursive: true, force: true }));
  const markers = path.join(root, 'starts');
  await mkdir(markers);
  const release = path.join(root, 'release');
  // Ranks outlive their replicas by design: released before the directory goes, also when a test failed.
  cleanups.push(() => touch(release).then(() => new Promise((resolve) => setTimeout(resolve, 200))));
  return { dataDir: path.join(root, 'data'), markers, release };
}

async function freshDatabaseUrl(): Promise<string> {
  const database = await createTestDatabase();
  cleanups.push(() => database.drop());
  return database.url;
}

const healthOf = (replica: Replica): Promise<HealthView> => replica.client.health();

/**
 * A rank that notes each start of its job (a line with its attempt in MARKERS/<job id>), then runs until `release`
 * exists (or at once without one).
 */
function countedRank(markers: string, release?: string): string[] {
  return nodeScript(
    `const fs=require('fs');fs.appendFileSync(process.argv[1]+'/'+process.env.TUTTI_JOB_ID,process.env.TUTTI_ATTEMPT+'\\n');console.log('attempt '+process.env.TUTTI_ATTEMPT+' of job '+process.env.TUTTI_JOB_ID);` +
      `const r=process.argv[2];(function w(){if(!r||fs.existsSync(r))process.exit(0);setTimeout(w,25)})()`,
    markers,
    release ?? '',
  );
}

/** How many times each job's ranks started: one line per rank start (one rank per job here). */
async function startsByJob(markers: string): Promise<Record<string, string[]>> {
  const starts: Record<string, string[]> = {};
  for (const file of await readdir(markers)) starts[file] = (await readFile(path.join(markers, file), 'utf8')).trim().split('\n');
  return starts;
}

/** Reads an event stream into `into` until aborted or cut. */
function collectEvents(client: TuttiClient, into: EventView[], afterSeq: number): { stop(): void; done: Promise<void> } {
  const abort = new AbortController();
  const done = (async () => {
    try {
      for await (const event of client.events({ afterSeq, signal: abort.signal })) into.push(event);
    } catch {
      // Cut: the replica died, or the test stopped reading.
    }
  })();
  return { stop: () => abort.abort(), done };
}

describe('replicas on one PostgreSQL database (real processes, real PostgreSQL)', () => {
  it('kill -9 of the leader: a follower leads, running ranks run on, waiting jobs start, none lost or started twice, and the event stream resumes on the follower', async () => {
    const database = await freshDatabaseUrl();
    const { dataDir, markers, release } = await sharedDataDir();
    const first = await startReplica(dataDir, database, '2');
    expect((await healthOf(first)).role).toBe('leader');
    const second = await startReplica(dataDir, database, '2');
    const firstName = (await healthOf(first)).replica;
    expect(await healthOf(second)).toMatchObject({ role: 'follower', leader: { replica: firstName } });
    // Prometheus sees the same: 1 on the leader, 0 on the follower, and the epoch labelled with the leader.
    const metricsOf = async (replica: Replica) => (await fetch(`${replica.url}/metrics`)).text();
    expect(await metricsOf(first)).toContain(`tutti_leader{replica="${firstName}"} 1`);
    const followerMetrics = await metricsOf(second);
    expect(followerMetrics).toContain(`tutti_leader{replica="${(await healthOf(second)).replica}"} 0`);
    expect(followerMetrics).toContain(`tutti_leader_epoch{leader="${firstName}"} 1`);

    // Two long jobs hold both GPUs; two more wait, one submitted through each replica.
    const long = [
      await first.client.submitJob({ name: 'long-1', resources: { gpus: 1 }, run: countedRank(markers, release) }),
      await second.client.submitJob({ name: 'long-2', resources: { gpus: 1 }, run: countedRank(markers, release) }),
    ];
    for (const job of long) await waitForJob(second.client, job.id, (j) => j.status === 'running' && (j.tasks ?? []).every((t) => t.status === 'running'));
    const waiting = [
      await first.client.submitJob({ name: 'after-1', resources: { gpus: 1 }, run: countedRank(markers) }),
      await second.client.submitJob({ name: 'after-2', resources: { gpus: 1 }, run: countedRank(markers) }),
    ];
    // A follower reads a running job's log from the shared data dir.
    const logOnFollower = await waitFor('the follower reads the log', async () => {
      const lines: string[] = [];
      for await (const line of second.client.logLines(long[0]!.id)) lines.push(line);
      return lines.length > 0 ? lines : undefined;
    });
    expect(logOnFollower).toEqual([`attempt 1 of job ${long[0]!.id}`]);
    // Why they wait is the leader's to say; the follower answers it from the store within a few seconds.
    const onFollower = await waitFor('the follower says why a job waits', async () => (await second.client.getJob(waiting[0]!.id)).pending_diagnosis ?? undefined);
    expect(onFollower.code).toBe((await first.client.getJob(waiting[0]!.id)).pending_diagnosis?.code);
    const onLeader: EventView[] = [];
    const leaderStream = collectEvents(first.client, onLeader, 0);
    await waitFor('the leader streams the second waiting job', async () => (onLeader.some((e) => e.job_id === waiting[1]!.id) ? true : undefined));

    first.child.kill('SIGKILL');
    await first.exited;
    const killedAt = Date.now();
    const after = await waitFor('the follower leads', leading(second), 15_000 + LEASE_TTL_MS);
    expect(after.leader?.replica).toBe(after.replica);
    console.log(`failover after kill -9: the follower led ${Date.now() - killedAt} ms later (lease ${LEASE_TTL_MS} ms)`);
    await leaderStream.done;

    // The stream resumes on the follower from the last event the dead leader delivered.
    const resumed: EventView[] = [];
    const followerStream = collectEvents(second.client, resumed, onLeader.at(-1)?.seq ?? 0);
    await touch(release);
    const jobs = [...long, ...waiting];
    for (const job of jobs) {
      const ended = await waitForJob(second.client, job.id, isEnded, 30_000);
      expect([ended.spec.name, ended.status, ended.attempt, ended.restarts]).toEqual([job.spec.name, 'succeeded', 1, 0]);
    }
    expect(await startsByJob(markers)).toEqual(Object.fromEntries(jobs.map((job) => [job.id, ['1']])));
    for (const job of long) expect((await second.client.listJobEvents(job.id)).events.map((e) => e.type)).toContain('adopted');


    const stored = (await Promise.all(jobs.map((job) => second.client.listJobEvents(job.id)))).flatMap((page) => page.events).sort((a, b) => a.seq - b.seq);
    await waitFor('the resumed stream reaches the last event', async () => (resumed.some((e) => e.seq === stored.at(-1)!.seq) ? true : undefined));
    followerStream.stop();
    await followerStream.done;
    expect([...onLeader, ...resumed].map((e) => e.seq)).toEqual(stored.map((e) => e.seq));
  }, 90_000);

  it('SIGSTOP of the leader past its lease, then SIGCONT: it finds itself deposed, nothing runs twice, and its epoch\'s writes are refused', async () => {
    const database = await freshDatabaseUrl();
    const { dataDir, markers, release } = await sharedDataDir();
    const first = await startReplica(dataDir, database, '1');
    const second = await startReplica(dataDir, database, '1');
    const before = await healthOf(first);
    expect(before.role).toBe('leader');
    const long = await first.client.submitJob({ name: 'long', resources: { gpus: 1 }, run: countedRank(markers, release) });
    await waitForJob(first.client, long.id, (j) => j.status === 'running' && (j.tasks ?? []).every((t) => t.status === 'running'));
    const next = await first.client.submitJob({ name: 'next', resources: { gpus: 1 }, run: countedRank(markers) });

    first.child.kill('SIGSTOP');
    const after = await waitFor('the follower leads', leading(second), 15_000 + LEASE_TTL_MS);
    expect(after.leader?.epoch).toBe(before.leader!.epoch + 1);
    // The long job's rank ends while the old leader is frozen: the new one sees it through and starts the next job.
    await touch(release);
    expect((await waitForJob(second.client, long.id, isEnded, 30_000)).status).toBe('succeeded');
    expect((await waitForJob(second.client, next.id, isEnded, 30_000)).status).toBe('succeeded');

    first.child.kill('SIGCONT');
    const deposed = await waitFor('the old leader knows it follows', async () => {
      const health = await healthOf(first);
      return health.role === 'follower' && health.leader?.replica === after.replica ? health : undefined;
    });
    expect(deposed.leader?.epoch).toBe(after.leader!.epoch);
    expect(first.log()).toContain('this replica no longer leads the control plane');
    // `tutti status` on the old leader names the new one and its epoch.
    const status = await runTutti(['status', '--server', first.url]);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain(`replica   ${before.replica}  follower`);
    expect(status.stdout).toContain(`leader    ${after.replica}  epoch ${after.leader!.epoch}`);
    // Whatever the old leader had under way when it froze, it did not run anything again.
    await new Promise((resolve) => setTimeout(resolve, LEASE_TTL_MS));
    expect(await startsByJob(markers)).toEqual({ [long.id]: ['1'], [next.id]: ['1'] });
    for (const job of [long, next]) {
      const events = (await second.client.listJobEvents(job.id)).events.map((e) => e.type);
      expect(events.filter((type) => type === 'started')).toHaveLength(1);
      expect(events.filter((type) => type === 'succeeded')).toHaveLength(1);
    }
    // And the database refuses what the old leader would write at its epoch.
    const store = await createPostgresStateStore({ url: database, migrate: false });
    try {
      const stale = store.withFence({ lease: 'control', holder: before.replica, epoch: before.leader!.epoch });
      await expect(stale.appendEvent(next.id, 'requeued', 'a late write', Date.now())).rejects.toBeInstanceOf(FencedError);
      await expect(stale.finishJob(next.id, { status: 'failed', exitCode: 1, endReason: 'a late write' }, Date.now())).rejects.toBeInstanceOf(FencedError);
    } finally {
      await store.close();
    }
    expect((await second.client.getJob(next.id)).status).toBe('succeeded');
  }, 90_000);

  it('a leader cut off from the database (its queries go unanswered) stops leading once its lease is out, and another leads', async () => {
    const database = await freshDatabaseUrl();
    const { dataDir, markers, release } = await sharedDataDir();
    const cable = await freezableProxyTo(database);
    const first = await startReplica(dataDir, cable.url, '1');
    const second = await startReplica(dataDir, database, '1');
    const before = await healthOf(first);
    expect(before.role).toBe('leader');
    const job = await first.client.submitJob({ name: 'runs-through-it', resources: { gpus: 1 }, run: countedRank(markers, release) });
    await waitForJob(first.client, job.id, (j) => j.status === 'running');

    // Not closed, not refused: every byte between the leader and PostgreSQL simply stops, as on a network cut.
    cable.freeze();
    const after = await waitFor('the other replica leads', leading(second), 15_000 + LEASE_TTL_MS);
    expect(after.leader?.epoch).toBe(before.leader!.epoch + 1);
    await waitFor('the cut-off leader knows it does not lead', async () => ((await healthOf(first)).role === 'follower' ? true : undefined));
    expect(first.log()).toContain('this replica no longer leads the control plane');

    cable.thaw();
    await touch(release);
    const ended = await waitForJob(second.client, job.id, isEnded, 30_000);
    expect([ended.status, ended.attempt]).toEqual(['succeeded', 1]);
    expect(await startsByJob(markers)).toEqual({ [job.id]: ['1'] });
    expect((await healthOf(first)).role).toBe('follower');
  }, 90_000);

  it('many submitters on every replica at once: each 201 is a durable job, readable on every replica, queued by the leader', async () => {
    const database = await freshDatabaseUrl();
    const { dataDir, markers, release } = await sharedDataDir();
    const replicas = [await startReplica(dataDir, database, '1'), await startReplica(dataDir, database, '1'), await startReplica(dataDir, database, '1')];
    // The only GPU is held, so every submission below stays pending: what is counted is what was stored.
    const holder = await replicas[0]!.client.submitJob({ name: 'holds-the-gpu', resources: { gpus: 1 }, run: countedRank(markers, release) });
    await waitForJob(replicas[0]!.client, holder.id, (j) => j.status === 'running');
    const acknowledged = new Map<string, string>();
    await Promise.all(
      Array.from({ length: 16 }, async (_, submitter) => {
        for (let n = 0; n < 30; n++) {
          const name = `burst-${submitter}-${n}`;
          const job = await replicas[(submitter + n) % replicas.length]!.client.submitJob({ name, resources: { gpus: 1 }, run: 'true' });
          acknowledged.set(job.id, name);
        }
      }),
    );
    expect(acknowledged.size).toBe(480);
    for (const replica of replicas) {
      const pending = new Map<string, string>();
      let cursor: string | undefined;
      do {
        const page = await replica.client.listJobs({ status: 'pending', limit: 1000, ...(cursor !== undefined ? { cursor } : {}) });
        for (const job of page.jobs) pending.set(job.id, job.name);
        cursor = page.next_cursor ?? undefined;
      } while (cursor !== undefined);
      expect(pending).toEqual(acknowledged);
    }
    // The leader queued every one of them, also those submitted through the followers: its teams view counts them.
    const leader = await waitFor('a leader', async () => {
      const states = await Promise.all(replicas.map(healthOf));
      const index = states.findIndex((state) => state.role === 'leader');
      return index >= 0 ? replicas[index] : undefined;
    });
    await waitFor('the leader queued all 480', async () => ((await leader.client.listTeams()).teams.find((team) => team.name === 'default')?.pending_jobs === 480 ? true : undefined));
    await touch(release);
  }, 120_000);

  it('PostgreSQL restarted while submitters use every replica: they reconnect, one leads, a rank that ended meanwhile is recorded, and every 201 is a job that runs', async () => {
    const server = await ownPostgresServer();
    const { dataDir, markers, release } = await sharedDataDir();
    // A lease that outlasts the restart: the leader stays the leader, so what it could not record meanwhile is not
    // caught up by a new leader's recovery but must be written by the leader itself once the database is back.
    const lease = 60_000;
    const replicas = [await startReplica(dataDir, server.url, '3', lease), await startReplica(dataDir, server.url, '3', lease)];
    const outlived = await replicas[0]!.client.submitJob({ name: 'ends-while-the-database-is-away', resources: { gpus: 1 }, run: countedRank(markers, release) });
    await waitForJob(replicas[0]!.client, outlived.id, (j) => j.status === 'running' && (j.tasks ?? []).every((t) => t.status === 'running'));
    const acknowledged: string[] = [];
    const refused: string[] = [];
    let submitting = true;
    const submitter = async (index: number) => {
      for (let n = 0; submitting; n++) {
        const replica = replicas[(index + n) % replicas.length]!;
        try {
          const job = await replica.client.submitJob({ name: `load-${index}-${n}`, resources: { gpus: 1 }, run: 'true' });
          acknowledged.push(job.id);
        } catch (error) {
          // Not acknowledged: a 503 while the database is away, or no answer at all. Either may be sent again.
          refused.push(error instanceof ApiError ? `${error.status} ${error.code}` : 'no answer');
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    };
    const submitters = Array.from({ length: 8 }, (_, i) => submitter(i));
    await waitFor('submissions before the restart', async () => (acknowledged.length >= 40 ? true : undefined));
    await server.stop();
    // The rank exits while no write can land; the leader sees it at once and keeps what it cannot record.
    await touch(release);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await server.start();
    const afterRestart = acknowledged.length;
    await waitFor('submissions after the restart', async () => (acknowledged.length >= afterRestart + 40 ? true : undefined), 60_000);
    submitting = false;
    await Promise.all(submitters);

    console.log(`PostgreSQL restart under load: ${acknowledged.length} submissions answered 201, ${refused.length} refused (${[...new Set(refused)].join(', ')})`);
    expect(new Set(acknowledged).size).toBe(acknowledged.length);
    for (const status of new Set(refused)) expect(['503 store_unavailable', 'no answer']).toContain(status);
    const roles = await waitFor('exactly one leader again', async () => {
      const all = await Promise.all(replicas.map((replica) => healthOf(replica).then((h) => h.role)));
      return all.filter((role) => role === 'leader').length === 1 ? all : undefined;
    });
    expect(roles.sort()).toEqual(['follower', 'leader']);
    const ended = await waitForJob(replicas[1]!.client, outlived.id, isEnded, 30_000);
    expect([ended.status, ended.attempt, ended.restarts]).toEqual(['succeeded', 1, 0]);
    for (const [i, id] of acknowledged.entries()) {
      const job = await waitForJob(replicas[i % 2]!.client, id, isEnded, 60_000);
      expect(job.status).toBe('succeeded');
    }
  }, 180_000);
});

/**
 * A PostgreSQL server of this test's own (scripts/pg-dev.sh in its own directory and port), so that restarting it
 * disturbs no other test file's database.
 */
async function ownPostgresServer(): Promise<{ url: string; stop(): Promise<void>; start(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'tutti-pg-restart-'));
  const port = await new Promise<number>((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port: free } = probe.address() as AddressInfo;
      probe.close(() => resolve(free));
    });
  });
  const env = { ...process.env, TUTTI_PG_DIR: path.join(dir, 'pg'), TUTTI_PG_PORT: String(port) };
  const script = (command: string) => run('bash', [PG_DEV_SCRIPT, command], { env, timeout: 300_000 });
  cleanups.push(async () => {
    await script('down').catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  // As root, the server runs as the `postgres` user, who must be able to enter the directory mkdtemp made private.
  await chmod(dir, 0o755);
  const { stdout } = await script('up');
  const url = /export TUTTI_TEST_POSTGRES_URL=(\S+)/.exec(stdout)?.[1];
  if (!url) throw new Error(`scripts/pg-dev.sh up printed no URL: ${stdout}`);
  return {
    url,
    async stop() {
      await script('down');
    },
    async start() {
      await script('up');
    },
  };
}

/**
 * A TCP proxy in front of the database whose traffic can be frozen — both directions held back, nothing closed: what a
 * network cut looks like to both ends — and thawed (what was held back is then delivered, in order).
 */
async function freezableProxyTo(databaseUrl: string): Promise<{ url: string; freeze(): void; thaw(): void }> {
  const target = new URL(databaseUrl);
  const sockets = new Set<Socket>();
  let held: Array<[Socket, Buffer]> | undefined;
  // By hand, not with pipe(): a piped socket is resumed whenever its destination drains, so pausing it holds nothing.
  const forward = (from: Socket, to: Socket) =>
    from.on('data', (chunk: Buffer) => {
      if (held) held.push([to, chunk]);
      else to.write(chunk);
    });
  const proxy = createServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => socket.destroy());
    }
    forward(client, upstream);
    forward(upstream, client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => proxy.close(resolve));
  });
  const url = new URL(databaseUrl);
  url.port = String((proxy.address() as AddressInfo).port);
  return {
    url: url.toString(),
    freeze() {
      held ??= [];
    },
    thaw() {
      const backlog = held ?? [];
      held = undefined;
      for (const [to, chunk] of backlog) if (!to.destroyed) to.write(chunk);
    },
  };
}
