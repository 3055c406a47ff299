import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { normalizeGpuType } from '@tutti/model';

describe('normalizeGpuType', () => {
  it.each([
    ['NVIDIA H100 80GB HBM3', 'H100'],
    ['NVIDIA H100 PCIe', 'H100'],
    ['NVIDIA H100 NVL', 'H100'],
    ['NVIDIA H200', 'H200'],
    ['NVIDIA GH200 480GB', 'GH200'],
    ['NVIDIA A100-SXM4-80GB', 'A100'],
    ['NVIDIA A100-SXM4-40GB', 'A100'],
    ['NVIDIA A100 80GB PCIe', 'A100'],
    ['NVIDIA A100-PCIE-40GB', 'A100'],
    ['NVIDIA A10G', 'A10G'],
    ['Tesla V100-SXM2-16GB', 'V100'],
    ['Tesla V100S-PCIE-32GB', 'V100S'],
    ['Tesla P100-PCIE-16GB', 'P100'],
    ['Tesla T4', 'T4'],
    ['Tesla K80', 'K80'],
    ['NVIDIA L4', 'L4'],
    ['NVIDIA L40S', 'L40S'],
    ['NVIDIA GeForce RTX 4090', 'RTX4090'],
    ['NVIDIA GeForce RTX 3080 Laptop GPU', 'RTX3080'],
    ['NVIDIA GeForce GTX 1080 Ti', 'GTX1080TI'],
    ['NVIDIA RTX A6000', 'A6000'],
    ['Quadro RTX 8000', 'RTX8000'],
    ['NVIDIA RTX 6000 Ada Generation', 'RTX6000ADA'],
    ['AMD Instinct MI300X', 'MI300X'],
    ['h100', 'H100'],
    ['  a100 ', 'A100'],
    ['rtx4090', 'RTX4090'],
    ['H100', 'H100'],
    ['', ''],
  ])('%j → %j', (product, type) => {
    expect(normalizeGpuType(product)).toBe(type);
  });

  it('is idempotent', () => {
    fc.assert(fc.property(fc.string(), (text) => {
      const once = normalizeGpuType(text);
      expect(normalizeGpuType(once)).toBe(once);
    }));
  });
});
