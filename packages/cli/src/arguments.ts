/** Parsers of option and argument values: a bad value is a usage error (exit 2) that names the option and the value. */
import { InvalidArgumentError } from 'commander';
import { describeBadJobId, isJobId, parseMemorySize } from '@tutti/model';

/** An integer option, at least `min`. */
export function parseInteger(name: string, min = 0) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}, got '${value}'`);
    return n;
  };
}

/** A job id argument, checked before anything is sent: the server would refuse it anyway, less helpfully. */
export function parseJobId(value: string): string {
  if (!isJobId(value)) throw new InvalidArgumentError(describeBadJobId(value, '`tutti ps --all`'));
  return value;
}

/** A size in bytes: a plain number of bytes (65536), or with a unit ("512MiB", "1GiB", "2G"; counted in 1024s). */
export function parseByteSize(name: string) {
  return (value: string): number => {
    const trimmed = value.trim();
    const bytes = /^\d+$/.test(trimmed) ? Number(trimmed) : (parseMemorySize(trimmed) ?? Number.NaN) * 1024 * 1024;
    if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new InvalidArgumentError(`${name} must be a size such as 1GiB, 512MiB or a number of bytes, got '${value}'`);
    return bytes;
  };
}

/** `--pass-env NAME,PREFIX_*`: environment variable names, or prefixes ending in `*`. */
export function parsePassEnv(value: string): string[] {
  const names = value.split(',').map((name) => name.trim()).filter((name) => name !== '');
  const bad = names.find((name) => !/^[A-Za-z_][A-Za-z0-9_]*\*?$/.test(name));
  if (bad !== undefined || names.length === 0) {
    throw new InvalidArgumentError(`--pass-env takes variable names or prefixes ending in * (e.g. NCCL_SOCKET_IFNAME,HF_*), got '${bad ?? value}'`);
  }
  return names;
}
