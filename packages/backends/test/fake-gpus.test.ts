import { describe, expect, it } from 'vitest';
import { computeFakeGpuDevices, parseFakeGpus } from '@tutti/backends';

describe('parseFakeGpus', () => {
  it.each([
    ['4', { count: 4, type: 'FAKE', memoryMiB: 81920 }],
    ['8:H100', { count: 8, type: 'H100', memoryMiB: 81920 }],
    ['8:h100:80GB', { count: 8, type: 'H100', memoryMiB: 81920 }],
    ['2:A100:40GiB', { count: 2, type: 'A100', memoryMiB: 40960 }],
    ['2::24GB', { count: 2, type: 'FAKE', memoryMiB: 24576 }],
    ['1:T4:15360', { count: 1, type: 'T4', memoryMiB: 15360 }],
    [' 0 ', { count: 0, type: 'FAKE', memoryMiB: 81920 }],
  ])('reads "%s"', (input, expected) => {
    expect(parseFakeGpus(input)).toEqual({ ok: true, value: expected });
  });

  it.each([
    ['', /count "" is not a whole number/],
    ['four', /count "four" is not a whole number/],
    ['-1', /not a whole number/],
    ['1.5', /not a whole number/],
    ['65', /more than 64/],
    ['8:H/100', /type "H\/100"/],
    ['8:H100:lots', /memory "lots"/],
    ['8:H100:0GB', /memory "0GB"/],
    ['8:H100:80GB:extra', /more than three parts/],
  ])('rejects "%s" with a message that shows the expected form', (input, message) => {
    const parsed = parseFakeGpus(input);
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.errors[0]?.path).toBe('fakeGpus');
    expect(parsed.errors[0]?.message).toMatch(message);
    expect(parsed.errors[0]?.message).toMatch(/expected N\[:TYPE\[:MEMORY\]\]/);
  });
});

describe('computeFakeGpuDevices', () => {
  it('numbers the devices, names them after the node and makes them all NVLink peers', () => {
    const gpus = computeFakeGpuDevices({ count: 3, type: 'H100', memoryMiB: 1024 }, 'box');
    expect(gpus.map((g) => [g.index, g.uuid, g.type, g.memoryMiB, g.nvlinkPeers])).toEqual([
      [0, 'FAKE-box-0', 'H100', 1024, [1, 2]],
      [1, 'FAKE-box-1', 'H100', 1024, [0, 2]],
      [2, 'FAKE-box-2', 'H100', 1024, [0, 1]],
    ]);
  });
});
