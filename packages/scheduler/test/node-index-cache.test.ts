/**
 * The cluster side of the cycle cache (node-index-cache.ts) must never change a result. Over sequences of changing
 * snapshots — jobs starting, ending, suspended and resumed, gangs over two nodes, GPU shares, nodes added, removed and
 * back, drained, listed twice or replaced by new objects with fewer or other GPUs, allocations of unknown nodes and
 * GPUs, allocations listed node by node or in other orders, new allocation objects with the same contents, one edited
 * in place, running jobs replaced, listed twice or missing, a learned run-time estimate now and then — the index, the
 * running jobs, GPUs per team and victims being stopped computed with a cache kept across cycles equal those computed
 * afresh, and whole cycles decide alike. The cache must also be used: nodes and running jobs are reused.
 */
import { describe, expect, it } from 'vitest';
import type { ClusterSnapshot, GpuAllocation, GpuDevice, Job, JobSpec, NodeInfo, NodeState, TeamConfig } from '@tutti/model';
import { BUILTIN_PROFILES, CycleCache, type CycleInput, type RunningJobInput } from '../src/index.ts';
import { NodeIndexCache } from '../src/perf/node-index-cache.ts';
import { FAST_PATHS, runCycleWith, type CycleShortcuts } from '../src/run-cycle.ts';
import { computeRunningGpusByTeam, computeRunningJobs, type RunningJob } from '../src/cycle/running.ts';
import { computeSnapshotIndex, type SnapshotIndex } from '../src/cycle/snapshot-index.ts';
import { computeStoppingVictims, type StoppingVictims } from '../src/preemption/stopping.ts';

const TEAMS = ['red', 'blue', 'green'];
const ESTIMATED_RUNTIME_MS = 3_600_000;

/** A cluster that changes from step to step, and the snapshots and inputs it gives. */
class World {
  private s: number;
  /** NodeInfo by name; a changed node is a new object. */
  readonly infos = new Map<string, NodeInfo>();
  /** Nodes taken out of the list, by name, that may come back. */
  readonly gone = new Map<string, NodeInfo>();
  /** Whole-GPU holders by node name and GPU index. */
  readonly holders = new Map<string, Map<number, string>>();
  /** Fractional allocations. */
  shares: GpuAllocation[] = [];
  readonly jobs = new Map<string, RunningJobInput>();
  /** Allocation objects per node, kept while the node does not change (as the simulator keeps them). */
  private readonly objects = new Map<string, GpuAllocation[]>();
  private nextJob = 1;
  private nextNode = 0;
  now = 10_000_000;

  constructor(seed: number, nodes: number) {
    this.s = seed >>> 0;
    for (let i = 0; i < nodes; i++) this.addNode();
  }

  random(): number {
    this.s = (Math.imul(this.s, 1664525) + 1013904223) >>> 0;
    return this.s / 2 ** 32;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)] as T;
  }

  addNode(): void {
    // Names spread over the alphabet, so that a new node lands between others and moves their positions.
    const name = `${'abcdefgh'[Math.floor(this.random() * 8)]}-node-${this.nextNode++}`;
    const count = this.pick([4, 8, 8]);
    const type = this.pick(['A100', 'H100']);
    const gpus: GpuDevice[] = Array.from({ length: count }, (_, index) => ({ index, uuid: `${name}-${index}`, type, product: type, memoryMiB: 81_920, nvlinkPeers: index % 2 === 0 ? [index + 1] : [index - 1] }));
    this.infos.set(name, { name, address: name, cpus: 64, memoryMiB: 1 << 19, state: 'ready', labels: { rack: `rack-${this.nextNode % 3}` }, gpus });
    this.holders.set(name, new Map());
  }

  private spec(gpus: number, numNodes: number, fraction?: number): JobSpec {
    return {
      name: 'j',
      team: this.pick(TEAMS),
      priority: this.pick([10, 50]),
      numNodes,
      env: {},
      resources: { gpus: { count: gpus, types: [], ...(fraction !== undefined ? { fraction } : {}) } },
      run: { kind: 'shell', command: 'true' },
      ...(this.random() < 0.3 ? { maxDurationMs: this.pick([60_000, 7_200_000]) } : {}),
    };
  }

  private startJob(spec: JobSpec): string {
    const id = `r${this.nextJob++}`;
    this.jobs.set(id, { id, status: 'running', createdAt: this.now - 5_000, startedAt: this.now - Math.floor(this.random() * 7_200_000), spec });
    return id;
  }

  private freeGpus(name: string): number[] {
    const info = this.infos.get(name) as NodeInfo;
    const held = this.holders.get(name) as Map<number, string>;
    return info.gpus.map((g) => g.index).filter((i) => !held.has(i) && !this.shares.some((a) => a.node === name && a.gpuIndex === i));
  }

  private touch(name: string): void {
    this.objects.delete(name);
  }

  /** One step of change; `quiet` steps change only a few jobs. */
  step(quiet: boolean): void {
    this.now += 60_000;
    const names = [...this.infos.keys()];
    // Jobs end.
    for (const id of [...this.jobs.keys()]) {
      if (this.random() > (quiet ? 0.05 : 0.15)) continue;
      this.jobs.delete(id);
      for (const [name, held] of this.holders) {
        for (const [gpu, holder] of held) {
          if (holder !== id) continue;
          held.delete(gpu);
          this.touch(name);
        }
      }
      for (const a of this.shares) if (a.jobId === id) this.touch(a.node);
      this.shares = this.shares.filter((a) => a.jobId !== id);
    }
    // Jobs start: whole GPUs on one node, a gang over two, or a share of one GPU.
    for (let k = 0; k < (quiet ? 2 : 6); k++) {
      const name = this.pick(names);
      const free = this.freeGpus(name);
      const roll = this.random();
      if (roll < 0.15) {
        const shared = this.shares.filter((a) => a.node === name);
        const gpuIndex = shared.length > 0 && this.random() < 0.5 ? (shared[0] as GpuAllocation).gpuIndex : free[0];
        if (gpuIndex === undefined || shared.filter((a) => a.gpuIndex === gpuIndex).length >= 3) continue;
        // Fractions whose sums depend on the order of adding them, now and then a share on a second node too.
        const fraction = this.pick([0.1, 0.2, 0.3]);
        const id = this.startJob(this.spec(1, 1, fraction));
        this.shares.push({ jobId: id, node: name, gpuIndex, fraction, memoryMiB: 10_240 });
        this.touch(name);
        const other = this.pick(names);
        const otherFree = this.freeGpus(other)[0];
        if (other !== name && otherFree !== undefined && this.random() < 0.5) {
          this.shares.push({ jobId: id, node: other, gpuIndex: otherFree, fraction: 0.7 });
          this.touch(other);
        }
      } else if (roll < 0.3) {
        const other = this.pick(names);
        const otherFree = this.freeGpus(other);
        if (other === name || free.length < 2 || otherFree.length < 2) continue;
        const id = this.startJob(this.spec(2, 2));
        for (const [node, gpus] of [[name, free], [other, otherFree]] as const) {
          for (const g of gpus.slice(0, 2)) (this.holders.get(node) as Map<number, string>).set(g, id);
          this.touch(node);
        }
      } else if (free.length > 0) {
        const take = free.slice(0, 1 + Math.floor(this.random() * free.length));
        const id = this.startJob(this.spec(take.length, 1));
        for (const g of take) (this.holders.get(name) as Map<number, string>).set(g, id);
        this.touch(name);
      }
    }
    // A job suspended (its GPUs taken back while it stays listed as running), or a suspended one resumed elsewhere.
    const suspended = [...this.jobs.keys()].filter((id) => ![...this.holders.values()].some((held) => [...held.values()].includes(id)) && !this.shares.some((a) => a.jobId === id));
    if (suspended.length > 0 && this.random() < 0.5) {
      const id = this.pick(suspended);
      const name = this.pick(names);
      const gpu = this.freeGpus(name)[0];
      if (gpu !== undefined) {
        (this.holders.get(name) as Map<number, string>).set(gpu, id);
        this.touch(name);
      }
    } else if (this.random() < 0.3) {
      const name = this.pick(names);
      const held = this.holders.get(name) as Map<number, string>;
      const victim = [...held.values()][0];
      if (victim !== undefined && !this.shares.some((a) => a.jobId === victim)) {
        for (const [node, gpus] of this.holders) {
          for (const [gpu, holder] of gpus) {
            if (holder !== victim) continue;
            gpus.delete(gpu);
            this.touch(node);
          }
        }
      }
    }
    if (quiet) return;
    // Nodes change: a new object with the same contents or another state, fewer GPUs, a new node, a node gone.
    const roll = this.random();
    const name = this.pick(names);
    const info = this.infos.get(name) as NodeInfo;
    if (roll < 0.15) this.infos.set(name, { ...info, state: this.pick<NodeState>(['ready', 'draining', 'down']) });
    else if (roll < 0.25) this.infos.set(name, { ...info });
    else if (roll < 0.32) this.infos.set(name, { ...info, gpus: info.gpus.slice(0, info.gpus.length - 1) });
    else if (roll < 0.36) this.infos.set(name, { ...info, gpus: info.gpus.map((g) => ({ ...g, type: g.type === 'A100' ? 'H100' : 'A100' })) });
    else if (roll < 0.4) this.addNode();
    else if (roll < 0.46 && names.length > 3) {
      // Gone from the node list; its allocations stay (allocations of an unknown node), and it may come back.
      this.infos.delete(name);
      this.gone.set(name, info);
    } else if (roll < 0.55 && this.gone.size > 0) {
      const [back, was] = [...this.gone][0] as [string, NodeInfo];
      this.gone.delete(back);
      this.infos.set(back, was);
    }
    // A job object replaced (restarted elsewhere in time), a running job edited in place would break the contract.
    const ids = [...this.jobs.keys()];
    if (ids.length > 0 && this.random() < 0.3) {
      const id = this.pick(ids);
      const job = this.jobs.get(id) as RunningJobInput;
      this.jobs.set(id, { ...job, startedAt: this.now - 1_000, spec: { ...job.spec, team: this.pick(TEAMS) } });
    }
    if (ids.length > 0 && this.random() < 0.2) {
      const id = this.pick(ids);
      const job = this.jobs.get(id) as RunningJobInput;
      this.jobs.set(id, { ...job, stopping: { since: this.now - 30_000, forJobId: 'p1' } });
    }
  }

  /** The allocations of one node, as objects kept while the node does not change. */
  private allocationsOf(name: string): GpuAllocation[] {
    let list = this.objects.get(name);
    if (!list) {
      list = [];
      for (const [gpuIndex, jobId] of [...(this.holders.get(name) ?? new Map<number, string>())].sort((a, b) => a[0] - b[0])) list.push({ jobId, node: name, gpuIndex });
      for (const a of this.shares) if (a.node === name) list.push({ ...a });
      this.objects.set(name, list);
    }
    return list;
  }

  /**
   * A snapshot: in a quiet step, allocations node by node in name order, as objects kept while their node does not
   * change (as the simulator lists them); else now and then in another order, or all new objects.
   */
  snapshot(version: number, quiet: boolean): ClusterSnapshot {
    const order = quiet ? 'node' : this.pick(['node', 'node', 'shuffled', 'by-job', 'reversed'] as const);
    const freshObjects = !quiet && this.random() < 0.2;
    // New objects with the same contents, kept from now on like the ones before.
    if (freshObjects) for (const [name, list] of this.objects) this.objects.set(name, list.map((a) => ({ ...a })));
    const allocations = [...this.holders.keys()].sort().flatMap((name) => this.allocationsOf(name));
    if (order === 'reversed') allocations.reverse();
    if (order === 'by-job') allocations.sort((a, b) => (a.jobId < b.jobId ? -1 : a.jobId > b.jobId ? 1 : 0));
    if (order === 'shuffled') {
      for (let i = allocations.length - 1; i > 0; i--) {
        const j = Math.floor(this.random() * (i + 1));
        [allocations[i], allocations[j]] = [allocations[j] as GpuAllocation, allocations[i] as GpuAllocation];
      }
    }
    const nodes = [...this.infos.values()];
    // Now and then a node listed twice (the first entry counts).
    if (!quiet && this.random() < 0.2 && nodes.length > 0) nodes.push({ ...(nodes[0] as NodeInfo), state: 'down' });
    return { version, nodes, allocations };
  }

  /** Running jobs as a cycle takes them: in a step that is not quiet, now and then one listed twice (the last counts) or one missing. */
  running(quiet: boolean): RunningJobInput[] {
    const jobs = [...this.jobs.values()];
    if (!quiet && this.random() < 0.3 && jobs.length > 1) jobs.push({ ...(jobs[0] as RunningJobInput), startedAt: this.now - 10 });
    if (!quiet && this.random() < 0.3 && jobs.length > 1) jobs.splice(1, 1);
    // The newest job (likely new in this step) listed twice, in quiet steps too.
    if (this.random() < 0.15 && jobs.length > 1) jobs.splice(jobs.length - 1, 0, { ...(jobs[jobs.length - 1] as RunningJobInput), startedAt: this.now - 20 });
    return jobs;
  }

  /** An allocation object of the last snapshot edited in place (a broken contract the cache must still notice). */
  editInPlace(): boolean {
    // A share's memory, or a whole GPU moved to another index.
    for (const [name, list] of this.objects) {
      const share = list.find((a) => a.fraction !== undefined);
      if (!share || !this.infos.has(name) || this.random() < 0.5) continue;
      share.memoryMiB = (share.memoryMiB ?? 0) + 1_024;
      const kept = this.shares.find((a) => a.jobId === share.jobId && a.node === name && a.gpuIndex === share.gpuIndex);
      if (kept) kept.memoryMiB = share.memoryMiB;
      return true;
    }
    for (const [name, list] of this.objects) {
      if (!this.infos.has(name)) continue;
      const whole = list.find((a) => a.fraction === undefined);
      const free = this.freeGpus(name);
      if (!whole || free.length === 0) continue;
      const held = this.holders.get(name) as Map<number, string>;
      held.delete(whole.gpuIndex);
      whole.gpuIndex = free[0] as number;
      held.set(whole.gpuIndex, whole.jobId);
      // The world's own list for the node is rebuilt from the holders next time; the edited object is what the
      // cache saw last, edited in place.
      list.sort((a, b) => (a.fraction === undefined ? 0 : 1) - (b.fraction === undefined ? 0 : 1) || a.gpuIndex - b.gpuIndex);
      return true;
    }
    return false;
  }

  pending(): Job[] {
    return Array.from({ length: 12 }, (_, i) => ({ id: `p${i + 1}`, status: 'pending' as const, createdAt: i, spec: this.spec(this.pick([1, 2, 4, 8]), this.pick([1, 1, 2])) }));
  }
}

/** Everything an index says, as plain data in order (maps as entry lists), with node objects compared by contents. */
function describeIndex(index: SnapshotIndex): unknown {
  const gpus = (list: readonly GpuDevice[]): number[] => list.map((g) => g.index);
  return {
    nodes: index.nodes.map((n) => ({
      name: n.name,
      ordinal: n.ordinal,
      info: n.info,
      ready: n.ready,
      gpuByIndex: [...n.gpuByIndex].map(([i, g]) => [i, g.uuid]),
      nvlink: [...n.nvlink].map(([i, peers]) => [i, [...peers]]),
      heldBy: [...n.heldBy],
      initialFreeByType: [...n.initialFreeByType].map(([type, list]) => [type, gpus(list)]),
      initialFreeCount: n.initialFreeCount,
      initialShared: [...n.initialShared],
      rack: n.rack,
      zone: n.zone,
      free: [index.freeGpuCount(n), index.freeCpus(n), index.freeMemoryMiB(n), [...index.freeGpusByType(n)].map(([type, list]) => [type, gpus(list)]), [...index.sharedUse(n)]],
    })),
    readyNodes: index.readyNodes.map((n) => n.name),
    byName: [...index.byName].map(([name, n]) => [name, n.ordinal]),
    lookups: [...index.nodes.map((n) => n.name), 'no-such-node'].map((name) => [index.byName.has(name), index.byName.get(name)?.ordinal]),
    size: index.byName.size,
    readyGpuTypes: index.readyGpuTypes,
    maxGpusPerReadyNode: index.maxGpusPerReadyNode,
  };
}

function describeRunning(running: readonly RunningJob[]): unknown {
  return running.map((r) => ({ id: r.id, job: r.job, byNode: [...r.byNode].map(([ordinal, list]) => [ordinal, list.map((g) => g.uuid)]), byType: [...r.byType], endAt: r.endAt }));
}

function describeStopping(stopping: StoppingVictims): unknown {
  return { ids: [...stopping.ids], forJob: [...stopping.forJob].map(([id, f]) => [id, f.victims, [...f.gpus].map(([o, list]) => [o, list.map((g) => g.uuid)]), f.goneBy]) };
}

describe('the cluster side of the cycle cache', () => {
  it('indexes nodes and resolves running jobs as afresh over 300 steps of a changing cluster, and reuses what did not change', () => {
    let reusedNodes = 0;
    let reusedRunning = 0;
    for (const seed of [1, 2, 3, 4]) {
      const world = new World(seed, 24);
      const cache = new NodeIndexCache();
      // One that forgets unused entries as soon as it may, to show that forgetting changes nothing either.
      const forgetful = new NodeIndexCache(0);
      let before: { index: SnapshotIndex; running: readonly RunningJob[] } | undefined;
      for (let step = 0; step < 75; step++) {
        const quiet = step % 3 !== 0;
        world.step(quiet);
        if (step % 17 === 16) world.editInPlace();
        const snapshot = world.snapshot(step, quiet);
        const jobs = world.running(quiet);
        // Now and then a learned estimate, which is asked again every cycle.
        const estimate = step % 6 === 0 ? (job: Job): number | undefined => (job.spec.priority === 10 ? 600_000 : undefined) : undefined;
        const fresh = computeSnapshotIndex(snapshot);
        const kept = computeSnapshotIndex(snapshot, cache);
        expect(describeIndex(kept)).toEqual(describeIndex(fresh));
        const keptByForgetful = computeSnapshotIndex(snapshot, forgetful);
        expect(describeIndex(keptByForgetful)).toEqual(describeIndex(fresh));
        // Now and then a snapshot indexed without its running jobs resolved (as by a caller that looks at nodes only).
        if (step % 9 === 3) continue;
        const runningFresh = computeRunningJobs(fresh, jobs, world.now, ESTIMATED_RUNTIME_MS, estimate);
        const runningKept = computeRunningJobs(kept, jobs, world.now, ESTIMATED_RUNTIME_MS, estimate, cache);
        expect(describeRunning(runningKept)).toEqual(describeRunning(runningFresh));
        expect(describeRunning(computeRunningJobs(keptByForgetful, jobs, world.now, ESTIMATED_RUNTIME_MS, estimate, forgetful))).toEqual(describeRunning(runningFresh));
        for (let i = 0; i < runningKept.length; i++) expect(runningKept[i]?.job).toBe(runningFresh[i]?.job);
        const sortedEntries = (map: ReadonlyMap<string, number>): [string, number][] => [...map].sort((a, b) => (a[0] < b[0] ? -1 : 1));
        expect(sortedEntries(computeRunningGpusByTeam(runningKept, cache))).toEqual(sortedEntries(computeRunningGpusByTeam(runningFresh)));
        expect(describeStopping(computeStoppingVictims(jobs, runningKept, () => 60_000, world.now, cache))).toEqual(describeStopping(computeStoppingVictims(jobs, runningFresh, () => 60_000, world.now)));
        if (before) {
          const earlier = new Set(before.index.nodes);
          reusedNodes += kept.nodes.filter((n) => earlier.has(n)).length;
          const earlierRunning = new Set(before.running);
          reusedRunning += runningKept.filter((r) => earlierRunning.has(r)).length;
        }
        before = { index: kept, running: runningKept };
      }
    }
    expect(reusedNodes).toBeGreaterThan(1_000);
    expect(reusedRunning).toBeGreaterThan(1_000);
  });

  it('a snapshot seen again after others, the same one twice, or an index the cache did not make, is read as afresh', () => {
    const world = new World(9, 12);
    const cache = new NodeIndexCache();
    const snapshots: ClusterSnapshot[] = [];
    for (let step = 0; step < 8; step++) {
      world.step(false);
      snapshots.push(world.snapshot(step, true));
    }
    const jobs = world.running(true);
    const sequence = [...snapshots, ...[...snapshots].reverse(), snapshots[0] as ClusterSnapshot, snapshots[0] as ClusterSnapshot];
    let previous: ClusterSnapshot | undefined;
    for (const snapshot of sequence) {
      const kept = computeSnapshotIndex(snapshot, cache);
      const fresh = computeSnapshotIndex(snapshot);
      expect(describeIndex(kept)).toEqual(describeIndex(fresh));
      // An index of another snapshot first, a fresh index of this one, then the cache's twice.
      const other = computeSnapshotIndex(previous ?? snapshot);
      for (const index of [other, fresh, kept, kept]) {
        expect(describeRunning(computeRunningJobs(index, jobs, world.now, ESTIMATED_RUNTIME_MS, undefined, cache))).toEqual(describeRunning(computeRunningJobs(index === other ? other : fresh, jobs, world.now, ESTIMATED_RUNTIME_MS)));
      }
      previous = snapshot;
    }
  });

  describe.each(['tutti', 'fifo-backfill', 'tiresias'])('profile %s', (name) => {
    const profile = BUILTIN_PROFILES.get(name) as Parameters<typeof runCycleWith>[1];
    const FRESH: CycleShortcuts = { ...FAST_PATHS, keepAcrossCycles: false };
    const teams: TeamConfig[] = TEAMS.map((team, i) => ({ name: team, weight: 1 + i, nominal: { '*': 16 + 8 * i } }));

    it('decides as a fresh cache over 60 cycles of a changing cluster', () => {
      for (const seed of [5, 6]) {
        const world = new World(seed, 20);
        const cache = new CycleCache();
        for (let step = 0; step < 30; step++) {
          const quiet = step % 3 !== 0;
          world.step(quiet);
          if (step % 11 === 10) world.editInPlace();
          const input: CycleInput = { snapshot: world.snapshot(step, quiet), pending: world.pending(), running: world.running(quiet), teams, now: world.now, seed: 1 };
          const fresh = runCycleWith(input, profile, FRESH);
          const kept = runCycleWith({ ...input, cache }, profile, FAST_PATHS);
          expect(kept.plan).toEqual(fresh.plan);
          expect([...kept.diagnoses]).toEqual([...fresh.diagnoses]);
        }
      }
    });
  });
});
