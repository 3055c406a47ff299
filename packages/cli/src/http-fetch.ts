/**
 * The CLI's transport for TuttiClient: `fetch` over node:http. Node 20's global fetch (undici) costs ~150 ms of CPU
 * the first time a process uses it, more than all the rest of `tutti ps`; node:http costs ~20 ms. It covers what the
 * client uses: method, headers, a string body, an abort signal; status, text(), json() and a streamed body. Other
 * schemes than http: (an https server behind a proxy) go to the global fetch.
 */
import http from 'node:http';
import { Readable } from 'node:stream';
import type { FetchFunction } from '@tutti/client';

export const httpFetch: FetchFunction = (url, init) => {
  const target = new URL(url);
  if (target.protocol !== 'http:') return fetch(url, init);
  const signal = init.signal ?? undefined;
  return new Promise<Response>((resolve, reject) => {
    if (signal?.aborted) return reject(abortError());
    // No keep-alive agent: an idle pooled socket would keep the process alive after the command is done.
    const request = http.request(target, { method: init.method ?? 'GET', headers: init.headers as Record<string, string> | undefined, agent: false }, (response) => {
      resolve(toResponse(response));
    });
    const abort = () => request.destroy(abortError());
    signal?.addEventListener('abort', abort, { once: true });
    request.on('close', () => signal?.removeEventListener('abort', abort));
    request.on('error', reject);
    request.end(typeof init.body === 'string' ? init.body : undefined);
  });
};

/** The parts of a WHATWG Response that TuttiClient reads. */
function toResponse(message: http.IncomingMessage): Response {
  const status = message.statusCode ?? 0;
  let body: ReadableStream<Uint8Array> | undefined;
  const text = async (): Promise<string> => {
    const chunks: Buffer[] = [];
    for await (const chunk of message) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  };
  const response = {
    status,
    ok: status >= 200 && status < 300,
    statusText: message.statusMessage ?? '',
    get body() {
      return (body ??= Readable.toWeb(message) as ReadableStream<Uint8Array>);
    },
    text,
    json: async () => JSON.parse(await text()) as unknown,
  };
  return response as unknown as Response;
}

function abortError(): Error {
  return new DOMException('the request was aborted', 'AbortError');
}
