/**
 * The simulator's event queue: a binary min-heap ordered by (time, insertion sequence), so events at the same
 * virtual time come out in the order they were scheduled and a run is deterministic.
 */

export type SimEvent =
  /** A trace job is submitted. */
  | { kind: 'arrival'; time: number; job: number }
  /** A running job finishes its work. `epoch` tells a stale completion (the job was preempted since) from a live one. */
  | { kind: 'completion'; time: number; job: number; epoch: number }
  /** A stopped job's ranks exit (at its SIGKILL deadline, or at once if it exits on the signal). */
  | { kind: 'stopped'; time: number; job: number; epoch: number }
  /** A scripted failure of the running attempt (`JobScenario.attempts`): rank 0 exits with `exitCode`. */
  | { kind: 'rank_failure'; time: number; job: number; epoch: number; exitCode: number }
  /** A scripted cancel (`JobScenario.cancelAtS`). */
  | { kind: 'cancel'; time: number; job: number }
  /** The control core asked to be woken (a max_duration deadline, a hang timer). */
  | { kind: 'lifecycle_tick'; time: number }
  /** A restart's backoff is over: the job may be placed again. */
  | { kind: 'backoff_over'; time: number; job: number }
  /**
   * A running job's attained service crosses a queue threshold of a least-attained-service profile (`tiresias`): it
   * is demoted, so a cycle runs. Stale when `epoch` changed (the job stopped since).
   */
  | { kind: 'service'; time: number; job: number; epoch: number }
  /** A periodic scheduling cycle. */
  | { kind: 'tick'; time: number };

export class EventQueue {
  private readonly heap: SimEvent[] = [];
  private readonly seqs: number[] = [];
  private nextSeq = 0;

  get size(): number {
    return this.heap.length;
  }

  push(event: SimEvent): void {
    const heap = this.heap;
    const seqs = this.seqs;
    let i = heap.length;
    heap.push(event);
    seqs.push(this.nextSeq++);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  /** The earliest event's time, or undefined when empty. */
  peekTime(): number | undefined {
    return this.heap[0]?.time;
  }

  pop(): SimEvent | undefined {
    const heap = this.heap;
    const seqs = this.seqs;
    const top = heap[0];
    if (top === undefined) return undefined;
    const last = heap.pop() as SimEvent;
    const lastSeq = seqs.pop() as number;
    if (heap.length > 0) {
      heap[0] = last;
      seqs[0] = lastSeq;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < heap.length && this.less(left, smallest)) smallest = left;
        if (right < heap.length && this.less(right, smallest)) smallest = right;
        if (smallest === i) break;
        this.swap(i, smallest);
        i = smallest;
      }
    }
    return top;
  }

  private less(a: number, b: number): boolean {
    const ta = (this.heap[a] as SimEvent).time;
    const tb = (this.heap[b] as SimEvent).time;
    return ta < tb || (ta === tb && (this.seqs[a] as number) < (this.seqs[b] as number));
  }

  private swap(a: number, b: number): void {
    const heap = this.heap;
    const seqs = this.seqs;
    const e = heap[a] as SimEvent;
    heap[a] = heap[b] as SimEvent;
    heap[b] = e;
    const s = seqs[a] as number;
    seqs[a] = seqs[b] as number;
    seqs[b] = s;
  }
}
