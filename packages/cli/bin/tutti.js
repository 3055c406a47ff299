#!/usr/bin/env node
// Runs the bundle that `npm ci` builds (packages/cli/dist/tutti.mjs) when it is up to date with the sources;
// otherwise compiles the TypeScript sources on load with tsx, so an edited checkout never runs stale code.
// An installed package (`npm run pack`, then `npm install -g`) ships the bundle without sources: it runs the bundle
// at once. In a checkout the comparison stats the ~130 source files (a few ms).
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const bundle = path.join(here, '../dist/tutti.mjs');

function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(full));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(full).mtimeMs);
  }
  return newest;
}

function bundleIsFresh() {
  let built;
  try {
    built = statSync(bundle).mtimeMs;
  } catch {
    return false;
  }
  if (!existsSync(path.join(here, '../src'))) return true;
  const packages = path.join(here, '../..');
  return readdirSync(packages).every((name) => {
    try {
      return newestSource(path.join(packages, name, 'src')) <= built;
    } catch {
      return true;
    }
  });
}

if (bundleIsFresh()) {
  await import(bundle);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/main.ts');
}
