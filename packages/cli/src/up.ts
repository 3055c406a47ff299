/** `tutti up`: the control plane in the foreground, until Ctrl-C. With --demo it also runs a 2-rank job. */
import { fileURLToPath } from 'node:url';
import { readFile } from 'node:fs/promises';
import { formatFieldErrors, parseClusterConfigYaml } from '@tutti/model';
import type { ClusterConfig } from '@tutti/model';
import { StartupError, startTuttiServer } from '@tutti/server';
import type { TuttiServer } from '@tutti/server';
import { TuttiClient } from '@tutti/client';
import { currentUser } from './current-user.ts';

export interface UpOptions {
  port: number;
  host: string;
  dataDir: string;
  fakeGpus?: string;
  grace: number;
  demo: boolean;
  /** Teams, quotas and scheduler settings (YAML). */
  config?: string;
}

/** The demo job: two ranks that print their torchrun environment and talk to each other over MASTER_ADDR:PORT. */
const DEMO_SCRIPT = fileURLToPath(new URL('../../../examples/ddp-hello/ddp_hello.mjs', import.meta.url));
/** The built web dashboard (`npm run build`); the same path from src/ and from the dist/ bundle. */
const DASHBOARD_DIR = fileURLToPath(new URL('../../web/dist', import.meta.url));

export async function runUp(options: UpOptions): Promise<void> {
  const config = options.config ? await readClusterConfig(options.config) : undefined;
  const server = await startTuttiServer({
    config,
    dataDir: options.dataDir,
    host: options.host,
    port: options.port,
    fakeGpus: options.fakeGpus,
    fakeGpusIfNone: options.demo && !options.fakeGpus ? '4' : undefined,
    stopGraceMs: options.grace * 1000,
    dashboardDir: DASHBOARD_DIR,
  });
  const gpus = server.inventory.reduce((n, node) => n + node.gpus.length, 0);
  const fake = server.inventory.some((node) => node.gpus.some((g) => g.uuid.startsWith('FAKE')));
  process.stderr.write(
    [
      `tutti is up at ${server.url}`,
      `  data dir  ${server.dataDir}`,
      `  nodes     ${server.inventory.map((n) => n.name).join(', ')} with ${gpus} GPU${gpus === 1 ? '' : 's'}${fake ? ' (fake: for trying tutti without GPUs)' : ''}`,
      `  dashboard ${server.url}/`,
      `  API docs  ${server.url}/docs`,
      `  try       npx tutti submit examples/hello.yaml --watch   |   npx tutti ps   |   npx tutti nodes`,
      ...(options.host !== '127.0.0.1' && options.host !== 'localhost' && options.host !== '::1'
        ? [`  warning   the API listens on ${options.host} without authentication: anyone who can reach it can run commands as this user`]
        : []),
      'Ctrl-C stops the control plane; running jobs keep running and are re-adopted by the next `tutti up`.',
      '',
    ].join('\n'),
  );
  const stop = once(server);
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  if (options.demo) await runDemo(server);
}

/** Reads and validates `--config`; a bad file stops `tutti up` with every problem, its path, line and column. */
async function readClusterConfig(file: string): Promise<ClusterConfig> {
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new StartupError(`--config ${file}: ${error.code === 'ENOENT' ? 'no such file' : error.message}`);
  });
  const parsed = parseClusterConfigYaml(text);
  if (!parsed.ok) throw new StartupError(`--config ${file} is not valid:\n${formatFieldErrors(parsed.errors).replace(/^/gm, '  ')}`);
  if (parsed.value.nodes.length > 0) process.stderr.write(`note: the ${parsed.value.nodes.length} nodes in ${file} are for \`tutti sim\`; tutti up uses the nodes it discovers\n`);
  return parsed.value;
}

function once(server: TuttiServer): () => void {
  let stopping = false;
  return () => {
    if (stopping) return;
    stopping = true;
    process.stderr.write('\nstopping the control plane (jobs keep running)…\n');
    void server.close().then(() => process.exit(0));
  };
}

async function runDemo(server: TuttiServer): Promise<void> {
  const client = new TuttiClient({ baseUrl: server.url });
  const user = currentUser();
  const job = await client.submitJob(
    {
      name: 'ddp-hello-demo',
      resources: { gpus: 2 },
      run: [process.execPath, DEMO_SCRIPT],
      env: { DEMO_STEPS: '3' },
      max_duration: '5m',
    },
    user !== undefined ? { user } : {},
  );
  process.stderr.write(`demo: submitted job ${job.id} (2 ranks, 2 GPUs); its rank 0 output follows\n`);
  let partial = '';
  for await (const chunk of client.logs(job.id, { rank: 0, follow: true })) {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) process.stdout.write(`  rank 0 | ${line}\n`);
  }
  if (partial) process.stdout.write(`  rank 0 | ${partial}\n`);
  const done = await client.getJob(job.id);
  process.stderr.write(
    `demo: job ${job.id} ${done.status} (${done.end_reason ?? ''}). See it with \`npx tutti show ${job.id}\` and \`npx tutti logs ${job.id} --rank 1\`.\n` +
      'tutti keeps running: submit your own jobs, or Ctrl-C to stop.\n',
  );
}
