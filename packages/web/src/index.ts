/**
 * For Node (tests, the benchmark, tooling): where the built dashboard lives, and a build that runs only when the
 * build is missing or older than its sources. The browser app starts at main.tsx and never imports this.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const webDir = fileURLToPath(new URL('..', import.meta.url));
/** packages/web/dist: what `tutti up` serves at `/`. */
export const dashboardDistDir = path.join(webDir, 'dist');

/** Everything the bundle is made from: the app, its config, and the workspace packages it bundles. */
const SOURCES = ['src', 'index.html', 'vite.config.ts', 'package.json', '../client/src', '../model/src'];

async function newestMtime(entry: string): Promise<number> {
  const info = await stat(entry).catch(() => undefined);
  if (!info) return 0;
  if (!info.isDirectory()) return info.mtimeMs;
  const children = await readdir(entry);
  const times = await Promise.all(children.map((child) => newestMtime(path.join(entry, child))));
  return Math.max(info.mtimeMs, ...times);
}

/** True when dist/index.html is missing or older than a source file. */
export async function isDashboardBuildStale(): Promise<boolean> {
  const built = await stat(path.join(dashboardDistDir, 'index.html')).catch(() => undefined);
  if (!built) return true;
  const sources = await Promise.all(SOURCES.map((entry) => newestMtime(path.resolve(webDir, entry))));
  return Math.max(...sources) > built.mtimeMs;
}

/** Builds the dashboard with vite's JS API when the build is missing or stale; says whether it built. */
export async function ensureDashboardBuilt(): Promise<boolean> {
  if (!(await isDashboardBuildStale())) return false;
  const { build } = await import('vite');
  await build({ configFile: path.join(webDir, 'vite.config.ts'), logLevel: 'warn' });
  return true;
}
