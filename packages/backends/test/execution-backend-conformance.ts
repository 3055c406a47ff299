/**
 * The promises of `ExecutionBackend`, checked with real processes. Every backend runs this suite from its own test
 * file:
 *
 *   describeExecutionBackendConformance('local backend', async () => makeLocalHarness());
 *
 * Commands are POSIX sh so that they run on any node a backend may use.
 */
import { existsSync, mkdirSync, realpathSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NodeInfo } from '@tutti/model';
import type { ExecutionBackend, LaunchRequest, NodeStateChange, RankExit, RankHandle, RankLaunch } from '@tutti/backends';

export interface ConformanceHarness {
  /** A backend instance. Each call returns a new instance over the same state: calling it again is a "restart". */
  createBackend(): ExecutionBackend | Promise<ExecutionBackend>;
  /** An existing directory that every node sees: the jobs' workdir, and where tests put marker files. */
  workdir: string;
  /** Kills whatever is left of these ranks without going through a backend (cleanup after each test). */
  killRanks(handles: readonly RankHandle[]): Promise<void>;
  /** Removes what the harness created. */
  dispose(): Promise<void>;
  /**
   * A line the cluster itself writes into a rank's log when the rank is stopped (Slurm's "*** STEP … CANCELLED ***"),
   * left out where a test compares a log whole. None for the local backend: its ranks' logs are theirs alone.
   */
  stopNotice?: RegExp;
}

/** Polls `condition` until it holds, failing with `what` after `timeoutMs`. */
export async function waitUntil(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Everything `readLog` yields, as text. */
export async function collectLog(chunks: AsyncIterable<Uint8Array>): Promise<string> {
  let text = '';
  for await (const chunk of chunks) text += Buffer.from(chunk).toString('utf8');
  return text;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A rank's whole log now, read through its backend (no backend-specific file path). */
export function logOf(backend: ExecutionBackend, handle: RankHandle): Promise<string> {
  return collectLog(backend.readLog(handle));
}

/** A handle as the control plane gets it back from its store: through JSON. */
export function storedAndReadBack<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/** Records a backend's rank exits. */
export function recordExits(backend: ExecutionBackend): { exits: RankExit[]; of(jobId: string): RankExit[]; waitFor(jobId: string, count: number): Promise<RankExit[]> } {
  const exits: RankExit[] = [];
  backend.onRankExit((exit) => exits.push(exit));
  const of = (jobId: string) => exits.filter((e) => e.jobId === jobId).sort((a, b) => a.rank - b.rank);
  return {
    exits,
    of,
    async waitFor(jobId, count) {
      await waitUntil(() => of(jobId).length >= count, `${count} exits of job ${jobId}`);
      return of(jobId);
    },
  };
}

/** `count` ranks on node-rank 0 of `node`, on its first GPUs when it has enough (else CPU-only). */
export function makeRanks(node: NodeInfo, count: number): RankLaunch[] {
  const gpus = node.gpus.length >= count ? node.gpus.slice(0, count).map((g) => g.index) : [];
  return Array.from({ length: count }, (_, rank) => ({ rank, localRank: rank, nodeRank: 0, node: node.name, gpus }));
}

function parseEnvDump(log: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of log.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return env;
}

let jobCounter = 0;

export function describeExecutionBackendConformance(name: string, makeHarness: () => Promise<ConformanceHarness>): void {
  describe(`${name}: ExecutionBackend conformance`, () => {
    let harness: ConformanceHarness;
    let backends: ExecutionBackend[] = [];
    let launched: RankHandle[] = [];

    beforeEach(async () => {
      harness = await makeHarness();
    });

    afterEach(async () => {
      await harness.killRanks(launched);
      for (const backend of backends) await backend.close();
      backends = [];
      launched = [];
      await harness.dispose();
    });

    async function newBackend(): Promise<ExecutionBackend> {
      const backend = await harness.createBackend();
      backends.push(backend);
      return backend;
    }

    async function firstNode(backend: ExecutionBackend): Promise<NodeInfo> {
      const [node] = await backend.inventory();
      if (node === undefined) throw new Error('the backend has no nodes');
      return node;
    }

    function newJobId(): string {
      return `conformance-${process.pid}-${++jobCounter}`;
    }

    async function launch(backend: ExecutionBackend, request: LaunchRequest): Promise<RankHandle[]> {
      const handles = await backend.launch(request);
      launched.push(...handles);
      return handles;
    }

    const shell = (command: string) => ({ kind: 'shell' as const, command });

    /** A log without the lines the cluster wrote into it when the rank was stopped (`ConformanceHarness.stopNotice`). */
    const withoutStopNotices = (log: string): string => {
      const notice = harness.stopNotice;
      return notice ? log.split('\n').filter((line) => !notice.test(line)).join('\n') : log;
    };

    it('lists at least one ready node with distinct GPU indices', async () => {
      const nodes = await (await newBackend()).inventory();
      expect(nodes.length).toBeGreaterThan(0);
      for (const node of nodes) {
        expect(node.name).not.toBe('');
        expect(node.address).not.toBe('');
        expect(node.state).toBe('ready');
        expect(node.cpus).toBeGreaterThan(0);
        expect(new Set(node.gpus.map((g) => g.index)).size).toBe(node.gpus.length);
      }
    });

    it('samples only GPUs of its inventory, each figure a number in range or null', async () => {
      const backend = await newBackend();
      const nodes = await backend.inventory();
      const known = new Set(nodes.flatMap((node) => node.gpus.map((gpu) => `${node.name}/${gpu.index}`)));
      const reading = await backend.sampleGpus();
      for (const sample of reading.samples) {
        expect(known.has(`${sample.node}/${sample.gpuIndex}`)).toBe(true);
        if (sample.utilizationPct !== null) expect(sample.utilizationPct).toBeGreaterThanOrEqual(0);
        if (sample.utilizationPct !== null) expect(sample.utilizationPct).toBeLessThanOrEqual(100);
      }
    });

    it('starts every rank with torchrun\'s variables over the job env, in the workdir, and returns handles in rank order', async () => {
      const backend = await newBackend();
      const exits = recordExits(backend);
      const node = await firstNode(backend);
      const jobId = newJobId();
      const ranks = makeRanks(node, 3);
      const handles = await launch(backend, {
        jobId, jobName: 'env-check', workdir: harness.workdir,
        run: shell('echo "CWD=$(pwd)"; env'),
        env: { FROM_JOB: 'yes', RANK: '99', WORLD_SIZE: '99' },
        ranks: [...ranks].reverse(),
      });
      expect(handles.map((h) => [h.backend, h.jobId, h.rank, h.node])).toEqual(ranks.map((r) => [backend.kind, jobId, r.rank, node.name]));
      for (const handle of handles) {
        expect(handle.startedAt).toBeTypeOf('number');
        expect(handle.ref).toBeTypeOf('object');
      }
      expect((await exits.waitFor(jobId, 3)).map((e) => e.exitCode)).toEqual([0, 0, 0]);
      const envs = await Promise.all(handles.map(async (h) => parseEnvDump(await logOf(backend, h))));
      const port = envs[0]?.MASTER_PORT;
      expect(Number(port)).toBeGreaterThan(0);
      envs.forEach((env, rank) => {
        expect(env).toMatchObject({
          RANK: String(rank), LOCAL_RANK: String(rank), WORLD_SIZE: '3', LOCAL_WORLD_SIZE: '3',
          NODE_RANK: '0', GROUP_RANK: '0', ROLE_RANK: String(rank), ROLE_WORLD_SIZE: '3',
          MASTER_ADDR: node.address, MASTER_PORT: port,
          CUDA_VISIBLE_DEVICES: ranks[rank]?.gpus.join(','),
          TORCHELASTIC_RESTART_COUNT: '0',
          TUTTI_JOB_ID: jobId, TUTTI_JOB_NAME: 'env-check',
          FROM_JOB: 'yes',
        });
        expect(env.TUTTI_RANK_LOG).toBeTruthy();
        expect(env.PATH).toBeTruthy();
        expect(realpathSync(env.CWD ?? '')).toBe(realpathSync(harness.workdir));
      });
    });

    it('runs an argv command as is, without a shell', async () => {
      const backend = await newBackend();
      const exits = recordExits(backend);
      const jobId = newJobId();
      const [handle] = await launch(backend, {
        jobId, jobName: 'argv', workdir: harness.workdir, env: {},
        run: { kind: 'argv', argv: ['printf', '%s|', 'a b', '$HOME', '*', 'exit 3'] },
        ranks: makeRanks(await firstNode(backend), 1),
      });
      expect((await exits.waitFor(jobId, 1))[0]?.exitCode).toBe(0);
      expect(await logOf(backend, handle!)).toBe('a b|$HOME|*|exit 3|');
    });

    it('reports every exit exactly once, with the real exit code or the signal that killed the rank', async () => {
      const backend = await newBackend();
      const exits = recordExits(backend);
      const jobId = newJobId();
      await launch(backend, {
        jobId, jobName: 'codes', workdir: harness.workdir, env: {},
        run: shell('if [ "$RANK" = 3 ]; then kill -KILL $$; fi; exit "$RANK"'),
        ranks: makeRanks(await firstNode(backend), 4),
      });
      await exits.waitFor(jobId, 4);
      await sleep(300);
      expect(exits.of(jobId).map((e) => [e.rank, e.exitCode, e.signal, e.lost])).toEqual([
        [0, 0, undefined, false], [1, 1, undefined, false], [2, 2, undefined, false], [3, 137, 'SIGKILL', false],
      ]);
      for (const exit of exits.of(jobId)) expect(exit.at).toBeTypeOf('number');
    });

    it('stop delivers the signal to the ranks, whose handler decides the exit code', async () => {
      const backend = await newBackend();
      const exits = recordExits(backend);
      const jobId = newJobId();
      const handles = await launch(backend, {
        jobId, jobName: 'graceful', workdir: harness.workdir, env: {},
        run: shell('trap \'echo "got TERM"; exit 7\' TERM; echo ready; while :; do sleep 0.05; done'),
        ranks: makeRanks(await firstNode(backend), 2),
      });
      await waitUntil(async () => (await Promise.all(handles.map((h) => logOf(backend, h)))).every((log) => log.includes('ready')), 'both ranks ready');
      const started = Date.now();
      await backend.stop(handles, { graceMs: 20_000 });
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(exits.of(jobId).map((e) => [e.rank, e.exitCode, e.lost])).toEqual([[0, 7, false], [1, 7, false]]);
      for (const handle of handles) expect(await logOf(backend, handle)).toContain('got TERM');
    });

    it('stop sends the signal it is asked for (SIGINT, as Ctrl-C would)', async () => {
      const backend = await newBackend();
      const exits = recordExits(backend);
      const jobId = newJobId();
      const handles = await launch(backend, {
        jobId, jobName: 'interrupt', workdir: harness.workdir, env: {},
        run: shell('trap \'exit 8\' INT; echo ready; while :; do sleep 0.05; done'),
        ranks: makeRanks(await firstNode(backend), 1),
      });
      await waitUntil(async () => (await logOf(backend, handles[0]!)).includes('ready'), 'the rank to be ready');
      await backend.stop(handles, { signal: 'SIGINT', graceMs: 20_000 });
      expect(exits.of(jobId).map((e) => e.exitCode)).toEqual([8]);
    });

    it('stop escalates to SIGKILL after graceMs for a rank that ignores the signal, and reports it killed, not lost', async () => {
      const backend = await newBackend();
      const exits = recordExits(backend);
      const jobId = newJobId();
      const handles = await launch(backend, {
        jobId, jobName: 'stubborn', workdir: harness.workdir, env: {},
        run: shell('trap \'\' TERM; sleep 30 & echo ready; wait'),
        ranks: makeRanks(await firstNode(backend), 1),
      });
      await waitUntil(async () => (await logOf(backend, handles[0]!)).includes('ready'), 'the rank to be ready');
      const started = Date.now();
      await backend.stop(handles, { graceMs: 500 });
      const took = Date.now() - started;
      expect(took).toBeGreaterThanOrEqual(450);
      expect(took).toBeLessThan(10_000);
      expect(exits.of(jobId).map((e) => [e.exitCode, e.signal, e.lost])).toEqual([[137, 'SIGKILL', false]]);
      await sleep(200);
      expect(exits.of(jobId)).toHaveLength(1);
    });

    it('stop of ranks that already exited resolves at once and reports nothing more', async () => {
      const backend = await newBackend();
      const exits = recordExits(backend);
      const jobId = newJobId();
      const handles = await launch(backend, {
        jobId, jobName: 'done', workdir: harness.workdir, env: {}, run: shell('exit 0'),
        ranks: makeRanks(await firstNode(backend), 2),
      });
      await exits.waitFor(jobId, 2);
      const started = Date.now();
      await backend.stop(handles, { graceMs: 5_000 });
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(exits.of(jobId)).toHaveLength(2);
    });

    it('ranks keep running and logging after close(); a new instance adopts them and finds exits nobody watched', async () => {
      const first = await newBackend();
      const firstExits = recordExits(first);
      const jobId = newJobId();
      const release = join(harness.workdir, `release-${jobId}`);
      const finish1 = join(harness.workdir, `finish1-${jobId}`);
      const handles = await launch(first, {
        jobId, jobName: 'survivor', workdir: harness.workdir,
        env: { RELEASE: release, FINISH1: finish1 },
        run: shell([
          'case "$RANK" in',
          '0) i=0; while [ ! -e "$RELEASE" ]; do i=$((i+1)); echo "tick $i"; sleep 0.05; done; exit 0;;',
          '1) while [ ! -e "$FINISH1" ]; do sleep 0.05; done; echo bye; exit 4;;',
          '*) trap \'\' TERM; echo ready; while :; do sleep 0.05; done;;',
          'esac',
        ].join('\n')),
        ranks: makeRanks(await firstNode(first), 3),
      });
      const [rank0, rank1, rank2] = handles as [RankHandle, RankHandle, RankHandle];
      await waitUntil(async () => (await logOf(first, rank0)).includes('tick') && (await logOf(first, rank2)).includes('ready'), 'ranks 0 and 2 to run');
      await first.close();

      // The control plane is "down": rank 1 exits unwatched, rank 0 keeps writing its log.
      const second = await newBackend();
      const logSize = await second.logSize(rank0);
      writeFileSync(finish1, '');
      await waitUntil(async () => (await logOf(second, rank1)).includes('bye'), 'rank 1 to finish');
      await sleep(500);
      expect(await second.logSize(rank0)).toBeGreaterThan(logSize);

      const secondExits = recordExits(second);
      // The handle of a rank whose process is gone, under a job that never ran: nothing to adopt.
      const stranger: RankHandle = { ...rank1, jobId: `${jobId}-never-ran` };
      const observations = await second.adopt([rank0, rank1, rank2, stranger]);
      expect(observations.map((o) => [o.jobId, o.rank, o.state])).toEqual([
        [jobId, 0, 'running'], [jobId, 1, 'exited'], [jobId, 2, 'running'], [stranger.jobId, 1, 'lost'],
      ]);
      const exited = observations[1];
      expect(exited?.state === 'exited' && [exited.exitCode, typeof exited.finishedAt]).toEqual([4, 'number']);

      writeFileSync(release, '');
      expect((await secondExits.waitFor(jobId, 1)).map((e) => [e.rank, e.exitCode, e.lost])).toEqual([[0, 0, false]]);

      await second.stop([rank2], { graceMs: 300 });
      await sleep(300);
      expect(secondExits.of(jobId).map((e) => [e.rank, e.exitCode, e.signal, e.lost])).toEqual([
        [0, 0, undefined, false], [2, 137, 'SIGKILL', false],
      ]);
      expect(firstExits.exits).toEqual([]);
    });

    it('handles survive JSON: stored and read back, a new instance adopts them, reads their logs and stops them', async () => {
      const first = await newBackend();
      const jobId = newJobId();
      const launchedHandles = await launch(first, {
        jobId, jobName: 'stored', workdir: harness.workdir, env: {}, attempt: 1,
        run: shell('trap \'echo "got TERM"; exit 5\' TERM; echo ready; while :; do sleep 0.05; done'),
        ranks: makeRanks(await firstNode(first), 2),
      });
      // What the control plane keeps: each handle as JSON, read back after its restart.
      const stored = storedAndReadBack(launchedHandles);
      expect(stored).toEqual(launchedHandles);
      for (const handle of stored) expect(handle.backend).toBe(first.kind);
      await waitUntil(async () => (await Promise.all(stored.map((h) => logOf(first, h)))).every((log) => log.includes('ready')), 'both ranks ready');
      await first.close();

      const second = await newBackend();
      const exits = recordExits(second);
      expect((await second.adopt(stored)).map((o) => [o.rank, o.state])).toEqual([[0, 'running'], [1, 'running']]);
      expect(await logOf(second, stored[1]!)).toBe('ready\n');
      await second.stop(stored, { graceMs: 20_000 });
      expect(exits.of(jobId).map((e) => [e.rank, e.exitCode, e.lost])).toEqual([[0, 5, false], [1, 5, false]]);
      // (The shell may also report its `sleep` child killed by the same signal.)
      for (const handle of stored) expect(withoutStopNotices(await logOf(second, handle))).toMatch(/^ready\n(.*\n)*got TERM\n$/);
    });

    it('refuses a handle another backend made or whose ref it cannot read: stop rejects naming it and signals nothing, adopt calls it lost saying why', async () => {
      const backend = await newBackend();
      const exits = recordExits(backend);
      const jobId = newJobId();
      const [handle] = await launch(backend, {
        jobId, jobName: 'refuser', workdir: harness.workdir, env: {}, attempt: 1,
        run: shell('echo ready; while :; do sleep 0.05; done'),
        ranks: makeRanks(await firstNode(backend), 1),
      });
      const good = handle!;
      await waitUntil(async () => (await logOf(backend, good)).includes('ready'), 'the rank to be ready');
      const foreign: RankHandle = { ...good, backend: `not-${backend.kind}` };
      // Read back from a damaged store: the ref has none of its fields, or is not even an object.
      const emptied: RankHandle = { ...good, ref: {} };
      const mangled = storedAndReadBack({ ...good, ref: 'pid 4242' }) as unknown as RankHandle;

      await expect(backend.stop([good, foreign], { graceMs: 0, signal: 'SIGKILL' })).rejects.toThrow(new RegExp(`not-${backend.kind}`));
      for (const bad of [emptied, mangled]) {
        await expect(backend.stop([good, bad], { graceMs: 0, signal: 'SIGKILL' })).rejects.toThrow(/ref/);
      }
      // Nothing was signalled: the good rank still runs and logs.
      await sleep(300);
      expect(exits.of(jobId)).toEqual([]);

      const observations = await backend.adopt([foreign, emptied, mangled, good]);
      expect(observations.map((o) => [o.jobId, o.rank, o.state])).toEqual([[jobId, 0, 'lost'], [jobId, 0, 'lost'], [jobId, 0, 'lost'], [jobId, 0, 'running']]);
      const details = observations.map((o) => (o.state === 'lost' ? o.detail : ''));
      expect(details[0]).toMatch(new RegExp(`not-${backend.kind}`));
      expect(details[1]).toMatch(/ref/);
      expect(details[2]).toMatch(/ref/);
      // Refusing them disturbed nothing: the good rank is still watched, and stops as usual.
      await backend.stop([good], { graceMs: 0, signal: 'SIGKILL' });
      expect(exits.of(jobId).map((e) => [e.exitCode, e.lost])).toEqual([[137, false]]);
    });

    it('reports each node ready once its inventory is known, and tells a late listener the current state', async () => {
      const backend = await newBackend();
      const early: NodeStateChange[] = [];
      backend.onNodeState((change) => early.push(change));
      const nodes = await backend.inventory();
      await waitUntil(() => nodes.every((n) => early.some((c) => c.node === n.name)), 'every node\'s state');
      for (const node of nodes) {
        const changes = early.filter((c) => c.node === node.name);
        expect(changes.map((c) => c.state)).toEqual([node.state]);
        expect(changes[0]?.at).toBeTypeOf('number');
      }
      const late: NodeStateChange[] = [];
      backend.onNodeState((change) => late.push(change));
      expect(late.map((c) => [c.node, c.state])).toEqual(nodes.map((n) => [n.name, n.state]));
      // Asking again changes nothing: no state is reported twice.
      await backend.inventory();
      await sleep(100);
      expect(early).toHaveLength(nodes.length);
    });

    it('readLog reads a rank\'s output from an offset; without follow it ends at what is there', async () => {
      const backend = await newBackend();
      const exits = recordExits(backend);
      const jobId = newJobId();
      const [handle] = await launch(backend, {
        jobId, jobName: 'printer', workdir: harness.workdir, env: {}, attempt: 1,
        run: shell('echo one; echo two; echo oops >&2'),
        ranks: makeRanks(await firstNode(backend), 1),
      });
      await exits.waitFor(jobId, 1);
      expect(await collectLog(backend.readLog(handle!))).toBe('one\ntwo\noops\n');
      expect(await collectLog(backend.readLog({ jobId, rank: 0, attempt: 1 }, { offset: 4 }))).toBe('two\noops\n');
      expect(await collectLog(backend.readLog({ jobId, rank: 0, attempt: 2 }))).toBe('');
    });

    it('readLog with follow streams a rank\'s output as it grows and ends by itself once the rank has exited', async () => {
      const backend = await newBackend();
      const jobId = newJobId();
      const release = join(harness.workdir, `release-${jobId}`);
      const handles = await launch(backend, {
        jobId, jobName: 'talker', workdir: harness.workdir, env: { RELEASE: release }, attempt: 1,
        run: shell('echo first; while [ ! -e "$RELEASE" ]; do sleep 0.05; done; echo last'),
        ranks: makeRanks(await firstNode(backend), 1),
      });
      const chunks: string[] = [];
      const following = (async () => {
        for await (const chunk of backend.readLog(handles[0]!, { follow: true })) chunks.push(Buffer.from(chunk).toString('utf8'));
      })();
      await waitUntil(() => chunks.join('').includes('first'), 'the first line to be followed');
      writeFileSync(release, '');
      await following;
      expect(chunks.join('')).toBe('first\nlast\n');
    });

    it('readLog with follow ends for a rank that had to be SIGKILLed, and ends at once when aborted', async () => {
      const backend = await newBackend();
      const jobId = newJobId();
      const handles = await launch(backend, {
        jobId, jobName: 'stubborn-talker', workdir: harness.workdir, env: {}, attempt: 1,
        run: shell('trap \'\' TERM; echo ready; while :; do sleep 0.05; done'),
        ranks: makeRanks(await firstNode(backend), 2),
      });
      await waitUntil(async () => (await Promise.all(handles.map((h) => logOf(backend, h)))).every((log) => log.includes('ready')), 'both ranks ready');
      const abort = new AbortController();
      const aborted = collectLog(backend.readLog(handles[1]!, { follow: true, signal: abort.signal }));
      abort.abort();
      expect(await aborted).toBe('ready\n');
      const killed = collectLog(backend.readLog(handles[0]!, { follow: true }));
      await backend.stop(handles, { graceMs: 200 });
      expect(withoutStopNotices(await killed)).toBe('ready\n');
    });

    it('capLog keeps a log within its cap behind a marker line, with its newest output; logSize says how large it is', async () => {
      const backend = await newBackend();
      const exits = recordExits(backend);
      const jobId = newJobId();
      const [handle] = await launch(backend, {
        jobId, jobName: 'chatty', workdir: harness.workdir, env: {}, attempt: 1,
        // 4000 lines of 50 bytes: 200,000 bytes.
        run: shell('i=0; while [ $i -lt 4000 ]; do printf "line %044d\n" $i; i=$((i+1)); done'),
        ranks: makeRanks(await firstNode(backend), 1),
      });
      await exits.waitFor(jobId, 1);
      expect(await backend.logSize(handle!)).toBe(200_000);
      expect(await backend.capLog(handle!, 1_000_000)).toBeUndefined();
      const trim = await backend.capLog(handle!, 65_536);
      expect(trim).toBeDefined();
      const text = await collectLog(backend.readLog(handle!));
      expect(await backend.logSize(handle!)).toBe(Buffer.byteLength(text));
      expect(Buffer.byteLength(text)).toBeLessThanOrEqual(65_536);
      const [marker, ...lines] = text.trimEnd().split('\n');
      expect(marker).toBe(`[tutti: ${trim!.totalDroppedBytes} bytes of earlier output dropped: log cap 64 KiB]`);
      expect(lines.at(-1)).toBe(`line ${'3999'.padStart(44, '0')}`);
      expect(trim!.totalDroppedBytes + lines.length * 50).toBe(200_000);
      expect(await backend.logSize({ jobId: `${jobId}-none`, rank: 0, attempt: 1 })).toBe(0);
    });

    it('prepareAttempt makes the checkpoint and control dirs where ranks run and finds the newest complete checkpoint', async () => {
      const backend = await newBackend();
      const exits = recordExits(backend);
      const jobId = newJobId();
      const checkpoints = join(harness.workdir, `ckpt-${jobId}`);
      const first = await backend.prepareAttempt({ jobId, attempt: 1, nodes: [(await firstNode(backend)).name], checkpointDir: `ckpt-${jobId}`, workdir: harness.workdir });
      expect(realpathSync(first.checkpointDir)).toBe(realpathSync(checkpoints));
      expect(first.newestCheckpoint).toBeUndefined();
      // Older to newer: step-100, step-200, then a hidden and a half-written entry that must not be resumed from.
      const entries = ['step-100', 'step-200', '.step-300', 'step-400.tmp'];
      entries.forEach((name, i) => {
        mkdirSync(join(checkpoints, name));
        utimesSync(join(checkpoints, name), 1_700_000_000 + i, 1_700_000_000 + i);
      });
      // A handle of a rank never launched: the deadline is the job's (its control dir), so any rank of it names it.
      await backend.writeStopDeadline([{ backend: backend.kind, jobId, rank: 0, node: (await firstNode(backend)).name, startedAt: 0, attempt: 1, ref: {} }], Date.now());
      const second = await backend.prepareAttempt({ jobId, attempt: 2, nodes: [(await firstNode(backend)).name], checkpointDir: `ckpt-${jobId}`, workdir: harness.workdir });
      expect(second.newestCheckpoint).toBe(join(second.checkpointDir, 'step-200'));
      const [handle] = await launch(backend, {
        jobId, jobName: 'dirs', workdir: harness.workdir, env: {}, attempt: 2,
        runtimeEnv: { TUTTI_CHECKPOINT_DIR: second.checkpointDir, TUTTI_CONTROL_DIR: second.controlDir },
        // The previous attempt's stop deadline is gone: this attempt is not being stopped.
        run: shell('test -d "$TUTTI_CHECKPOINT_DIR" && test -d "$TUTTI_CONTROL_DIR" && test ! -e "$TUTTI_CONTROL_DIR/preempt-deadline" && echo dirs-ok'),
        ranks: makeRanks(await firstNode(backend), 1),
      });
      expect((await exits.waitFor(jobId, 1))[0]?.exitCode).toBe(0);
      expect(await collectLog(backend.readLog(handle!))).toBe('dirs-ok\n');
    });

    it('writeStopDeadline tells the ranks when SIGKILL comes, in their control dir, before the stop signal', async () => {
      const backend = await newBackend();
      const jobId = newJobId();
      const dirs = await backend.prepareAttempt({ jobId, attempt: 1, nodes: [(await firstNode(backend)).name] });
      const handles = await launch(backend, {
        jobId, jobName: 'deadline', workdir: harness.workdir, env: {}, attempt: 1,
        runtimeEnv: { TUTTI_CHECKPOINT_DIR: dirs.checkpointDir, TUTTI_CONTROL_DIR: dirs.controlDir },
        run: shell('trap \'echo "deadline $(cat "$TUTTI_CONTROL_DIR/preempt-deadline")"; exit 0\' TERM; echo ready; while :; do sleep 0.05; done'),
        ranks: makeRanks(await firstNode(backend), 2),
      });
      await waitUntil(async () => (await Promise.all(handles.map((h) => logOf(backend, h)))).every((log) => log.includes('ready')), 'both ranks ready');
      const deadline = Date.now() + 20_000;
      await backend.writeStopDeadline(handles, deadline);
      await backend.stop(handles, { graceMs: 20_000 });
      // (The shell may also report its `sleep` child killed by the same signal: only the deadline line matters.)
      for (const handle of handles) expect(await collectLog(backend.readLog(handle))).toContain(`\ndeadline ${Math.floor(deadline / 1000)}\n`);
    });

    it('a launch with a missing workdir rejects with the path and starts nothing', async () => {
      const backend = await newBackend();
      const exits = recordExits(backend);
      const jobId = newJobId();
      const missing = join(harness.workdir, `missing-${jobId}`);
      const marker = join(harness.workdir, `started-${jobId}`);
      await expect(launch(backend, {
        jobId, jobName: 'nowhere', workdir: missing, env: {}, run: shell(`touch '${marker}'`),
        ranks: makeRanks(await firstNode(backend), 2),
      })).rejects.toThrow(missing);
      await sleep(300);
      expect(existsSync(marker)).toBe(false);
      expect(exits.exits).toEqual([]);
    });
  });
}
