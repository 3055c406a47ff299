import { createServer, type Server } from 'node:net';

/**
 * `count` distinct TCP ports free on `address` right now: bind port 0 that many times at once (so the kernel cannot
 * hand out one port twice), read the ports it chose, close. Another process could take one before the rank binds it;
 * the kernel hands out ephemeral ports in a cycle, so that is rare, and a job that loses the race fails to bind and
 * is retried like any failed job.
 */
export async function findFreePorts(address: string, count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const server = createServer();
      server.unref();
      servers.push(server);
      ports.push(await new Promise<number>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ port: 0, host: address, exclusive: true }, () => {
          const bound = server.address();
          const port = typeof bound === 'object' && bound !== null ? bound.port : 0;
          if (port > 0) resolve(port);
          else reject(new Error(`no free port on ${address}`));
        });
      }));
    }
    return ports;
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => (server.listening ? server.close(resolve) : resolve(undefined)))));
  }
}
