import { describe, expect, it } from 'vitest';
import { formatFieldErrors, jobSpecJsonSchema, parseJobSpecObject, parseJobSpecYaml, resolveCheckpointDir, serializeJobSpec, type FieldError, type JobSpec } from '@tutti/model';

// Every top-level field, in the validator's order (topology, restart policy, checkpoints, graceful stop and hangs included).
const ALLOWED_FIELDS = 'name, team, priority, resources, num_nodes, topology, run, launcher, python_env, workdir, env, max_duration, max_restarts, restart_on, restart_backoff, checkpoint_dir, stop_signal, preemption_grace, hang_timeout';

/** The spec every valid case starts from: only what is required, defaults filled in. */
const minimal: JobSpec = {
  name: 'resnet-ddp', team: 'default', priority: 50, numNodes: 1, env: {},
  resources: { gpus: { count: 0, types: [] } }, run: { kind: 'shell', command: 'python train.py' },
};
const spec = (patch: Partial<JobSpec>): JobSpec => ({ ...minimal, ...patch });
const gpus = (count: number, types: string[] = [], memoryMiB?: number): JobSpec['resources'] =>
  ({ gpus: memoryMiB === undefined ? { count, types } : { count, types, memoryMiB } });

function parseOk(yaml: string): JobSpec {
  const result = parseJobSpecYaml(yaml);
  if (!result.ok) throw new Error(`expected a valid spec, got:\n${formatFieldErrors(result.errors)}`);
  return result.value;
}

function parseErrors(yaml: string): FieldError[] {
  const result = parseJobSpecYaml(yaml);
  if (result.ok) throw new Error(`expected errors, got a spec: ${JSON.stringify(result.value)}`);
  return result.errors;
}

describe('parseJobSpecYaml: valid specs', () => {
  it.each<[string, string, JobSpec]>([
    ['minimal, with defaults', 'name: resnet-ddp\nrun: python train.py\n', minimal],
    ['the full example', `
name: resnet-ddp
team: vision
priority: 80
resources:
  gpus: 2
  cpus: 4
  memory: 16GB
num_nodes: 2
run: python train.py
workdir: ./
env: {EPOCHS: "3"}
max_duration: 2h
`, spec({ team: 'vision', priority: 80, numNodes: 2, workdir: './', env: { EPOCHS: '3' }, maxDurationMs: 7_200_000,
      resources: { gpus: { count: 2, types: [] }, cpus: 4, memoryMiB: 16384 } })],
    ['gpus as TYPE:COUNT', 'name: resnet-ddp\nrun: python train.py\nresources: {gpus: "H100:8"}\n', spec({ resources: gpus(8, ['H100']) })],
    ['gpus as TYPE:COUNT, types normalised', 'name: resnet-ddp\nrun: python train.py\nresources: {gpus: "h100,a100:2"}\n', spec({ resources: gpus(2, ['H100', 'A100']) })],
    ['gpus as a mapping with a list of types', `
name: resnet-ddp
run: python train.py
resources:
  gpus: {count: 2, type: [H100, "NVIDIA A100-SXM4-80GB", a100], memory: 40GB}
`, spec({ resources: gpus(2, ['H100', 'A100'], 40960) })],
    ['gpus as a mapping with one type', 'name: resnet-ddp\nrun: python train.py\nresources:\n  gpus: {count: 1, type: t4}\n', spec({ resources: gpus(1, ['T4']) })],
    ['a fractional CPU count', 'name: resnet-ddp\nrun: python train.py\nresources: {cpus: 0.5}\n', spec({ resources: { gpus: { count: 0, types: [] }, cpus: 0.5 } })],
    ['run as a list (argv)', 'name: resnet-ddp\nrun: [python, train.py, --epochs, 3, --lr, 1e-3, --fast, true]\n',
      spec({ run: { kind: 'argv', argv: ['python', 'train.py', '--epochs', '3', '--lr', '1e-3', '--fast', 'true'] } })],
    ['run as a block list', 'name: resnet-ddp\nrun:\n  - torchrun\n  - "--nproc-per-node=2"\n  - ""\n',
      spec({ run: { kind: 'argv', argv: ['torchrun', '--nproc-per-node=2', ''] } })],
    ['run as a multi-line script', 'name: resnet-ddp\nrun: |\n  cd src\n  python train.py\n', spec({ run: { kind: 'shell', command: 'cd src\npython train.py\n' } })],
    ['env numbers and booleans kept as written', 'name: resnet-ddp\nrun: python train.py\nenv:\n  EPOCHS: 3\n  LR: 1e-3\n  SCALE: 2.50\n  DEBUG: true\n  _X1: ""\n',
      spec({ env: { EPOCHS: '3', LR: '1e-3', SCALE: '2.50', DEBUG: 'true', _X1: '' } })],
    ['durations in clock form', 'name: resnet-ddp\nrun: python train.py\nmax_duration: "01:30:00"\n', spec({ maxDurationMs: 5_400_000 })],
    ['a bare number of seconds', 'name: resnet-ddp\nrun: python train.py\nmax_duration: 90\n', spec({ maxDurationMs: 90_000 })],
    ['empty optional fields mean "left out"', 'name: resnet-ddp\nrun: python train.py\nteam:\nresources:\nenv:\nworkdir:\nmax_duration:\n', minimal],
    ['a 63-character name', `name: ${'a'.repeat(63)}\nrun: x\n`, spec({ name: 'a'.repeat(63), run: { kind: 'shell', command: 'x' } })],
    ['a name starting with a digit', 'name: 3d-unet\nrun: python train.py\n', spec({ name: '3d-unet' })],
    ['priority bounds', 'name: resnet-ddp\nrun: python train.py\npriority: 1000\n', spec({ priority: 1000 })],
    ['a fraction of one GPU', 'name: resnet-ddp\nrun: python train.py\nresources: {gpus: 0.5}\n', spec({ resources: { gpus: { count: 1, types: [], fraction: 0.5 } } })],
    ['a fraction of one GPU as a string', 'name: resnet-ddp\nrun: python train.py\nresources: {gpus: ".25"}\n', spec({ resources: { gpus: { count: 1, types: [], fraction: 0.25 } } })],
    ['a fraction of one GPU as TYPE:FRACTION', 'name: resnet-ddp\nrun: python train.py\nresources: {gpus: "H100,a100:0.5"}\n', spec({ resources: { gpus: { count: 1, types: ['H100', 'A100'], fraction: 0.5 } } })],
    ['a fraction in the mapping form', `
name: resnet-ddp
run: python train.py
resources:
  gpus: {count: 1, fraction: 0.25, memory: 10GB, type: [H100, A100]}
`, spec({ resources: { gpus: { count: 1, types: ['H100', 'A100'], memoryMiB: 10240, fraction: 0.25 } } })],
    ['a fraction in the mapping form, count left out', 'name: resnet-ddp\nrun: python train.py\nresources:\n  gpus: {fraction: 0.5}\n',
      spec({ resources: { gpus: { count: 1, types: [], fraction: 0.5 } } })],
    ['a null fraction means whole GPUs', 'name: resnet-ddp\nrun: python train.py\nresources:\n  gpus: {count: 2, fraction: null}\n', spec({ resources: gpus(2) })],
    ['topology required', 'name: resnet-ddp\nrun: python train.py\nnum_nodes: 4\ntopology: {require: rack}\n', spec({ numNodes: 4, topology: { require: 'rack' } })],
    ['topology preferred, block style', 'name: resnet-ddp\nrun: python train.py\nnum_nodes: 2\ntopology:\n  prefer: node\n', spec({ numNodes: 2, topology: { prefer: 'node' } })],
    ['topology levels are case-insensitive', 'name: resnet-ddp\nrun: python train.py\ntopology: {require: NVLink}\n', spec({ topology: { require: 'nvlink' } })],
    ['require zone', 'name: resnet-ddp\nrun: python train.py\nnum_nodes: 8\ntopology: {require: zone}\n', spec({ numNodes: 8, topology: { require: 'zone' } })],
    ['a null topology means none', 'name: resnet-ddp\nrun: python train.py\ntopology:\n', minimal],
    ['a fraction with a topology', 'name: resnet-ddp\nrun: python train.py\nresources: {gpus: 0.5}\ntopology: {require: node}\n',
      spec({ resources: { gpus: { count: 1, types: [], fraction: 0.5 } }, topology: { require: 'node' } })],
    ['anchors and aliases', 'name: resnet-ddp\nrun: python train.py\nteam: &t vision\nenv: {TEAM: *t}\n', spec({ team: 'vision', env: { TEAM: 'vision' } })],
  ])('%s', (_title, yaml, expected) => {
    expect(parseOk(yaml)).toEqual(expected);
  });
});

describe('parseJobSpecYaml: errors', () => {
  // [title, yaml, path, message fragments, line, column]
  it.each<[string, string, string, string[], number, number]>([
    ['a word for a GPU count', `name: resnet-ddp
team: vision
run: python train.py
resources:
  gpus: eight
`, 'resources.gpus', ["expected a number ≥ 0 or TYPE:COUNT like H100:8, got 'eight'"], 5, 9],
    ['a bad name', 'name: ResNet_DDP\nrun: x\n', 'name', ["expected lowercase letters, digits and '-' (at most 63 characters), got 'ResNet_DDP'", "try 'resnet-ddp'"], 1, 7],
    ['a name that is too long', `run: x\nname: ${'a'.repeat(64)}\n`, 'name', ['at most 63 characters', 'got 64 characters'], 2, 7],
    ['a name ending in -', 'name: resnet-\nrun: x\n', 'name', ['start and end with a letter or digit', "got 'resnet-'"], 1, 7],
    ['a name that is a number', 'name: 42\nrun: x\n', 'name', ['got 42'], 1, 7],
    ['a bad team', 'name: a\nteam: Vision Team\nrun: x\n', 'team', ["got 'Vision Team'"], 2, 7],
    ['a missing name', 'run: x\n', 'name', ['required'], 1, 1],
    ['a missing run', 'name: a\n', 'run', ['required', 'command string', 'list of strings'], 1, 1],
    ['an empty run', 'name: a\nrun: "  "\n', 'run', ['non-empty', 'only whitespace'], 2, 6],
    ['an empty run list', 'name: a\nrun: []\n', 'run', ['non-empty list', 'got an empty list'], 2, 6],
    ['a mapping in run', 'name: a\nrun:\n  - python\n  - {x: 1}\n', 'run[1]', ['expected a string', 'got a mapping'], 4, 5],
    ['an empty program', 'name: a\nrun: ["", x]\n', 'run[0]', ['the program to run'], 2, 7],
    ['more than one GPU, not whole', 'name: a\nrun: x\nresources:\n  gpus: 1.5\n', 'resources.gpus', ['either whole GPUs (an integer ≥ 0) or a fraction of one GPU', 'got 1.5'], 4, 9],
    ['more than one GPU, not whole, in TYPE:COUNT', 'name: a\nrun: x\nresources:\n  gpus: "H100:2.5"\n', 'resources.gpus', ['either whole GPUs', "got 'H100:2.5'"], 4, 9],
    ['a fraction too small', 'name: a\nrun: x\nresources:\n  gpus: 0.00001\n', 'resources.gpus', ['a fraction of one GPU between 0 and 1 (at least 0.0001)', 'got 0.00001'], 4, 9],
    ['negative GPUs', 'name: a\nrun: x\nresources:\n  gpus: -1\n', 'resources.gpus', ['expected a number ≥ 0', 'got -1'], 4, 9],
    ['TYPE:0', 'name: a\nrun: x\nresources:\n  gpus: "H100:0"\n', 'resources.gpus', ['COUNT ≥ 1'], 4, 9],
    ['GPUs as a list', 'name: a\nrun: x\nresources:\n  gpus: [1, 2]\n', 'resources.gpus', ['a mapping like {count: 8, type: H100, memory: 80GB}', 'got a list'], 4, 9],
    ['a bad GPU type in a list', 'name: a\nrun: x\nresources:\n  gpus:\n    count: 1\n    type: [H100, 7]\n', 'resources.gpus.type[1]', ['expected a GPU type', 'got 7'], 6, 18],
    ['a GPU type with no count', 'name: a\nrun: x\nresources:\n  gpus:\n    count: 0\n    type: H100\n', 'resources.gpus.count', ['count ≥ 1 when a GPU type or memory is given'], 5, 12],
    ['a fractional count in the mapping', 'name: a\nrun: x\nresources:\n  gpus: {count: 1.5}\n', 'resources.gpus.count', ['either whole GPUs (an integer ≥ 0) or a fraction of one GPU', 'got 1.5'], 4, 17],
    ['a share as the count in the mapping', 'name: a\nrun: x\nresources:\n  gpus: {count: 0.5}\n', 'resources.gpus.count', ['expected whole GPUs', 'got 0.5', 'count: 1, fraction: 0.5'], 4, 17],
    ['a fraction with count 2', 'name: a\nrun: x\nresources:\n  gpus: {count: 2, fraction: 0.5}\n', 'resources.gpus.count', ['expected count: 1 with a fraction', 'got 2'], 4, 17],
    ['a fraction with count 0', 'name: a\nrun: x\nresources:\n  gpus: {count: 0, fraction: 0.5}\n', 'resources.gpus.count', ['expected count: 1 with a fraction', 'got 0'], 4, 17],
    ['a fraction of 1', 'name: a\nrun: x\nresources:\n  gpus: {count: 1, fraction: 1}\n', 'resources.gpus.fraction', ['fraction of one GPU between 0 and 1', 'got 1', 'leave fraction out'], 4, 30],
    ['a fraction of 0', 'name: a\nrun: x\nresources:\n  gpus: {count: 1, fraction: 0}\n', 'resources.gpus.fraction', ['between 0 and 1', 'got 0'], 4, 30],
    ['a fraction as a word', 'name: a\nrun: x\nresources:\n  gpus: {count: 1, fraction: half}\n', 'resources.gpus.fraction', ['between 0 and 1', "got 'half'"], 4, 30],
    ['a fractional GPU on several nodes', 'name: a\nrun: x\nnum_nodes: 2\nresources:\n  gpus: 0.5\n', 'num_nodes', ['expected 1 for a fractional GPU job', 'got 2'], 3, 12],
    ['topology as a bare level', 'name: a\nrun: x\ntopology: rack\n', 'topology', ['exactly one of require, prefer', 'nvlink, node, rack, zone', "got 'rack'", 'did you mean {require: rack} or {prefer: rack}?'], 3, 11],
    ['topology with both modes', 'name: a\nrun: x\ntopology: {require: rack, prefer: node}\n', 'topology', ['exactly one of require', 'got both'], 3, 11],
    ['topology with no mode', 'name: a\nrun: x\ntopology: {}\n', 'topology', ['exactly one of require, prefer', 'got an empty mapping'], 3, 11],
    ['topology with only nulls', 'name: a\nrun: x\ntopology: {require: null}\n', 'topology', ['exactly one of require, prefer', 'got neither'], 3, 11],
    ['an unknown topology level', 'name: a\nrun: x\ntopology:\n  require: switch\n', 'topology.require', ['expected one of nvlink, node, rack, zone', "got 'switch'", "did you mean 'rack'?"], 4, 12],
    ['a misspelt topology level', 'name: a\nrun: x\ntopology: {prefer: racks}\n', 'topology.prefer', ["got 'racks'", "did you mean 'rack'?"], 3, 20],
    ['a topology level that is a number', 'name: a\nrun: x\ntopology: {prefer: 1}\n', 'topology.prefer', ['expected one of nvlink, node, rack, zone', 'got 1'], 3, 20],
    ['a misspelt topology mode', 'name: a\nrun: x\ntopology: {requires: rack}\n', 'topology.requires', ["unknown field 'requires' (did you mean 'require'?)", 'allowed fields in topology: require, prefer'], 3, 12],
    ['require node on several nodes', 'name: a\nrun: x\nnum_nodes: 4\ntopology: {require: node}\n', 'topology.require', ['expected rack or zone for a job on 4 nodes', 'prefer: node', "got 'node'"], 4, 21],
    ['require nvlink on several nodes', 'name: a\nrun: x\nnum_nodes: 2\ntopology: {require: nvlink}\n', 'topology.require', ['expected rack or zone for a job on 2 nodes', 'NVLink domain', "got 'nvlink'"], 4, 21],
    ['bad GPU memory', 'name: a\nrun: x\nresources:\n  gpus: {count: 1, memory: big}\n', 'resources.gpus.memory', ["got 'big'"], 4, 28],
    ['zero CPUs', 'name: a\nrun: x\nresources:\n  cpus: 0\n', 'resources.cpus', ['> 0', 'got 0'], 4, 9],
    ['bad host memory', 'name: a\nrun: x\nresources:\n  memory: -16GB\n', 'resources.memory', ['like 16GB', "got '-16GB'"], 4, 11],
    ['resources that are not a mapping', 'name: a\nrun: x\nresources: 2\n', 'resources', ['expected a mapping with gpus, cpus, memory', 'got 2'], 3, 12],
    ['zero nodes', 'name: a\nrun: x\nnum_nodes: 0\n', 'num_nodes', ['integer ≥ 1', 'got 0'], 3, 12],
    ['a priority word', 'name: a\nrun: x\npriority: high\n', 'priority', ['integer from 0 to 1000', "got 'high'"], 3, 11],
    ['a fractional priority', 'name: a\nrun: x\npriority: 1.5\n', 'priority', ['got 1.5'], 3, 11],
    ['a bad duration', 'name: a\nrun: x\nmax_duration: forever\n', 'max_duration', ['like 2h, 30m', "got 'forever'"], 3, 15],
    ['a zero duration', 'name: a\nrun: x\nmax_duration: 0s\n', 'max_duration', ["got '0s'"], 3, 15],
    ['a bad env name', 'name: a\nrun: x\nenv:\n  MY-VAR: "1"\n', 'env.MY-VAR', ['environment variable name', "got 'MY-VAR'"], 4, 3],
    ['an env value that is a list', 'name: a\nrun: x\nenv:\n  MY_VAR: [1]\n', 'env.MY_VAR', ['expected a string', 'got a list'], 4, 11],
    ['an empty env value', 'name: a\nrun: x\nenv:\n  MY_VAR:\n', 'env.MY_VAR', ["write '' for an empty value", 'got null'], 4, 3],
    ['env as a list', 'name: a\nrun: x\nenv: [A=1]\n', 'env', ['mapping of environment variables', 'got a list'], 3, 6],
    ['an empty workdir', 'name: a\nrun: x\nworkdir: ""\n', 'workdir', ['directory path', 'got an empty string'], 3, 10],
  ])('%s', (_title, yaml, path, fragments, line, column) => {
    const errors = parseErrors(yaml);
    expect(errors).toHaveLength(1);
    const [error] = errors;
    expect(error).toMatchObject({ path, line, column });
    for (const fragment of fragments) expect(error?.message).toContain(fragment);
  });

  it('names unknown fields, lists the allowed ones and suggests close matches', () => {
    const errors = parseErrors('name: a\nrun: x\nnum_node: 2\nresources:\n  gpu: 1\n  gpus: {count: 1, types: [H100]}\n');
    expect(errors.map((e) => [e.path, e.line, e.column])).toEqual([
      ['num_node', 3, 1],
      ['resources.gpu', 5, 3],
      ['resources.gpus.types', 6, 20],
    ]);
    expect(errors[0]?.message).toBe(
      `unknown field 'num_node' (did you mean 'num_nodes'?); allowed fields: ${ALLOWED_FIELDS}`,
    );
    expect(errors[1]?.message).toContain("did you mean 'gpus'?");
    expect(errors[1]?.message).toContain('allowed fields in resources: gpus, cpus, memory');
    expect(errors[2]?.message).toContain("did you mean 'type'?");
  });

  it.each([
    ['numNodes', 'num_nodes'],
    ['maxDuration', 'max_duration'],
    ['gpus', 'resources.gpus'],
    ['command', 'run'],
    ['environment', 'env'],
    ['timeout', 'max_duration'],
  ])('suggests %s → %s', (given, suggested) => {
    const [error] = parseErrors(`name: a\nrun: x\n${given}: 1\n`);
    expect(error?.message).toContain(`did you mean '${suggested}'?`);
  });

  it('does not guess when nothing is close', () => {
    const [error] = parseErrors('name: a\nrun: x\nfoo: 1\n');
    expect(error?.message).toBe(`unknown field 'foo'; allowed fields: ${ALLOWED_FIELDS}`);
  });

  it('reports every problem at once, in source order', () => {
    const errors = parseErrors(`name: ResNet_DDP
priority: -1
resources:
  gpus: eight
  memory: lots
run: [python, {}]
env:
  1BAD: x
max_duration: soon
extra: true
`);
    expect(errors.map((e) => `${e.path}@${e.line}:${e.column}`)).toEqual([
      'name@1:7', 'priority@2:11', 'resources.gpus@4:9', 'resources.memory@5:11', 'run[1]@6:15', 'env.1BAD@8:3', 'max_duration@9:15', 'extra@10:1',
    ]);
    expect(formatFieldErrors(errors).split('\n')[2]).toBe(
      "resources.gpus: expected a number ≥ 0 or TYPE:COUNT like H100:8, got 'eight' (line 4, column 9)",
    );
  });

  it('reports YAML syntax errors with path "" and their position', () => {
    const errors = parseErrors('name: a\nrun: [python, x\nteam: b\n');
    expect(errors.length).toBeGreaterThan(0);
    expect(errors[0]).toMatchObject({ path: '' });
    expect(errors[0]?.message).toMatch(/^invalid YAML: /);
    expect(errors[0]?.message).not.toContain('\n');
    expect(errors[0]?.line).toBeGreaterThanOrEqual(2);
    expect(errors[0]?.column).toBeGreaterThanOrEqual(1);
  });

  it('reports duplicate keys as field errors at the repeated key', () => {
    expect(parseErrors('name: a\nrun: x\nresources:\n  gpus: 1\n  gpus: 2\n')).toEqual([
      { path: 'resources.gpus', message: "duplicate key 'gpus': each key may appear only once", line: 5, column: 3 },
    ]);
  });

  it('rejects several documents', () => {
    const [error] = parseErrors('name: a\nrun: x\n---\nname: b\nrun: y\n');
    expect(error).toMatchObject({ path: '', line: 3 });
    expect(error?.message).toContain('expected one document');
  });

  it.each([
    ['an empty document', '', 'got an empty document'],
    ['a comment only', '# nothing here\n', 'got an empty document'],
    ['a list', '- name: a\n- run: x\n', 'got a list'],
    ['a scalar', 'python train.py\n', "got 'python train.py'"],
  ])('rejects %s with a clear message', (_title, yaml, fragment) => {
    const errors = parseErrors(yaml);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ path: '', line: 1, column: 1 });
    expect(errors[0]?.message).toContain('expected a mapping of job spec fields');
    expect(errors[0]?.message).toContain(fragment);
  });

  it('rejects keys that are lists or mappings', () => {
    expect(parseErrors('name: a\nrun: x\nenv:\n  ? [A, B]\n  : 1\n')).toEqual([
      { path: 'env', message: 'expected a plain key (a field or variable name), got a list', line: 4, column: 5 },
    ]);
  });

  it('refuses alias bombs instead of expanding them', () => {
    const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]', ...Array.from({ length: 8 }, (_, i) =>
      `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(9).fill(`*${String.fromCharCode(97 + i)}`).join(',')}]`)].join('\n');
    const errors = parseErrors(`${bomb}\nname: a\nrun: x\n`);
    expect(errors[0]?.path).toBe('');
  });
});

describe('parseJobSpecObject', () => {
  it('accepts a JSON body', () => {
    const result = parseJobSpecObject({
      name: 'resnet-ddp', team: 'vision', priority: 10, num_nodes: 2,
      resources: { gpus: { count: 4, type: 'h100' }, memory: 65536 },
      run: ['python', 'train.py'], env: { EPOCHS: 3, FAST: false }, max_duration: '1h30m',
    });
    expect(result).toEqual({
      ok: true,
      value: spec({ team: 'vision', priority: 10, numNodes: 2, resources: { gpus: { count: 4, types: ['H100'] }, memoryMiB: 65536 },
        run: { kind: 'argv', argv: ['python', 'train.py'] }, env: { EPOCHS: '3', FAST: 'false' }, maxDurationMs: 5_400_000 }),
    });
  });

  it('accepts fractional GPUs and a topology in a JSON body', () => {
    expect(parseJobSpecObject({ name: 'a', run: 'x', resources: { gpus: 0.5 }, topology: { prefer: 'node' } })).toEqual({
      ok: true, value: spec({ name: 'a', run: { kind: 'shell', command: 'x' }, resources: { gpus: { count: 1, types: [], fraction: 0.5 } }, topology: { prefer: 'node' } }),
    });
    expect(parseJobSpecObject({ name: 'a', run: 'x', num_nodes: 16, resources: { gpus: { count: 1, fraction: 0.25, memory: '10GB', type: ['H100'] } }, topology: { require: 'rack' } }))
      .toMatchObject({ ok: false, errors: [{ path: 'num_nodes', message: 'expected 1 for a fractional GPU job (a share of one GPU runs on one node), got 16' }] });
    expect(parseJobSpecObject({ name: 'a', run: 'x', num_nodes: 16, topology: { require: 'rack' } })).toEqual({
      ok: true, value: spec({ name: 'a', run: { kind: 'shell', command: 'x' }, numNodes: 16, topology: { require: 'rack' } }),
    });
  });

  it('reports every topology and fraction problem with its path', () => {
    const result = parseJobSpecObject({ name: 'a', run: 'x', resources: { gpus: { count: 3, fraction: 2 } }, topology: { require: 'row', prefer: null } });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors.map((e) => e.path)).toEqual(['resources.gpus.fraction', 'resources.gpus.count', 'topology.require']);
    expect(result.errors[0]?.message).toBe('expected a fraction of one GPU between 0 and 1 (at least 0.0001), e.g. 0.25, got 2');
    expect(result.errors[1]?.message).toBe('expected count: 1 with a fraction (a share of one GPU), got 3');
    expect(result.errors[2]?.message).toBe("expected one of nvlink, node, rack, zone (tightest first), got 'row'");
  });

  it('accepts null for optional fields, as JSON clients send it', () => {
    expect(parseJobSpecObject({ name: 'resnet-ddp', run: 'python train.py', workdir: null, max_duration: null, env: null })).toEqual({ ok: true, value: minimal });
  });

  it('returns every error with its path and no position', () => {
    const result = parseJobSpecObject({ name: 'x', run: [], resources: { gpus: { count: 1, type: ['H100', ''] } }, numNodes: 2, env: { 'A B': '1' } });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors.map((e) => e.path)).toEqual(['numNodes', 'resources.gpus.type[1]', 'run', 'env.A B']);
    expect(result.errors.every((e) => e.line === undefined && e.column === undefined)).toBe(true);
    expect(result.errors[0]?.message).toContain("did you mean 'num_nodes'?");
  });

  it.each([null, undefined, 'name: a', 42, [], new Date(0)])('rejects a body that is not an object: %j', (body) => {
    const result = parseJobSpecObject(body);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors).toEqual([{ path: '', message: expect.stringContaining('expected a mapping of job spec fields') }]);
  });

  it('keeps an environment variable named __proto__ as a variable', () => {
    const result = parseJobSpecObject(JSON.parse('{"name":"a","run":"x","env":{"__proto__":"v"}}'));
    expect(result.ok && Object.keys(result.value.env)).toEqual(['__proto__']);
    expect(result.ok && Object.getPrototypeOf(result.value.env)).toBe(Object.prototype);
  });

  it('rejects __proto__ as a top-level field instead of following it', () => {
    const result = parseJobSpecObject(JSON.parse('{"name":"a","run":"x","__proto__":{"priority":5}}'));
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors.map((e) => e.path)).toEqual(['__proto__']);
  });
});

describe('jobSpecJsonSchema', () => {
  it('describes exactly the fields the validator accepts', () => {
    const [error] = parseErrors('name: a\nrun: x\nzzz: 1\n');
    const allowed = /allowed fields: (.*)$/.exec(error?.message ?? '')?.[1]?.split(', ');
    expect(Object.keys(jobSpecJsonSchema.properties)).toEqual(allowed);
    expect(jobSpecJsonSchema.required).toEqual(['name', 'run']);
    expect(Object.keys(jobSpecJsonSchema.properties.resources.properties)).toEqual(['gpus', 'cpus', 'memory']);
    const [gpuError] = parseErrors('name: a\nrun: x\nresources:\n  gpus: {count: 1, zzz: 1}\n');
    const gpuFields = /allowed fields in resources\.gpus: (.*)$/.exec(gpuError?.message ?? '')?.[1]?.split(', ');
    const gpuMapping = jobSpecJsonSchema.properties.resources.properties.gpus.oneOf.find((shape) => shape.type === 'object');
    expect(gpuMapping && Object.keys(gpuMapping.properties)).toEqual(gpuFields);
    const [topologyError] = parseErrors('name: a\nrun: x\ntopology: {zzz: rack}\n');
    const topologyFields = /allowed fields in topology: (.*)$/.exec(topologyError?.message ?? '')?.[1]?.split(', ');
    expect(Object.keys(jobSpecJsonSchema.properties.topology.properties)).toEqual(topologyFields);
    expect(jobSpecJsonSchema.properties.topology.properties.require.enum).toEqual(['nvlink', 'node', 'rack', 'zone']);
  });

  it('is plain JSON', () => {
    expect(JSON.parse(JSON.stringify(jobSpecJsonSchema))).toEqual(jobSpecJsonSchema);
  });
});

describe('restart policy, checkpoints, graceful stop and hang detection fields', () => {
  it('reads them, normalises the signal, and writes them back', () => {
    const parsed = parseJobSpecYaml(
      'name: t\nrun: x\nmax_restarts: 2\nrestart_on: [failure, hang]\nrestart_backoff: 0s\ncheckpoint_dir: /ck\nstop_signal: usr1\npreemption_grace: 90s\nhang_timeout: 5m\n',
    );
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.value).toMatchObject({
      maxRestarts: 2, restartOn: ['failure', 'hang'], restartBackoffMs: 0, checkpointDir: '/ck', stopSignal: 'SIGUSR1', preemptionGraceMs: 90_000, hangTimeoutMs: 300_000,
    });
    const again = parseJobSpecObject(JSON.parse(JSON.stringify(serializeJobSpec(parsed.value))));
    expect(again.ok && again.value).toEqual(parsed.value);
  });

  it("resolves a relative checkpoint_dir against the job's workdir, not the server's working directory", () => {
    const resolved = (yaml: string) => {
      const result = resolveCheckpointDir(parseOk(yaml));
      return result.ok ? result.value.checkpointDir : result.errors;
    };
    expect(resolved('name: t\nrun: x\nworkdir: /home/ada/proj/\ncheckpoint_dir: ./ckpt/run1\n')).toBe('/home/ada/proj/ckpt/run1');
    expect(resolved('name: t\nrun: x\nworkdir: /srv\ncheckpoint_dir: /abs\n')).toBe('/abs');
    expect(resolved('name: t\nrun: x\ncheckpoint_dir: ckpt\n')).toEqual([
      { path: 'checkpoint_dir', message: '"ckpt" is a relative path and the job has no absolute workdir to resolve it against; give an absolute path (e.g. /data/checkpoints/t) or set workdir' },
    ]);
  });

  it('refuses a checkpoint_dir starting with ~, naming the field', () => {
    const errors = parseErrors('name: t\nrun: x\ncheckpoint_dir: ~/ckpt\n');
    expect(errors.map((e) => e.path)).toEqual(['checkpoint_dir']);
    expect(errors[0]?.message).toMatch(/starts with ~, which nothing expands/);
  });

  it('leaves them out when not given', () => {
    const parsed = parseJobSpecYaml('name: t\nrun: x\n');
    expect(parsed.ok && parsed.value.maxRestarts).toBeUndefined();
  });

  it.each([
    ['max_restarts: -1', 'max_restarts'],
    ['restart_on: [failure, crash]', 'restart_on[1]'],
    ['stop_signal: SIGKILL', 'stop_signal'],
    ['hang_timeout: soon', 'hang_timeout'],
  ])('rejects %s', (line, path) => {
    const parsed = parseJobSpecYaml(`name: t\nrun: x\n${line}\n`);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.errors[0]?.path).toBe(path);
  });
});
