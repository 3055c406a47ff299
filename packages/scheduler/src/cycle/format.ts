/** Wording shared by diagnoses, feasibility and plan violations. Messages are for people; codes are for machines. */
import { formatMemoryMiB, type GpuDevice, type NodeInfo } from '@tutti/model';

export { formatMemoryMiB };

/** "1 GPU", "4 GPUs"; "1 such node", "2 such nodes" with `plural` given. */
export function countOf(n: number, singular: string, plural = `${singular}s`): string {
  return `${n} ${n === 1 ? singular : plural}`;
}

/** "a", "a and b", "a, b and c". */
export function formatAnd(items: readonly string[]): string {
  return joinLast(items, 'and');
}

/** "a", "a or b", "a, b or c". */
export function formatOr(items: readonly string[]): string {
  return joinLast(items, 'or');
}

function joinLast(items: readonly string[], word: string): string {
  if (items.length <= 1) return items[0] ?? '';
  return `${items.slice(0, -1).join(', ')} ${word} ${items[items.length - 1] ?? ''}`;
}

/** Names at most `max` items and counts the rest: "a, b, c and 4 more". */
export function formatSome(items: readonly string[], max = 3): string {
  if (items.length <= max) return formatAnd(items);
  return `${items.slice(0, max).join(', ')} and ${items.length - max} more`;
}

export interface GpuWanted {
  count: number;
  /** Accepted types; empty means any. */
  types: readonly string[];
  minMemoryMiB?: number | undefined;
}

/**
 * "4 GPUs", "1 free H100 GPU", "8 free H100 or A100 GPUs with at least 80 GiB".
 * `free` adds the word "free" after the count.
 */
export function describeGpus(wanted: GpuWanted, free: boolean): string {
  const kind = wanted.types.length > 0 ? `${formatOr(wanted.types)} ` : '';
  const memory = wanted.minMemoryMiB !== undefined ? ` with at least ${formatMemoryMiB(wanted.minMemoryMiB)}` : '';
  return `${wanted.count} ${free ? 'free ' : ''}${kind}${wanted.count === 1 ? 'GPU' : 'GPUs'}${memory}`;
}

/** A node's GPU inventory grouped by type and memory: "8 × H100 80 GiB", "4 × A100 40 GiB + 4 × A100 80 GiB", "no GPUs". */
export function describeNodeGpus(node: NodeInfo): string {
  return describeGpuList(node.gpus);
}

export function describeGpuList(gpus: readonly GpuDevice[]): string {
  if (gpus.length === 0) return 'no GPUs';
  const groups = new Map<string, number>();
  for (const gpu of gpus) {
    const key = `${gpu.type} ${formatMemoryMiB(gpu.memoryMiB)}`;
    groups.set(key, (groups.get(key) ?? 0) + 1);
  }
  return [...groups].map(([key, n]) => `${n} × ${key}`).join(' + ');
}
