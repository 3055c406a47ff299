import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { computeNvlinkPeers, parseNvidiaSmiGpuList, parseNvidiaSmiMetrics, parseNvidiaSmiTopology } from '@tutti/backends';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/nvidia-smi/${name}`, import.meta.url), 'utf8');

describe('parseNvidiaSmiGpuList', () => {
  it('reads an 8×H100 SXM box', () => {
    const parsed = parseNvidiaSmiGpuList(fixture('h100-sxm-8x.query-gpu.csv'));
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.value).toHaveLength(8);
    expect(parsed.value[0]).toEqual({ index: 0, uuid: 'GPU-3c2a4f7e-91d0-5b8e-2f4a-6d0e8c1b7a52', product: 'NVIDIA H100 80GB HBM3', memoryMiB: 81559 });
    expect(parsed.value.map((g) => g.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('reads a 4×A100 PCIe box', () => {
    const parsed = parseNvidiaSmiGpuList(fixture('a100-pcie-4x.query-gpu.csv'));
    expect(parsed.ok && parsed.value.map((g) => [g.index, g.product, g.memoryMiB])).toEqual([
      [0, 'NVIDIA A100 80GB PCIe', 81920], [1, 'NVIDIA A100 80GB PCIe', 81920],
      [2, 'NVIDIA A100 80GB PCIe', 81920], [3, 'NVIDIA A100 80GB PCIe', 81920],
    ]);
  });

  it.each([
    ['blank output (no GPUs)', '\n', []],
    ['CRLF line ends', '0, GPU-a, Tesla T4, 15360\r\n', [{ index: 0, uuid: 'GPU-a', product: 'Tesla T4', memoryMiB: 15360 }]],
    ['memory not available', '0, GPU-a, NVIDIA GH200 480GB, [N/A]', [{ index: 0, uuid: 'GPU-a', product: 'NVIDIA GH200 480GB', memoryMiB: 0 }]],
    ['a comma inside the name', '1, GPU-b, Odd, Name, 1024', [{ index: 1, uuid: 'GPU-b', product: 'Odd, Name', memoryMiB: 1024 }]],
  ])('accepts %s', (_name, text, expected) => {
    expect(parseNvidiaSmiGpuList(text)).toEqual({ ok: true, value: expected });
  });

  it.each([
    ['too few fields', 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver'],
    ['a non-numeric index', 'x, GPU-a, Tesla T4, 15360'],
    ['units left in', '0, GPU-a, Tesla T4, 15360 MiB'],
  ])('rejects %s with the line number', (_name, text) => {
    const parsed = parseNvidiaSmiGpuList(`0, GPU-ok, Tesla T4, 15360\n${text}`);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.errors[0]?.line).toBe(2);
  });
});

describe('parseNvidiaSmiTopology', () => {
  it('finds NV18 between every pair of an 8×H100 SXM box and ignores the NIC rows and columns', () => {
    const parsed = parseNvidiaSmiTopology(fixture('h100-sxm-8x.topo-m.txt'));
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.value.gpus).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(parsed.value.links.get(0)?.get(0)).toBe('X');
    expect(parsed.value.links.get(3)?.get(6)).toBe('NV18');
    expect(parsed.value.links.get(0)?.size).toBe(8);
    const peers = computeNvlinkPeers(parsed.value);
    for (let gpu = 0; gpu < 8; gpu++) expect(peers.get(gpu)).toEqual([0, 1, 2, 3, 4, 5, 6, 7].filter((g) => g !== gpu));
  });

  it('finds the two NV12 pairs of a 4×A100 PCIe box with an underlined header and no GPU NUMA ID column', () => {
    const parsed = parseNvidiaSmiTopology(fixture('a100-pcie-4x.topo-m.txt'));
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.value.links.get(0)?.get(2)).toBe('SYS');
    expect(parsed.value.links.get(2)?.get(3)).toBe('NV12');
    expect(Object.fromEntries(computeNvlinkPeers(parsed.value))).toEqual({ 0: [1], 1: [0], 2: [3], 3: [2] });
  });

  it('reads a single-GPU box and a space-separated copy of the matrix', () => {
    const single = parseNvidiaSmiTopology('\tGPU0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\nGPU0\t X \t0-15\t0\t\tN/A\n\nLegend:\n\n  X    = Self\n');
    expect(single.ok && Object.fromEntries(computeNvlinkPeers(single.value))).toEqual({ 0: [] });
    const spaced = parseNvidiaSmiTopology([
      '        GPU0    GPU1    GPU2    CPU Affinity    NUMA Affinity',
      'GPU0     X      NV4     NODE    0-31,64-95      0',
      'GPU1    NV4      X      NODE    0-31,64-95      0',
      'GPU2    NODE    NODE     X      0-31,64-95      0',
    ].join('\n'));
    expect(spaced.ok && Object.fromEntries(computeNvlinkPeers(spaced.value))).toEqual({ 0: [1], 1: [0], 2: [] });
  });

  it('reads rows whose CPU affinity cell is empty', () => {
    const parsed = parseNvidiaSmiTopology('\tGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\nGPU0\t X \tNV18\t44-51\t0\t\tN/A\nGPU1\tNV18\t X \t\t1\t\tN/A\n');
    expect(parsed.ok && Object.fromEntries(computeNvlinkPeers(parsed.value))).toEqual({ 0: [1], 1: [0] });
  });

  it('rejects output without a matrix, and a row with missing cells', () => {
    expect(parseNvidiaSmiTopology('No devices were found').ok).toBe(false);
    const short = parseNvidiaSmiTopology('\tGPU0\tGPU1\tCPU Affinity\nGPU0\t X \tNV18\t0-7\nGPU1\tNV18\n');
    expect(short.ok).toBe(false);
    if (!short.ok) expect(short.errors[0]?.message).toMatch(/expected 2 link cells after GPU1/);
  });
});

describe('parseNvidiaSmiMetrics', () => {
  it('reads an 8×H100 box with four GPUs training and four idle', () => {
    const parsed = parseNvidiaSmiMetrics(fixture('h100-sxm-8x.query-metrics.csv'));
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.value).toHaveLength(8);
    expect(parsed.value[0]).toEqual({
      index: 0, uuid: 'GPU-3c2a4f7e-91d0-5b8e-2f4a-6d0e8c1b7a52', utilizationPct: 100, memoryUsedMiB: 61237, memoryTotalMiB: 81559, powerW: 688.41, temperatureC: 64,
    });
    expect(parsed.value.filter((g) => (g.utilizationPct ?? 0) > 50).map((g) => g.index)).toEqual([0, 1, 2, 3]);
  });

  it('keeps a MIG GPU without utilization and a GPU without a power reading, as nulls', () => {
    const parsed = parseNvidiaSmiMetrics(fixture('a100-pcie-mig.query-metrics.csv'));
    expect(parsed.ok && parsed.value.map((g) => [g.index, g.utilizationPct, g.powerW])).toEqual([[0, null, 112.55], [1, 35, null]]);
  });

  it.each([
    ['too few fields (driver failure text)', 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver', /expected "index, uuid/],
    ['units left in', '0, GPU-a, 97 %, 100, 200, 50, 40', /utilization.gpu "97 %" is not a number/],
    ['a non-numeric index', 'x, GPU-a, 97, 100, 200, 50, 40', /GPU index "x"/],
  ])('rejects %s, naming the line and the field', (_name, text, message) => {
    const parsed = parseNvidiaSmiMetrics(`0, GPU-ok, 1, 2, 3, 4, 5\n${text}`);
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.errors[0]?.line).toBe(2);
    expect(parsed.errors[0]?.message).toMatch(message);
  });
});
