// Makes the installable tarball of the `tutti` command: `npm run pack` at the repository root writes
// tutti-<version>.tgz, which `npm install -g ./tutti-<version>.tgz` installs on any machine with Node 20 and a C++
// toolchain (the SQLite driver compiles on install).
//
// The tarball holds the bundle (the workspace packages are inside it, so none of them is a dependency), the built
// dashboard, the examples, and a package.json whose dependencies are exactly the npm packages the bundle imports,
// at the versions the workspace packages pin. Files sit where they sit in the repository (packages/cli/bin,
// packages/cli/dist, packages/web/dist, examples), so the paths the code derives from import.meta.url hold alike in
// a checkout and in an installed package. Nothing in the checkout is rebuilt or overwritten: both builds go to a
// staging directory.
//
//   node packages/cli/pack.mjs [--out DIR]      (default: the current directory); prints the tarball's path
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildCli, npmDependencies } from './build.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');

/** The npm package an import names: `kysely/helpers` → `kysely`, `@fastify/swagger/x` → `@fastify/swagger`. */
function packageOf(specifier) {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/** The npm packages the bundle imports, with the versions the workspace packages declare for them. */
function runtimeDependencies(metafile) {
  const declared = npmDependencies();
  const imported = new Set();
  for (const output of Object.values(metafile.outputs)) {
    for (const { path: specifier, external } of output.imports) {
      if (external && !specifier.startsWith('node:')) imported.add(packageOf(specifier));
    }
  }
  const dependencies = {};
  for (const name of [...imported].sort()) {
    const version = declared.get(name);
    if (version === undefined) throw new Error(`the bundle imports ${name}, which no workspace package declares as a dependency`);
    dependencies[name] = version;
  }
  return dependencies;
}

function run(command, args, cwd) {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (exit ${result.status ?? result.signal})`);
  return result.stdout;
}

export async function packCli(outDir) {
  const staging = mkdtempSync(path.join(tmpdir(), 'tutti-pack-'));
  try {
    const metafile = await buildCli(path.join(staging, 'packages/cli/dist'));
    run('npm', ['run', 'build', '--silent', '-w', '@tutti/web', '--', '--outDir', path.join(staging, 'packages/web/dist'), '--emptyOutDir', '--logLevel', 'warn'], root);
    mkdirSync(path.join(staging, 'packages/cli/bin'), { recursive: true });
    cpSync(path.join(here, 'bin/tutti.js'), path.join(staging, 'packages/cli/bin/tutti.js'));
    cpSync(path.join(root, 'examples'), path.join(staging, 'examples'), { recursive: true });
    for (const file of ['README.md', 'LICENSE']) cpSync(path.join(root, file), path.join(staging, file));

    const rootManifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
    const manifest = {
      name: 'tutti',
      version: rootManifest.version,
      description: rootManifest.description,
      license: rootManifest.license,
      type: 'module',
      engines: rootManifest.engines,
      bin: { tutti: 'packages/cli/bin/tutti.js' },
      dependencies: runtimeDependencies(metafile),
      allowScripts: { 'better-sqlite3': true },
    };
    writeFileSync(path.join(staging, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);

    mkdirSync(outDir, { recursive: true });
    const [packed] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', path.resolve(outDir)], staging));
    return path.resolve(outDir, packed.filename);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const at = process.argv.indexOf('--out');
  const outDir = at >= 0 && process.argv[at + 1] ? process.argv[at + 1] : process.cwd();
  process.stdout.write(`${await packCli(outDir)}\n`);
}
