/**
 * Checks on a `LaunchRequest` that every backend makes before starting anything, and the error a failed launch
 * rejects with.
 */
import type { LaunchRequest } from './execution-backend.ts';

/**
 * Why a launch failed, so the server can tell the user's mistakes from the platform's:
 * - `InvalidRequest`: the request itself is inconsistent (ranks missing or repeated, bad ids): a bug in the caller.
 * - `WrongNode`: a rank was placed on a node this backend does not run.
 * - `WorkdirMissing`: the job's working directory does not exist or is not a directory (the user's mistake).
 * - `SpawnFailed`: the operating system refused to start a process (out of PIDs or memory, data dir not writable), or
 *   the cluster refused the job.
 * - `NodeUnavailable`: a node the ranks were placed on cannot run them now (a Slurm node that died before the
 *   scheduler learned it): not the job's fault, and over once the node's state is known, so it is tried again.
 */
export type LaunchErrorCode = 'InvalidRequest' | 'WrongNode' | 'WorkdirMissing' | 'SpawnFailed' | 'NodeUnavailable';

/** How long a job whose launch met an unavailable node waits before it is placed again. */
export const NODE_UNAVAILABLE_RETRY_MS = 5_000;

/** Rejection of `ExecutionBackend.launch`. When it is thrown, no rank of the job is left running. */
export class LaunchError extends Error {
  override readonly name = 'LaunchError';
  constructor(
    readonly code: LaunchErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** When set, the job goes back to the queue and is tried again after this long, rather than failing. */
  get retryAfterMs(): number | undefined {
    return this.code === 'NodeUnavailable' ? NODE_UNAVAILABLE_RETRY_MS : undefined;
  }
}

/** Job ids become directory names: no separators, no dot-only names. */
const SAFE_ID_RE = /^(?!\.{1,2}$)[A-Za-z0-9._-]{1,128}$/;

export function isSafeJobId(jobId: string): boolean {
  return SAFE_ID_RE.test(jobId);
}

/**
 * Problems with a request, in words; empty when it is consistent: ranks 0..n-1 each exactly once, non-negative
 * whole-number ranks and GPU indices, a job id that is safe as a directory name, a non-empty command.
 */
export function verifyLaunchRequest(request: LaunchRequest): string[] {
  const problems: string[] = [];
  if (!isSafeJobId(request.jobId)) problems.push(`job id "${request.jobId}" may only have letters, digits, '.', '_' and '-'`);
  if (request.ranks.length === 0) problems.push('a launch needs at least one rank');
  const seen = new Set<number>();
  for (const rank of request.ranks) {
    const where = `rank ${rank.rank}`;
    for (const [field, value] of [['rank', rank.rank], ['localRank', rank.localRank], ['nodeRank', rank.nodeRank]] as const) {
      if (!Number.isSafeInteger(value) || value < 0) problems.push(`${where}: ${field} ${value} is not a whole number >= 0`);
    }
    if (seen.has(rank.rank)) problems.push(`${where} appears more than once`);
    seen.add(rank.rank);
    if (rank.node === '') problems.push(`${where}: no node`);
    if (!rank.gpus.every((g) => Number.isSafeInteger(g) && g >= 0)) problems.push(`${where}: GPU indices ${JSON.stringify(rank.gpus)} are not whole numbers >= 0`);
  }
  for (let r = 0; r < request.ranks.length; r++) {
    if (!seen.has(r)) problems.push(`rank ${r} is missing (ranks must be 0..${request.ranks.length - 1})`);
  }
  const run = request.run;
  if (run.kind === 'shell' ? run.command.trim() === '' : run.argv.length === 0 || run.argv[0] === '') {
    problems.push('the command is empty');
  }
  return problems;
}
