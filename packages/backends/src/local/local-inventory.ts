/**
 * The one node the local backend runs: this machine, its CPUs and memory, and its GPUs as nvidia-smi reports them
 * (or fake ones).
 */
import { execFile } from 'node:child_process';
import os from 'node:os';
import { formatFieldErrors, normalizeGpuType, type GpuDevice, type NodeInfo } from '@tutti/model';
import { computeFakeGpuDevices, parseFakeGpus } from './fake-gpus.ts';
import {
  NVIDIA_SMI_QUERY_ARGS,
  NVIDIA_SMI_TOPOLOGY_ARGS,
  computeNvlinkPeers,
  parseNvidiaSmiGpuList,
  parseNvidiaSmiTopology,
} from './nvidia-smi.ts';

export interface LocalInventoryOptions {
  /** `N[:TYPE[:MEMORY]]` (see `parseFakeGpus`): use fake GPUs instead of asking nvidia-smi. */
  fakeGpus?: string;
  /** @default os.hostname() */
  nodeName?: string;
  /** The address ranks on other machines would use. @default '127.0.0.1' (the local backend is one machine) */
  address?: string;
  /** The nvidia-smi program. @default 'nvidia-smi' (looked up on PATH) */
  nvidiaSmi?: string;
  /** Time allowed for each nvidia-smi call. @default 15000 */
  nvidiaSmiTimeoutMs?: number;
}

/** Where the node's GPUs came from. */
export type GpuSource = 'nvidia-smi' | 'fake' | 'none';

export interface LocalInventory {
  node: NodeInfo;
  gpuSource: GpuSource;
  /** Things an operator should hear about (nvidia-smi present but failing, topology unreadable); never fatal. */
  warnings: string[];
}

export const LOCAL_NODE_ADDRESS = '127.0.0.1';

/**
 * Discovers this machine. With `fakeGpus`, the GPUs are fake; otherwise nvidia-smi is asked, and a machine without
 * it (or where it fails) is a node with no GPUs, on which CPU-only jobs still run.
 *
 * Throws only for a malformed `fakeGpus` (a configuration mistake, reported with the expected form).
 */
export async function discoverLocalInventory(options: LocalInventoryOptions = {}): Promise<LocalInventory> {
  const name = options.nodeName ?? os.hostname();
  const warnings: string[] = [];
  let gpus: GpuDevice[] = [];
  let gpuSource: GpuSource = 'none';
  if (options.fakeGpus !== undefined) {
    const parsed = parseFakeGpus(options.fakeGpus);
    if (!parsed.ok) throw new Error(formatFieldErrors(parsed.errors));
    gpus = computeFakeGpuDevices(parsed.value, name);
    gpuSource = 'fake';
  } else {
    const found = await discoverNvidiaGpus(options.nvidiaSmi ?? 'nvidia-smi', options.nvidiaSmiTimeoutMs ?? 15_000, warnings);
    if (found !== undefined) {
      gpus = found;
      gpuSource = 'nvidia-smi';
    }
  }
  const node: NodeInfo = {
    name,
    address: options.address ?? LOCAL_NODE_ADDRESS,
    gpus,
    cpus: os.availableParallelism(),
    memoryMiB: Math.floor(os.totalmem() / (1024 * 1024)),
    labels: {},
    state: 'ready',
  };
  return { node, gpuSource, warnings };
}

/** The GPUs nvidia-smi lists, or undefined when there is no nvidia-smi or it fails (then a warning says why). */
async function discoverNvidiaGpus(program: string, timeoutMs: number, warnings: string[]): Promise<GpuDevice[] | undefined> {
  const list = await runProgram(program, NVIDIA_SMI_QUERY_ARGS, timeoutMs);
  if (list.kind === 'missing') return undefined;
  if (list.kind === 'failed') {
    warnings.push(`nvidia-smi failed, so this node has no GPUs: ${list.message}`);
    return undefined;
  }
  const parsed = parseNvidiaSmiGpuList(list.stdout);
  if (!parsed.ok) {
    warnings.push(`could not read the output of nvidia-smi, so this node has no GPUs: ${formatFieldErrors(parsed.errors)}`);
    return undefined;
  }
  let peers = new Map<number, number[]>();
  if (parsed.value.length > 1) {
    const topo = await runProgram(program, NVIDIA_SMI_TOPOLOGY_ARGS, timeoutMs);
    if (topo.kind !== 'ok') {
      warnings.push(`nvidia-smi topo -m failed, so no NVLink peers are known: ${topo.kind === 'failed' ? topo.message : 'not found'}`);
    } else {
      const matrix = parseNvidiaSmiTopology(topo.stdout);
      if (matrix.ok) peers = computeNvlinkPeers(matrix.value);
      else warnings.push(`could not read nvidia-smi topo -m, so no NVLink peers are known: ${formatFieldErrors(matrix.errors)}`);
    }
  }
  return parsed.value
    .map((gpu) => ({
      index: gpu.index,
      uuid: gpu.uuid,
      type: normalizeGpuType(gpu.product),
      product: gpu.product,
      memoryMiB: gpu.memoryMiB,
      nvlinkPeers: peers.get(gpu.index) ?? [],
    }))
    .sort((a, b) => a.index - b.index);
}

export type ProgramResult = { kind: 'ok'; stdout: string } | { kind: 'missing' } | { kind: 'failed'; message: string };

/** Runs a program and collects its stdout; a missing program and a failure are values. */
export function runProgram(program: string, args: readonly string[], timeoutMs: number): Promise<ProgramResult> {
  return new Promise((resolve) => {
    execFile(program, [...args], { timeout: timeoutMs, encoding: 'utf8', maxBuffer: 4 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (!error) return resolve({ kind: 'ok', stdout });
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return resolve({ kind: 'missing' });
      const detail = (stderr || stdout || error.message).trim().split('\n')[0] ?? error.message;
      resolve({ kind: 'failed', message: detail });
    });
  });
}
