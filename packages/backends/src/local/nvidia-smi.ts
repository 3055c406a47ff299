/**
 * Parsers for the two nvidia-smi outputs the local inventory reads. Pure functions over text, tested on recorded
 * outputs in test/fixtures/nvidia-smi.
 */
import type { FieldError, ParseResult } from '@tutti/model';

/** The arguments that produce the text `parseNvidiaSmiGpuList` reads. */
export const NVIDIA_SMI_QUERY_ARGS: readonly string[] = [
  '--query-gpu=index,uuid,name,memory.total',
  '--format=csv,noheader,nounits',
];
/** The arguments that produce the text `parseNvidiaSmiTopology` reads. */
export const NVIDIA_SMI_TOPOLOGY_ARGS: readonly string[] = ['topo', '-m'];

/** One line of `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits`. */
export interface NvidiaSmiGpu {
  index: number;
  uuid: string;
  /** The product name, e.g. `NVIDIA H100 80GB HBM3`. */
  product: string;
  /** Total memory in MiB; 0 when the driver reports `[N/A]`. */
  memoryMiB: number;
}

/**
 * Parses the CSV of `--query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits`:
 * `0, GPU-3c2a…, NVIDIA H100 80GB HBM3, 81559`. Blank lines are skipped; a line that does not parse is an error.
 */
export function parseNvidiaSmiGpuList(text: string): ParseResult<NvidiaSmiGpu[]> {
  const gpus: NvidiaSmiGpu[] = [];
  const errors: FieldError[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '') return;
    const fields = line.split(',').map((f) => f.trim());
    if (fields.length < 4) {
      errors.push({ path: `line ${i + 1}`, message: `expected "index, uuid, name, memory.total", got "${line}"`, line: i + 1 });
      return;
    }
    // The product name is the middle: should a name ever contain a comma, it is kept whole.
    const [indexText, uuid] = fields;
    const memoryText = fields[fields.length - 1] ?? '';
    const product = fields.slice(2, -1).join(', ');
    const index = Number(indexText);
    if (!/^\d+$/.test(indexText ?? '') || !Number.isSafeInteger(index)) {
      errors.push({ path: `line ${i + 1}`, message: `GPU index "${indexText}" is not a whole number`, line: i + 1 });
      return;
    }
    const memoryMiB = /^\d+(\.\d+)?$/.test(memoryText) ? Math.floor(Number(memoryText)) : 0;
    if (memoryMiB === 0 && !/^\[?N\/A\]?$/i.test(memoryText) && memoryText !== '0') {
      errors.push({ path: `line ${i + 1}`, message: `memory.total "${memoryText}" is not a number of MiB`, line: i + 1 });
      return;
    }
    gpus.push({ index, uuid: uuid ?? '', product, memoryMiB });
  });
  return errors.length > 0 ? { ok: false, errors } : { ok: true, value: gpus };
}

/** The GPU-to-GPU part of `nvidia-smi topo -m`: `links.get(a)?.get(b)` is how GPU a reaches GPU b. */
export interface GpuLinkMatrix {
  /** GPU indices in the order of the matrix. */
  gpus: number[];
  /** Link names as nvidia-smi prints them: `X` (self), `NV18` (18 bonded NVLinks), `PIX`, `PXB`, `PHB`, `NODE`, `SYS`. */
  links: Map<number, Map<number, string>>;
}

// nvidia-smi underlines the header row with terminal escapes on some versions.
// eslint-disable-next-line no-control-regex
const ANSI_ESCAPE_RE = /\x1b\[[0-9;]*[A-Za-z]/g;
const DEVICE_RE = /^(GPU\d+|NIC\d+|mlx\d+_\d+|mlx\S*)$/;
const GPU_RE = /^GPU(\d+)$/;

/**
 * Parses the matrix of `nvidia-smi topo -m`. The header names the devices (`GPU0 … GPU7 NIC0 … CPU Affinity …`);
 * each `GPUn` row then has one single-word cell per device, followed by affinity columns that are ignored (they
 * may be empty). NIC rows and the legend are skipped. Tabs and runs of spaces both separate cells, so a
 * copy-pasted matrix parses too.
 */
export function parseNvidiaSmiTopology(text: string): ParseResult<GpuLinkMatrix> {
  const lines = text.replace(ANSI_ESCAPE_RE, '').split(/\r?\n/);
  const tokensOf = (line: string) => line.trim().split(/\s+/).filter((t) => t !== '');
  // The header is the first line that starts with a device name not followed by a link cell ("X" on the diagonal).
  const headerIndex = lines.findIndex((line) => {
    const tokens = tokensOf(line);
    return tokens[0] !== undefined && DEVICE_RE.test(tokens[0]) && tokens[1] !== 'X' && !isLinkName(tokens[1] ?? '');
  });
  const header = headerIndex >= 0 ? tokensOf(lines[headerIndex] ?? '') : [];
  const devices: string[] = [];
  for (const token of header) {
    if (!DEVICE_RE.test(token)) break;
    devices.push(token);
  }
  if (devices.length === 0) {
    return { ok: false, errors: [{ path: 'header', message: 'no device header (GPU0 GPU1 … CPU Affinity) found in nvidia-smi topo -m output' }] };
  }
  const gpus: number[] = [];
  const links = new Map<number, Map<number, string>>();
  const errors: FieldError[] = [];
  for (let i = headerIndex + 1; i < lines.length; i++) {
    const tokens = tokensOf(lines[i] ?? '');
    const rowGpu = GPU_RE.exec(tokens[0] ?? '');
    if (!rowGpu) {
      if ((tokens[0] ?? '').startsWith('Legend')) break;
      continue;
    }
    const cells = tokens.slice(1, 1 + devices.length);
    if (cells.length < devices.length || !cells.every((c) => c === 'X' || isLinkName(c))) {
      errors.push({ path: `line ${i + 1}`, message: `expected ${devices.length} link cells after ${tokens[0]}, got "${(lines[i] ?? '').trim()}"`, line: i + 1 });
      continue;
    }
    const from = Number(rowGpu[1]);
    const row = new Map<number, string>();
    devices.forEach((device, column) => {
      const toGpu = GPU_RE.exec(device);
      if (toGpu) row.set(Number(toGpu[1]), cells[column] ?? '');
    });
    gpus.push(from);
    links.set(from, row);
  }
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, value: { gpus, links } };
}

function isLinkName(cell: string): boolean {
  return /^(NV\d+|PIX|PXB|PHB|NODE|SYS|SOC|X)$/.test(cell);
}

/** NVLink peers of every GPU: the GPUs it reaches through `NV#` links, ascending. */
export function computeNvlinkPeers(matrix: GpuLinkMatrix): Map<number, number[]> {
  const peers = new Map<number, number[]>();
  for (const gpu of matrix.gpus) {
    const row = matrix.links.get(gpu) ?? new Map<number, string>();
    const nv = [...row].filter(([other, link]) => other !== gpu && /^NV\d+$/.test(link)).map(([other]) => other);
    peers.set(gpu, nv.sort((a, b) => a - b));
  }
  return peers;
}

/** The arguments that produce the text `parseNvidiaSmiMetrics` reads. */
export const NVIDIA_SMI_METRICS_ARGS: readonly string[] = [
  '--query-gpu=index,uuid,utilization.gpu,memory.used,memory.total,power.draw,temperature.gpu',
  '--format=csv,noheader,nounits',
];

/** One GPU's gauges at one moment. A figure the driver does not report (`[N/A]`, `[Not Supported]`) is null. */
export interface NvidiaSmiGpuMetrics {
  index: number;
  uuid: string;
  /** Percent of the last sample period during which a kernel ran (0–100). */
  utilizationPct: number | null;
  memoryUsedMiB: number | null;
  memoryTotalMiB: number | null;
  powerW: number | null;
  temperatureC: number | null;
}

const METRIC_COLUMNS = ['utilization.gpu', 'memory.used', 'memory.total', 'power.draw', 'temperature.gpu'] as const;

/**
 * Parses the CSV of `NVIDIA_SMI_METRICS_ARGS`: `0, GPU-3c2a…, 97, 61237, 81559, 688.41, 64`. Unreported values
 * (`[N/A]`, `[Not Supported]`, `N/A`) become null, so a MIG-partitioned GPU (no utilization) or a board without a
 * power sensor still yields a sample; anything else that is not a number makes the line an error.
 */
export function parseNvidiaSmiMetrics(text: string): ParseResult<NvidiaSmiGpuMetrics[]> {
  const samples: NvidiaSmiGpuMetrics[] = [];
  const errors: FieldError[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '') return;
    const fields = line.split(',').map((f) => f.trim());
    const where = { path: `line ${i + 1}`, line: i + 1 };
    if (fields.length !== 2 + METRIC_COLUMNS.length) {
      errors.push({ ...where, message: `expected "index, uuid, ${METRIC_COLUMNS.join(', ')}", got "${line}"` });
      return;
    }
    const [indexText = '', uuid = ''] = fields;
    if (!/^\d+$/.test(indexText)) {
      errors.push({ ...where, message: `GPU index "${indexText}" is not a whole number` });
      return;
    }
    const values: Array<number | null> = [];
    for (const [column, name] of METRIC_COLUMNS.entries()) {
      const text = fields[2 + column] ?? '';
      if (/^\[?(N\/A|Not Supported|Unknown Error|Requested functionality has been deprecated)\]?$/i.test(text)) values.push(null);
      else if (/^-?\d+(\.\d+)?$/.test(text)) values.push(Number(text));
      else {
        errors.push({ ...where, message: `${name} "${text}" is not a number` });
        return;
      }
    }
    const [utilizationPct, memoryUsedMiB, memoryTotalMiB, powerW, temperatureC] = values as [number | null, number | null, number | null, number | null, number | null];
    samples.push({ index: Number(indexText), uuid, utilizationPct, memoryUsedMiB, memoryTotalMiB, powerW, temperatureC });
  });
  return errors.length > 0 ? { ok: false, errors } : { ok: true, value: samples };
}
