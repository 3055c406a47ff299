/**
 * The cluster config file (`tutti up --config FILE`, `tutti sim --cluster FILE`): YAML with line and column for every
 * problem, or a parsed JSON value with paths only. Produces the normalised `ClusterConfig`.
 *
 * ```yaml
 * nodes:                      # node groups, expanded to `count` nodes named GROUP-00, GROUP-01, ...
 *   - group: vc1
 *     count: 11
 *     gpus: {count: 8, type: P100, memory: 16GB}
 *     cpus: 96                # @default 64
 *     memory: 512GB           # host memory, @default 256GB
 *     labels: {rack: r1}
 * teams:
 *   - name: vc1
 *     weight: 1               # @default 1
 *     quota: {P100: 88}       # nominal GPUs per type ('*' = any type)
 *     borrowing_limit: {P100: 0}
 *     lending_limit: {P100: 88}
 *     slurm: {partition: gpu, account: vision}   # on `--backend slurm`: where the team's jobs are submitted
 * scheduler:
 *   profile: tutti            # @default tutti
 *   fair_share_half_life: 24h # sets args.fair-share.halfLifeMs (@default 24h)
 *   args: {}                  # extra profile arguments
 * ```
 */
import type { GpuDevice, NodeInfo } from './cluster.ts';
import type { ClusterConfig, SchedulerSettings } from './cluster-config.ts';
import { findClosestMatch } from './closest-match.ts';
import type { ParseResult } from './errors.ts';
import { normalizeGpuType } from './gpu-type.ts';
import { describeValue, formatPath, isPlainObject } from './job-spec-validate.ts';
import type { PathSegment } from './job-spec-validate.ts';
import type { GpuAmounts, TeamConfig } from './teams.ts';
import { parseDuration, parseMemorySize } from './units.ts';
import { findNode, parseYamlSource, sortByPosition } from './yaml-source.ts';

const TOP_FIELDS = ['nodes', 'teams', 'scheduler'] as const;
const NODE_FIELDS = ['group', 'name', 'count', 'gpus', 'cpus', 'memory', 'labels', 'address'] as const;
const NODE_GPU_FIELDS = ['count', 'type', 'memory'] as const;
const TEAM_FIELDS = ['name', 'weight', 'quota', 'borrowing_limit', 'lending_limit', 'slurm'] as const;
const TEAM_SLURM_FIELDS = ['partition', 'account'] as const;
/** Slurm's partition and account names: no spaces, commas or shell characters. */
const SLURM_NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const SCHEDULER_FIELDS = ['profile', 'fair_share_half_life', 'args'] as const;

/** Node defaults when the file leaves them out. */
export const NODE_DEFAULT_CPUS = 64;
export const NODE_DEFAULT_MEMORY_MIB = 256 * 1024;
export const DEFAULT_SCHEDULER_PROFILE = 'tutti';

const NAME_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const GPU_TYPE_RE = /^[A-Z0-9]+$/;
const NAME_EXPECTED = "expected lowercase letters, digits and '-' (at most 63 characters)";

interface Issue {
  path: PathSegment[];
  message: string;
  at: 'key' | 'value';
}

/** Parses and validates a YAML cluster config. Every problem is returned with its path and position, sorted by position. */
export function parseClusterConfigYaml(text: string): ParseResult<ClusterConfig> {
  const { doc, position } = parseYamlSource(text);
  if (doc.errors.length > 0) {
    return {
      ok: false,
      errors: doc.errors.map((error) => ({
        path: '',
        message: `invalid YAML: ${(error.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '')}`,
        ...position(error.pos[0]),
      })),
    };
  }
  let value: unknown;
  try {
    value = doc.toJS();
  } catch (error) {
    return { ok: false, errors: [{ path: '', message: `invalid YAML: ${error instanceof Error ? error.message : String(error)}`, line: 1, column: 1 }] };
  }
  const { config, issues } = validateClusterConfig(value);
  if (config) return { ok: true, value: config };
  return { ok: false, errors: sortByPosition(issues.map((issue) => ({ path: formatPath(issue.path), message: issue.message, ...position(findNode(doc, issue.path, issue.at).offset) }))) };
}

/** Validates a cluster config given as a parsed JSON value. Errors carry paths, not positions. */
export function parseClusterConfigObject(value: unknown): ParseResult<ClusterConfig> {
  const { config, issues } = validateClusterConfig(value);
  if (config) return { ok: true, value: config };
  return { ok: false, errors: issues.map((issue) => ({ path: formatPath(issue.path), message: issue.message })) };
}

function validateClusterConfig(value: unknown): { config?: ClusterConfig; issues: Issue[] } {
  const issues: Issue[] = [];
  const fail = (path: PathSegment[], message: string, at: 'key' | 'value' = 'value'): undefined => {
    issues.push({ path, message, at });
    return undefined;
  };
  const checkFields = (record: Record<string, unknown>, path: PathSegment[], known: readonly string[]): void => {
    for (const key of Object.keys(record)) {
      if (known.includes(key)) continue;
      const guess = findClosestMatch(key, known);
      fail([...path, key], `unknown field${guess ? `: did you mean '${guess}'?` : ` (expected one of ${known.join(', ')})`}`, 'key');
    }
  };

  if (value === null || value === undefined) value = {};
  if (!isPlainObject(value)) {
    fail([], `expected a mapping with nodes, teams and scheduler, got ${describeValue(value)}`);
    return { issues };
  }
  checkFields(value, [], TOP_FIELDS);

  // Nodes.
  const nodes: NodeInfo[] = [];
  const nodeNames = new Map<string, string>();
  const nodesValue = value.nodes;
  if (nodesValue !== undefined && nodesValue !== null && !Array.isArray(nodesValue)) {
    fail(['nodes'], `expected a list of node groups, got ${describeValue(nodesValue)}`);
  } else {
    (nodesValue ?? []).forEach((entry: unknown, i: number) => {
      const path: PathSegment[] = ['nodes', i];
      if (!isPlainObject(entry)) return fail(path, `expected a node group like {group: a100, count: 4, gpus: {count: 8, type: A100}}, got ${describeValue(entry)}`);
      checkFields(entry, path, NODE_FIELDS);
      const group = entry.group ?? entry.name;
      if (entry.group !== undefined && entry.name !== undefined) fail([...path, 'name'], "give either 'group' (a group of nodes) or 'name' (one node), not both");
      if (typeof group !== 'string' || !NAME_RE.test(group)) {
        fail([...path, entry.group !== undefined ? 'group' : 'name'], group === undefined ? "required: 'group' (a name prefix for count nodes) or 'name' (one node)" : `${NAME_EXPECTED}, got ${describeValue(group)}`);
      }
      let count = 1;
      if (entry.count !== undefined) {
        if (entry.name !== undefined) fail([...path, 'count'], "a node given by 'name' is one node: use 'group' for several");
        if (typeof entry.count !== 'number' || !Number.isInteger(entry.count) || entry.count < 1) fail([...path, 'count'], `expected an integer ≥ 1, got ${describeValue(entry.count)}`);
        else count = entry.count;
      }
      const gpus = readNodeGpus(entry.gpus, [...path, 'gpus'], fail, checkFields);
      const cpus = entry.cpus === undefined ? NODE_DEFAULT_CPUS : entry.cpus;
      if (typeof cpus !== 'number' || !Number.isFinite(cpus) || cpus <= 0) fail([...path, 'cpus'], `expected a number of CPUs > 0, got ${describeValue(cpus)}`);
      const memoryMiB = entry.memory === undefined ? NODE_DEFAULT_MEMORY_MIB : readSize(entry.memory);
      if (memoryMiB === undefined || memoryMiB <= 0) fail([...path, 'memory'], `expected a size > 0 like 512GB, got ${describeValue(entry.memory)}`);
      const labels: Record<string, string> = {};
      if (entry.labels !== undefined && entry.labels !== null) {
        if (!isPlainObject(entry.labels)) fail([...path, 'labels'], `expected a mapping of label names to values like {rack: r1}, got ${describeValue(entry.labels)}`);
        else {
          for (const [key, labelValue] of Object.entries(entry.labels)) {
            if (typeof labelValue === 'string' || typeof labelValue === 'number' || typeof labelValue === 'boolean') labels[key] = String(labelValue);
            else fail([...path, 'labels', key], `expected a string, got ${describeValue(labelValue)}`);
          }
        }
      }
      if (entry.address !== undefined && typeof entry.address !== 'string') fail([...path, 'address'], `expected a host name or address, got ${describeValue(entry.address)}`);
      if (typeof group !== 'string' || !gpus || typeof cpus !== 'number' || memoryMiB === undefined) return;
      const width = String(count - 1).length;
      for (let n = 0; n < count; n++) {
        const name = entry.name !== undefined ? group : `${group}-${String(n).padStart(Math.max(2, width), '0')}`;
        const previous = nodeNames.get(name);
        if (previous !== undefined) {
          fail([...path, entry.name !== undefined ? 'name' : 'group'], `node ${name} is already declared by ${previous}`);
          return;
        }
        nodeNames.set(name, formatPath(path));
        const devices: GpuDevice[] = Array.from({ length: gpus.count }, (_, index) => ({
          index,
          uuid: `FAKE-${name}-${index}`,
          type: gpus.type,
          product: gpus.type,
          memoryMiB: gpus.memoryMiB,
          nvlinkPeers: [],
        }));
        nodes.push({ name, address: typeof entry.address === 'string' ? entry.address : name, gpus: devices, cpus, memoryMiB, labels: { ...labels }, state: 'ready' });
      }
    });
  }

  // Teams.
  const teams: TeamConfig[] = [];
  const teamNames = new Set<string>();
  const teamsValue = value.teams;
  if (teamsValue !== undefined && teamsValue !== null && !Array.isArray(teamsValue)) {
    fail(['teams'], `expected a list of teams, got ${describeValue(teamsValue)}`);
  } else {
    (teamsValue ?? []).forEach((entry: unknown, i: number) => {
      const path: PathSegment[] = ['teams', i];
      if (!isPlainObject(entry)) return fail(path, `expected a team like {name: research, quota: {H100: 16}}, got ${describeValue(entry)}`);
      checkFields(entry, path, TEAM_FIELDS);
      const name = entry.name;
      if (typeof name !== 'string' || !NAME_RE.test(name)) fail([...path, 'name'], name === undefined ? 'required: the team name' : `${NAME_EXPECTED}, got ${describeValue(name)}`);
      else if (teamNames.has(name)) fail([...path, 'name'], `team ${name} is declared twice`);
      const weight = entry.weight === undefined ? 1 : entry.weight;
      if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0) fail([...path, 'weight'], `expected a number > 0, got ${describeValue(weight)}`);
      const nominal = readAmounts(entry.quota, [...path, 'quota'], fail) ?? {};
      const borrowingLimit = entry.borrowing_limit === undefined ? undefined : readAmounts(entry.borrowing_limit, [...path, 'borrowing_limit'], fail);
      const lendingLimit = entry.lending_limit === undefined ? undefined : readAmounts(entry.lending_limit, [...path, 'lending_limit'], fail);
      let slurm: TeamConfig['slurm'];
      if (entry.slurm !== undefined) {
        if (!isPlainObject(entry.slurm)) fail([...path, 'slurm'], `expected a mapping like {partition: gpu, account: vision}, got ${describeValue(entry.slurm)}`);
        else {
          checkFields(entry.slurm, [...path, 'slurm'], TEAM_SLURM_FIELDS);
          slurm = readTeamSlurm(entry.slurm, [...path, 'slurm'], fail);
        }
      }
      if (typeof name !== 'string' || typeof weight !== 'number') return;
      teamNames.add(name);
      const team: TeamConfig = { name, weight, nominal };
      if (borrowingLimit) team.borrowingLimit = borrowingLimit;
      if (lendingLimit) team.lendingLimit = lendingLimit;
      if (slurm) team.slurm = slurm;
      teams.push(team);
    });
  }

  // Scheduler.
  const scheduler: SchedulerSettings = { profile: DEFAULT_SCHEDULER_PROFILE, args: {} };
  const schedulerValue = value.scheduler;
  if (schedulerValue !== undefined && schedulerValue !== null) {
    if (!isPlainObject(schedulerValue)) fail(['scheduler'], `expected a mapping like {profile: tutti}, got ${describeValue(schedulerValue)}`);
    else {
      checkFields(schedulerValue, ['scheduler'], SCHEDULER_FIELDS);
      if (schedulerValue.profile !== undefined) {
        if (typeof schedulerValue.profile !== 'string' || schedulerValue.profile.trim() === '') fail(['scheduler', 'profile'], `expected a profile name like tutti, got ${describeValue(schedulerValue.profile)}`);
        else scheduler.profile = schedulerValue.profile;
      }
      if (schedulerValue.fair_share_half_life !== undefined) {
        const ms = typeof schedulerValue.fair_share_half_life === 'string' || typeof schedulerValue.fair_share_half_life === 'number' ? parseDuration(schedulerValue.fair_share_half_life) : undefined;
        if (ms === undefined) fail(['scheduler', 'fair_share_half_life'], `expected a duration > 0 like 24h or 7d, got ${describeValue(schedulerValue.fair_share_half_life)}`);
        else scheduler.fairShareHalfLifeMs = ms;
      }
      if (schedulerValue.args !== undefined && schedulerValue.args !== null) {
        if (!isPlainObject(schedulerValue.args)) fail(['scheduler', 'args'], `expected a mapping of profile arguments, got ${describeValue(schedulerValue.args)}`);
        else scheduler.args = { ...schedulerValue.args };
      }
    }
  }

  return issues.length === 0 ? { config: { nodes, teams, scheduler }, issues } : { issues };
}

function readNodeGpus(
  value: unknown,
  path: PathSegment[],
  fail: (path: PathSegment[], message: string) => undefined,
  checkFields: (record: Record<string, unknown>, path: PathSegment[], known: readonly string[]) => void,
): { count: number; type: string; memoryMiB: number } | undefined {
  if (value === undefined || value === null) return { count: 0, type: '', memoryMiB: 0 };
  if (!isPlainObject(value)) return fail(path, `expected {count: 8, type: H100, memory: 80GB}, got ${describeValue(value)}`);
  checkFields(value, path, NODE_GPU_FIELDS);
  const { count, type, memory } = value;
  let ok = true;
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 0) ok = !!fail([...path, 'count'], `expected an integer ≥ 0, got ${describeValue(count)}`);
  const normalized = typeof type === 'string' ? normalizeGpuType(type) : '';
  if (typeof count === 'number' && count > 0 && !GPU_TYPE_RE.test(normalized)) {
    ok = !!fail([...path, 'type'], type === undefined ? 'required when count > 0: the GPU type, e.g. H100' : `expected a GPU type like H100 (letters and digits), got ${describeValue(type)}`);
  }
  const memoryMiB = memory === undefined ? 0 : readSize(memory);
  if (memoryMiB === undefined || (memory !== undefined && memoryMiB <= 0)) ok = !!fail([...path, 'memory'], `expected a size > 0 like 80GB, got ${describeValue(memory)}`);
  if (!ok || typeof count !== 'number' || memoryMiB === undefined) return undefined;
  return { count, type: normalized, memoryMiB };
}

/** A team's `slurm: {partition, account}` (unknown fields are told by the caller): each a Slurm name. */
function readTeamSlurm(value: Record<string, unknown>, path: PathSegment[], fail: (path: PathSegment[], message: string) => void): NonNullable<TeamConfig['slurm']> {
  const slurm: NonNullable<TeamConfig['slurm']> = {};
  for (const key of TEAM_SLURM_FIELDS) {
    const field = value[key];
    if (field === undefined) continue;
    if (typeof field === 'string' && SLURM_NAME_RE.test(field)) slurm[key] = field;
    else fail([...path, key], `expected a Slurm ${key} name (letters, digits, '_', '.', '-'), got ${describeValue(field)}`);
  }
  return slurm;
}

function readAmounts(value: unknown, path: PathSegment[], fail: (path: PathSegment[], message: string, at?: 'key' | 'value') => undefined): GpuAmounts | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isPlainObject(value)) return fail(path, `expected GPU counts per type like {H100: 16} ('*' for any type), got ${describeValue(value)}`);
  const amounts: GpuAmounts = {};
  let ok = true;
  for (const [key, amount] of Object.entries(value)) {
    const type = key === '*' ? '*' : normalizeGpuType(key);
    if (type !== '*' && !GPU_TYPE_RE.test(type)) {
      ok = !!fail([...path, key], `expected a GPU type like H100 or '*', got ${describeValue(key)}`, 'key');
      continue;
    }
    if (typeof amount !== 'number' || !Number.isInteger(amount) || amount < 0) {
      ok = !!fail([...path, key], `expected a whole number of GPUs ≥ 0, got ${describeValue(amount)}`);
      continue;
    }
    amounts[type] = amount;
  }
  return ok ? amounts : undefined;
}

function readSize(value: unknown): number | undefined {
  return typeof value === 'string' || typeof value === 'number' ? parseMemorySize(value) : undefined;
}

