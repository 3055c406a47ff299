/**
 * Why a pending job was not placed, as a `Diagnosis` value. Asked in this order, the first answer wins:
 *
 *   1. feasibility — the job could never fit this inventory            → NeverFits
 *   2. queue-sort  — it fitted the free capacity at the start of the
 *                    cycle, but jobs ahead of it took that capacity     → QueuedBehindHigherPriority
 *   3. fit against what is free once the cycle's placements are made:
 *      host-resources — enough nodes have the GPUs, not the CPUs/memory → InsufficientHostResources
 *      gpu-fit        — enough GPUs are free, not of an accepted type
 *                       or with enough memory                           → GpuTypeUnavailable
 *      gpu-fit        — a one-node job: not enough free GPUs            → InsufficientGpus
 *      gang           — a gang: not enough nodes with the GPUs, or
 *                       no ready node at all                            → InsufficientNodes
 *
 * 1 and 2 are decided when the job's turn comes (2 names the jobs ahead of it that took the capacity); 3 is
 * described after the last placement, so that "free now" means what the job will wait for until the next cycle.
 *
 * Cost: feasibility is O(node classes) per shape; 2 is O(placements) per shape over the whole cycle (`TakerTally`),
 * cached per shape and priority until the next placement; 3 is O(ready nodes × types) per shape.
 */
import type { Diagnosis, DiagnosisCode, Job, PlacedNode } from '@tutti/model';
import { checkShapeFeasibility, computeInventory, countMatchingOfOneType, type FeasibilityResult, type Inventory } from '../filter/feasibility.ts';
import { countOf, describeGpus, formatAnd, formatMemoryMiB, formatSome } from '../cycle/format.ts';
import { computeGangPlacement } from '../gang/gang-placement.ts';
import { computeCandidateTypes, computeMaxMatchingFree } from '../filter/gpu-fit.ts';
import { fitsHost, hostCapacityFits } from '../filter/host-fit.ts';
import type { DiagnosisCycle } from '../framework/extension-points.ts';
import type { CycleCache } from '../perf/cycle-cache.ts';
import type { AppliedPlacement, PlanOverlay } from '../cycle/plan-overlay.ts';
import { PLUGIN, type PluginName } from '../framework/plugin-names.ts';
import { isGpuAccepted, isTypeAccepted, type ResourceShape } from '../cycle/resource-shape.ts';
import type { CapacityView, IndexedNode, SnapshotIndex } from '../cycle/snapshot-index.ts';

/** What jobs placed this cycle took from the nodes a shape could have used at the start of the cycle. */
interface TakerTally {
  /** Placements read so far. */
  read: number;
  /** By node ordinal: 1 for the ready nodes that could host one node-rank of the shape at the start of the cycle. */
  readonly candidates: Uint8Array;
  /** Jobs that took accepted GPUs there. */
  readonly gpus: TakerList;
  /** Jobs that took CPUs or memory the shape asks for there. */
  readonly host: TakerList;
  /** Both of the above together. */
  readonly all: TakerList;
  /** Accepted GPUs taken there. */
  gpuCount: number;
  cpusTaken: boolean;
  memoryTaken: boolean;
  minGpuPriority: number;
  minHostPriority: number;
}

/** Enough of a list of job ids to name a few: the first three in placement order and how many in all. */
interface TakerList {
  readonly first: string[];
  size: number;
}

/** Each placement is read once per tally and is one job, so a job is never added twice. */
function addTaker(list: TakerList, jobId: string): void {
  if (list.first.length < 3) list.first.push(jobId);
  list.size++;
}

const diagnosis = (plugin: PluginName, code: DiagnosisCode, message: string): Diagnosis => ({ plugin, code, message });

export class Diagnoser implements DiagnosisCycle {
  /** Built on first use: a cycle that places every job it reads never asks whether one could ever fit. */
  private inventoryMemo: Inventory | undefined;
  private readonly feasibility = new Map<string, FeasibilityResult>();
  private readonly fitsAtStart = new Map<string, boolean>();
  private readonly tallies = new Map<string, TakerTally>();
  /** The last answer per shape and priority, valid while no placement has been made since. */
  private readonly recent = new Map<string, Map<number, { placements: number; diagnosis: Diagnosis }>>();
  /** `diagnoseAtTurn` per kind of job: the placement count it was made at (plus one; 0: none), and the answer. */
  private kindAnswers: { readonly at: Int32Array; readonly diagnosis: (Diagnosis | undefined)[] } | undefined;
  /**
   * Unplaced jobs in queue order (record numbers of the cycle's cache), and the diagnosis made at their turn
   * (undefined: described at `finish`), side by side.
   */
  private readonly unplaced: Int32Array;
  private readonly atTurn: (Diagnosis | undefined)[];
  /** Each noted job's kind, side by side (`finish` describes each kind once, without going back to the records). */
  private readonly kinds: Int32Array;
  private noted = 0;

  private readonly place: (shape: ResourceShape, view: CapacityView) => PlacedNode[] | undefined;

  constructor(
    private readonly index: SnapshotIndex,
    private readonly overlay: PlanOverlay,
    /** Where the noted record numbers' kinds are (`finish` describes each kind once). */
    private readonly cache: CycleCache,
    /** How many jobs may be noted (the queue's length): the lists are made that long once. */
    capacity: number,
    place?: (shape: ResourceShape, view: CapacityView) => PlacedNode[] | undefined,
  ) {
    this.unplaced = new Int32Array(capacity);
    this.kinds = new Int32Array(capacity);
    this.atTurn = new Array<Diagnosis | undefined>(capacity);
    this.place = place ?? ((shape, view) => computeGangPlacement(shape, view, index));
  }

  /**
   * Records that a job's turn came and it did not fit; call in queue order. `decided` is a diagnosis another step
   * made (quota, preemption, reservation, strict FIFO); it is used unless the job could never fit at all.
   */
  noteUnplaced(no: number, job: Job, shape: ResourceShape, decided?: Diagnosis): void {
    const kind = this.cache.kindOf[no] as number;
    if (decided) {
      const feasible = this.feasibilityOf(shape);
      this.note(no, kind, feasible.ok ? decided : diagnosis(PLUGIN.feasibility, 'NeverFits', feasible.message));
      return;
    }
    // The answer depends on the job's kind (shape and priority) and the placements made so far: kept per kind, by
    // number, until the next placement.
    const placements = this.overlay.placements.length;
    const answers = (this.kindAnswers ??= { at: new Int32Array(this.cache.kindCount), diagnosis: new Array<Diagnosis | undefined>(this.cache.kindCount) });
    if (answers.at[kind] !== placements + 1) {
      answers.diagnosis[kind] = this.diagnoseAtTurn(job, shape);
      answers.at[kind] = placements + 1;
    }
    this.note(no, kind, answers.diagnosis[kind]);
  }

  private note(no: number, kind: number, atTurn: Diagnosis | undefined): void {
    const at = this.noted++;
    this.unplaced[at] = no;
    this.kinds[at] = kind;
    this.atTurn[at] = atTurn;
  }

  /** How many jobs were noted so far. */
  get notedCount(): number {
    return this.noted;
  }

  /** What the last noted job got at its turn (undefined: it waits for capacity, described at `finish`). */
  lastAtTurn(): Diagnosis | undefined {
    return this.atTurn[this.noted - 1];
  }

  /**
   * Notes a job with what an earlier job of the same kind got at its turn, in the same state of the cycle (shape,
   * team, priority and everything the cycle decided since being equal, `noteUnplaced` would answer the same).
   */
  noteUnplacedAs(no: number, kind: number, atTurn: Diagnosis | undefined): void {
    this.note(no, kind, atTurn);
  }

  /** Whether the shape could ever fit the inventory (cached per shape). */
  feasibilityOf(shape: ResourceShape): FeasibilityResult {
    let feasible = this.feasibility.get(shape.key);
    if (!feasible) this.feasibility.set(shape.key, (feasible = checkShapeFeasibility((this.inventoryMemo ??= computeInventory(this.index.nodes.map((n) => n.info))), shape)));
    return feasible;
  }

  /** After the last placement of the cycle: one diagnosis per unplaced job, in the order they were noted (queue order). */
  finish(): { readonly numbers: Int32Array; readonly diagnoses: readonly Diagnosis[] } {
    const waiting = new Map<string, Diagnosis>();
    const byKind = new Array<Diagnosis | undefined>(this.cache.kindCount);
    const { kindShapes } = this.cache;
    // Filled in place: tens of thousands of them, no second list. A job's kind has its shape (as asked).
    const { atTurn, kinds, noted } = this;
    for (let i = 0; i < noted; i++) {
      if (atTurn[i]) continue;
      const kind = kinds[i] as number;
      let found = byKind[kind];
      if (!found) {
        const shape = kindShapes[kind] as ResourceShape;
        found = waiting.get(shape.key);
        if (!found) waiting.set(shape.key, (found = this.waiting(shape)));
        byKind[kind] = found;
      }
      atTurn[i] = found;
    }
    return { numbers: this.unplaced.subarray(0, noted), diagnoses: atTurn as Diagnosis[] };
  }

  /** NeverFits or QueuedBehindHigherPriority, or undefined when the job is waiting for capacity. */
  private diagnoseAtTurn(job: Job, shape: ResourceShape): Diagnosis | undefined {
    const feasible = this.feasibilityOf(shape);
    if (!feasible.ok) return diagnosis(PLUGIN.feasibility, 'NeverFits', feasible.message);

    let fitted = this.fitsAtStart.get(shape.key);
    if (fitted === undefined) this.fitsAtStart.set(shape.key, (fitted = this.place(shape, this.index) !== undefined));
    if (!fitted) return undefined;

    // By shape, then priority: the shape's key is a string made once (its hash is kept), a joined key a new one.
    const placements = this.overlay.placements.length;
    let byPriority = this.recent.get(shape.key);
    if (!byPriority) this.recent.set(shape.key, (byPriority = new Map()));
    const cached = byPriority.get(job.spec.priority);
    if (cached && cached.placements === placements) return cached.diagnosis;
    const result = this.queuedBehind(job, shape);
    byPriority.set(job.spec.priority, { placements, diagnosis: result });
    return result;
  }

  /**
   * The job fitted at the start of the cycle: name the jobs placed this cycle that took what it could have used on
   * the nodes it could have used. When both GPUs and host resources were taken there, find which one stopped it by
   * putting back one kind at a time: if the job fits with this cycle's host use undone, the CPUs or memory stopped
   * it; if it fits with this cycle's GPUs undone, the GPUs did; otherwise both.
   */
  private queuedBehind(job: Job, shape: ResourceShape): Diagnosis {
    const { index, overlay } = this;
    const tally = this.tallyFor(shape);
    let blame: 'gpus' | 'host' | 'both' = tally.gpus.size > 0 ? (tally.host.size > 0 ? 'both' : 'gpus') : 'host';
    if (blame === 'both') {
      if (this.place(shape, mixViews(overlay, index)) !== undefined) blame = 'host';
      else if (this.place(shape, mixViews(index, overlay)) !== undefined) blame = 'gpus';
    }
    const takers = blame === 'gpus' ? tally.gpus : blame === 'host' ? tally.host : tally.all;
    if (takers.size === 0) {
      // Unreachable while capacity only shrinks through placements; kept so the message never names nobody.
      return diagnosis(PLUGIN.queueSort, 'QueuedBehindHigherPriority', 'what it could use was given to jobs ahead of it in the queue this cycle');
    }

    const parts: string[] = [];
    if (blame !== 'host') parts.push(countOf(tally.gpuCount, 'GPU'));
    const hostWords = [...(tally.cpusTaken ? ['CPUs'] : []), ...(tally.memoryTaken ? ['memory'] : [])];
    if (blame !== 'gpus') parts.push(`the ${formatAnd(hostWords)}`);
    const singular = blame === 'gpus' ? tally.gpuCount === 1 : blame === 'host' && hostWords.length === 1 && hostWords[0] === 'memory';

    const minPriority = blame === 'gpus' ? tally.minGpuPriority : blame === 'host' ? tally.minHostPriority : Math.min(tally.minGpuPriority, tally.minHostPriority);
    const allHigher = minPriority > job.spec.priority;
    const names = takers.size <= 3 ? formatAnd(takers.first) : `${takers.first.join(', ')} and ${takers.size - 3} more`;
    const who = `${allHigher ? 'higher-priority ' : ''}${takers.size === 1 ? 'job' : 'jobs'} ${names}${allHigher ? '' : ' ahead of it in the queue'}`;
    return diagnosis(PLUGIN.queueSort, 'QueuedBehindHigherPriority', `${formatAnd(parts)} it could use ${singular ? 'was' : 'were'} given to ${who} this cycle`);
  }

  /**
   * What the placements so far took from the nodes `shape` could have used at the start of the cycle. Kept per shape
   * and brought up to date by reading only the placements made since the last call, so that a long queue costs
   * O(shapes × placements) here, not O(jobs × GPUs).
   */
  private tallyFor(shape: ResourceShape): TakerTally {
    let tally = this.tallies.get(shape.key);
    if (!tally) {
      const types = computeCandidateTypes(shape, this.index.readyGpuTypes);
      const candidates = this.index.readyNodes.filter(
        (node) => fitsHost(this.index, node, shape) && (shape.gpuCount === 0 || computeMaxMatchingFree(this.index, node, shape, types) >= shape.gpuCount),
      );
      const isCandidate = new Uint8Array(this.index.nodes.length);
      for (const node of candidates) isCandidate[node.ordinal] = 1;
      tally = { read: 0, candidates: isCandidate, gpus: { first: [], size: 0 }, host: { first: [], size: 0 }, all: { first: [], size: 0 }, gpuCount: 0, cpusTaken: false, memoryTaken: false, minGpuPriority: Infinity, minHostPriority: Infinity };
      this.tallies.set(shape.key, tally);
    }
    const applied = this.overlay.applied;
    for (; tally.read < applied.length; tally.read++) {
      const { job: taker, cpus, memoryMiB, nodes } = applied[tally.read] as AppliedPlacement;
      const cpusTaken = Boolean(shape.cpus && cpus);
      const memoryTaken = Boolean(shape.memoryMiB && memoryMiB);
      let accepted = 0;
      let hostHit = false;
      for (const { node, gpus } of nodes) {
        if (tally.candidates[node.ordinal] !== 1) continue;
        if (shape.gpuCount > 0) for (const gpu of gpus) if (isGpuAccepted(shape, gpu)) accepted++;
        hostHit ||= cpusTaken || memoryTaken;
      }
      if (accepted > 0) {
        addTaker(tally.gpus, taker.id);
        tally.gpuCount += accepted;
        tally.minGpuPriority = Math.min(tally.minGpuPriority, taker.spec.priority);
      }
      if (hostHit) {
        addTaker(tally.host, taker.id);
        tally.cpusTaken ||= cpusTaken;
        tally.memoryTaken ||= memoryTaken;
        tally.minHostPriority = Math.min(tally.minHostPriority, taker.spec.priority);
      }
      if (accepted > 0 || hostHit) addTaker(tally.all, taker.id);
    }
    return tally;
  }

  /** The job did not fit even at the start of the cycle: describe what is missing once this cycle's placements are made. */
  private waiting(shape: ResourceShape): Diagnosis {
    const { index, overlay } = this;
    const { gpuCount, numNodes } = shape;
    const notReady = this.notReadySuffix(shape);
    const wanted = { count: gpuCount, types: shape.gpuTypes, minMemoryMiB: shape.gpuMemoryMiB };

    if (shape.topology?.mode === 'require' && computeGangPlacement({ ...shape, topology: undefined }, overlay, index) !== undefined) {
      const where = { nvlink: 'one NVLink domain', node: 'one node', rack: 'one rack', zone: 'one zone' }[shape.topology.level];
      return diagnosis(PLUGIN.topology, 'TopologyUnavailable', `waiting for ${needPhrase(shape, [describeGpus(wanted, true)])} inside ${where}; the free GPUs are spread over more${notReady}`);
    }
    if (shape.fraction !== undefined) {
      const memory = shape.gpuMemoryMiB !== undefined ? ` and ${formatMemoryMiB(shape.gpuMemoryMiB)} of its memory` : '';
      const kind = shape.gpuTypes.length > 0 ? `${shape.gpuTypes.join(' or ')} ` : '';
      return diagnosis(PLUGIN.gpuFit, 'InsufficientGpus', `waiting for a ${kind}GPU with ${shape.fraction} of it free${memory} (shared GPUs are full and no GPU is free)${notReady}`);
    }

    if (index.readyNodes.length < numNodes) {
      const need = gpuCount > 0 ? needPhrase(shape, [describeGpus(wanted, true)]) : numNodes === 1 ? 'a ready node' : `${numNodes} ready nodes`;
      const ready = index.readyNodes.length === 0 ? 'no node is ready now' : `${index.readyNodes.length} ready now`;
      return diagnosis(PLUGIN.gang, 'InsufficientNodes', `waiting for ${need}; ${ready}${notReady}`);
    }

    if (gpuCount === 0) {
      let maxCpus = 0;
      let maxMemory = 0;
      for (const node of index.readyNodes) {
        maxCpus = Math.max(maxCpus, overlay.freeCpus(node));
        maxMemory = Math.max(maxMemory, overlay.freeMemoryMiB(node));
      }
      const roomy = index.readyNodes.filter((n) => fitsHost(overlay, n, shape)).length;
      return diagnosis(
        PLUGIN.hostResources,
        'InsufficientHostResources',
        `waiting for ${needPhrase(shape, hostParts(shape))}; ${suchNodes(roomy)} now (at most ${hostHave(shape, maxCpus, maxMemory)} on any ready node)${notReady}`,
      );
    }

    const types = computeCandidateTypes(shape, index.readyGpuTypes);
    let maxMatching = 0;
    let gpuNodes = 0;
    let bothNodes = 0;
    let relaxedNodes = 0;
    let maxCpus = 0;
    let maxMemory = 0;
    for (const node of index.readyNodes) {
      const matching = computeMaxMatchingFree(overlay, node, shape, types);
      maxMatching = Math.max(maxMatching, matching);
      if (matching >= gpuCount) {
        gpuNodes++;
        if (fitsHost(overlay, node, shape)) bothNodes++;
        maxCpus = Math.max(maxCpus, overlay.freeCpus(node));
        maxMemory = Math.max(maxMemory, overlay.freeMemoryMiB(node));
      }
      let mostOfOneType = 0;
      for (const free of overlay.freeGpusByType(node).values()) mostOfOneType = Math.max(mostOfOneType, free.length);
      if (mostOfOneType >= gpuCount) relaxedNodes++;
    }

    if (gpuNodes >= numNodes) {
      const need = needPhrase(shape, [describeGpus(wanted, true), ...hostParts(shape)]);
      const detail = `the ${gpuNodes === 1 ? 'node' : 'nodes'} with the free GPUs ${gpuNodes === 1 ? 'has' : 'have'} at most ${hostHave(shape, maxCpus, maxMemory)}`;
      return diagnosis(PLUGIN.hostResources, 'InsufficientHostResources', `waiting for ${need}; ${suchNodes(bothNodes)} now (${detail})${notReady}`);
    }

    const constrained = shape.gpuTypes.length > 0 || shape.gpuMemoryMiB !== undefined;
    if (constrained && relaxedNodes >= numNodes) {
      const otherFree = `(${this.describeOtherFree(shape)} free)`;
      const message =
        numNodes === 1
          ? `needs ${describeGpus(wanted, false)} on one node; ${maxMatching === 0 ? 'none free now' : `at most ${maxMatching} free on any node now`} ${otherFree}`
          : `needs ${numNodes} nodes with ${describeGpus(wanted, true)} each; ${suchNodes(gpuNodes)} now ${otherFree}`;
      return diagnosis(PLUGIN.gpuFit, 'GpuTypeUnavailable', `${message}${notReady}`);
    }

    if (numNodes === 1) {
      const have = maxMatching === 0 ? 'none free now' : `at most ${maxMatching} free on any node now`;
      return diagnosis(PLUGIN.gpuFit, 'InsufficientGpus', `waiting for ${describeGpus(wanted, true)} on one node; ${have}${this.heldSuffix(shape)}${notReady}`);
    }
    return diagnosis(PLUGIN.gang, 'InsufficientNodes', `waiting for ${numNodes} nodes with ${describeGpus(wanted, true)} each; ${suchNodes(gpuNodes)} now${notReady}`);
  }

  /**
   * GPUs that are free but held for a backfill reservation are not free to the jobs behind it, yet they are not
   * busy either: say so, so that "none free now" never hides idle GPUs (nor the reserved job's own).
   */
  private heldSuffix(shape: ResourceShape): string {
    let held = 0;
    for (const node of this.index.readyNodes) for (const gpu of this.overlay.heldGpus(node)) if (isGpuAccepted(shape, gpu)) held++;
    return held === 0 ? '' : ` besides ${held} held for a reservation`;
  }

  /** Free GPUs on ready nodes that the job does not accept: "4 A100, 2 H100 with less than 80 GiB". */
  private describeOtherFree(shape: ResourceShape): string {
    const counts = new Map<string, number>();
    for (const node of this.index.readyNodes) {
      for (const free of this.overlay.freeGpusByType(node).values()) {
        for (const gpu of free) {
          if (isGpuAccepted(shape, gpu)) continue;
          const key = isTypeAccepted(shape, gpu.type) ? `${gpu.type} with less than ${formatMemoryMiB(shape.gpuMemoryMiB ?? 0)}` : gpu.type;
          counts.set(key, (counts.get(key) ?? 0) + 1);
        }
      }
    }
    const parts = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([key, n]) => `${n} ${key}`);
    return parts.length > 0 ? parts.join(', ') : 'no other GPUs';
  }

  /** "; not ready: gpu-2 (draining), gpu-3 (down)" for nodes that could host a node-rank of the job if they were ready. */
  private notReadySuffix(shape: ResourceShape): string {
    const names = this.index.nodes
      .filter((n) => !n.ready && couldHostOneRank(n, shape))
      .map((n) => `${n.name} (${n.info.state})`);
    return names.length > 0 ? `; not ready: ${formatSome(names)}` : '';
  }
}

/** A view with the GPUs of `gpus` and the CPUs and memory of `host`. */
function mixViews(gpus: CapacityView, host: CapacityView): CapacityView {
  return {
    freeGpusByType: (node) => gpus.freeGpusByType(node),
    freeGpuCount: (node) => gpus.freeGpuCount(node),
    freeCpus: (node) => host.freeCpus(node),
    freeMemoryMiB: (node) => host.freeMemoryMiB(node),
    sharedUse: (node) => gpus.sharedUse(node),
  };
}

function couldHostOneRank(node: IndexedNode, shape: ResourceShape): boolean {
  return hostCapacityFits(node.info, shape) && (shape.gpuCount === 0 || countMatchingOfOneType(node.info, shape) >= shape.gpuCount);
}

/** "a node with X and Y" or "3 nodes with X and Y each". */
function needPhrase(shape: ResourceShape, parts: readonly string[]): string {
  return shape.numNodes === 1 ? `a node with ${formatAnd(parts)}` : `${shape.numNodes} nodes with ${formatAnd(parts)} each`;
}

function hostParts(shape: ResourceShape): string[] {
  return [
    ...(shape.cpus !== undefined ? [`${shape.cpus} free CPUs`] : []),
    ...(shape.memoryMiB !== undefined ? [`${formatMemoryMiB(shape.memoryMiB)} free memory`] : []),
  ];
}

/** "16 free CPUs and 32 GiB free memory", naming only what the job asks for. */
function hostHave(shape: ResourceShape, cpus: number, memoryMiB: number): string {
  return formatAnd([
    ...(shape.cpus !== undefined ? [`${cpus} free CPUs`] : []),
    ...(shape.memoryMiB !== undefined ? [`${formatMemoryMiB(memoryMiB)} free memory`] : []),
  ]);
}

function suchNodes(n: number): string {
  return n === 0 ? 'no such node' : countOf(n, 'such node');
}

