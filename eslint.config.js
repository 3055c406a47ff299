// Lint rules that keep the package boundaries of docs/architecture.md true.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import importPlugin from 'eslint-plugin-import';

const pureBans = {
  'no-restricted-imports': ['error', {
    patterns: [
      { group: ['node:*', 'fs', 'path', 'os', 'child_process', 'net', 'http', 'https', 'crypto'], message: 'model and scheduler are pure: no I/O modules.' },
      { group: ['better-sqlite3', 'kysely', 'pg', 'fastify', 'undici'], message: 'model and scheduler are pure: no database or HTTP.' },
      { group: ['@tutti/store', '@tutti/backends', '@tutti/server', '@tutti/client', '@tutti/cli'], message: 'model and scheduler may not depend on I/O packages.' },
    ],
  }],
  'no-restricted-properties': ['error',
    { object: 'Date', property: 'now', message: 'Time is an input: take `now` as a parameter.' },
    { object: 'Math', property: 'random', message: 'Randomness is an input: take a seed.' },
  ],
  'no-restricted-globals': ['error',
    { name: 'process', message: 'model and scheduler are pure.' },
    { name: 'setTimeout', message: 'model and scheduler are pure.' },
    { name: 'fetch', message: 'model and scheduler are pure.' },
  ],
  'no-restricted-syntax': ['error',
    { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: 'Time is an input: take `now` as a parameter.' },
  ],
};

const onlyThrough = (allowed) => ({
  'no-restricted-imports': ['error', {
    patterns: [
      { group: ['@tutti/*/*'], message: 'Import packages only through their exports (the package root).' },
      { group: ['../../*/src/*', '../../../packages/*'], message: 'Import other packages by name, not by path.' },
      ...(allowed ? [{ group: allowed.map((p) => `@tutti/${p}`), message: 'This package may not import that one (see docs/architecture.md).' }] : []),
    ],
  }],
});

const browserGlobals = Object.fromEntries(
  ['window', 'document', 'navigator', 'location', 'history', 'performance', 'getComputedStyle', 'requestAnimationFrame', 'cancelAnimationFrame', 'ResizeObserver', 'HTMLElement', 'HTMLDivElement', 'HTMLPreElement', 'HTMLTextAreaElement', 'HTMLAnchorElement', 'Event', 'EventSource', 'ReadableStream', 'localStorage'].map((name) => [name, 'readonly']),
);

export default tseslint.config(
  { ignores: ['**/node_modules/**', 'coverage/**', '**/*.d.ts', 'bench/out/**', 'packages/*/dist/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    plugins: { import: importPlugin },
    languageOptions: { globals: { process: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly', URL: 'readonly', fetch: 'readonly', AbortController: 'readonly', Buffer: 'readonly', TextDecoder: 'readonly', TextEncoder: 'readonly', queueMicrotask: 'readonly', structuredClone: 'readonly', AbortSignal: 'readonly', Response: 'readonly', Headers: 'readonly', performance: 'readonly' } },
    settings: {
      'import/parsers': { '@typescript-eslint/parser': ['.ts', '.tsx'] },
      'import/resolver': { node: { extensions: ['.ts', '.js', '.mjs'] } },
    },
    rules: {
      'import/no-cycle': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  // Each package may import only what the module map allows.
  { files: ['packages/model/src/**/*.ts'], rules: { ...pureBans } },
  { files: ['packages/scheduler/src/**/*.ts'], rules: { ...pureBans } },
  // The control core is pure like the scheduler: the server and the simulator drive it with events and the time.
  { files: ['packages/control/src/**/*.ts'], rules: { ...pureBans } },
  { files: ['packages/store/src/**/*.ts'], rules: onlyThrough(['scheduler', 'backends', 'server', 'client', 'cli']) },
  { files: ['packages/backends/src/**/*.ts'], rules: onlyThrough(['scheduler', 'store', 'server', 'client', 'cli']) },
  { files: ['packages/client/src/**/*.ts'], rules: onlyThrough(['scheduler', 'store', 'backends', 'server', 'cli']) },
  // The server builds the API's wire types that @tutti/client defines: it may import their types, nothing else.
  {
    files: ['packages/server/src/**/*.ts'],
    rules: {
      ...onlyThrough(['cli']),
      '@typescript-eslint/no-restricted-imports': ['error', { paths: [{ name: '@tutti/client', allowTypeImports: true, message: 'The server may import only the wire types of @tutti/client.' }] }],
    },
  },
  { files: ['packages/cli/src/**/*.ts'], rules: onlyThrough(['scheduler', 'store', 'backends']) },
  // The dashboard runs in the browser and talks to the server only through the typed client.
  {
    files: ['packages/web/src/**/*.{ts,tsx}'],
    ignores: ['packages/web/src/index.ts'],
    languageOptions: { globals: browserGlobals },
    settings: { 'import/resolver': { node: { extensions: ['.ts', '.tsx', '.js', '.mjs'] } } },
    rules: onlyThrough(['scheduler', 'store', 'backends', 'server', 'cli', 'sim', 'web']),
  },
  // Node-side helpers of the web package (the dist path, the build) and its tests.
  { files: ['packages/web/src/index.ts'], rules: onlyThrough(['scheduler', 'store', 'backends', 'server', 'cli', 'sim']) },
  { files: ['packages/web/test/**/*.ts'], languageOptions: { globals: browserGlobals } },
);
