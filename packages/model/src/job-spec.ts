/**
 * Job specs on the wire: parsing YAML (with line and column for every problem) and JSON bodies into a `JobSpec`,
 * and writing a `JobSpec` back as the canonical document. Validation itself lives in `job-spec-validate.ts`.
 */
import { isMap, isScalar, isSeq } from 'yaml';
import type { Document, YAMLError } from 'yaml';
import { duplicateKeyMessage } from './errors.ts';
import type { FieldError, ParseResult } from './errors.ts';
import type { JobSpec, Launcher, ResourceRequest, TopologyLevel } from './job.ts';
import { DEFAULT_LAUNCHER } from './job.ts';
import { formatPath, validateJobSpecDocument } from './job-spec-validate.ts';
import type { PathSegment, SpecIssue } from './job-spec-validate.ts';
import { formatDuration } from './units.ts';
import { findNode, parseYamlSource, rangeStart, sortByPosition } from './yaml-source.ts';

export { normalizeGpuType } from './gpu-type.ts';
export { jobSpecJsonSchema } from './job-spec-schema.ts';

/** The canonical wire form of a job spec (snake_case), as `serializeJobSpec` writes it: every default spelled out. */
export interface JobSpecDocument {
  name: string;
  team: string;
  priority: number;
  resources: {
    /** `fraction` (0 < fraction < 1, with count 1): a share of one GPU; `memory` is then the share's GPU memory. */
    gpus: { count: number; fraction?: number; type: string[]; memory?: string };
    cpus?: number;
    memory?: string;
  };
  num_nodes: number;
  /** Keep the gang inside one domain: a must (`require`) or best effort (`prefer`). */
  topology?: { require: TopologyLevel } | { prefer: TopologyLevel };
  /** A string runs under /bin/sh -c; a list is argv, run without a shell. */
  run: string | string[];
  launcher: Launcher;
  python_env?: string;
  workdir?: string;
  env: Record<string, string>;
  max_duration?: string;
  max_restarts?: number;
  restart_on?: string[];
  restart_backoff?: string;
  checkpoint_dir?: string;
  stop_signal?: string;
  preemption_grace?: string;
  hang_timeout?: string;
}

/**
 * Parses and validates a YAML job spec. Syntax errors come back with path '' and their position; validation errors
 * carry the path and the position of the offending node (the key, for unknown fields and bad variable names).
 * All problems are returned, sorted by position.
 */
export function parseJobSpecYaml(text: string): ParseResult<JobSpec> {
  const { doc, position } = parseYamlSource(text);

  if (doc.errors.length > 0) {
    return { ok: false, errors: sortByPosition(doc.errors.map((error) => ({ ...describeYamlError(error, doc), ...position(error.pos[0]) }))) };
  }

  const badKeys = findCollectionKeys(doc.contents, []);
  if (badKeys.length > 0) {
    return {
      ok: false,
      errors: badKeys.map(({ path, key }) => ({
        path: formatPath(path),
        message: `expected a plain key (a field or variable name), got ${isSeq(key) ? 'a list' : 'a mapping'}`,
        ...position(rangeStart(key)),
      })),
    };
  }

  let value: unknown;
  try {
    value = doc.toJS();
  } catch (error) {
    // toJS refuses documents whose aliases would expand without bound ("billion laughs").
    return { ok: false, errors: [{ path: '', message: `invalid YAML: ${error instanceof Error ? error.message : String(error)}`, line: 1, column: 1 }] };
  }

  const { spec, issues } = validateJobSpecDocument(value, {
    scalarSource: (path) => {
      const node = findNode(doc, path).node;
      return isScalar(node) && typeof node.source === 'string' ? node.source : undefined;
    },
  });
  if (spec) return { ok: true, value: spec };
  return {
    ok: false,
    errors: sortByPosition(issues.map((issue) => ({ path: formatPath(issue.path), message: issue.message, ...position(locateIssue(doc, issue) ?? 0) }))),
  };
}

/** Validates a job spec given as a parsed JSON value (an API request body). Errors carry paths, not positions. */
export function parseJobSpecObject(value: unknown): ParseResult<JobSpec> {
  const { spec, issues } = validateJobSpecDocument(value);
  if (spec) return { ok: true, value: spec };
  return { ok: false, errors: issues.map((issue) => ({ path: formatPath(issue.path), message: issue.message })) };
}

/**
 * A relative `checkpoint_dir` names a directory of the job's own, so it is resolved against the job's `workdir` once
 * that is absolute (the server resolves a relative workdir first): the server's working directory means nothing to
 * the job. Without an absolute workdir there is nothing to resolve it against, and the field error says so.
 */
export function resolveCheckpointDir(spec: JobSpec): ParseResult<JobSpec> {
  const dir = spec.checkpointDir;
  if (dir === undefined || dir.startsWith('/')) return { ok: true, value: spec };
  if (spec.workdir === undefined || !spec.workdir.startsWith('/')) {
    const message = `"${dir}" is a relative path and the job has no absolute workdir to resolve it against; give an absolute path (e.g. /data/checkpoints/${spec.name}) or set workdir`;
    return { ok: false, errors: [{ path: 'checkpoint_dir', message }] };
  }
  return { ok: true, value: { ...spec, checkpointDir: `${spec.workdir.replace(/\/+$/, '')}/${dir.replace(/^(\.\/)+/, '')}` } };
}

/**
 * The canonical document for a spec: snake_case, every default written out, gpus always as {count, fraction?, type, memory?},
 * sizes and durations as strings. `parseJobSpecObject(serializeJobSpec(spec))` gives back an equal spec.
 */
export function serializeJobSpec(spec: JobSpec): JobSpecDocument {
  const document: JobSpecDocument = {
    name: spec.name,
    team: spec.team,
    priority: spec.priority,
    resources: serializeResources(spec.resources),
    num_nodes: spec.numNodes,
    ...(spec.topology !== undefined ? { topology: 'require' in spec.topology ? { require: spec.topology.require } : { prefer: spec.topology.prefer } } : {}),
    run: spec.run.kind === 'shell' ? spec.run.command : [...spec.run.argv],
    launcher: spec.launcher ?? DEFAULT_LAUNCHER,
    env: Object.fromEntries(Object.entries(spec.env)),
  };
  if (spec.pythonEnv !== undefined) document.python_env = spec.pythonEnv;
  if (spec.workdir !== undefined) document.workdir = spec.workdir;
  if (spec.maxDurationMs !== undefined) document.max_duration = formatDuration(spec.maxDurationMs);
  if (spec.maxRestarts !== undefined) document.max_restarts = spec.maxRestarts;
  if (spec.restartOn !== undefined) document.restart_on = [...spec.restartOn];
  if (spec.restartBackoffMs !== undefined) document.restart_backoff = spec.restartBackoffMs === 0 ? '0s' : formatDuration(spec.restartBackoffMs);
  if (spec.checkpointDir !== undefined) document.checkpoint_dir = spec.checkpointDir;
  if (spec.stopSignal !== undefined) document.stop_signal = spec.stopSignal;
  if (spec.preemptionGraceMs !== undefined) document.preemption_grace = formatDuration(spec.preemptionGraceMs);
  if (spec.hangTimeoutMs !== undefined) document.hang_timeout = formatDuration(spec.hangTimeoutMs);
  return document;
}

/** A spec's `resources` as `serializeJobSpec` writes them (job lists show them without the rest of the spec). */
export function serializeResources(resources: ResourceRequest): JobSpecDocument['resources'] {
  const { gpus } = resources;
  return {
    gpus: {
      count: gpus.count,
      ...(gpus.fraction !== undefined ? { fraction: gpus.fraction } : {}),
      type: [...gpus.types],
      ...(gpus.memoryMiB !== undefined ? { memory: formatMemoryExact(gpus.memoryMiB) } : {}),
    },
    ...(resources.cpus !== undefined ? { cpus: resources.cpus } : {}),
    ...(resources.memoryMiB !== undefined ? { memory: formatMemoryExact(resources.memoryMiB) } : {}),
  };
}

/** Exact, in the largest binary unit that divides evenly: "80GiB", "1536MiB", "2TiB". */
function formatMemoryExact(mib: number): string {
  if (Number.isInteger(mib) && mib > 0) {
    if (mib % 1024 ** 2 === 0) return `${mib / 1024 ** 2}TiB`;
    if (mib % 1024 === 0) return `${mib / 1024}GiB`;
  }
  return `${mib}MiB`;
}

function describeYamlError(error: YAMLError, doc: Document): Pick<FieldError, 'path' | 'message'> {
  if (error.code === 'DUPLICATE_KEY') {
    const path = findKeyPathAt(doc.contents, error.pos[0], []);
    const key = path?.at(-1);
    return {
      path: path ? formatPath(path) : '',
      message: duplicateKeyMessage(key),
    };
  }
  if (error.code === 'MULTIPLE_DOCS') {
    return { path: '', message: "invalid YAML: expected one document, found several (remove the '---' separators)" };
  }
  // prettyErrors appends " at line L, column C:" and a source excerpt; the position travels separately.
  const firstLine = (error.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
  return { path: '', message: `invalid YAML: ${firstLine}` };
}

/** Mapping keys that are lists or mappings (`? [a, b]`): JSON has no such keys, so they can only be mistakes. */
function findCollectionKeys(node: unknown, path: PathSegment[]): Array<{ path: PathSegment[]; key: unknown }> {
  const found: Array<{ path: PathSegment[]; key: unknown }> = [];
  if (isMap(node)) {
    for (const pair of node.items) {
      if (isMap(pair.key) || isSeq(pair.key)) found.push({ path, key: pair.key });
      else found.push(...findCollectionKeys(pair.value, [...path, isScalar(pair.key) ? String(pair.key.value) : '']));
    }
  } else if (isSeq(node)) {
    for (const [i, item] of node.items.entries()) found.push(...findCollectionKeys(item, [...path, i]));
  }
  return found;
}

/** The path to the mapping key that starts at `offset`, for duplicate-key errors. */
function findKeyPathAt(node: unknown, offset: number, path: PathSegment[]): PathSegment[] | undefined {
  if (isMap(node)) {
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : undefined;
      if (key === undefined) continue;
      if (isScalar(pair.key) && pair.key.range?.[0] === offset) return [...path, key];
      const found = findKeyPathAt(pair.value, offset, [...path, key]);
      if (found) return found;
    }
  } else if (isSeq(node)) {
    for (const [i, item] of node.items.entries()) {
      const found = findKeyPathAt(item, offset, [...path, i]);
      if (found) return found;
    }
  }
  return undefined;
}

function locateIssue(doc: Document, issue: SpecIssue): number | undefined {
  return findNode(doc, issue.path, issue.at).offset;
}

/** GPUs a job holds while it runs, over all its nodes: a share of a GPU counts its fraction. */
export function computeGpusHeld(spec: Pick<JobSpec, 'numNodes' | 'resources'>): number {
  return spec.numNodes * spec.resources.gpus.count * (spec.resources.gpus.fraction ?? 1);
}
