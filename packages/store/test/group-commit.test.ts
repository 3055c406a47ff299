import { describe, expect, it } from 'vitest';
import { GroupCommitQueue } from '../src/group-commit.ts';

/** A flush that records its batches and can be held open to simulate a slow commit. */
function makeRecordingFlush() {
  const batches: number[][] = [];
  let gate: Promise<void> = Promise.resolve();
  let open: () => void = () => {};
  return {
    batches,
    hold() {
      gate = new Promise((r) => (open = r));
    },
    release: () => open(),
    flush: async (items: number[]) => {
      batches.push([...items]);
      await gate;
      if (items.includes(-1)) throw new Error('batch failed');
      return items.map((i) => i * 10);
    },
  };
}

describe('GroupCommitQueue', () => {
  it('flushes submissions of one tick as one batch, each caller getting its own result', async () => {
    const rec = makeRecordingFlush();
    const queue = new GroupCommitQueue(rec.flush);
    const results = await Promise.all([1, 2, 3].map((i) => queue.submit(i)));
    expect(results).toEqual([10, 20, 30]);
    expect(rec.batches).toEqual([[1, 2, 3]]);
  });

  it('collects submissions made while a flush is in flight into the next batch, in order', async () => {
    const rec = makeRecordingFlush();
    const queue = new GroupCommitQueue(rec.flush);
    rec.hold();
    const first = queue.submit(1);
    await new Promise((r) => setImmediate(r));
    expect(rec.batches).toEqual([[1]]);
    const later = [2, 3, 4].map((i) => queue.submit(i));
    await new Promise((r) => setImmediate(r));
    expect(rec.batches).toEqual([[1]]); // still waiting for the first commit
    rec.release();
    expect(await first).toBe(10);
    expect(await Promise.all(later)).toEqual([20, 30, 40]);
    expect(rec.batches).toEqual([[1], [2, 3, 4]]);
  });

  it('rejects every caller of a failed batch and keeps going', async () => {
    const rec = makeRecordingFlush();
    const queue = new GroupCommitQueue(rec.flush);
    const settled = await Promise.allSettled([queue.submit(1), queue.submit(-1)]);
    expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected']);
    expect(await queue.submit(5)).toBe(50);
  });

  it('splits at maxBatch', async () => {
    const rec = makeRecordingFlush();
    const queue = new GroupCommitQueue(rec.flush, { maxBatch: 2 });
    await Promise.all([1, 2, 3, 4, 5].map((i) => queue.submit(i)));
    expect(rec.batches).toEqual([[1, 2], [3, 4], [5]]);
  });

  it('rejects a batch whose flush returns the wrong number of results', async () => {
    const queue = new GroupCommitQueue(async (items: number[]) => items.slice(1));
    await expect(queue.submit(1)).rejects.toThrow(/0 results for 1 items/);
  });

  it('drains: resolves once everything submitted has been flushed', async () => {
    const rec = makeRecordingFlush();
    const queue = new GroupCommitQueue(rec.flush);
    await queue.drain();
    const done: number[] = [];
    for (const i of [1, 2, 3]) void queue.submit(i).then((r) => done.push(r));
    await queue.drain();
    expect(done).toEqual([10, 20, 30]);
    expect(queue.pending).toBe(0);
  });
});
