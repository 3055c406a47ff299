/**
 * The submitter's environment a job takes by default: the CLI sends the PATH and the active Python environment of the
 * shell that ran `tutti submit` (unless `--no-inherit-env`), and the server adds them to the job's `env` where the
 * spec does not set them. So a job submitted from an activated virtualenv runs that virtualenv's `python`, not the
 * server's. Nothing else of the submitter's environment travels: its secrets stay on its machine.
 */
import type { FieldError } from './errors.ts';
import type { JobSpec } from './job.ts';

/** The variables the CLI sends (those that are set). */
export const SUBMITTER_ENVIRONMENT_VARIABLES = ['PATH', 'VIRTUAL_ENV', 'CONDA_PREFIX', 'CONDA_DEFAULT_ENV'] as const;

/** The longest value taken for one of them. */
const MAX_VALUE_CHARS = 8192;

/** The submitter's variables out of an environment (the CLI's `process.env`). */
export function pickSubmitterEnvironment(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const name of SUBMITTER_ENVIRONMENT_VARIABLES) {
    const value = env[name];
    if (value !== undefined && value !== '') picked[name] = value;
  }
  return picked;
}

/**
 * Checks what a client sent as the submitter's environment (a JSON object of strings, only the names above);
 * answers it, or the problems with the field `where` names.
 */
export function checkSubmitterEnvironment(value: unknown, where: string): { ok: true; value: Record<string, string> } | { ok: false; errors: FieldError[] } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, errors: [{ path: where, message: `expected an object of ${SUBMITTER_ENVIRONMENT_VARIABLES.join(', ')} (each a string)` }] };
  }
  const errors: FieldError[] = [];
  const env: Record<string, string> = {};
  for (const [name, text] of Object.entries(value)) {
    if (!(SUBMITTER_ENVIRONMENT_VARIABLES as readonly string[]).includes(name)) {
      errors.push({ path: `${where}.${name}`, message: `only ${SUBMITTER_ENVIRONMENT_VARIABLES.join(', ')} are taken from the submitter; put other variables in the spec's env` });
    } else if (typeof text !== 'string' || text.length > MAX_VALUE_CHARS || text.includes('\0')) {
      errors.push({ path: `${where}.${name}`, message: `expected a string of at most ${MAX_VALUE_CHARS} characters without NUL` });
    } else {
      env[name] = text;
    }
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, value: env };
}

/** The spec with the submitter's variables added to its `env`; the spec's own values win. */
export function withSubmitterEnvironment(spec: JobSpec, submitter: Readonly<Record<string, string>>): JobSpec {
  const added = Object.entries(submitter).filter(([name]) => !(name in spec.env));
  return added.length === 0 ? spec : { ...spec, env: { ...Object.fromEntries(added), ...spec.env } };
}
