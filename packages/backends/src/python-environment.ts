/**
 * What ranks need of Python: the job's `python_env` as PATH and VIRTUAL_ENV/CONDA_PREFIX say it, and the directory of
 * tutti's own Python helpers (JAX's cluster detection, packages/backends/python/) that ranks get on PYTHONPATH.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { PythonEnvironment } from './rank-environment.ts';

/** packages/backends/python/, from this file's place in src/. Shipped with the package. */
export const PYTHON_HELPERS_DIR = fileURLToPath(new URL('../python', import.meta.url));

/** A conda environment has `conda-meta/`; anything else is taken for a virtualenv. Looked at where the ranks run. */
export function pythonEnvironmentAt(dir: string): PythonEnvironment {
  return { dir, kind: existsSync(`${dir}/conda-meta`) ? 'conda' : 'venv' };
}
