/**
 * Memory sizes and durations as people write them in job specs, and back.
 *
 * Memory is counted in MiB everywhere in tutti (nvidia-smi reports MiB; Slurm's --mem is MiB). Like nvidia-smi and
 * Slurm, "GB" means GiB: a job that asks for "80GB" of GPU memory expects an 80 GiB card to qualify.
 */

const MiB_PER: Record<string, number> = {
  '': 1,
  b: 1 / (1024 * 1024),
  k: 1 / 1024, kb: 1 / 1024, ki: 1 / 1024, kib: 1 / 1024,
  m: 1, mb: 1, mi: 1, mib: 1,
  g: 1024, gb: 1024, gi: 1024, gib: 1024,
  t: 1024 ** 2, tb: 1024 ** 2, ti: 1024 ** 2, tib: 1024 ** 2,
  p: 1024 ** 3, pb: 1024 ** 3, pi: 1024 ** 3, pib: 1024 ** 3,
};

const SIZE_RE = /^(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)$/i;

/**
 * Parses "16GB", "16G", "16GiB", "40 GB", "512MB", "512Mi", "1TB", "1.5GB" or a bare number (MiB) into whole MiB.
 * Units are case-insensitive and decimal and binary prefixes both count in 1024s. A size that is not a whole number of
 * MiB is rounded up, so a request never shrinks. Returns `undefined` for negatives and anything unrecognised; 0 is
 * accepted here (callers that need a positive size check for it).
 */
export function parseMemorySize(input: string | number): number | undefined {
  let mib: number;
  if (typeof input === 'number') {
    mib = input;
  } else if (typeof input === 'string') {
    const match = SIZE_RE.exec(input.trim());
    if (!match) return undefined;
    const factor = MiB_PER[(match[2] ?? '').toLowerCase()];
    if (factor === undefined) return undefined;
    mib = Number(match[1]) * factor;
  } else {
    return undefined;
  }
  if (!Number.isFinite(mib) || mib < 0) return undefined;
  const whole = roundUpWithTolerance(mib);
  return whole <= Number.MAX_SAFE_INTEGER ? whole : undefined;
}

/** Rounds up, but treats values a float rounding error away from an integer as that integer (1.1 * 1024 stays 1127). */
function roundUpWithTolerance(value: number): number {
  const nearest = Math.round(value);
  if (Math.abs(value - nearest) <= 1e-9 * Math.max(1, value)) return nearest;
  return Math.ceil(value);
}

const MS_PER_UNIT: ReadonlyArray<readonly [string[], number]> = [
  [['ms', 'msec', 'msecs', 'millisecond', 'milliseconds'], 1],
  [['s', 'sec', 'secs', 'second', 'seconds'], 1000],
  [['m', 'min', 'mins', 'minute', 'minutes'], 60_000],
  [['h', 'hr', 'hrs', 'hour', 'hours'], 3_600_000],
  [['d', 'day', 'days'], 86_400_000],
  [['w', 'week', 'weeks'], 7 * 86_400_000],
];
const MS_BY_UNIT = new Map<string, number>(MS_PER_UNIT.flatMap(([names, ms]) => names.map((n) => [n, ms] as const)));
// Longest names first so that "ms" is not read as "m" followed by garbage.
const UNIT_ALTERNATION = [...MS_BY_UNIT.keys()].sort((a, b) => b.length - a.length).join('|');
const COMPONENT_RE = new RegExp(`(\\d+(?:\\.\\d+)?|\\.\\d+)\\s*(${UNIT_ALTERNATION})(?![a-z])\\s*`, 'iy');
const CLOCK_RE = /^(?:(\d+)-)?(\d+):(\d{1,2}):(\d{1,2})$/;
const BARE_NUMBER_RE = /^(\d+(?:\.\d+)?|\.\d+)$/;

/**
 * Parses a duration into milliseconds: "2h", "30m", "90s", "1h30m", "1d", "500ms", "1.5h", "01:30:00" (H:MM:SS),
 * "2-12:00:00" (Slurm's D-HH:MM:SS), or a bare number of seconds. Only durations > 0 are accepted; negatives, zero and
 * anything unrecognised give `undefined`. The result is rounded to a whole millisecond.
 */
export function parseDuration(input: string | number): number | undefined {
  let ms: number | undefined;
  if (typeof input === 'number') {
    ms = input * 1000;
  } else if (typeof input === 'string') {
    ms = parseDurationString(input.trim());
  }
  if (ms === undefined || !Number.isFinite(ms)) return undefined;
  const rounded = Math.round(ms);
  return rounded > 0 && rounded <= Number.MAX_SAFE_INTEGER ? rounded : undefined;
}

function parseDurationString(text: string): number | undefined {
  if (text === '') return undefined;
  if (BARE_NUMBER_RE.test(text)) return Number(text) * 1000;
  const clock = CLOCK_RE.exec(text);
  if (clock) {
    const [, days = '0', hours = '0', minutes = '0', seconds = '0'] = clock;
    if (Number(minutes) >= 60 || Number(seconds) >= 60) return undefined;
    return ((Number(days) * 24 + Number(hours)) * 60 + Number(minutes)) * 60_000 + Number(seconds) * 1000;
  }
  let total = 0;
  COMPONENT_RE.lastIndex = 0;
  while (COMPONENT_RE.lastIndex < text.length) {
    const match = COMPONENT_RE.exec(text);
    if (!match) return undefined;
    const perUnit = MS_BY_UNIT.get((match[2] ?? '').toLowerCase());
    if (perUnit === undefined) return undefined;
    total += Number(match[1]) * perUnit;
  }
  return total;
}

const FORMAT_UNITS: ReadonlyArray<readonly [string, number]> = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1000],
  ['ms', 1],
];

/**
 * A compact, exact rendering: "2d3h", "1h30m", "45s", "1s500ms", "0s". Every non-zero component is written, so
 * `parseDuration(formatDuration(ms)) === ms` for any whole number of milliseconds > 0.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (ms < 0) return `-${formatDuration(-ms)}`;
  let rest = Math.round(ms);
  if (rest === 0) return '0s';
  let out = '';
  for (const [unit, size] of FORMAT_UNITS) {
    const count = Math.floor(rest / size);
    if (count > 0) out += `${count}${unit}`;
    rest -= count * size;
  }
  return out;
}

/**
 * An estimate for people, rounded to what it is worth: "under a minute", "about 7 min", "about 55 min" (5-minute steps
 * from 10 minutes), "about 1 h", "about 2.5 h" (half hours below 10 hours), "about 14 h", "about 3 days". Never the
 * milliseconds of a guess.
 */
export function formatApproxDuration(ms: number): string {
  if (!Number.isFinite(ms)) return 'unknown';
  const minutes = Math.max(0, ms) / 60_000;
  if (minutes < 1) return 'under a minute';
  if (minutes < 10) return `about ${Math.round(minutes)} min`;
  if (Math.round(minutes / 5) * 5 < 60) return `about ${Math.round(minutes / 5) * 5} min`;
  const hours = minutes / 60;
  if (Math.round(hours * 2) / 2 < 10) return `about ${Math.round(hours * 2) / 2} h`;
  if (Math.round(hours) < 48) return `about ${Math.round(hours)} h`;
  return `about ${Math.round(hours / 24)} days`;
}

/** For people: "80 GiB", "512 MiB", "79.6 GiB", "2 TiB" (at most one decimal, so not always exact). */
export function formatMemoryMiB(mib: number): string {
  if (!Number.isFinite(mib)) return `${mib} MiB`;
  if (Math.abs(mib) < 1024) return `${oneDecimal(mib)} MiB`;
  if (Math.abs(mib) < 1024 ** 2) return `${oneDecimal(mib / 1024)} GiB`;
  return `${oneDecimal(mib / 1024 ** 2)} TiB`;
}

function oneDecimal(value: number): string {
  return String(Math.round(value * 10) / 10);
}

/** 1073741824 → "1 GiB", 65536 → "64 KiB", 1000000 → "1000000 bytes". */
export function formatByteSize(bytes: number): string {
  for (const [unit, size] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size} ${unit}`;
  }
  return `${bytes} bytes`;
}
