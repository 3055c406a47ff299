/**
 * A JSON Schema (draft-07) of the job-spec wire document, for the OpenAPI docs and editor completion.
 * Documentation only: the hand-written validator (`parseJobSpecObject`) is the authority and gives better messages.
 * Where the validator accepts several shapes the schema lists them with `oneOf`; it does not restate every rule
 * (GPU type normalisation, unit syntax, null meaning "left out").
 */
import { TOPOLOGY_LEVELS } from './job.ts';
import { GPU_FRACTION_MIN } from './job-spec-validate.ts';

const label = {
  type: 'string',
  minLength: 1,
  maxLength: 63,
  pattern: '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$',
} as const;

const memorySize = {
  description: 'A size like 16GB, 512MiB or 1TB; GB and GiB both count 1024 MiB. A bare number means MiB.',
  oneOf: [
    { type: 'string', pattern: '^\\s*(\\d+(\\.\\d*)?|\\.\\d+)\\s*([KkMmGgTtPp][Ii]?[Bb]?|[Bb])?\\s*$', examples: ['16GB', '512MiB', '1TB'] },
    { type: 'number', exclusiveMinimum: 0 },
  ],
} as const;

/** Numbers and booleans are accepted where strings are wanted and taken as written. */
const scalar = { anyOf: [{ type: 'string' }, { type: 'number' }, { type: 'boolean' }] } as const;

const duration = {
  oneOf: [
    { type: 'string', minLength: 1, examples: ['30s', '5m', '1h'] },
    { type: 'number', minimum: 0 },
  ],
} as const;

const topologyLevel = { type: 'string', enum: [...TOPOLOGY_LEVELS] } as const;

const gpuType = { type: 'string', minLength: 1, description: 'A GPU type like H100, A100 or T4 (case-insensitive; product names are normalised).' } as const;

export const jobSpecJsonSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'JobSpec',
  description: 'A job: a gang of ranks that start together on num_nodes nodes, each node getting `resources`.',
  type: 'object',
  required: ['name', 'run'],
  additionalProperties: false,
  properties: {
    name: { ...label, description: "Lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit." },
    team: { ...label, default: 'default', description: 'The team the job is accounted to; same rules as name.' },
    priority: { type: 'integer', minimum: 0, maximum: 1000, default: 50, description: 'Higher runs first.' },
    resources: {
      type: 'object',
      additionalProperties: false,
      description: 'Resources per node. Without it the job asks for no GPUs.',
      properties: {
        gpus: {
          description: 'GPUs per node: whole GPUs (an integer), a share of one GPU (0 < x < 1, on one node), TYPE:COUNT (e.g. H100:8, H100:0.5), or a mapping.',
          default: 0,
          oneOf: [
            { type: 'integer', minimum: 0 },
            { type: 'number', minimum: GPU_FRACTION_MIN, exclusiveMaximum: 1, description: 'A share of one GPU, packed with other shares on a shared GPU.', examples: [0.5, 0.25] },
            { type: 'string', pattern: '^\\s*((\\d+(\\.\\d*)?|\\.\\d+)|[^:]+:\\s*(\\d+(\\.\\d*)?|\\.\\d+))\\s*$', examples: ['H100:8', 'H100,A100:2', 'H100:0.5'] },
            {
              type: 'object',
              anyOf: [{ required: ['count'] }, { required: ['fraction'] }],
              additionalProperties: false,
              properties: {
                count: { type: 'integer', minimum: 0, description: 'Whole GPUs per node; 1 (or left out) with fraction.' },
                fraction: {
                  type: 'number', minimum: GPU_FRACTION_MIN, exclusiveMaximum: 1, examples: [0.25, 0.5],
                  description: 'A share of one GPU (0 < fraction < 1), packed with other shares on a shared GPU; the job then runs on one node (num_nodes 1).',
                },
                type: {
                  description: 'Acceptable types in order of preference; left out or empty means any type.',
                  oneOf: [gpuType, { type: 'array', items: gpuType }],
                },
                memory: { ...memorySize, description: 'Minimum memory of each GPU; with fraction, the GPU memory the share needs (default: fraction × the GPU\'s memory). ' + memorySize.description },
              },
            },
          ],
        },
        cpus: { type: 'number', exclusiveMinimum: 0, description: 'Logical CPUs per node.' },
        memory: { ...memorySize, description: 'Host memory per node. ' + memorySize.description },
      },
    },
    num_nodes: { type: 'integer', minimum: 1, default: 1, description: 'Nodes the gang spans.' },
    topology: {
      description: 'Keep the gang inside one NVLink domain, node, rack or zone: as a must (require) or best effort (prefer). '
        + 'Exactly one of require, prefer. require: nvlink or node needs num_nodes 1.',
      type: 'object',
      additionalProperties: false,
      minProperties: 1,
      maxProperties: 1,
      properties: {
        require: { ...topologyLevel, description: 'The gang is placed only inside one domain of this level.' },
        prefer: { ...topologyLevel, description: 'Best effort: inside one domain of this level when one has room, else wider.' },
      },
      examples: [{ require: 'rack' }, { prefer: 'node' }],
    },
    run: {
      description: 'A command string run by /bin/sh -c, or an argv list run without a shell.',
      oneOf: [
        { type: 'string', minLength: 1 },
        { type: 'array', minItems: 1, items: scalar },
      ],
    },
    launcher: {
      type: 'string',
      enum: ['per-gpu', 'per-node', 'mpi'],
      default: 'per-gpu',
      description: "Who starts the processes: per-gpu (tutti, one per GPU, torchrun's variables), per-node (tutti, one per node, torchrun's PET_* settings: run torchrun, accelerate launch or deepspeed), mpi (mpirun locally, srun --mpi on Slurm).",
    },
    python_env: { type: 'string', pattern: '^/', description: 'A virtualenv or conda environment directory (absolute, as every node sees it): its bin leads PATH, VIRTUAL_ENV or CONDA_PREFIX names it.' },
    workdir: { type: 'string', minLength: 1, description: 'Working directory of every rank.' },
    env: {
      type: 'object',
      description: 'Extra environment variables for every rank; numbers and booleans are taken as strings.',
      propertyNames: { pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
      additionalProperties: scalar,
    },
    max_duration: {
      description: 'Stop the job after this long: 2h, 30m, 1h30m, 90s, 500ms, 01:30:00; a bare number means seconds.',
      oneOf: [
        { type: 'string', minLength: 1, examples: ['2h', '1h30m', '01:30:00'] },
        { type: 'number', exclusiveMinimum: 0 },
      ],
    },
    max_restarts: { type: 'integer', minimum: 0, maximum: 1000, default: 0, description: 'How often the whole gang may be restarted (see restart_on).' },
    restart_on: {
      type: 'array',
      items: { type: 'string', enum: ['failure', 'node_lost', 'hang'] },
      default: ['failure', 'node_lost'],
      description: 'Which ends of an attempt lead to a restart while restarts remain.',
    },
    restart_backoff: { ...duration, default: '5s', description: 'Wait before a restart; doubles per restart, capped at 10 minutes. 0s for none.' },
    checkpoint_dir: { type: 'string', minLength: 1, description: 'Kept across attempts, given as TUTTI_CHECKPOINT_DIR. A relative path is resolved against workdir (refused without an absolute workdir). Default: <dataDir>/checkpoints/<jobId>.' },
    stop_signal: { type: 'string', enum: ['SIGTERM', 'SIGINT', 'SIGUSR1', 'SIGUSR2', 'SIGHUP', 'SIGQUIT'], default: 'SIGTERM', description: 'Sent to every rank when the gang is stopped.' },
    preemption_grace: { ...duration, description: "Time between stop_signal and SIGKILL. Default: the server's --grace." },
    hang_timeout: { ...duration, description: 'No progress record for this long while ranks live: the job is hung. Off by default.' },
  },
} as const;
