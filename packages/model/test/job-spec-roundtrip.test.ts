import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { parseJobSpecObject, parseJobSpecYaml, serializeJobSpec, type GpuRequest, type JobSpec, type RunCommand } from '@tutti/model';

const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/);
const gpuType = fc.oneof(fc.constantFrom('H100', 'H200', 'A100', 'V100', 'T4', 'L40S', 'RTX4090', 'A6000', 'MI300X'), fc.stringMatching(/^[A-Z][A-Z0-9]{0,7}$/));
const mib = fc.integer({ min: 1, max: 2 ** 40 });

const gpuRequest: fc.Arbitrary<GpuRequest> = fc.oneof(
  fc.constant<GpuRequest>({ count: 0, types: [] }),
  fc.record(
    { count: fc.integer({ min: 1, max: 64 }), types: fc.uniqueArray(gpuType, { maxLength: 4 }), memoryMiB: mib },
    { requiredKeys: ['count', 'types'] },
  ),
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
    run,
    workdir: nonBlank,
    env,
    maxDurationMs: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  },
  { requiredKeys: ['name', 'team', 'priority', 'resources', 'numNodes', 'run', 'env'] },
);

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
      run: ['python', 'train.py'], max_duration: '1h30m',
    });
  });
});
