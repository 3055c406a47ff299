import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { formatDuration, formatMemoryMiB, parseDuration, parseMemorySize } from '@tutti/model';

describe('parseMemorySize', () => {
  it.each<[string | number, number]>([
    ['16GB', 16384],
    ['16G', 16384],
    ['16GiB', 16384],
    ['16gb', 16384],
    ['16Gi', 16384],
    ['40 GB', 40960],
    ['512MB', 512],
    ['512Mi', 512],
    ['512M', 512],
    ['512MiB', 512],
    ['1TB', 1048576],
    ['1TiB', 1048576],
    ['1.5GB', 1536],
    ['.5GB', 512],
    ['1024KiB', 1],
    ['1KB', 1], // rounded up: a request never shrinks
    ['1B', 1],
    ['0', 0],
    ['2048', 2048],
    [' 8 GB ', 8192],
    [2048, 2048],
    [0.5, 1],
  ])('%j → %d MiB', (input, mib) => {
    expect(parseMemorySize(input)).toBe(mib);
  });

  it.each<string | number>(['', 'lots', '-1GB', '16 XB', 'GB', '16GB16', '1e3MB', '16 G B', -1, Number.NaN, Number.POSITIVE_INFINITY])(
    'rejects %j',
    (input) => {
      expect(parseMemorySize(input)).toBeUndefined();
    },
  );

  it('reads whole GiB, MiB and TiB exactly', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 30 }), (n) => {
      expect(parseMemorySize(`${n}GiB`)).toBe(n * 1024);
      expect(parseMemorySize(`${n}MiB`)).toBe(n);
      expect(parseMemorySize(`${n % 4096}TB`)).toBe((n % 4096) * 1024 * 1024);
    }));
  });
});

describe('parseDuration', () => {
  it.each<[string | number, number]>([
    ['2h', 7_200_000],
    ['30m', 1_800_000],
    ['90s', 90_000],
    ['1h30m', 5_400_000],
    ['1h 30m', 5_400_000],
    ['1d', 86_400_000],
    ['2d3h', 183_600_000],
    ['500ms', 500],
    ['1s500ms', 1500],
    ['1.5h', 5_400_000],
    ['2H', 7_200_000],
    ['10min', 600_000],
    ['1w', 604_800_000],
    ['01:30:00', 5_400_000],
    ['1:00:05', 3_605_000],
    ['2-12:00:00', 216_000_000],
    ['90', 90_000],
    ['0.5', 500],
    [90, 90_000],
    [1.5, 1500],
  ])('%j → %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each<string | number>(['', '0', '0s', '-5m', 'forever', '2 hours and a bit', 'h', '5x', '01:60:00', '01:30', '1h-30m', 0, -3, Number.NaN])(
    'rejects %j',
    (input) => {
      expect(parseDuration(input)).toBeUndefined();
    },
  );
});

describe('formatDuration', () => {
  it.each<[number, string]>([
    [5_400_000, '1h30m'],
    [45_000, '45s'],
    [183_600_000, '2d3h'],
    [500, '500ms'],
    [1500, '1s500ms'],
    [90_061_001, '1d1h1m1s1ms'],
    [0, '0s'],
    [-60_000, '-1m'],
  ])('%d → %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('round-trips through parseDuration', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), (ms) => {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }));
  });
});

describe('formatMemoryMiB', () => {
  it.each<[number, string]>([
    [81920, '80 GiB'],
    [512, '512 MiB'],
    [81559, '79.6 GiB'],
    [1536, '1.5 GiB'],
    [2 * 1024 * 1024, '2 TiB'],
    [0, '0 MiB'],
  ])('%d → %s', (mib, text) => {
    expect(formatMemoryMiB(mib)).toBe(text);
  });
});
