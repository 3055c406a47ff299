/**
 * The `tutti` command's entry: runs the command table (program.ts) and turns every failure into one message and
 * one of the documented exit codes (cli-failure.ts). Under --json the failure is also a JSON document on stdout,
 * `{"error": {"code", "message", ...}}`, so that stdout is always one parseable document (or NDJSON for streams).
 */
import { CommanderError } from 'commander';
import { ApiError, ServerUnreachableError } from '@tutti/client';
import { buildProgram } from './program.ts';
import { CliFailure, EXIT } from './cli-failure.ts';

interface Explained {
  exitCode: number;
  /** For people, on stderr; undefined when commander has already printed it (with the usage). */
  message: string | undefined;
  /** The JSON form under --json. */
  body: { error: { code: string; message: string } & Record<string, unknown> };
}

function explain(error: unknown): Explained {
  if (error instanceof CommanderError) {
    // commander has printed the problem and the usage on stderr; --help and --version end here too, with 0.
    const exitCode = error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    return { exitCode, message: undefined, body: { error: { code: 'usage', message: error.message.replace(/^error: /, '') } } };
  }
  if (error instanceof ServerUnreachableError) {
    const message = `${error.message}.\nStart one with \`npx tutti up\` (add --fake-gpus 4 on a machine without GPUs), or point --server / TUTTI_SERVER at a running one.`;
    return { exitCode: EXIT.noServer, message, body: { error: { code: 'server_unreachable', message } } };
  }
  if (error instanceof ApiError) {
    const fields = error.body.error.fields ?? [];
    const details = fields.length > 1 || (fields[0] && !error.message.startsWith(fields[0].path))
      ? `\n${fields.map((f) => `  ${f.path || '(document)'}: ${f.message}${f.line !== undefined ? ` (line ${f.line}, column ${f.column ?? 1})` : ''}`).join('\n')}`
      : fields[0]?.line !== undefined ? ` (line ${fields[0].line}, column ${fields[0].column ?? 1})` : '';
    return { exitCode: EXIT.failed, message: `${error.status === 422 ? 'unschedulable' : 'error'}: ${error.message}${details}`, body: error.body };
  }
  if (error instanceof CliFailure) return { exitCode: error.exitCode, message: error.message, body: { error: { code: error.code, message: error.message } } };
  const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
  return { exitCode: EXIT.failed, message, body: { error: { code: 'internal_error', message: error instanceof Error ? error.message : String(error) } } };
}

/** --json as given on the command line: a usage error can stop commander before it has read the option. */
function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).includes('--json');
}

const program = buildProgram();
try {
  await program.parseAsync(process.argv);
} catch (error) {
  const { exitCode, message, body } = explain(error);
  if (exitCode !== EXIT.ok && (program.opts<{ json?: boolean }>().json || wantsJson(process.argv.slice(2)))) {
    process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
  }
  if (message !== undefined) process.stderr.write(`tutti: ${message}\n`);
  process.exitCode = exitCode;
}
