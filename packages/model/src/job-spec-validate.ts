/**
 * The job-spec validator: the one authority on what a job spec may contain. It reads the wire document (snake_case,
 * as parsed from YAML or JSON) and produces a normalised `JobSpec` plus every problem it found, not only the first.
 * Positions in the source are added by the YAML front end (`parseJobSpecYaml`); this file knows only paths.
 */
import { findClosestMatch } from './closest-match.ts';
import { normalizeGpuType } from './gpu-type.ts';
import type { GpuRequest, JobSpec, Launcher, ResourceRequest, RestartCause, RunCommand, StopSignal, TopologyConstraint, TopologyLevel } from './job.ts';
import { DEFAULT_LAUNCHER, LAUNCHERS, RESTART_CAUSES, STOP_SIGNALS, TOPOLOGY_LEVELS } from './job.ts';
import { parseDuration, parseMemorySize } from './units.ts';

/** A step into the document: a mapping key or a list index. */
export type PathSegment = string | number;

/** One problem found by the validator, before it is placed in the source. */
export interface SpecIssue {
  path: PathSegment[];
  message: string;
  /** Whether the problem is the key itself (an unknown field) or the value under it. */
  at: 'key' | 'value';
}

export interface ValidationContext {
  /**
   * The text of the scalar at `path` as written, when the input was YAML. Lets `LR: 1e-3` in `env` stay "1e-3"
   * instead of becoming "0.001" when a number is coerced to a string.
   */
  scalarSource?: (path: readonly PathSegment[]) => string | undefined;
}

export const JOB_SPEC_FIELDS = ['name', 'team', 'priority', 'resources', 'num_nodes', 'topology', 'run', 'launcher', 'python_env', 'workdir', 'env', 'max_duration',
  'max_restarts', 'restart_on', 'restart_backoff', 'checkpoint_dir', 'stop_signal', 'preemption_grace', 'hang_timeout'] as const;
export const RESOURCE_FIELDS = ['gpus', 'cpus', 'memory'] as const;
export const GPU_FIELDS = ['count', 'fraction', 'type', 'memory'] as const;
export const TOPOLOGY_FIELDS = ['require', 'prefer'] as const;
/** The smallest share of one GPU a job may ask for (the scheduler counts shares in ten-thousandths of a GPU). */
export const GPU_FRACTION_MIN = 0.0001;

/** Names people reach for that mean one of our fields; checked before edit distance. */
const TOP_LEVEL_ALIASES: Record<string, string> = {
  gpus: 'resources.gpus', gpu: 'resources.gpus', cpus: 'resources.cpus', cpu: 'resources.cpus', memory: 'resources.memory', mem: 'resources.memory',
  nodes: 'num_nodes', nnodes: 'num_nodes', command: 'run', cmd: 'run', script: 'run', args: 'run', argv: 'run',
  environment: 'env', timeout: 'max_duration', time: 'max_duration', walltime: 'max_duration', time_limit: 'max_duration',
  cwd: 'workdir', working_dir: 'workdir', dir: 'workdir', queue: 'team', partition: 'team',
  placement: 'topology', affinity: 'topology', locality: 'topology',
};
/** What a user may write for a launcher, and what to write instead. */
const LAUNCHER_HINTS: Record<string, string> = {
  torchrun: "per-gpu runs your script under torchrun's variables; per-node runs `torchrun train.py` itself once per node",
  'torch-run': "per-gpu runs your script under torchrun's variables; per-node runs `torchrun train.py` itself once per node",
  gpu: 'per-gpu: one process per GPU', node: 'per-node: one process per node', pernode: 'per-node', pergpu: 'per-gpu',
  accelerate: 'per-node runs `accelerate launch train.py` once per node', deepspeed: 'per-node runs `deepspeed train.py` once per node',
  mpirun: 'mpi: the ranks are started by mpirun (srun on Slurm)', openmpi: 'mpi', mpiexec: 'mpi', pmix: 'mpi', srun: 'mpi',
};
const RESOURCE_ALIASES: Record<string, string> = { gpu: 'gpus', cpu: 'cpus', mem: 'memory' };
const GPU_ALIASES: Record<string, string> = {
  types: 'type', gpu_type: 'type', mem: 'memory', n: 'count', num: 'count', share: 'fraction', frac: 'fraction', gpu_fraction: 'fraction',
};
const TOPOLOGY_ALIASES: Record<string, string> = { must: 'require', required: 'require', requires: 'require', should: 'prefer', preferred: 'prefer', prefers: 'prefer' };
/** Words people use for a topology level. */
const TOPOLOGY_LEVEL_ALIASES: Record<string, TopologyLevel> = {
  nvl: 'nvlink', nvswitch: 'nvlink', host: 'node', machine: 'node', server: 'node', switch: 'rack', block: 'rack', region: 'zone', az: 'zone',
};

export const NAME_MAX_LENGTH = 63;
const LABEL_CHARSET_RE = /^[a-z0-9-]+$/;
const LABEL_RE = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const GPU_TYPE_RE = /^[A-Z0-9]+$/;
const LABEL_EXPECTED = `expected lowercase letters, digits and '-' (at most ${NAME_MAX_LENGTH} characters)`;
const GPUS_EXPECTED = 'expected a number ≥ 0 or TYPE:COUNT like H100:8';
const WHOLE_OR_FRACTION = 'expected either whole GPUs (an integer ≥ 0) or a fraction of one GPU (between 0 and 1, e.g. 0.5)';
const FRACTION_EXPECTED = `expected a fraction of one GPU between 0 and 1 (at least ${GPU_FRACTION_MIN}), e.g. 0.25`;
const TOPOLOGY_EXPECTED = `expected a mapping with exactly one of require, prefer and a level (${TOPOLOGY_LEVELS.join(', ')}), like {require: rack} or {prefer: node}`;
const MEMORY_EXPECTED = 'expected a size > 0 like 16GB, 512MiB or 1TB (a bare number means MiB)';
const DURATION_EXPECTED = 'expected a duration > 0 like 2h, 30m, 1h30m, 90s or 01:30:00 (a bare number means seconds)';
const RUN_EXPECTED = 'expected a non-empty command string (run by /bin/sh -c) or a non-empty list of strings (argv, run without a shell)';

/** Validates a wire document. Returns the spec only when there are no issues. */
export function validateJobSpecDocument(value: unknown, context: ValidationContext = {}): { spec?: JobSpec; issues: SpecIssue[] } {
  const v = new Validator(context);
  const spec = v.readSpec(value);
  return v.issues.length === 0 && spec ? { spec, issues: [] } : { issues: v.issues };
}

/** Renders a given value for messages: 'eight', 0.5, true, null, a list, a mapping. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') {
    if (value === '') return 'an empty string';
    const shown = value.length > 60 ? `${value.slice(0, 57)}...` : value;
    return `'${shown.replace(/\n/g, '\\n')}'`;
  }
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : 'a list';
  if (isPlainObject(value)) return 'a mapping';
  return `a value of type ${Object.prototype.toString.call(value).slice(8, -1)}`;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Optional fields may be left out or given as null (`workdir:` with nothing after it, or `null` in JSON). */
function isAbsent(value: unknown): value is null | undefined {
  return value === undefined || value === null;
}

function own(record: Record<string, unknown>, key: string): unknown {
  return Object.prototype.hasOwnProperty.call(record, key) ? record[key] : undefined;
}

class Validator {
  readonly issues: SpecIssue[] = [];

  constructor(private readonly context: ValidationContext) {}

  private fail(path: PathSegment[], message: string, at: 'key' | 'value' = 'value'): undefined {
    this.issues.push({ path, message, at });
    return undefined;
  }

  readSpec(value: unknown): JobSpec | undefined {
    if (!isPlainObject(value)) {
      const got = isAbsent(value) ? 'an empty document' : describeValue(value);
      return this.fail([], `expected a mapping of job spec fields (at least 'name' and 'run'), got ${got}`);
    }
    this.checkUnknownFields(value, [], JOB_SPEC_FIELDS, TOP_LEVEL_ALIASES);

    const name = this.readLabel(own(value, 'name'), ['name'], undefined);
    const team = this.readLabel(own(value, 'team'), ['team'], 'default');
    const priority = this.readInteger(own(value, 'priority'), ['priority'], 50, 0, 1000, 'an integer from 0 to 1000 (higher runs first)');
    const resources = this.readResources(own(value, 'resources'), ['resources']);
    const numNodes = this.readInteger(own(value, 'num_nodes'), ['num_nodes'], 1, 1, Number.MAX_SAFE_INTEGER, 'an integer ≥ 1');
    const topology = this.readTopology(own(value, 'topology'), ['topology']);
    if (numNodes !== undefined && numNodes > 1) this.checkSingleNode(resources, topology, numNodes);
    const run = this.readRun(own(value, 'run'), ['run']);
    const launcher = this.readLauncher(own(value, 'launcher'), ['launcher']);
    const pythonEnv = this.readPythonEnv(own(value, 'python_env'), ['python_env']);
    const workdir = this.readWorkdir(own(value, 'workdir'), ['workdir']);
    const env = this.readEnv(own(value, 'env'), ['env']);
    const maxDurationMs = this.readDuration(own(value, 'max_duration'), ['max_duration']);
    const survival = this.readSurvival(value);

    if (name === undefined || team === undefined || priority === undefined || resources === undefined
      || numNodes === undefined || run === undefined || env === undefined || this.issues.length > 0) {
      return undefined;
    }
    const spec: JobSpec = { name, team, priority, resources, numNodes, run, env };
    if (topology !== undefined) spec.topology = topology;
    // Normalised: the default is left out, as in specs written before the field existed.
    if (launcher !== undefined && launcher !== DEFAULT_LAUNCHER) spec.launcher = launcher;
    if (pythonEnv !== undefined) spec.pythonEnv = pythonEnv;
    if (workdir !== undefined) spec.workdir = workdir;
    if (maxDurationMs !== undefined) spec.maxDurationMs = maxDurationMs;
    Object.assign(spec, survival);
    return spec;
  }

  /** `per-gpu`, `per-node` or `mpi`; a few spellings of them (`torchrun`, `mpirun`) say which was meant. */
  private readLauncher(value: unknown, path: PathSegment[]): Launcher | undefined {
    if (isAbsent(value)) return undefined;
    if (typeof value === 'string' && (LAUNCHERS as readonly string[]).includes(value)) return value as Launcher;
    const hint = typeof value === 'string' ? LAUNCHER_HINTS[value.toLowerCase().replace(/_/g, '-')] : undefined;
    return this.fail(path, `expected one of ${LAUNCHERS.join(', ')}, got ${describeValue(value)}${hint ? ` (${hint})` : ''}`);
  }

  /** An absolute directory: the environment's `bin` must be found the same way on every node. */
  private readPythonEnv(value: unknown, path: PathSegment[]): string | undefined {
    if (isAbsent(value)) return undefined;
    if (typeof value !== 'string' || value.trim() === '') return this.fail(path, `expected the directory of a virtualenv or conda environment, got ${describeValue(value)}`);
    if (!value.startsWith('/')) return this.fail(path, `"${value}" is not an absolute path; give the environment's directory as every node sees it, e.g. /opt/venvs/train (VIRTUAL_ENV or CONDA_PREFIX of the activated environment)`);
    if (/[\n\0]/.test(value)) return this.fail(path, 'a directory path cannot hold a newline or NUL');
    return value.replace(/\/+$/, '') || '/';
  }

  /** Restart policy, checkpoints, graceful stop and hang detection: only the fields given are set. */
  private readSurvival(value: Record<string, unknown>): Partial<JobSpec> {
    const out: Partial<JobSpec> = {};
    const maxRestarts = own(value, 'max_restarts');
    if (!isAbsent(maxRestarts)) {
      const n = this.readInteger(maxRestarts, ['max_restarts'], 0, 0, 1000, 'an integer from 0 to 1000');
      if (n !== undefined) out.maxRestarts = n;
    }
    const restartOn = own(value, 'restart_on');
    if (!isAbsent(restartOn)) {
      const list = typeof restartOn === 'string' ? [restartOn] : restartOn;
      if (!Array.isArray(list)) {
        this.fail(['restart_on'], `expected a list of ${RESTART_CAUSES.join(', ')}, got ${describeValue(restartOn)}`);
      } else {
        const causes: RestartCause[] = [];
        list.forEach((entry: unknown, i) => {
          if (typeof entry === 'string' && (RESTART_CAUSES as readonly string[]).includes(entry)) {
            if (!causes.includes(entry as RestartCause)) causes.push(entry as RestartCause);
          } else {
            this.fail(typeof restartOn === 'string' ? ['restart_on'] : ['restart_on', i], `expected one of ${RESTART_CAUSES.join(', ')}, got ${describeValue(entry)}`);
          }
        });
        out.restartOn = causes;
      }
    }
    const backoff = own(value, 'restart_backoff');
    if (!isAbsent(backoff)) {
      const ms = backoff === 0 || backoff === '0' || backoff === '0s' ? 0 : this.readDuration(backoff, ['restart_backoff']);
      if (ms !== undefined) out.restartBackoffMs = ms;
    }
    const checkpointDir = own(value, 'checkpoint_dir');
    if (!isAbsent(checkpointDir)) {
      if (typeof checkpointDir !== 'string' || checkpointDir.trim() === '') this.fail(['checkpoint_dir'], `expected a directory path, got ${describeValue(checkpointDir)}`);
      else if (checkpointDir.startsWith('~')) this.fail(['checkpoint_dir'], `"${checkpointDir}" starts with ~, which nothing expands; give an absolute path such as /home/you/checkpoints`);
      else out.checkpointDir = checkpointDir;
    }
    const signal = own(value, 'stop_signal');
    if (!isAbsent(signal)) {
      const name = typeof signal === 'string' ? (signal.toUpperCase().startsWith('SIG') ? signal.toUpperCase() : `SIG${signal.toUpperCase()}`) : '';
      if ((STOP_SIGNALS as readonly string[]).includes(name)) out.stopSignal = name as StopSignal;
      else this.fail(['stop_signal'], `expected one of ${STOP_SIGNALS.join(', ')}, got ${describeValue(signal)}`);
    }
    const grace = this.readDuration(own(value, 'preemption_grace'), ['preemption_grace']);
    if (grace !== undefined) out.preemptionGraceMs = grace;
    const hang = this.readDuration(own(value, 'hang_timeout'), ['hang_timeout']);
    if (hang !== undefined) out.hangTimeoutMs = hang;
    return out;
  }

  /** `{require: rack}` or `{prefer: node}`: exactly one mode, and a level from `TOPOLOGY_LEVELS`. */
  private readTopology(value: unknown, path: PathSegment[]): TopologyConstraint | undefined {
    if (isAbsent(value)) return undefined;
    if (!isPlainObject(value)) {
      const level = typeof value === 'string' ? toTopologyLevel(value) : undefined;
      const hint = level !== undefined ? ` (did you mean {require: ${level}} or {prefer: ${level}}?)` : '';
      return this.fail(path, `${TOPOLOGY_EXPECTED}, got ${describeValue(value)}${hint}`);
    }
    const issuesBefore = this.issues.length;
    this.checkUnknownFields(value, path, TOPOLOGY_FIELDS, TOPOLOGY_ALIASES);
    const modes = TOPOLOGY_FIELDS.filter((mode) => !isAbsent(own(value, mode)));
    const [mode] = modes;
    if (modes.length > 1) {
      return this.fail(path, `expected exactly one of require (a must) or prefer (best effort), got both require: ${describeValue(own(value, 'require'))} and prefer: ${describeValue(own(value, 'prefer'))}`);
    }
    if (mode === undefined) {
      // `{requires: rack}` has already been reported as an unknown field; a second message would say the same.
      if (this.issues.length > issuesBefore) return undefined;
      return this.fail(path, `${TOPOLOGY_EXPECTED}, got ${Object.keys(value).length === 0 ? 'an empty mapping' : 'neither'}`);
    }
    const given = own(value, mode);
    const level = typeof given === 'string' ? toTopologyLevel(given) : undefined;
    if (level !== undefined && typeof given === 'string' && level === given.trim().toLowerCase()) {
      return mode === 'require' ? { require: level } : { prefer: level };
    }
    const hint = level !== undefined ? ` (did you mean '${level}'?)` : '';
    return this.fail([...path, mode], `expected one of ${TOPOLOGY_LEVELS.join(', ')} (tightest first), got ${describeValue(given)}${hint}`);
  }

  /** A share of one GPU, or a required NVLink domain or node, holds one node: `num_nodes` must then be 1. */
  private checkSingleNode(resources: ResourceRequest | undefined, topology: TopologyConstraint | undefined, numNodes: number): void {
    if (resources?.gpus.fraction !== undefined) {
      this.fail(['num_nodes'], `expected 1 for a fractional GPU job (a share of one GPU runs on one node), got ${numNodes}`);
    }
    if (topology !== undefined && 'require' in topology && (topology.require === 'nvlink' || topology.require === 'node')) {
      this.fail(['topology', 'require'],
        `expected rack or zone for a job on ${numNodes} nodes (require: ${topology.require} keeps the gang inside one ${topology.require === 'node' ? 'node' : 'NVLink domain of one node'}; write prefer: ${topology.require} for a preference), got '${topology.require}'`);
    }
  }

  private checkUnknownFields(record: Record<string, unknown>, path: PathSegment[], allowed: readonly string[], aliases: Record<string, string>): void {
    for (const key of Object.keys(record)) {
      if (allowed.includes(key)) continue;
      const aliasKey = Object.hasOwn(aliases, key) ? key : key.toLowerCase();
      const suggestion = (Object.hasOwn(aliases, aliasKey) ? aliases[aliasKey] : undefined) ?? findClosestMatch(key, allowed);
      const hint = suggestion !== undefined ? ` (did you mean '${suggestion}'?)` : '';
      const where = path.length === 0 ? '' : ` in ${formatPath(path)}`;
      this.fail([...path, key], `unknown field '${key}'${hint}; allowed fields${where}: ${allowed.join(', ')}`, 'key');
    }
  }

  /** A DNS-label-like name: what `name` and `team` must be. */
  private readLabel(value: unknown, path: PathSegment[], fallback: string | undefined): string | undefined {
    if (isAbsent(value)) {
      if (fallback !== undefined) return fallback;
      return this.fail(path, `required: ${LABEL_EXPECTED.replace('expected ', '')}, e.g. resnet-ddp`);
    }
    if (typeof value !== 'string' || value === '') return this.fail(path, `${LABEL_EXPECTED}, got ${describeValue(value)}`);
    const suggestion = suggestLabel(value);
    const hint = suggestion !== undefined && suggestion !== value ? `; try '${suggestion}'` : '';
    if (!LABEL_CHARSET_RE.test(value)) return this.fail(path, `${LABEL_EXPECTED}, got ${describeValue(value)}${hint}`);
    if (value.length > NAME_MAX_LENGTH) return this.fail(path, `${LABEL_EXPECTED}, got ${value.length} characters${hint}`);
    if (!LABEL_RE.test(value)) return this.fail(path, `expected to start and end with a letter or digit, got ${describeValue(value)}${hint}`);
    return value;
  }

  private readInteger(value: unknown, path: PathSegment[], fallback: number, min: number, max: number, expected: string): number | undefined {
    if (isAbsent(value)) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      return this.fail(path, `expected ${expected}, got ${describeValue(value)}`);
    }
    return value;
  }

  private readResources(value: unknown, path: PathSegment[]): ResourceRequest | undefined {
    if (isAbsent(value)) return { gpus: { count: 0, types: [] } };
    if (!isPlainObject(value)) {
      return this.fail(path, `expected a mapping with ${RESOURCE_FIELDS.join(', ')} (all optional), got ${describeValue(value)}`);
    }
    this.checkUnknownFields(value, path, RESOURCE_FIELDS, RESOURCE_ALIASES);
    const gpusValue = own(value, 'gpus');
    const gpus = isAbsent(gpusValue) ? { count: 0, types: [] } : this.readGpus(gpusValue, [...path, 'gpus']);
    const cpus = this.readCpus(own(value, 'cpus'), [...path, 'cpus']);
    const memoryMiB = this.readMemory(own(value, 'memory'), [...path, 'memory']);
    if (gpus === undefined) return undefined;
    const resources: ResourceRequest = { gpus };
    if (cpus !== undefined) resources.cpus = cpus;
    if (memoryMiB !== undefined) resources.memoryMiB = memoryMiB;
    return resources;
  }

  private readGpus(value: unknown, path: PathSegment[]): GpuRequest | undefined {
    if (typeof value === 'number') return this.readGpuAmount(value, path, value, []);
    if (typeof value === 'string') return this.readGpuString(value, path);
    if (isPlainObject(value)) return this.readGpuMapping(value, path);
    return this.fail(path, `${GPUS_EXPECTED}, or a mapping like {count: 8, type: H100, memory: 80GB}, got ${describeValue(value)}`);
  }

  /**
   * A bare amount of GPUs: whole GPUs (an integer ≥ 0) or a share of one GPU (0 < x < 1, then count 1 and `fraction`).
   * `shown` is what the user wrote, for the message.
   */
  private readGpuAmount(amount: number, path: PathSegment[], shown: unknown, types: string[]): GpuRequest | undefined {
    if (!Number.isFinite(amount) || amount < 0 || amount > Number.MAX_SAFE_INTEGER) return this.fail(path, `${GPUS_EXPECTED}, got ${describeValue(shown)}`);
    if (Number.isInteger(amount)) return { count: amount, types };
    if (amount > 1) return this.fail(path, `${WHOLE_OR_FRACTION}, got ${describeValue(shown)}`);
    if (amount < GPU_FRACTION_MIN) return this.fail(path, `${FRACTION_EXPECTED}, got ${describeValue(shown)}`);
    return { count: 1, types, fraction: amount };
  }

  /** "2", "H100:8" or "H100,A100:8". */
  private readGpuString(text: string, path: PathSegment[]): GpuRequest | undefined {
    const trimmed = text.trim();
    if (/^(\d+(\.\d*)?|\.\d+)$/.test(trimmed)) return this.readGpuAmount(Number(trimmed), path, text, []);
    const colon = trimmed.lastIndexOf(':');
    const countText = trimmed.slice(colon + 1).trim();
    const typeText = trimmed.slice(0, Math.max(colon, 0));
    if (colon <= 0 || !/^(\d+(\.\d*)?|\.\d+)$/.test(countText) || typeText.trim() === '') {
      return this.fail(path, `${GPUS_EXPECTED}, got ${describeValue(text)}`);
    }
    const count = Number(countText);
    if (count === 0) return this.fail(path, `expected a COUNT ≥ 1 in TYPE:COUNT (leave gpus out, or write 0, for a CPU-only job), got ${describeValue(text)}`);
    const types: string[] = [];
    for (const part of typeText.split(',')) {
      const type = normalizeGpuType(part);
      if (!GPU_TYPE_RE.test(type)) return this.fail(path, `expected GPU types like H100 or A100 before ':' in TYPE:COUNT, got ${describeValue(text)}`);
      if (!types.includes(type)) types.push(type);
    }
    return this.readGpuAmount(count, path, text, types);
  }

  private readGpuMapping(value: Record<string, unknown>, path: PathSegment[]): GpuRequest | undefined {
    this.checkUnknownFields(value, path, GPU_FIELDS, GPU_ALIASES);
    const fractionValue = own(value, 'fraction');
    const hasFraction = !isAbsent(fractionValue);
    const fraction = hasFraction ? this.readFraction(fractionValue, [...path, 'fraction']) : undefined;
    const count = this.readGpuMappingCount(own(value, 'count'), [...path, 'count'], hasFraction);
    const types = this.readGpuTypes(own(value, 'type'), [...path, 'type']);
    const memoryMiB = this.readMemory(own(value, 'memory'), [...path, 'memory']);
    if (count === 0 && ((types?.length ?? 0) > 0 || memoryMiB !== undefined)) {
      this.fail([...path, 'count'], `expected a count ≥ 1 when a GPU type or memory is given, got 0`);
      return undefined;
    }
    if (count === undefined || types === undefined || (hasFraction && fraction === undefined)) return undefined;
    const gpus: GpuRequest = { count, types };
    if (memoryMiB !== undefined) gpus.memoryMiB = memoryMiB;
    if (fraction !== undefined) gpus.fraction = fraction;
    return gpus;
  }

  /** `count` in the mapping form: whole GPUs; exactly 1 (or left out) with a `fraction`. */
  private readGpuMappingCount(value: unknown, path: PathSegment[], hasFraction: boolean): number | undefined {
    if (isAbsent(value)) {
      if (hasFraction) return 1;
      return this.fail(path, 'required: the number of whole GPUs per node, e.g. count: 8 (or count: 1 with a fraction, e.g. fraction: 0.5)');
    }
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > Number.MAX_SAFE_INTEGER) {
      return this.fail(path, `expected an integer ≥ 0, got ${describeValue(value)}`);
    }
    if (hasFraction) {
      return value === 1 ? 1 : this.fail(path, `expected count: 1 with a fraction (a share of one GPU), got ${describeValue(value)}`);
    }
    if (Number.isInteger(value)) return value;
    if (value < 1) return this.fail(path, `expected whole GPUs (an integer ≥ 0), got ${describeValue(value)}; for a share of one GPU write count: 1, fraction: ${value}`);
    return this.fail(path, `expected either whole GPUs (an integer ≥ 0) or a fraction of one GPU (count: 1 with a fraction between 0 and 1, e.g. fraction: 0.5), got ${describeValue(value)}`);
  }

  /** `fraction` in the mapping form: a share of one GPU, strictly between 0 and 1. */
  private readFraction(value: unknown, path: PathSegment[]): number | undefined {
    if (typeof value === 'number' && Number.isFinite(value) && value >= GPU_FRACTION_MIN && value < 1) return value;
    const hint = value === 1 ? '; for whole GPUs leave fraction out (count: 1)' : '';
    return this.fail(path, `${FRACTION_EXPECTED}, got ${describeValue(value)}${hint}`);
  }

  private readGpuTypes(value: unknown, path: PathSegment[]): string[] | undefined {
    if (isAbsent(value)) return [];
    const expected = 'expected a GPU type like H100, or a list of types in order of preference like [H100, A100]';
    const entries: Array<[unknown, PathSegment[]]> = typeof value === 'string'
      ? [[value, path]]
      : Array.isArray(value) ? value.map((entry, i) => [entry, [...path, i]]) : [];
    if (entries.length === 0 && !Array.isArray(value)) return this.fail(path, `${expected}, got ${describeValue(value)}`);
    const types: string[] = [];
    let ok = true;
    for (const [entry, entryPath] of entries) {
      const type = typeof entry === 'string' ? normalizeGpuType(entry) : '';
      if (!GPU_TYPE_RE.test(type)) {
        ok = false;
        this.fail(entryPath, `expected a GPU type like H100, A100 or T4 (letters and digits), got ${describeValue(entry)}`);
      } else if (!types.includes(type)) {
        types.push(type);
      }
    }
    return ok ? types : undefined;
  }

  private readCpus(value: unknown, path: PathSegment[]): number | undefined {
    if (isAbsent(value)) return undefined;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      return this.fail(path, `expected a number of CPUs > 0 (fractions allowed, e.g. 0.5), got ${describeValue(value)}`);
    }
    return value;
  }

  private readMemory(value: unknown, path: PathSegment[]): number | undefined {
    if (isAbsent(value)) return undefined;
    const mib = typeof value === 'string' || typeof value === 'number' ? parseMemorySize(value) : undefined;
    if (mib === undefined || mib <= 0) return this.fail(path, `${MEMORY_EXPECTED}, got ${describeValue(value)}`);
    return mib;
  }

  private readDuration(value: unknown, path: PathSegment[]): number | undefined {
    if (isAbsent(value)) return undefined;
    const ms = typeof value === 'string' || typeof value === 'number' ? parseDuration(value) : undefined;
    if (ms === undefined) return this.fail(path, `${DURATION_EXPECTED}, got ${describeValue(value)}`);
    return ms;
  }

  private readRun(value: unknown, path: PathSegment[]): RunCommand | undefined {
    if (isAbsent(value)) return this.fail(path, `required: ${RUN_EXPECTED.replace('expected ', '')}, e.g. run: python train.py`);
    if (typeof value === 'string') {
      if (value.trim() === '') return this.fail(path, `${RUN_EXPECTED}, got ${value === '' ? 'an empty string' : 'only whitespace'}`);
      return { kind: 'shell', command: value };
    }
    if (!Array.isArray(value) || value.length === 0) return this.fail(path, `${RUN_EXPECTED}, got ${describeValue(value)}`);
    const argv: string[] = [];
    value.forEach((entry: unknown, i) => {
      const text = this.readStringish(entry, [...path, i], 'expected a string (quote numbers to keep them as written)');
      if (text === undefined) return;
      if (i === 0 && text.trim() === '') {
        this.fail([...path, i], `expected the program to run as the first argument, got ${describeValue(text)}`);
        return;
      }
      argv.push(text);
    });
    return argv.length === value.length ? { kind: 'argv', argv } : undefined;
  }

  /** A string, or a number or boolean taken as the text it was written as. */
  private readStringish(value: unknown, path: PathSegment[], expected: string): string | undefined {
    if (typeof value === 'string') return value;
    if (typeof value === 'number' || typeof value === 'boolean') return this.context.scalarSource?.(path) ?? String(value);
    return this.fail(path, `${expected}, got ${describeValue(value)}`);
  }

  private readWorkdir(value: unknown, path: PathSegment[]): string | undefined {
    if (isAbsent(value)) return undefined;
    if (typeof value !== 'string' || value.trim() === '') return this.fail(path, `expected a directory path, got ${describeValue(value)}`);
    return value;
  }

  private readEnv(value: unknown, path: PathSegment[]): Record<string, string> | undefined {
    if (isAbsent(value)) return {};
    if (!isPlainObject(value)) {
      return this.fail(path, `expected a mapping of environment variables like {EPOCHS: "3"}, got ${describeValue(value)}`);
    }
    const entries: Array<[string, string]> = [];
    let ok = true;
    for (const [key, entry] of Object.entries(value)) {
      if (!ENV_NAME_RE.test(key)) {
        ok = false;
        this.fail([...path, key], `expected an environment variable name (letters, digits and '_', not starting with a digit), got ${describeValue(key)}`, 'key');
        continue;
      }
      const text = this.readStringish(entry, [...path, key], isAbsent(entry) ? "expected a string (write '' for an empty value)" : 'expected a string');
      if (text === undefined) ok = false;
      else entries.push([key, text]);
    }
    // fromEntries defines own properties, so a variable named __proto__ stays a variable.
    return ok ? Object.fromEntries(entries) : undefined;
  }
}

/** The level a word names ('Rack', 'host', 'racks'), if any: exact (case-insensitive), a known alias, or a close typo. */
function toTopologyLevel(given: string): TopologyLevel | undefined {
  const word = given.trim().toLowerCase();
  const exact = TOPOLOGY_LEVELS.find((level) => level === word);
  if (exact !== undefined) return exact;
  if (Object.hasOwn(TOPOLOGY_LEVEL_ALIASES, word)) return TOPOLOGY_LEVEL_ALIASES[word];
  const close = findClosestMatch(word, TOPOLOGY_LEVELS);
  return TOPOLOGY_LEVELS.find((level) => level === close);
}

/** A valid label close to what was given ("ResNet_DDP" → "resnet-ddp"), if there is one. */
function suggestLabel(given: string): string | undefined {
  const candidate = given.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+/, '').slice(0, NAME_MAX_LENGTH).replace(/-+$/, '');
  return LABEL_RE.test(candidate) ? candidate : undefined;
}

/** `resources.gpus.type[1]`, `run[0]`, `env.MY_VAR`. */
export function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else out += out === '' ? segment : `.${segment}`;
  }
  return out;
}
