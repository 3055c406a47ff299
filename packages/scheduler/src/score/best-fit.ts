/**
 * Best-fit choice of nodes: the candidates with the smallest score (for a GPU job, the fewest free matching GPUs
 * that still fit), so that nodes with much free room stay whole for the big gangs behind in the queue.
 *
 * Scores are small integers, so candidates go into buckets instead of being sorted: O(candidates). Callers add
 * candidates in node-name order, and ties keep that order, so a tie goes to the lower name.
 */
export class BestFitPicker<T> {
  private readonly buckets = new Map<number, T[]>();
  private perfect = 0;

  /**
   * @param needed how many items to choose.
   * @param perfectScore the lowest score possible; once `needed` items have it, later ones cannot win.
   */
  constructor(
    private readonly needed: number,
    private readonly perfectScore: number,
  ) {}

  /** Returns true when the choice is settled and the caller may stop adding. */
  add(score: number, item: T): boolean {
    let bucket = this.buckets.get(score);
    if (!bucket) this.buckets.set(score, (bucket = []));
    bucket.push(item);
    if (score === this.perfectScore) this.perfect++;
    return this.perfect >= this.needed;
  }

  /** The chosen items with their scores, best first, or undefined when fewer than `needed` were added. */
  pick(): { item: T; score: number }[] | undefined {
    const chosen: { item: T; score: number }[] = [];
    for (const score of [...this.buckets.keys()].sort((a, b) => a - b)) {
      for (const item of this.buckets.get(score) ?? []) {
        if (chosen.length === this.needed) return chosen;
        chosen.push({ item, score });
      }
    }
    return chosen.length === this.needed ? chosen : undefined;
  }
}
