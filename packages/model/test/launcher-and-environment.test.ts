import { describe, expect, it } from 'vitest';
import {
  checkSubmitterEnvironment, computeTasksForPlacement, parseJobSpecYaml, pickSubmitterEnvironment, processesPerNodeOf, withSubmitterEnvironment,
  type JobSpec,
} from '@tutti/model';

function parsed(yaml: string): JobSpec {
  const result = parseJobSpecYaml(yaml);
  if (!result.ok) throw new Error(JSON.stringify(result.errors));
  return result.value;
}

describe('launcher in the job spec', () => {
  it('takes per-gpu (the default, normalised away), per-node and mpi', () => {
    expect(parsed('name: a\nrun: x\nlauncher: per-gpu\n').launcher).toBeUndefined();
    expect(parsed('name: a\nrun: x\nlauncher: per-node\n').launcher).toBe('per-node');
    expect(parsed('name: a\nrun: x\nlauncher: mpi\n').launcher).toBe('mpi');
  });

  it('refuses anything else with the field, its line, the choices and what was probably meant', () => {
    const result = parseJobSpecYaml('name: a\nrun: x\nlauncher: torchrun\n');
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors).toEqual([expect.objectContaining({ path: 'launcher', line: 3 })]);
    expect(result.errors[0]!.message).toMatch(/^expected one of per-gpu, per-node, mpi, got 'torchrun' \(per-gpu runs your script under torchrun's variables; per-node runs `torchrun train.py` itself once per node\)$/);
    const mpirun = parseJobSpecYaml('name: a\nrun: x\nlauncher: mpirun\n');
    expect(!mpirun.ok && mpirun.errors[0]!.message).toContain('mpi: the ranks are started by mpirun (srun on Slurm)');
  });

  it('makes one rank per node for per-node, holding the node\'s GPUs, and one per GPU otherwise', () => {
    const placement = { jobId: '1', nodes: [{ node: 'a', gpuIndices: [0, 1, 2, 3] }, { node: 'b', gpuIndices: [4, 5, 6, 7] }] };
    const perNode = parsed('name: a\nrun: x\nlauncher: per-node\nnum_nodes: 2\nresources: {gpus: 4}\n');
    expect(computeTasksForPlacement(perNode, placement as never).map((t) => [t.rank, t.nodeRank, t.localRank, t.node, t.gpus])).toEqual([
      [0, 0, 0, 'a', [0, 1, 2, 3]], [1, 1, 0, 'b', [4, 5, 6, 7]],
    ]);
    expect(processesPerNodeOf(parsed('name: a\nrun: x\nlauncher: mpi\nresources: {gpus: 4}\n'))).toBe(4);
    expect(processesPerNodeOf(parsed('name: a\nrun: x\n'))).toBe(1);
  });
});

describe('python_env', () => {
  it('takes an absolute directory, trailing slashes dropped', () => {
    expect(parsed('name: a\nrun: x\npython_env: /opt/venvs/train/\n').pythonEnv).toBe('/opt/venvs/train');
  });

  it('refuses a relative path, saying to give the directory every node sees', () => {
    const result = parseJobSpecYaml('name: a\nrun: x\npython_env: .venv\n');
    expect(!result.ok && result.errors[0]).toMatchObject({ path: 'python_env', line: 3 });
    expect(!result.ok && result.errors[0]!.message).toContain('is not an absolute path');
  });
});

describe('the submitter\'s environment', () => {
  it('takes PATH and the active Python environment, nothing else, and never over the spec\'s own values', () => {
    const picked = pickSubmitterEnvironment({ PATH: '/home/u/.venv/bin:/usr/bin', VIRTUAL_ENV: '/home/u/.venv', CONDA_PREFIX: '', AWS_SECRET_ACCESS_KEY: 'x', HOME: '/home/u' });
    expect(picked).toEqual({ PATH: '/home/u/.venv/bin:/usr/bin', VIRTUAL_ENV: '/home/u/.venv' });
    const spec = parsed('name: a\nrun: x\nenv: {PATH: /opt/bin}\n');
    expect(withSubmitterEnvironment(spec, picked).env).toEqual({ PATH: '/opt/bin', VIRTUAL_ENV: '/home/u/.venv' });
  });

  it('refuses other names and non-strings with the field to fix', () => {
    expect(checkSubmitterEnvironment({ PATH: '/bin', SECRET: 'x', VIRTUAL_ENV: 3 }, 'headers.tutti-submit-env')).toEqual({
      ok: false,
      errors: [
        { path: 'headers.tutti-submit-env.SECRET', message: expect.stringContaining('only PATH, VIRTUAL_ENV, CONDA_PREFIX, CONDA_DEFAULT_ENV are taken') },
        { path: 'headers.tutti-submit-env.VIRTUAL_ENV', message: expect.stringContaining('expected a string') },
      ],
    });
    expect(checkSubmitterEnvironment('PATH=/bin', 'h')).toMatchObject({ ok: false });
  });
});
