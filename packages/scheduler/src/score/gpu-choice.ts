/**
 * Which `count` GPUs of a node's matching free GPUs a job gets. Ranks of one node talk constantly (all-reduce), so a
 * set whose members are NVLink peers of each other beats one that goes through PCIe. Without NVLink among the
 * candidates the lowest indices win, which is what people expect to see.
 */
import type { GpuDevice } from '@tutti/model';

/**
 * Returns `count` GPU indices from `candidates` (ordered by index, `count` ≤ its length), sorted ascending.
 *
 * Exact "most NVLink pairs" is a densest-subgraph problem; nodes have at most a few dozen GPUs, so a greedy search
 * from every seed is plenty: start from each candidate, repeatedly add the candidate with the most links into the
 * set (lowest index on ties), and keep the set with the most internal links (lexicographically smallest on ties).
 * O(candidates² × count). On a fully connected NVSwitch node every set scores the same, so the lowest indices win.
 */
export function chooseGpus(candidates: readonly GpuDevice[], count: number, nvlink: ReadonlyMap<number, ReadonlySet<number>>): number[] {
  const indices = candidates.map((g) => g.index);
  if (count >= indices.length) return indices;
  const lowest = indices.slice(0, count);
  if (count <= 1) return lowest;

  const isCandidate = new Set(indices);
  const hasLinks = indices.some((i) => [...(nvlink.get(i) ?? [])].some((p) => isCandidate.has(p)));
  if (!hasLinks) return lowest;

  let best = lowest;
  let bestScore = countLinks(lowest, nvlink);
  for (const seed of indices) {
    const set = growFrom(seed, indices, count, nvlink);
    const score = countLinks(set, nvlink);
    if (score > bestScore || (score === bestScore && isLexicographicallySmaller(set, best))) {
      best = set;
      bestScore = score;
    }
  }
  return best;
}

function growFrom(seed: number, indices: readonly number[], count: number, nvlink: ReadonlyMap<number, ReadonlySet<number>>): number[] {
  const chosen = new Set([seed]);
  while (chosen.size < count) {
    let pick = -1;
    let pickLinks = -1;
    for (const i of indices) {
      if (chosen.has(i)) continue;
      const peers = nvlink.get(i);
      let links = 0;
      if (peers) for (const c of chosen) if (peers.has(c)) links++;
      if (links > pickLinks) {
        pick = i;
        pickLinks = links;
      }
    }
    chosen.add(pick);
  }
  return [...chosen].sort((a, b) => a - b);
}

/** NVLink pairs inside a set of GPU indices. */
export function countLinks(set: readonly number[], nvlink: ReadonlyMap<number, ReadonlySet<number>>): number {
  let links = 0;
  for (let a = 0; a < set.length; a++) {
    const peers = nvlink.get(set[a] ?? -1);
    if (!peers) continue;
    for (let b = a + 1; b < set.length; b++) if (peers.has(set[b] ?? -1)) links++;
  }
  return links;
}

function isLexicographicallySmaller(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x !== y) return x < y;
  }
  return a.length < b.length;
}
