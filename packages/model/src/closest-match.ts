/** "Did you mean …?" for misspelt field names. */

/** Edit distance (insertions, deletions, substitutions), for short strings such as field names. */
export function computeEditDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** Lowercase without separators, so that `numNodes`, `num-nodes` and `NUM_NODES` all read as `numnodes`. */
function fold(name: string): string {
  return name.toLowerCase().replace(/[-_\s]/g, '');
}

/**
 * The candidate closest to `given`, or undefined when none is close enough to be a likely typo: the folded forms
 * are equal, or they differ by at most a third of the longer name's length (and at most 3 edits).
 */
export function findClosestMatch(given: string, candidates: readonly string[]): string | undefined {
  const folded = fold(given);
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = computeEditDistance(folded, fold(candidate));
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  if (best === undefined) return undefined;
  const limit = Math.min(3, Math.floor(Math.max(folded.length, fold(best).length) / 3));
  return bestDistance <= limit ? best : undefined;
}
