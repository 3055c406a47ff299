import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  LaunchError,
  RANK_SUPERVISOR_SCRIPT,
  createLocalBackend,
  discoverLocalInventory,
  isProcessAlive,
  readLocalRankRef,
  readProcessStartTime,
  signalProcessGroup,
  type LocalBackend,
  type LocalBackendOptions,
  type RankHandle,
  type RankLaunch,
  type SpawnFunction,
} from '@tutti/backends';
import { describeExecutionBackendConformance, recordExits, sleep, waitUntil, type ConformanceHarness } from './execution-backend-conformance.ts';

const fixtures = new URL('./fixtures/nvidia-smi/', import.meta.url).pathname;

/** The process of a local rank, from its handle's ref. */
const processOf = (handle: RankHandle) => readLocalRankRef(handle);

/** A local rank's log, read from the file its ref names (the conformance suite reads through `readLog`). */
function readLog(handle: RankHandle): string {
  try {
    return readFileSync(processOf(handle).logPath ?? '', 'utf8');
  } catch {
    return '';
  }
}

/** Kills the process groups of these ranks and waits until they are gone. */
async function killRankGroups(handles: readonly RankHandle[]): Promise<void> {
  for (const handle of handles) signalProcessGroup(processOf(handle).pid, 'SIGKILL');
  await waitUntil(() => handles.every((h) => !isProcessAlive(processOf(h).pid, processOf(h).pidStartTime)), 'killed ranks to be gone', 5_000);
}

async function makeLocalHarness(options: Partial<LocalBackendOptions> = {}): Promise<ConformanceHarness> {
  const root = await mkdtemp(join(os.tmpdir(), 'tutti-local-backend-'));
  const workdir = join(root, 'work');
  mkdirSync(workdir);
  return {
    workdir,
    // A missing nvidia-smi unless the machine has one: the suite then runs CPU-only or on the real GPUs.
    createBackend: () => createLocalBackend({ dataDir: join(root, 'data'), pollIntervalMs: 50, ...options }),
    killRanks: killRankGroups,
    dispose: () => rm(root, { recursive: true, force: true }),
  };
}

describeExecutionBackendConformance('local backend', () => makeLocalHarness());
describeExecutionBackendConformance('local backend with fake GPUs', () => makeLocalHarness({ fakeGpus: '4:H100' }));

describe('local backend', () => {
  let root: string;
  let dataDir: string;
  let workdir: string;
  let backends: LocalBackend[];
  let launched: RankHandle[];
  let jobs = 0;

  beforeEach(async () => {
    root = await mkdtemp(join(os.tmpdir(), 'tutti-local-'));
    dataDir = join(root, 'data');
    workdir = join(root, 'work');
    mkdirSync(workdir);
    backends = [];
    launched = [];
  });

  afterEach(async () => {
    await killRankGroups(launched);
    for (const backend of backends) await backend.close();
    await rm(root, { recursive: true, force: true });
  });

  function newBackend(options: Partial<LocalBackendOptions> = {}): LocalBackend {
    const backend = createLocalBackend({ dataDir, nodeName: 'box', pollIntervalMs: 50, ...options });
    backends.push(backend);
    return backend;
  }

  const ranks = (count: number, gpus: number[] = []): RankLaunch[] =>
    Array.from({ length: count }, (_, rank) => ({ rank, localRank: rank, nodeRank: 0, node: 'box', gpus }));

  async function launch(backend: LocalBackend, command: string | string[], count = 1, extra: { env?: Record<string, string>; gpus?: number[]; jobId?: string } = {}) {
    const jobId = extra.jobId ?? `job-${++jobs}`;
    const run = typeof command === 'string' ? { kind: 'shell' as const, command } : { kind: 'argv' as const, argv: command };
    const handles = await backend.launch({ jobId, jobName: 'test', run, workdir, env: extra.env ?? {}, ranks: ranks(count, extra.gpus) });
    launched.push(...handles);
    return { jobId, handles };
  }

  describe('inventory', () => {
    it('with fake GPUs: one ready node named as configured, at 127.0.0.1, with this machine\'s CPUs and memory', async () => {
      const [node] = await newBackend({ fakeGpus: '8:H100:80GB' }).inventory();
      expect(node).toMatchObject({ name: 'box', address: '127.0.0.1', state: 'ready', cpus: os.availableParallelism() });
      expect(node?.memoryMiB).toBe(Math.floor(os.totalmem() / 2 ** 20));
      expect(node?.gpus.map((g) => [g.index, g.uuid, g.type, g.memoryMiB])).toEqual(
        Array.from({ length: 8 }, (_, i) => [i, `FAKE-box-${i}`, 'H100', 81920]));
      expect(node?.gpus[0]?.nvlinkPeers).toEqual([1, 2, 3, 4, 5, 6, 7]);
    });

    it('defaults to the hostname, and to type FAKE with 80 GiB for fake GPUs', async () => {
      const inventory = await discoverLocalInventory({ fakeGpus: '2' });
      expect(inventory.node.name).toBe(os.hostname());
      expect(inventory.gpuSource).toBe('fake');
      expect(inventory.node.gpus.map((g) => [g.type, g.memoryMiB])).toEqual([['FAKE', 81920], ['FAKE', 81920]]);
    });

    it('is a node with no GPUs where there is no nvidia-smi', async () => {
      const inventory = await newBackend({ nvidiaSmi: join(root, 'no-such-nvidia-smi') }).localInventory();
      expect([inventory.gpuSource, inventory.node.gpus, inventory.warnings]).toEqual(['none', [], []]);
    });

    it('reads GPUs and NVLink peers from nvidia-smi', async () => {
      const nvidiaSmi = join(root, 'nvidia-smi');
      writeFileSync(nvidiaSmi, [
        '#!/bin/sh',
        `case "$1" in topo) cat '${fixtures}a100-pcie-4x.topo-m.txt';; *) cat '${fixtures}a100-pcie-4x.query-gpu.csv';; esac`,
      ].join('\n'), { mode: 0o755 });
      const inventory = await newBackend({ nvidiaSmi }).localInventory();
      expect(inventory.gpuSource).toBe('nvidia-smi');
      expect(inventory.node.gpus.map((g) => [g.index, g.type, g.product, g.memoryMiB, g.nvlinkPeers])).toEqual([
        [0, 'A100', 'NVIDIA A100 80GB PCIe', 81920, [1]],
        [1, 'A100', 'NVIDIA A100 80GB PCIe', 81920, [0]],
        [2, 'A100', 'NVIDIA A100 80GB PCIe', 81920, [3]],
        [3, 'A100', 'NVIDIA A100 80GB PCIe', 81920, [2]],
      ]);
      expect(inventory.node.gpus[0]?.uuid).toMatch(/^GPU-/);
    });

    it('warns and has no GPUs when nvidia-smi fails', async () => {
      const nvidiaSmi = join(root, 'nvidia-smi');
      writeFileSync(nvidiaSmi, '#!/bin/sh\necho "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."\nexit 9\n', { mode: 0o755 });
      const inventory = await newBackend({ nvidiaSmi }).localInventory();
      expect(inventory.node.gpus).toEqual([]);
      expect(inventory.warnings.join('\n')).toMatch(/nvidia-smi failed.*NVIDIA-SMI has failed/);
    });

    it('samples GPU gauges through nvidia-smi (a script replaying recorded output: no GPU on this machine)', async () => {
      const nvidiaSmi = join(root, 'nvidia-smi');
      writeFileSync(nvidiaSmi, [
        '#!/bin/sh',
        `case "$1" in topo) cat '${fixtures}h100-sxm-8x.topo-m.txt';; --query-gpu=index,uuid,name,*) cat '${fixtures}h100-sxm-8x.query-gpu.csv';; *) cat '${fixtures}h100-sxm-8x.query-metrics.csv';; esac`,
      ].join('\n'), { mode: 0o755 });
      const backend = newBackend({ nvidiaSmi, nodeName: 'gpu-box' });
      const reading = await backend.sampleGpus();
      expect(reading.warning).toBeUndefined();
      expect(reading.samples.map((s) => [s.node, s.gpuIndex, s.utilizationPct, s.powerW])).toEqual([
        ['gpu-box', 0, 100, 688.41], ['gpu-box', 1, 98, 671.02], ['gpu-box', 2, 99, 690.55], ['gpu-box', 3, 97, 664.87],
        ['gpu-box', 4, 0, 69.74], ['gpu-box', 5, 0, 70.12], ['gpu-box', 6, 0, 68.9], ['gpu-box', 7, 0, 71.38],
      ]);
      expect(reading.samples[0]).toMatchObject({ memoryUsedMiB: 61237, memoryTotalMiB: 81559, temperatureC: 64 });
    });

    it('reports a failed GPU reading as a warning and no samples', async () => {
      const nvidiaSmi = join(root, 'nvidia-smi');
      writeFileSync(nvidiaSmi, [
        '#!/bin/sh',
        `case "$1" in --query-gpu=index,uuid,name,*) cat '${fixtures}a100-pcie-4x.query-gpu.csv';; topo) exit 1;; *) echo 'Unable to determine the device handle for GPU0000:17:00.0: Unknown Error'; exit 15;; esac`,
      ].join('\n'), { mode: 0o755 });
      const reading = await newBackend({ nvidiaSmi }).sampleGpus();
      expect(reading.samples).toEqual([]);
      expect(reading.warning).toMatch(/nvidia-smi metrics query failed: Unable to determine the device handle/);
    });

    it('invents no GPU figures for fake GPUs', async () => {
      const reading = await newBackend({ fakeGpus: '2' }).sampleGpus();
      expect(reading).toEqual({ samples: [] });
    });

    it('refuses a malformed fakeGpus at creation', () => {
      expect(() => createLocalBackend({ dataDir, fakeGpus: '8:H100:lots' })).toThrow(/fakeGpus: GPU memory "lots".*N\[:TYPE\[:MEMORY\]\]/);
    });
  });

  describe('launch', () => {
    it('keeps log, pid and exit files in the job directory and installs the supervisor once', async () => {
      const backend = newBackend();
      const exits = recordExits(backend);
      const { jobId, handles } = await launch(backend, 'echo out; echo err >&2; exit 3');
      await exits.waitFor(jobId, 1);
      const jobDir = join(dataDir, 'jobs', jobId);
      expect(processOf(handles[0]!).logPath).toBe(join(jobDir, 'rank-0.log'));
      expect(readFileSync(join(jobDir, 'rank-0.log'), 'utf8')).toBe('out\nerr\n');
      expect(readFileSync(join(jobDir, 'rank-0.pid'), 'utf8').trim()).toBe(String(processOf(handles[0]!).pid));
      expect(readFileSync(join(jobDir, 'rank-0.exit'), 'utf8')).toBe('3\n');
      expect(existsSync(join(jobDir, 'rank-0.exit.tmp'))).toBe(false);
      expect(readFileSync(join(dataDir, 'bin', 'rank-supervisor.sh'), 'utf8')).toBe(RANK_SUPERVISOR_SCRIPT);
    });

    it('starts each rank as the leader of its own session and process group, with the start time in its handle', async () => {
      const backend = newBackend();
      const { handles } = await launch(backend, 'sleep 30', 2);
      for (const handle of handles) {
        const { pid, pidStartTime } = processOf(handle);
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').slice(readFileSync(`/proc/${pid}/stat`, 'utf8').lastIndexOf(')') + 2).split(' ');
        expect([Number(stat[2]), Number(stat[3])]).toEqual([pid, pid]);
        expect(pidStartTime).toBe(readProcessStartTime(pid));
      }
    });

    it('with fake GPUs: sets CUDA_VISIBLE_DEVICES to the fake indices, and to empty for a CPU-only job', async () => {
      const backend = newBackend({ fakeGpus: '4' });
      const exits = recordExits(backend);
      const gpu = await launch(backend, 'echo "[$CUDA_VISIBLE_DEVICES]"', 2, { gpus: [2, 3] });
      const cpu = await launch(backend, 'echo "[$CUDA_VISIBLE_DEVICES]"', 1, { env: { CUDA_VISIBLE_DEVICES: '0' } });
      await exits.waitFor(gpu.jobId, 2);
      await exits.waitFor(cpu.jobId, 1);
      expect(gpu.handles.map(readLog)).toEqual(['[2,3]\n', '[2,3]\n']);
      expect(readLog(cpu.handles[0]!)).toBe('[]\n');
    });

    it('lets two ranks reach each other at MASTER_ADDR:MASTER_PORT', async () => {
      const script = join(workdir, 'rendezvous.cjs');
      writeFileSync(script, `
        const net = require('node:net');
        const { RANK, MASTER_ADDR, MASTER_PORT } = process.env;
        if (RANK === '0') {
          const server = net.createServer((socket) => socket.on('data', (data) => {
            console.log('rank 0 got ' + data);
            socket.end('pong', () => server.close());
          }));
          server.listen(Number(MASTER_PORT), MASTER_ADDR);
        } else {
          const attempt = () => {
            const socket = net.connect(Number(MASTER_PORT), MASTER_ADDR, () => socket.write('ping from ' + RANK));
            socket.on('data', (data) => console.log('rank ' + RANK + ' got ' + data));
            socket.on('error', () => setTimeout(attempt, 50));
          };
          attempt();
        }
      `);
      const backend = newBackend();
      const exits = recordExits(backend);
      const { jobId, handles } = await launch(backend, [process.execPath, script], 2);
      expect((await exits.waitFor(jobId, 2)).map((e) => e.exitCode)).toEqual([0, 0]);
      expect(readLog(handles[0]!)).toBe('rank 0 got ping from 1\n');
      expect(readLog(handles[1]!)).toBe('rank 1 got pong\n');
    });

    it('rejects ranks placed on another node, and a relative workdir, before starting anything', async () => {
      const backend = newBackend();
      const request = { jobId: 'x', jobName: 'x', run: { kind: 'shell' as const, command: 'true' }, env: {} };
      await expect(backend.launch({ ...request, ranks: [{ rank: 0, localRank: 0, nodeRank: 0, node: 'elsewhere', gpus: [] }] }))
        .rejects.toMatchObject({ code: 'WrongNode', message: expect.stringContaining('"elsewhere"') });
      await expect(backend.launch({ ...request, workdir: 'relative/dir', ranks: ranks(1) }))
        .rejects.toMatchObject({ code: 'WorkdirMissing' });
      await expect(backend.launch({ ...request, ranks: [] })).rejects.toBeInstanceOf(LaunchError);
    });

    it('kills the ranks already started and rejects when a later rank cannot be spawned', async () => {
      const started: number[] = [];
      const failSecond: SpawnFunction = (command, args, options) => {
        const child = spawn(started.length === 0 ? command : join(root, 'no-such-shell'), [...args], options);
        if (child.pid !== undefined) started.push(child.pid);
        return child;
      };
      const backend = newBackend({ spawnProcess: failSecond });
      const exits = recordExits(backend);
      const marker = join(workdir, 'late');
      await expect(launch(backend, `sleep 1; touch '${marker}'`, 3)).rejects.toMatchObject({
        name: 'LaunchError', code: 'SpawnFailed', message: expect.stringMatching(/rank 1 .*ENOENT/),
      });
      expect(started).toHaveLength(1);
      expect(() => process.kill(started[0]!, 0)).toThrow();
      await sleep(1_500);
      expect(existsSync(marker)).toBe(false);
      expect(exits.exits).toEqual([]);
    });

    it('starts a relaunch of the same job id clean, without the previous attempt\'s exit status', async () => {
      const first = newBackend();
      const exits = recordExits(first);
      const { jobId } = await launch(first, 'exit 5');
      await exits.waitFor(jobId, 1);
      const again = await launch(first, 'sleep 30', 1, { jobId });
      await first.close();
      const second = newBackend();
      expect((await second.adopt(again.handles)).map((o) => o.state)).toEqual(['running']);
    });
  });

  describe('exits and stop', () => {
    it('stop kills the whole process group, children included', async () => {
      const backend = newBackend();
      const { handles } = await launch(backend, 'trap "" TERM; sleep 30 & echo "child $!"; wait');
      await waitUntil(() => readLog(handles[0]!).includes('child'), 'the child pid');
      const child = Number(/child (\d+)/.exec(readLog(handles[0]!))?.[1]);
      const childStart = readProcessStartTime(child) ?? 0;
      expect(isProcessAlive(child, childStart)).toBe(true);
      await backend.stop(handles, { graceMs: 200 });
      expect(isProcessAlive(child, childStart)).toBe(false);
    });

    it('kills what a rank left running in its process group once the rank exits', async () => {
      const backend = newBackend();
      const exits = recordExits(backend);
      const { jobId, handles } = await launch(backend, 'sleep 30 & echo "child $!"; exit 0');
      await exits.waitFor(jobId, 1);
      const child = Number(/child (\d+)/.exec(readLog(handles[0]!))?.[1]);
      expect(child).toBeGreaterThan(0);
      await waitUntil(() => !isProcessAlive(child, 0), 'the left-over child to be killed', 3_000);
    });

    it('reports an adopted rank that is killed behind the backend\'s back as lost', async () => {
      const first = newBackend();
      const { jobId, handles } = await launch(first, 'sleep 30');
      await first.close();
      const second = newBackend();
      const exits = recordExits(second);
      expect((await second.adopt(handles)).map((o) => o.state)).toEqual(['running']);
      signalProcessGroup(processOf(handles[0]!).pid, 'SIGKILL');
      expect((await exits.waitFor(jobId, 1)).map((e) => [e.exitCode, e.signal, e.lost])).toEqual([[null, undefined, true]]);
    });

    it('reports a spawned rank whose supervisor is killed by someone else with the signal', async () => {
      const backend = newBackend();
      const exits = recordExits(backend);
      const { jobId, handles } = await launch(backend, 'sleep 30');
      await sleep(100);
      signalProcessGroup(processOf(handles[0]!).pid, 'SIGKILL');
      expect((await exits.waitFor(jobId, 1)).map((e) => [e.exitCode, e.signal, e.lost])).toEqual([[137, 'SIGKILL', false]]);
    });

    it('adopt calls a handle from another node, or one whose PID now belongs to another process, lost', async () => {
      const backend = newBackend();
      const me: RankHandle = {
        backend: 'local', jobId: 'impostor', rank: 0, node: 'box', startedAt: 0,
        ref: { pid: process.pid, pidStartTime: (readProcessStartTime(process.pid) ?? 0) + 1, logPath: '/dev/null' },
      };
      const observations = await backend.adopt([me, { ...me, node: 'other' }]);
      expect(observations.map((o) => o.state)).toEqual(['lost', 'lost']);
      expect(observations[1]?.state === 'lost' && observations[1].detail).toMatch(/"other"/);
    });

    it('stop adopts a handle it was not given before, and still escalates', async () => {
      const first = newBackend();
      const { jobId, handles } = await launch(first, 'trap "" TERM; while :; do sleep 0.05; done');
      await sleep(100);
      await first.close();
      const second = newBackend();
      const exits = recordExits(second);
      await second.stop(handles, { graceMs: 200 });
      expect(exits.of(jobId).map((e) => [e.exitCode, e.signal, e.lost])).toEqual([[137, 'SIGKILL', false]]);
    });

    it('refuses work after close, and close leaves ranks running', async () => {
      const backend = newBackend();
      const { handles } = await launch(backend, 'sleep 30');
      await backend.close();
      expect(isProcessAlive(processOf(handles[0]!).pid, processOf(handles[0]!).pidStartTime)).toBe(true);
      await expect(backend.adopt(handles)).rejects.toThrow(/closed/);
      await expect(launch(backend, 'true')).rejects.toThrow(/closed/);
    });
  });
});
