/**
 * The part of a job spec that placement depends on. Two jobs with the same shape fit exactly the same nodes, which
 * lets a cycle remember "this shape no longer fits" and answer the rest of a long queue without searching again.
 */
import type { GpuDevice, JobSpec, TopologyLevel } from '@tutti/model';
import { toParts } from './snapshot-index.ts';

export interface ResourceShape {
  /** Whole GPUs per node; 0 for a CPU-only job. */
  readonly gpuCount: number;
  /** Accepted GPU types in order of preference, without duplicates; empty means any type. */
  readonly gpuTypes: readonly string[];
  /** Minimum memory of each GPU, MiB. */
  readonly gpuMemoryMiB: number | undefined;
  /** Distinct nodes the gang spans. */
  readonly numNodes: number;
  /** Logical CPUs per node. */
  readonly cpus: number | undefined;
  /** Host memory per node, MiB. */
  readonly memoryMiB: number | undefined;
  /** A fractional job: its share of one GPU in parts of `FRACTION_PARTS` (`gpuMemoryMiB` is then the share's memory). */
  readonly fractionParts: number | undefined;
  /** The fraction as asked (for messages and the plan). */
  readonly fraction: number | undefined;
  /** The job's topology constraint. */
  readonly topology: { readonly mode: 'require' | 'prefer'; readonly level: TopologyLevel } | undefined;
  /** Equal keys mean equal shapes. */
  readonly key: string;
}

/**
 * Shapes by spec object. Specs are never mutated, so a live queue that keeps its Job objects across cycles
 * derives each shape once instead of once per cycle (a memo: same input, same output, nothing else kept).
 */
const shapeOfSpec = new WeakMap<JobSpec, ResourceShape>();

export function computeResourceShape(spec: JobSpec): ResourceShape {
  let shape = shapeOfSpec.get(spec);
  if (!shape) shapeOfSpec.set(spec, (shape = internShape(deriveResourceShape(spec))));
  return shape;
}

/**
 * One shape object per key, so that the many jobs of a queue that ask for the same thing share it (and its key
 * string): a cycle then reads one hot object instead of one per job. Shapes are immutable and nothing compares them
 * by identity, so sharing changes no result. Bounded: emptied when it grows past `INTERNED_MAX` distinct shapes.
 */
const interned = new Map<string, ResourceShape>();
const INTERNED_MAX = 10_000;

function internShape(shape: ResourceShape): ResourceShape {
  const found = interned.get(shape.key);
  if (found) return found;
  if (interned.size >= INTERNED_MAX) interned.clear();
  interned.set(shape.key, shape);
  return shape;
}

function deriveResourceShape(spec: JobSpec): ResourceShape {
  const { gpus, cpus, memoryMiB } = spec.resources;
  const gpuTypes = [...new Set(gpus.types)];
  const topology = spec.topology === undefined ? undefined : 'require' in spec.topology ? { mode: 'require' as const, level: spec.topology.require } : { mode: 'prefer' as const, level: spec.topology.prefer };
  const fraction = gpus.fraction;
  const shape = {
    gpuCount: gpus.count,
    gpuTypes,
    gpuMemoryMiB: gpus.memoryMiB,
    numNodes: spec.numNodes,
    cpus,
    memoryMiB,
    fraction,
    fractionParts: fraction === undefined ? undefined : toParts(fraction),
    topology,
  };
  return withKey(shape);
}

/** Adds the key to a shape (also for shapes derived by a cycle, e.g. restricted to the GPU types quota admits). */
export function withKey(shape: Omit<ResourceShape, 'key'>): ResourceShape {
  const topology = shape.topology ? `${shape.topology.mode}:${shape.topology.level}` : null;
  return { ...shape, key: JSON.stringify([shape.gpuCount, shape.gpuTypes, shape.gpuMemoryMiB ?? null, shape.numNodes, shape.cpus ?? null, shape.memoryMiB ?? null, shape.fraction ?? null, topology]) };
}

/**
 * A request no cluster could satisfy because it is malformed (the spec parser rejects these; a spec written by
 * hand or by an older version might not have been). Returns what is wrong, or undefined.
 */
export function computeShapeProblem(shape: ResourceShape): string | undefined {
  if (!Number.isSafeInteger(shape.numNodes) || shape.numNodes < 1) return `invalid request: numNodes must be a whole number ≥ 1 (got ${shape.numNodes})`;
  if (!Number.isSafeInteger(shape.gpuCount) || shape.gpuCount < 0) return `invalid request: gpus must be a whole number ≥ 0 (got ${shape.gpuCount})`;
  if (shape.cpus !== undefined && !(shape.cpus >= 0)) return `invalid request: cpus must be ≥ 0 (got ${shape.cpus})`;
  if (shape.memoryMiB !== undefined && !(shape.memoryMiB >= 0)) return `invalid request: memory must be ≥ 0 (got ${shape.memoryMiB})`;
  if (shape.gpuMemoryMiB !== undefined && !(shape.gpuMemoryMiB >= 0)) return `invalid request: GPU memory must be ≥ 0 (got ${shape.gpuMemoryMiB})`;
  if (shape.fraction !== undefined) {
    if (!(shape.fraction > 0 && shape.fraction < 1)) return `invalid request: a GPU fraction must be between 0 and 1 (got ${shape.fraction})`;
    if (shape.gpuCount !== 1 || shape.numNodes !== 1) return 'invalid request: a fractional GPU job asks for one GPU on one node';
  }
  if (shape.topology?.mode === 'require' && (shape.topology.level === 'node' || shape.topology.level === 'nvlink') && shape.numNodes > 1) {
    return `invalid request: topology require ${shape.topology.level} needs num_nodes 1 (got ${shape.numNodes})`;
  }
  return undefined;
}

/** Whether a GPU's type is accepted (types are compared exactly; both sides are normalised by `normalizeGpuType`). */
export function isTypeAccepted(shape: ResourceShape, type: string): boolean {
  return shape.gpuTypes.length === 0 || shape.gpuTypes.includes(type);
}

export function hasEnoughMemory(shape: ResourceShape, gpu: GpuDevice): boolean {
  return shape.gpuMemoryMiB === undefined || gpu.memoryMiB >= shape.gpuMemoryMiB;
}

export function isGpuAccepted(shape: ResourceShape, gpu: GpuDevice): boolean {
  return isTypeAccepted(shape, gpu.type) && hasEnoughMemory(shape, gpu);
}

/**
 * The shape limited to some GPU types (quota admits only those, or a preemption frees only those), one object per
 * shape and types in `memo` (a cycle's), so that per-shape memos keep working on it.
 */
export function restrictShapeTypes(shape: ResourceShape, types: readonly string[], memo: Map<string, ResourceShape>): ResourceShape {
  const key = `${shape.key}|${types.join(',')}`;
  let found = memo.get(key);
  if (!found) {
    const { key: _key, ...rest } = shape;
    memo.set(key, (found = withKey({ ...rest, gpuTypes: types })));
  }
  return found;
}
