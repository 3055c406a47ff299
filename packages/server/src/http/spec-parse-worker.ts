/**
 * The worker thread of `yaml-spec-parser.ts`: parses YAML job specs, one message at a time, so that yaml's parser
 * (~50 ms for a 64 KiB spec on this project's reference machine) never holds the server's event loop.
 */
import { parentPort } from 'node:worker_threads';
import { parseJobSpecYaml } from '@tutti/model';

if (!parentPort) throw new Error('spec-parse-worker.ts runs only as a worker thread');
const port = parentPort;
port.on('message', (message: { id: number; text: string }) => {
  port.postMessage({ id: message.id, result: parseJobSpecYaml(message.text) });
});
