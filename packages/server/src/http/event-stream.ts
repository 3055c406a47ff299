/**
 * Server-sent events: the job event log as a stream. Each event carries its sequence number as the SSE id, so a
 * client that reconnects with Last-Event-ID (or ?after=) gets exactly what it missed, from the store.
 */
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { JobEvent } from '@tutti/model';
import type { StateStore } from '@tutti/store';
import type { EventFeed } from '../event-feed.ts';
import { toEventView } from '../views.ts';

const HEARTBEAT_MS = 15_000;
/** Events read from the store at a time when a stream replays what its client missed. */
const REPLAY_PAGE = 1000;

/** Resolves once `raw` can take more (at the next turn of the event loop at the earliest), or has closed. */
function drainedOrClosed(raw: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    if (!raw.writableNeedDrain || raw.destroyed) {
      setImmediate(resolve);
      return;
    }
    const done = () => {
      raw.off('drain', done);
      raw.off('close', done);
      resolve();
    };
    raw.on('drain', done);
    raw.on('close', done);
  });
}

/**
 * The seq a stream starts after: `?after=`, else a Last-Event-ID, else the newest `?last=` events, else none (only
 * events from now on). An empty or malformed Last-Event-ID is no Last-Event-ID: a browser's EventSource sends an
 * empty one when nothing was received, and that means "from now", not "the whole history".
 */
export function resumePoint(request: { after?: number; last?: number; lastEventId?: string | string[] }, latestSeq: number): number | undefined {
  if (request.after !== undefined) return request.after;
  const header = typeof request.lastEventId === 'string' ? request.lastEventId.trim() : '';
  if (/^[0-9]{1,15}$/.test(header)) return Number(header);
  // Event seqs are consecutive, so "the newest N" starts after latest − N.
  if (request.last !== undefined) return Math.max(0, latestSeq - request.last);
  return undefined;
}

export async function serveEventStream(options: {
  request: FastifyRequest;
  reply: FastifyReply;
  store: StateStore;
  feed: EventFeed;
  jobId?: string;
  afterSeq?: number;
}): Promise<void> {
  const { request, reply, store, feed, jobId } = options;
  reply.hijack();
  const raw = reply.raw;
  // Hijacked: the headers set on the reply so far (the security headers) are written here or not at all.
  raw.writeHead(200, { ...(reply.getHeaders() as OutgoingHttpHeaders), 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  raw.write(': tutti event stream\n\n');

  let cursor = options.afterSeq ?? feed.latestSeq;
  let catchingUp = options.afterSeq !== undefined;
  const queued: JobEvent[] = [];
  const send = (event: JobEvent) => {
    if (event.seq <= cursor || (jobId && event.jobId !== jobId)) return;
    cursor = event.seq;
    raw.write(`id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(toEventView(event))}\n\n`);
  };
  const unsubscribe = feed.subscribe((event) => (catchingUp ? queued.push(event) : send(event)));
  const heartbeat = setInterval(() => raw.write(': keep-alive\n\n'), HEARTBEAT_MS);
  heartbeat.unref();
  request.raw.on('close', () => {
    unsubscribe();
    clearInterval(heartbeat);
  });

  if (catchingUp) {
    // Replay what the client missed, from the store, then switch to live events without a gap or a repeat. A page
    // at a time, each once the client has taken the last (the socket drained), and none once it has gone: a long
    // history costs the server what the client reads of it.
    let gone = raw.destroyed;
    raw.once('close', () => (gone = true));
    for (;;) {
      if (gone) return;
      const batch = await store.listEvents({ afterSeq: cursor, limit: REPLAY_PAGE, ...(jobId ? { jobId } : {}) });
      for (const event of batch) send(event);
      if (batch.length < REPLAY_PAGE) break;
      await drainedOrClosed(raw);
    }
    catchingUp = false;
    for (const event of queued.splice(0)) send(event);
  }
}
