/**
 * The one fractional-GPU sharing rule, used by the scheduler's placement probes (plan-overlay.ts), the plan verifier,
 * the store's commit check and the simulator:
 *
 * - the shares of one GPU never sum to more than the whole GPU (1, up to {@link GPU_SHARE_EPSILON}) nor use more than
 *   its memory;
 * - a GPU is never shared with a whole-GPU job: a whole-GPU job takes only a GPU nothing uses, and a share never joins
 *   a GPU a whole-GPU job holds.
 */

/** Slack for sums of floating-point shares, so that 0.1 + 0.2 + 0.7 is one GPU and not a hair more. */
export const GPU_SHARE_EPSILON = 1e-9;

/**
 * Whether a share of `share` (of one GPU) using `memoryMiB` of its memory fits beside shares that already use
 * `usedShare` and `usedMemoryMiB` of a GPU with `gpuMemoryMiB`. Plain numbers and no allocation: the scheduler calls it
 * per placement probe. (A GPU held whole counts as fully used: `usedShare` 1 or more, or `usedMemoryMiB` Infinity.)
 */
export function shareFitsGpu(usedShare: number, usedMemoryMiB: number, share: number, memoryMiB: number, gpuMemoryMiB: number): boolean {
  return usedShare + share <= 1 + GPU_SHARE_EPSILON && usedMemoryMiB + memoryMiB <= gpuMemoryMiB;
}

/** What already uses one GPU. */
export interface GpuShareUse {
  /** A whole-GPU job holds it. */
  heldWhole: boolean;
  /** Sum of the shares of fractional jobs on it (0 when none). */
  share: number;
  /** GPU memory those shares use. */
  memoryMiB: number;
}

/** One more claim on a GPU: a share of it (`share`, with `memoryMiB` of its memory), or the whole GPU (`share` undefined). */
export interface GpuClaim {
  share: number | undefined;
  memoryMiB: number;
}

/**
 * Why a claim does not fit a GPU, or `undefined` when it does:
 * `held_whole` — a whole-GPU job holds it; `shared` — a whole-GPU claim on a GPU fractional jobs share;
 * `over_share` — the shares would sum to more than one GPU; `over_memory` — their memory to more than the GPU's.
 */
export type GpuClaimConflict = 'held_whole' | 'shared' | 'over_share' | 'over_memory';

/** Checks one claim on a GPU against what already uses it (see the rule at the top of this file). */
export function gpuClaimConflict(use: GpuShareUse, claim: GpuClaim, gpuMemoryMiB: number): GpuClaimConflict | undefined {
  if (use.heldWhole) return 'held_whole';
  if (claim.share === undefined) return use.share > 0 ? 'shared' : undefined;
  if (shareFitsGpu(use.share, use.memoryMiB, claim.share, claim.memoryMiB, gpuMemoryMiB)) return undefined;
  return use.share + claim.share > 1 + GPU_SHARE_EPSILON ? 'over_share' : 'over_memory';
}
