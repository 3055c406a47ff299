/** A real `tutti up` process for the benchmarks: started on a free port, stopped with SIGTERM (SIGKILL if it hangs). */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const TUTTI = fileURLToPath(new URL('../packages/cli/bin/tutti.js', import.meta.url));

export interface TuttiUpProcess {
  child: ChildProcess;
  /** Where it answers, as it printed it. */
  url: URL;
}

/**
 * Runs `tutti up --port 0 --data-dir DIR ...upArgs` and resolves once it prints its URL. `nodeArgs` go to node
 * before the CLI (e.g. `--import` of a probe).
 */
export async function startTuttiUp(dataDir: string, upArgs: readonly string[], options: { nodeArgs?: readonly string[]; env?: NodeJS.ProcessEnv } = {}): Promise<TuttiUpProcess> {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), TUTTI, 'up', '--port', '0', '--data-dir', dataDir, ...upArgs], {
    stdio: ['ignore', 'ignore', 'pipe'],
    ...(options.env ? { env: options.env } : {}),
  });
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      output += d.toString();
      const m = /tutti is up at (\S+)/.exec(output);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code) => reject(new Error(`tutti up exited ${code}: ${output}`)));
  });
  return { child, url: new URL(url) };
}

export async function stopTuttiUp(server: TuttiUpProcess): Promise<void> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  const exited = new Promise((r) => server.child.once('exit', r));
  server.child.kill('SIGTERM');
  const killer = setTimeout(() => server.child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(killer);
}
