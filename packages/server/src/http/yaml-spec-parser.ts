/**
 * YAML job specs parsed off the event loop. yaml's parser is the slowest thing a request can make the server do
 * (a valid 64 KiB spec: ~50–80 ms of one core), and while it runs no other client is answered. Specs above
 * `OFF_THREAD_BYTES` go to one worker thread, one at a time, in arrival order; smaller ones (every spec a person
 * writes) parse in place, where a message round trip would cost more than the parse. The result is the same
 * value either way: the worker runs the same `parseJobSpecYaml`.
 *
 * The worker starts on the first large spec and is `unref`ed, so an idle server keeps no thread busy and a process
 * that ends is not held up by it. If it dies, what it was parsing is parsed in place and the next large spec starts
 * a new one.
 */
import { Worker } from 'node:worker_threads';
import { parseJobSpecYaml } from '@tutti/model';
import type { JobSpec, ParseResult } from '@tutti/model';

/** Below this many bytes a spec parses in well under a millisecond: in place. */
export const OFF_THREAD_BYTES = 8 * 1024;

interface Waiting {
  text: string;
  resolve: (result: ParseResult<JobSpec>) => void;
}

/** A YAML body as the body parser hands it to a route: already parsed as a job spec (the only YAML the API takes). */
export class ParsedYamlSpec {
  constructor(readonly result: ParseResult<JobSpec>) {}
}

export class YamlSpecParser {
  private worker: Worker | undefined;
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private closed = false;

  /** `workerUrl` is for tests; by default the worker beside this module (bundle) or its TypeScript source. */
  constructor(private readonly workerUrl: URL = defaultWorkerUrl()) {}

  parse(text: string): Promise<ParseResult<JobSpec>> {
    if (text.length < OFF_THREAD_BYTES || this.closed) return Promise.resolve(parseJobSpecYaml(text));
    return new Promise((resolve) => {
      const id = this.nextId++;
      this.waiting.set(id, { text, resolve });
      this.ensureWorker().postMessage({ id, text });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = undefined;
    this.parseWaitingInPlace();
    await worker?.terminate();
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(this.workerUrl);
    worker.unref();
    worker.on('message', (message: { id: number; result: ParseResult<JobSpec> }) => {
      const waiting = this.waiting.get(message.id);
      this.waiting.delete(message.id);
      waiting?.resolve(message.result);
    });
    const lost = () => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.parseWaitingInPlace();
    };
    worker.on('error', lost);
    worker.on('exit', lost);
    this.worker = worker;
    return worker;
  }

  /** Answers every waiting request by parsing in place: slower for everyone else, but never a lost request. */
  private parseWaitingInPlace(): void {
    const waiting = [...this.waiting.values()];
    this.waiting.clear();
    for (const { text, resolve } of waiting) resolve(parseJobSpecYaml(text));
  }
}

function defaultWorkerUrl(): URL {
  // From the sources this module is yaml-spec-parser.ts; in the bundle it is a chunk next to spec-parse-worker.mjs.
  return import.meta.url.endsWith('.ts') ? new URL('./spec-parse-worker-from-source.mjs', import.meta.url) : new URL('./spec-parse-worker.mjs', import.meta.url);
}
