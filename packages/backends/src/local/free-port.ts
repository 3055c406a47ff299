import { createServer } from 'node:net';

/**
 * A TCP port that is free on `address` right now: bind port 0, read the port the kernel chose, close.
 * Another process could take it before rank 0 binds it; the kernel hands out ephemeral ports in a cycle, so that
 * is rare, and a job that loses the race fails to bind and is retried like any failed job.
 */
export function findFreePort(address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port: 0, host: address, exclusive: true }, () => {
      const bound = server.address();
      const port = typeof bound === 'object' && bound !== null ? bound.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error(`no free port on ${address}`))));
    });
  });
}
