import { describe, expect, it } from 'vitest';
import { gpuClaimConflict, shareFitsGpu } from '../src/index.ts';

const free = { heldWhole: false, share: 0, memoryMiB: 0 };

describe('the fractional-GPU sharing rule', () => {
  it('lets shares fill one GPU exactly, floating-point sums included, and no further', () => {
    expect(shareFitsGpu(0.1 + 0.2, 0, 0.7, 0, 40_960)).toBe(true);
    expect(shareFitsGpu(0.75, 0, 0.25, 0, 40_960)).toBe(true);
    expect(shareFitsGpu(0.75, 0, 0.26, 0, 40_960)).toBe(false);
  });

  it('keeps the shares within the GPU memory', () => {
    expect(shareFitsGpu(0.25, 30_720, 0.25, 10_240, 40_960)).toBe(true);
    expect(shareFitsGpu(0.25, 30_720, 0.25, 10_241, 40_960)).toBe(false);
    expect(gpuClaimConflict({ heldWhole: false, share: 0.25, memoryMiB: 30_720 }, { share: 0.25, memoryMiB: 20_480 }, 40_960)).toBe('over_memory');
    expect(gpuClaimConflict({ heldWhole: false, share: 0.75, memoryMiB: 0 }, { share: 0.5, memoryMiB: 0 }, 40_960)).toBe('over_share');
  });

  it('never shares a GPU with a whole-GPU job', () => {
    expect(gpuClaimConflict({ heldWhole: true, share: 0, memoryMiB: 0 }, { share: 0.1, memoryMiB: 0 }, 40_960)).toBe('held_whole');
    expect(gpuClaimConflict({ heldWhole: false, share: 0.1, memoryMiB: 1024 }, { share: undefined, memoryMiB: 0 }, 40_960)).toBe('shared');
    expect(gpuClaimConflict({ heldWhole: true, share: 0, memoryMiB: 0 }, { share: undefined, memoryMiB: 0 }, 40_960)).toBe('held_whole');
    expect(gpuClaimConflict(free, { share: undefined, memoryMiB: 0 }, 40_960)).toBeUndefined();
    expect(gpuClaimConflict(free, { share: 0.5, memoryMiB: 20_480 }, 40_960)).toBeUndefined();
  });
});
