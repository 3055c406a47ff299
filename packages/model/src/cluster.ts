/**
 * The cluster as the scheduler sees it: nodes, their GPUs, and which job holds each GPU.
 * Plain data, no behaviour: a snapshot is built by the store (live) or the simulator and never mutated.
 */

/** One accelerator on a node. */
export interface GpuDevice {
  /** The device index on its node, as `CUDA_VISIBLE_DEVICES` counts it (0-based). */
  index: number;
  /** Stable identity across reboots (`GPU-…` from nvidia-smi, or `FAKE-…` for simulated devices). */
  uuid: string;
  /** Model name normalised to a short type, e.g. `H100`, `A100`, `T4` (see `normalizeGpuType`). */
  type: string;
  /** The full product name as reported by the driver, e.g. `NVIDIA H100 80GB HBM3`. */
  product: string;
  /** Total device memory in MiB. */
  memoryMiB: number;
  /** Indices of GPUs on the same node that this one reaches over NVLink. */
  nvlinkPeers: number[];
}

/** A machine that runs ranks. */
export interface NodeInfo {
  /** Unique node name (hostname for the local backend, NodeName for Slurm). */
  name: string;
  /** Address other ranks use to reach this node (MASTER_ADDR when it hosts rank 0). */
  address: string;
  /** The GPUs tutti may place on: those of `gpusHeldElsewhere` are not among them. */
  gpus: GpuDevice[];
  /**
   * GPUs of the node that work tutti does not run holds now (another user's Slurm job): not schedulable until they
   * are freed, but part of what the node has, so a job that needs them is not refused as one that can never fit.
   */
  gpusHeldElsewhere?: GpuDevice[];
  /** Logical CPUs available to jobs. */
  cpus: number;
  /** Memory available to jobs, in MiB. */
  memoryMiB: number;
  /** Topology and other labels (`rack`, `zone`, ...); free-form for now. */
  labels: Record<string, string>;
  /** `ready` nodes take new work; `draining` nodes finish what they run; `down` nodes are lost. */
  state: NodeState;
  /** Why the node is draining or down, as its backend says (Slurm's `Reason`), when it says. */
  stateReason?: string;
}

export type NodeState = 'ready' | 'draining' | 'down';

/**
 * One GPU held by one job: the whole GPU, or with `fraction` a share of it. A GPU holds either one whole-GPU
 * allocation or any number of fractional ones whose fractions sum to at most 1 and memory to at most its memory.
 */
export interface GpuAllocation {
  jobId: string;
  node: string;
  gpuIndex: number;
  /** Share of the GPU (0 < fraction < 1); absent for a whole GPU. */
  fraction?: number;
  /** GPU memory the share may use, MiB (only with `fraction`). */
  memoryMiB?: number;
}

/** What the scheduler decides on. Immutable; `version` changes whenever allocations or nodes change. */
export interface ClusterSnapshot {
  version: number;
  nodes: NodeInfo[];
  allocations: GpuAllocation[];
}
