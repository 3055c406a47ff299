import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { parseJobSpecObject, parseJobSpecYaml, serializeJobSpec, TOPOLOGY_LEVELS, type GpuRequest, type JobSpec, type RunCommand, type TopologyConstraint } from '@tutti/model';

const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/);
const gpuType = fc.oneof(fc.constantFrom('H100', 'H200', 'A100', 'V100', 'T4', 'L40S', 'RTX4090', 'A6000', 'MI300X'), fc.stringMatching(/^[A-Z][A-Z0-9]{0,7}$/));
const mib = fc.integer({ min: 1, max: 2 ** 40 });

const gpuRequest: fc.Arbitrary<GpuRequest> = fc.oneof(
  fc.constant<GpuRequest>({ count: 0, types: [] }),
  fc.record(
    { count: fc.integer({ min: 1, max: 64 }), types: fc.uniqueArray(gpuType, { maxLength: 4 }), memoryMiB: mib },
    { requiredKeys: ['count', 'types'] },
  ),
  // A share of one GPU: count 1, any fraction in [0.0001, 1), sometimes a "nice" one.
  fc.record(
    {
      count: fc.constant(1),
      types: fc.uniqueArray(gpuType, { maxLength: 4 }),
      memoryMiB: mib,
      fraction: fc.oneof(fc.constantFrom(0.5, 0.25, 0.125, 0.1, 0.0001), fc.double({ min: 0.0001, max: 1, maxExcluded: true, noNaN: true })),
    },
    { requiredKeys: ['count', 'types', 'fraction'] },
  ),
);

const topologyLevel = fc.constantFrom(...TOPOLOGY_LEVELS);
const topology: fc.Arbitrary<TopologyConstraint> = fc.oneof(
  topologyLevel.map((level) => ({ require: level })),
  topologyLevel.map((level) => ({ prefer: level })),
);

const nonBlank = fc.string({ minLength: 1 }).filter((s) => s.trim() !== '');
const run: fc.Arbitrary<RunCommand> = fc.oneof(
  nonBlank.map((command) => ({ kind: 'shell' as const, command })),
  fc.tuple(nonBlank, fc.array(fc.string(), { maxLength: 6 })).map(([program, args]) => ({ kind: 'argv' as const, argv: [program, ...args] })),
);

const env = fc.array(fc.tuple(fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,15}$/), fc.string()), { maxLength: 6 })
  .map((entries) => Object.fromEntries(entries));

const jobSpec: fc.Arbitrary<JobSpec> = fc.record(
  {
    name: label,
    team: label,
    priority: fc.integer({ min: 0, max: 1000 }),
    resources: fc.record(
      { gpus: gpuRequest, cpus: fc.oneof(fc.integer({ min: 1, max: 512 }), fc.double({ min: 0.001, max: 512, noNaN: true })), memoryMiB: mib },
      { requiredKeys: ['gpus'] },
    ),
    numNodes: fc.integer({ min: 1, max: 1024 }),
    topology,
    run,
    // per-gpu, the default, is normalised away by the parser.
    launcher: fc.constantFrom('per-node' as const, 'mpi' as const),
    pythonEnv: fc.stringMatching(/^\/[A-Za-z0-9_./-]{0,30}[A-Za-z0-9_.-]$/),
    workdir: nonBlank,
    env,
    maxDurationMs: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  },
  { requiredKeys: ['name', 'team', 'priority', 'resources', 'numNodes', 'run', 'env'] },
).map((spec) => {
  // Only valid specs: a share of one GPU runs on one node, and so does a gang that requires one node or NVLink domain.
  const singleNode = spec.resources.gpus.fraction !== undefined
    || (spec.topology !== undefined && 'require' in spec.topology && (spec.topology.require === 'node' || spec.topology.require === 'nvlink'));
  return singleNode ? { ...spec, numNodes: 1 } : spec;
});

describe('serializeJobSpec', () => {
  it('round-trips through parseJobSpecObject', () => {
    fc.assert(fc.property(jobSpec, (spec) => {
      expect(parseJobSpecObject(serializeJobSpec(spec))).toEqual({ ok: true, value: spec });
    }), { numRuns: 500 });
  });

  it('round-trips through JSON text', () => {
    fc.assert(fc.property(jobSpec, (spec) => {
      expect(parseJobSpecObject(JSON.parse(JSON.stringify(serializeJobSpec(spec))))).toEqual({ ok: true, value: spec });
    }), { numRuns: 200 });
  });

  it('round-trips through YAML text', () => {
    fc.assert(fc.property(jobSpec, (spec) => {
      expect(parseJobSpecYaml(stringify(serializeJobSpec(spec)))).toEqual({ ok: true, value: spec });
    }), { numRuns: 200 });
  });

  it('writes the canonical document with every default spelled out', () => {
    expect(serializeJobSpec({
      name: 'resnet-ddp', team: 'vision', priority: 50, numNodes: 2, env: { EPOCHS: '3' },
      resources: { gpus: { count: 8, types: ['H100', 'A100'], memoryMiB: 81920 }, cpus: 16, memoryMiB: 1536 },
      run: { kind: 'argv', argv: ['python', 'train.py'] }, maxDurationMs: 5_400_000,
    })).toEqual({
      name: 'resnet-ddp', team: 'vision', priority: 50, num_nodes: 2, env: { EPOCHS: '3' },
      resources: { gpus: { count: 8, type: ['H100', 'A100'], memory: '80GiB' }, cpus: 16, memory: '1536MiB' },
      run: ['python', 'train.py'], launcher: 'per-gpu', max_duration: '1h30m',
    });
  });

  it('writes a share of one GPU and a topology', () => {
    const document = serializeJobSpec({
      name: 'notebook', team: 'default', priority: 50, numNodes: 1, env: {}, topology: { prefer: 'node' },
      resources: { gpus: { count: 1, types: ['H100'], memoryMiB: 10240, fraction: 0.25 } }, run: { kind: 'shell', command: 'jupyter lab' },
    });
    expect(document).toEqual({
      name: 'notebook', team: 'default', priority: 50, num_nodes: 1, env: {}, topology: { prefer: 'node' },
      resources: { gpus: { count: 1, fraction: 0.25, type: ['H100'], memory: '10GiB' } }, run: 'jupyter lab', launcher: 'per-gpu',
    });
    expect(stringify(document.resources)).toBe('gpus:\n  count: 1\n  fraction: 0.25\n  type:\n    - H100\n  memory: 10GiB\n');
  });
});
