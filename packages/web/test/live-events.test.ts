/** The dashboard's event stream: after a drop it reconnects and resumes after the last event it delivered. */
import { describe, expect, it } from 'vitest';
import type { EventView, TuttiClient } from '@tutti/client';
import { LiveEvents } from '../src/live-events.ts';

const event = (seq: number): EventView => ({ seq, job_id: String(seq), at: new Date(0).toISOString(), type: 'submitted', message: `job ${seq}`, data: null });

describe('live events', () => {
  it('starts with the newest events, reconnects after a drop, and resumes without a gap or a repeat', async () => {
    const asked: { afterSeq?: number; last?: number }[] = [];
    let calls = 0;
    const fakeClient = {
      async *events(options: { afterSeq?: number; last?: number; signal?: AbortSignal }) {
        asked.push({ ...(options.afterSeq !== undefined ? { afterSeq: options.afterSeq } : {}), ...(options.last !== undefined ? { last: options.last } : {}) });
        calls++;
        if (calls === 1) {
          yield event(4);
          yield event(5);
          throw new Error('connection reset');
        }
        yield event(6);
        await new Promise((resolve) => options.signal?.addEventListener('abort', resolve));
      },
    } as unknown as TuttiClient;

    const live = new LiveEvents(fakeClient);
    const seen: number[] = [];
    const statuses: string[] = [];
    live.subscribe((e) => seen.push(e.seq));
    live.onStatus((s) => statuses.push(s));
    live.start();
    for (let i = 0; i < 100 && seen.length < 3; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    live.stop();

    expect(seen).toEqual([4, 5, 6]);
    expect(asked).toEqual([{ last: 30 }, { afterSeq: 5 }]);
    expect(statuses).toEqual(['live', 'reconnecting', 'live']);
    expect(live.recent.map((e) => e.seq)).toEqual([6, 5, 4]);
  });
});
