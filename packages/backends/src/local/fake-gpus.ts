/**
 * Fake GPUs: a laptop without accelerators pretends to have some, so that scheduling, CUDA_VISIBLE_DEVICES and the
 * whole job lifecycle can be tried and tested. Processes run for real; only the devices are imaginary.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { normalizeGpuType, parseMemorySize, type GpuDevice, type ParseResult } from '@tutti/model';

export interface FakeGpuSpec {
  count: number;
  /** Short GPU type. @default 'FAKE' */
  type: string;
  /** Memory of each device in MiB. @default 81920 (80 GiB) */
  memoryMiB: number;
}

export const DEFAULT_FAKE_GPU_TYPE = 'FAKE';
export const DEFAULT_FAKE_GPU_MEMORY_MIB = 80 * 1024;
/** More than any real node has; a typo like "80" for "8" is caught. */
export const MAX_FAKE_GPUS = 64;

/**
 * Parses `N[:TYPE[:MEMORY]]`: "4", "8:H100", "8:H100:80GB", "2::24GB" (default type). TYPE is normalised like a
 * driver product name ("h100" → "H100"); MEMORY takes the units of job specs ("80GB", "24GiB", "40960" MiB).
 * N may be 0 (a node with no GPUs). Malformed input is an error value with a message that shows the expected form.
 */
export function parseFakeGpus(input: string): ParseResult<FakeGpuSpec> {
  const fail = (message: string): ParseResult<FakeGpuSpec> => ({
    ok: false,
    errors: [{ path: 'fakeGpus', message: `${message} (expected N[:TYPE[:MEMORY]], e.g. "8:H100:80GB")` }],
  });
  const parts = input.trim().split(':');
  if (parts.length > 3) return fail(`"${input}" has more than three parts`);
  const [countText = '', typeText = '', memoryText = ''] = parts.map((p) => p.trim());
  if (!/^\d+$/.test(countText)) return fail(`GPU count "${countText}" is not a whole number`);
  const count = Number(countText);
  if (count > MAX_FAKE_GPUS) return fail(`GPU count ${count} is more than ${MAX_FAKE_GPUS}`);
  let type = DEFAULT_FAKE_GPU_TYPE;
  if (typeText !== '') {
    if (!/^[A-Za-z0-9][A-Za-z0-9 ._-]*$/.test(typeText)) return fail(`GPU type "${typeText}" may only have letters, digits, ' ', '.', '_' and '-'`);
    type = normalizeGpuType(typeText);
  }
  let memoryMiB = DEFAULT_FAKE_GPU_MEMORY_MIB;
  if (memoryText !== '') {
    const parsed = parseMemorySize(memoryText);
    if (parsed === undefined || parsed <= 0) return fail(`GPU memory "${memoryText}" is not a size like 80GB`);
    memoryMiB = parsed;
  }
  return { ok: true, value: { count, type, memoryMiB } };
}

/**
 * The devices of a fake spec on `node`: indices 0..N-1, uuids `FAKE-<node>-<i>`, every device an NVLink peer of
 * every other (like an NVSwitch box), so that topology-aware placement has something to prefer.
 */
export function computeFakeGpuDevices(spec: FakeGpuSpec, node: string): GpuDevice[] {
  const indices = Array.from({ length: spec.count }, (_, i) => i);
  return indices.map((index) => ({
    index,
    uuid: `FAKE-${node}-${index}`,
    type: spec.type,
    product: spec.type === DEFAULT_FAKE_GPU_TYPE ? 'tutti fake GPU' : `tutti fake ${spec.type}`,
    memoryMiB: spec.memoryMiB,
    nvlinkPeers: indices.filter((other) => other !== index),
  }));
}

/**
 * The file in the data dir that remembers the fake GPUs a server last ran with. Jobs may hold those GPUs across a
 * restart; a plain `tutti up` after `tutti up --demo` (or `--fake-gpus N`) must bring the same devices back, or the
 * running jobs would hold GPUs the cluster no longer has.
 */
export const REMEMBERED_FAKE_GPUS_FILE = 'fake-gpus';

/** The `--fake-gpus` value this data dir last ran with, or undefined (never, or an unreadable or malformed file). */
export async function readRememberedFakeGpus(dataDir: string): Promise<string | undefined> {
  const text = await readFile(path.join(dataDir, REMEMBERED_FAKE_GPUS_FILE), 'utf8').catch(() => undefined);
  const value = text?.trim();
  return value !== undefined && parseFakeGpus(value).ok ? value : undefined;
}

/** Notes the `--fake-gpus` value a server runs with, for the next start on this data dir. */
export async function rememberFakeGpus(dataDir: string, fakeGpus: string): Promise<void> {
  await writeFile(path.join(dataDir, REMEMBERED_FAKE_GPUS_FILE), `${fakeGpus.trim()}\n`, { mode: 0o600 });
}
