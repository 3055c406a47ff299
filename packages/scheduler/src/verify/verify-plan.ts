/**
 * `verifyPlan` re-checks a plan against a snapshot without trusting the code that made it: the server's plan
 * applier runs it before committing, and the simulator and the property tests run it on every plan. It shares no
 * placement code with `runCycle` on purpose.
 *
 * It does not compare `plan.snapshotVersion` with `snapshot.version`: a plan made on an older snapshot may still be
 * valid on a newer one, and this check is what decides that.
 */
import { gpuClaimConflict, type ClusterSnapshot, type GpuDevice, type JobSpec, type NodeInfo, type Plan, type TeamConfig } from '@tutti/model';
import { formatMemoryMiB, formatOr } from '../cycle/format.ts';
import type { RunningJobInput } from '../preemption/stopping.ts';

export type PlanViolationCode =
  /** The plan places a job that is not in the `jobs` map. */
  | 'UnknownJob'
  /** The plan places the same job twice. */
  | 'DuplicateJob'
  /** `nodes.length !== numNodes`: part of a gang (or too much of it). */
  | 'GangSizeMismatch'
  /** One gang uses the same node twice. */
  | 'DuplicateNode'
  | 'UnknownNode'
  /** The node is draining or down. */
  | 'NodeNotReady'
  /** A node-rank has more or fewer GPUs than `resources.gpus.count`, or lists one twice. */
  | 'GpuCountMismatch'
  | 'UnknownGpu'
  /** The snapshot already allocates the GPU (to any job). */
  | 'GpuAlreadyAllocated'
  /** Two placements of the plan take the same GPU. */
  | 'GpuDoubleBooked'
  | 'GpuTypeMismatch'
  /** One node-rank mixes GPU types. */
  | 'MixedGpuTypes'
  | 'GpuMemoryTooSmall'
  /** The plan's jobs together ask more CPUs or host memory of a node than it has (running jobs not counted). */
  | 'HostResourcesExceeded'
  /** A fractional placement: shares of one GPU beyond the whole GPU or its memory, or a share that does not match the spec. */
  | 'GpuShareExceeded'
  /** A whole-GPU job on a shared GPU, or a share on a GPU a whole-GPU job holds. */
  | 'GpuShareMixed'
  /** The team would use more than its nominal quota plus borrowing limit (checked when teams are given). */
  | 'QuotaExceeded'
  /** A preemption names a job that is not running (not in `running` with GPUs in the snapshot), or names it twice. */
  | 'VictimNotRunning'
  /** A `priority` victim whose priority is not lower than the job it makes room for, or a `quota_reclaim` victim not on borrowed GPUs. */
  | 'VictimNotPreemptible'
  /** A victim is also placed by the plan, or a preemption is for a job the plan does not know. */
  | 'InvalidPreemption';

/** What `verifyPlan` also needs to check quotas and preemptions. Without it those checks are skipped. */
export interface VerifyContext {
  /** Running jobs (the possible victims) with their specs; those marked `stopping` are leaving and count for no quota. */
  running?: readonly RunningJobInput[];
  /** Teams with quotas: placements must keep each team within nominal + borrowing limit. */
  teams?: readonly TeamConfig[];
}

export interface PlanViolation {
  /** The placement at fault (for double-booking: the later one in the plan). */
  jobId: string;
  code: PlanViolationCode;
  message: string;
}

/** Returns every violation found; an empty array means the plan is valid. */
export function verifyPlan(snapshot: ClusterSnapshot, plan: Plan, jobs: ReadonlyMap<string, JobSpec>, context: VerifyContext = {}): PlanViolation[] {
  const violations: PlanViolation[] = [];
  const allocated = new Map<string, string>();
  /** Shares in use per GPU (snapshot and plan so far): fraction and memory; whole-GPU holders are in `allocated`. */
  const shares = new Map<string, { fraction: number; memoryMiB: number }>();
  // Only the nodes the plan places on can be double-booked: the rest of the snapshot is not read.
  const touched = new Set<string>();
  for (const placement of plan.placements) for (const placed of placement.nodes) touched.add(placed.node);
  /** The nodes placed on, first entry per name (the others are read only for preemptions and quotas). */
  const nodes = touched.size === 0 ? new Map<string, NodeInfo>() : firstNodeByName(snapshot.nodes, touched);
  // A node's allocations usually lie together: whether it was placed on is asked once per run of them.
  let lastNode: string | undefined;
  let lastTouched = false;
  for (const a of touched.size === 0 ? [] : snapshot.allocations) {
    if (a.node !== lastNode) {
      lastNode = a.node;
      lastTouched = touched.has(a.node);
    }
    if (!lastTouched) continue;
    const key = gpuKey(a.node, a.gpuIndex);
    if (a.fraction === undefined) allocated.set(key, a.jobId);
    else {
      const use = shares.get(key) ?? { fraction: 0, memoryMiB: 0 };
      shares.set(key, { fraction: use.fraction + a.fraction, memoryMiB: use.memoryMiB + (a.memoryMiB ?? 0) });
    }
  }
  const bookedInPlan = new Map<string, string>();
  const hostUse = new Map<string, { cpus: number; memoryMiB: number; jobs: string[] }>();
  const placedJobs = new Set<string>();

  for (const placement of plan.placements) {
    const { jobId } = placement;
    const fail = (code: PlanViolationCode, message: string): void => {
      violations.push({ jobId, code, message: `job ${jobId}: ${message}` });
    };
    if (placedJobs.has(jobId)) fail('DuplicateJob', 'placed more than once in the plan');
    placedJobs.add(jobId);
    const spec = jobs.get(jobId);
    if (!spec) {
      fail('UnknownJob', 'not among the jobs the plan was checked against');
      continue;
    }
    const { count, types, memoryMiB: minMemory, fraction } = spec.resources.gpus;
    if (placement.nodes.length !== spec.numNodes) fail('GangSizeMismatch', `placed on ${placement.nodes.length} nodes but the gang spans ${spec.numNodes}`);

    const seenNodes = new Set<string>();
    for (const placed of placement.nodes) {
      const where = `node ${placed.node}`;
      if (seenNodes.has(placed.node)) fail('DuplicateNode', `${where} is used twice by the gang`);
      seenNodes.add(placed.node);
      const node = nodes.get(placed.node);
      if (!node) {
        fail('UnknownNode', `${where} is not in the cluster`);
        continue;
      }
      if (node.state !== 'ready') fail('NodeNotReady', `${where} is ${node.state}`);

      const distinct = new Set(placed.gpuIndices);
      if (distinct.size !== placed.gpuIndices.length) fail('GpuCountMismatch', `${where}: a GPU is listed twice (${placed.gpuIndices.join(', ')})`);
      if (placed.gpuIndices.length !== count) fail('GpuCountMismatch', `${where} gets ${placed.gpuIndices.length} GPUs but the job asks ${count} per node`);

      const gpus: GpuDevice[] = [];
      for (const gpuIndex of distinct) {
        const gpu = node.gpus.find((g) => g.index === gpuIndex);
        if (!gpu) {
          fail('UnknownGpu', `${where} has no GPU ${gpuIndex}`);
          continue;
        }
        gpus.push(gpu);
        const key = gpuKey(node.name, gpuIndex);
        if (fraction !== undefined || placed.gpuFraction !== undefined) {
          if (placed.gpuFraction !== fraction) fail('GpuShareExceeded', `GPU ${gpuIndex} on ${where}: the placement's share ${placed.gpuFraction ?? 'whole'} is not the job's ${fraction ?? 'whole GPU'}`);
          // Held whole in the snapshot or earlier in this plan.
          const holder = allocated.get(key) ?? bookedInPlan.get(key);
          const use = shares.get(key) ?? { fraction: 0, memoryMiB: 0 };
          const claim = { share: placed.gpuFraction ?? 0, memoryMiB: placed.gpuMemoryMiB ?? 0 };
          const conflict = gpuClaimConflict({ heldWhole: holder !== undefined, share: use.fraction, memoryMiB: use.memoryMiB }, claim, gpu.memoryMiB);
          const next = { fraction: use.fraction + claim.share, memoryMiB: use.memoryMiB + claim.memoryMiB };
          shares.set(key, next);
          if (conflict === 'held_whole') fail('GpuShareMixed', `GPU ${gpuIndex} on ${where} is held whole by job ${holder}; shares cannot join it`);
          else if (conflict === 'over_share') fail('GpuShareExceeded', `GPU ${gpuIndex} on ${where} would be shared beyond one GPU (${Math.round(next.fraction * 1000) / 1000})`);
          else if (conflict === 'over_memory') fail('GpuShareExceeded', `GPU ${gpuIndex} on ${where}: shares would use ${formatMemoryMiB(next.memoryMiB)} of its ${formatMemoryMiB(gpu.memoryMiB)}`);
          if (types.length > 0 && !types.includes(gpu.type)) fail('GpuTypeMismatch', `GPU ${gpuIndex} on ${where} is ${gpu.type}, the job accepts ${formatOr(types)}`);
          continue;
        }
        const holder = allocated.get(key);
        const use = shares.get(key);
        const conflict = gpuClaimConflict({ heldWhole: holder !== undefined, share: use?.fraction ?? 0, memoryMiB: use?.memoryMiB ?? 0 }, { share: undefined, memoryMiB: 0 }, gpu.memoryMiB);
        if (conflict === 'shared') fail('GpuShareMixed', `GPU ${gpuIndex} on ${where} is shared by fractional jobs; a whole-GPU job cannot take it`);
        else if (conflict === 'held_whole') fail('GpuAlreadyAllocated', `GPU ${gpuIndex} on ${where} is already allocated to job ${holder}`);
        const booked = bookedInPlan.get(key);
        if (booked !== undefined && booked !== jobId) fail('GpuDoubleBooked', `GPU ${gpuIndex} on ${where} is also given to job ${booked} in this plan`);
        else bookedInPlan.set(key, jobId);
        if (types.length > 0 && !types.includes(gpu.type)) fail('GpuTypeMismatch', `GPU ${gpuIndex} on ${where} is ${gpu.type}, the job accepts ${formatOr(types)}`);
        if (minMemory !== undefined && gpu.memoryMiB < minMemory) {
          fail('GpuMemoryTooSmall', `GPU ${gpuIndex} on ${where} has ${formatMemoryMiB(gpu.memoryMiB)}, the job needs at least ${formatMemoryMiB(minMemory)}`);
        }
      }
      const kinds = [...new Set(gpus.map((g) => g.type))];
      if (kinds.length > 1) fail('MixedGpuTypes', `${where} mixes GPU types (${kinds.join(', ')})`);

      const use = hostUse.get(node.name) ?? { cpus: 0, memoryMiB: 0, jobs: [] };
      use.cpus += spec.resources.cpus ?? 0;
      use.memoryMiB += spec.resources.memoryMiB ?? 0;
      use.jobs.push(jobId);
      hostUse.set(node.name, use);
      if (use.cpus > node.cpus || use.memoryMiB > node.memoryMiB) {
        const over = use.cpus > node.cpus ? `${use.cpus} CPUs of ${node.cpus}` : `${formatMemoryMiB(use.memoryMiB)} memory of ${formatMemoryMiB(node.memoryMiB)}`;
        fail('HostResourcesExceeded', `jobs ${use.jobs.join(', ')} together take ${over} on ${where}`);
      }
    }
  }
  verifyPreemptionsAndQuotas(snapshot, plan, jobs, context, violations);
  return violations;
}

/** What a driver carries out of a plan: the part that passed `verifyPlan`, and the violations of the part it dropped. */
export interface ScreenedPlan {
  plan: Plan;
  violations: PlanViolation[];
}

/**
 * The one way both drivers (the server's job controller and the simulator) treat a plan that fails `verifyPlan` — a
 * scheduler bug, never acted on: the placements of the jobs at fault are dropped, and so are the preemptions of a
 * victim at fault or made for a job at fault; the rest of the plan is carried out, and the violations are returned
 * for the driver to record (the server logs them, the simulator reports them in its result). The dropped jobs stay
 * pending for the next cycle. What is left is verified again until it passes (a team over its quota is blamed on one
 * placement, and dropping it may not be enough); each round drops something, so this ends.
 */
export function screenPlan(snapshot: ClusterSnapshot, plan: Plan, jobs: ReadonlyMap<string, JobSpec>, context: VerifyContext = {}): ScreenedPlan {
  const violations: PlanViolation[] = [];
  let kept = plan;
  for (let found = verifyPlan(snapshot, kept, jobs, context); found.length > 0; found = verifyPlan(snapshot, kept, jobs, context)) {
    violations.push(...found);
    const atFault = new Set(found.map((v) => v.jobId));
    kept = {
      ...kept,
      placements: kept.placements.filter((p) => !atFault.has(p.jobId)),
      preemptions: kept.preemptions.filter((p) => !atFault.has(p.jobId) && !atFault.has(p.forJobId)),
    };
  }
  return { plan: kept, violations };
}

/** First entry per name of the nodes named in `names` (all of them without `names`). */
function firstNodeByName(all: readonly NodeInfo[], names?: ReadonlySet<string>): Map<string, NodeInfo> {
  const nodes = new Map<string, NodeInfo>();
  for (const node of all) if ((names === undefined || names.has(node.name)) && !nodes.has(node.name)) nodes.set(node.name, node);
  return nodes;
}

function verifyPreemptionsAndQuotas(snapshot: ClusterSnapshot, plan: Plan, jobs: ReadonlyMap<string, JobSpec>, context: VerifyContext, violations: PlanViolation[]): void {
  // Nothing to check without preemptions or quotas.
  if (plan.preemptions.length === 0 && (context.teams ?? []).length === 0) return;
  const nodes = firstNodeByName(snapshot.nodes);
  const running = new Map((context.running ?? []).map((j) => [j.id, j]));
  const teams = new Map((context.teams ?? []).map((t) => [t.name, t]));
  const typeOf = (node: string, gpuIndex: number): string | undefined => nodes.get(node)?.gpus.find((g) => g.index === gpuIndex)?.type;
  const keyFor = (team: string, type: string): string => (teams.get(team)?.nominal[type] !== undefined ? type : '*');
  const usage = new Map<string, number>();
  const add = (team: string, type: string, n: number): void => {
    const k = `${team}\u0000${keyFor(team, type)}`;
    usage.set(k, (usage.get(k) ?? 0) + n);
  };
  const held = new Map<string, number>();
  for (const a of snapshot.allocations) {
    held.set(a.jobId, (held.get(a.jobId) ?? 0) + 1);
    const job = running.get(a.jobId);
    const type = typeOf(a.node, a.gpuIndex);
    if (job && type !== undefined && !job.stopping) add(job.spec.team, type, a.fraction ?? 1);
  }
  const borrowing = (team: string, type: string): boolean => {
    const key = keyFor(team, type);
    return (usage.get(`${team}\u0000${key}`) ?? 0) > (teams.get(team)?.nominal[key] ?? 0) + 1e-9;
  };

  const placed = new Set(plan.placements.map((p) => p.jobId));
  const seen = new Set<string>();
  for (const p of plan.preemptions) {
    const fail = (code: PlanViolationCode, message: string): void => {
      violations.push({ jobId: p.jobId, code, message: `job ${p.jobId}: ${message}` });
    };
    const victim = running.get(p.jobId);
    if (seen.has(p.jobId)) fail('VictimNotRunning', 'preempted twice in the plan');
    seen.add(p.jobId);
    if (!victim || !held.has(p.jobId)) {
      fail('VictimNotRunning', 'is not a running job with GPUs');
      continue;
    }
    if (placed.has(p.jobId)) fail('InvalidPreemption', 'is both preempted and placed');
    const forSpec = jobs.get(p.forJobId);
    if (!forSpec) {
      fail('InvalidPreemption', `is preempted for job ${p.forJobId}, which the plan was not checked against`);
      continue;
    }
    if (p.reason === 'priority' && victim.spec.priority >= forSpec.priority) {
      fail('VictimNotPreemptible', `priority ${victim.spec.priority} is not lower than job ${p.forJobId}'s ${forSpec.priority}`);
    }
    if (p.reason === 'quota_reclaim' && teams.size > 0) {
      const types = new Set<string>();
      for (const a of snapshot.allocations) if (a.jobId === p.jobId) types.add(typeOf(a.node, a.gpuIndex) ?? '');
      if (![...types].some((t) => borrowing(victim.spec.team, t))) fail('VictimNotPreemptible', `team ${victim.spec.team} does not work on borrowed GPUs`);
    }
  }

  if (teams.size === 0) return;
  for (const p of plan.placements) {
    const spec = jobs.get(p.jobId);
    if (!spec) continue;
    for (const n of p.nodes) for (const i of n.gpuIndices) {
      const type = typeOf(n.node, i);
      if (type !== undefined) add(spec.team, type, n.gpuFraction ?? 1);
    }
  }
  const reported = new Set<string>();
  for (const p of plan.placements) {
    const spec = jobs.get(p.jobId);
    if (!spec) continue;
    const team = teams.get(spec.team);
    for (const n of p.nodes) for (const i of n.gpuIndices) {
      const type = typeOf(n.node, i);
      if (type === undefined) continue;
      const key = keyFor(spec.team, type);
      const limit = team?.borrowingLimit?.[key];
      if (limit === undefined) continue;
      const used = usage.get(`${spec.team}\u0000${key}`) ?? 0;
      const cap = (team?.nominal[key] ?? 0) + limit;
      if (used > cap + 1e-9 && !reported.has(`${spec.team}\u0000${key}`)) {
        reported.add(`${spec.team}\u0000${key}`);
        violations.push({ jobId: p.jobId, code: 'QuotaExceeded', message: `job ${p.jobId}: team ${spec.team} would use ${used} ${key === '*' ? '' : `${key} `}GPUs, above nominal + borrowing limit ${cap}` });
      }
    }
  }
}

function gpuKey(node: string, gpuIndex: number): string {
  return `${node}\u0000${gpuIndex}`;
}
