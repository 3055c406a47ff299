/**
 * Slurm's command-line tools as the Slurm backend uses them on a login node: run with the site's environment
 * (SLURM_CONF, PATH), bounded in time, their errors told with what Slurm printed. And what their output means.
 */
import { execFile } from 'node:child_process';

/** How long one Slurm command may take before it counts as failed (slurmctld busy or unreachable). */
const COMMAND_TIMEOUT_MS = 30_000;

export class SlurmCommandError extends Error {
  override readonly name = 'SlurmCommandError';
  constructor(
    readonly command: string,
    message: string,
    readonly stderr: string,
  ) {
    super(message);
  }
}

export interface SlurmCli {
  /** Runs `program args…`; resolves with its stdout, rejects with a `SlurmCommandError` saying what Slurm said. */
  run(program: string, args: readonly string[]): Promise<string>;
}

/** Runs Slurm's tools from `binDir` (else PATH), with `env` over the control plane's environment. */
export function createSlurmCli(options: { env?: Readonly<Record<string, string>>; binDir?: string } = {}): SlurmCli {
  const env = { ...process.env, ...(options.env ?? {}) };
  return {
    run(program, args) {
      const file = options.binDir ? `${options.binDir}/${program}` : program;
      return new Promise((resolve, reject) => {
        execFile(file, [...args], { env, timeout: COMMAND_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
          if (!error) return resolve(stdout);
          const said = (stderr || stdout || '').trim().split('\n').slice(-5).join('; ');
          const why = (error as NodeJS.ErrnoException).code === 'ENOENT'
            ? `${file} was not found: is Slurm installed on this machine, and on PATH?`
            : error.killed ? `${program} did not answer in ${COMMAND_TIMEOUT_MS / 1000} s` : said || error.message;
          reject(new SlurmCommandError(`${program} ${args.join(' ')}`, `${program} failed: ${why}`, stderr));
        });
      });
    },
  };
}

/** A Slurm job as `squeue` shows it. */
export interface SlurmJobState {
  id: string;
  /** `RUNNING`, `PENDING`, `COMPLETED`, … (squeue's `%T`). */
  state: string;
  name: string;
  /** Why it waits, or the nodes it runs on (`%R`). */
  reason: string;
}

/** squeue's format for `parseSqueue`: fields a job name cannot hold apart. */
export const SQUEUE_FORMAT = '%i|%T|%R|%j';

/** `squeue -h -o SQUEUE_FORMAT` read by job id. A name may hold '|': it is the last field, taken whole. */
export function parseSqueue(output: string): Map<string, SlurmJobState> {
  const jobs = new Map<string, SlurmJobState>();
  for (const line of output.split('\n')) {
    const parts = line.split('|');
    if (parts.length < 4) continue;
    const [id, state, reason] = parts as [string, string, string];
    jobs.set(id.trim(), { id: id.trim(), state: state.trim(), reason: reason.trim(), name: parts.slice(3).join('|').trim() });
  }
  return jobs;
}

/** States in which a Slurm job's processes are gone for good. */
const ENDED_STATES = new Set(['BOOT_FAIL', 'CANCELLED', 'COMPLETED', 'DEADLINE', 'FAILED', 'NODE_FAIL', 'OUT_OF_MEMORY', 'PREEMPTED', 'TIMEOUT', 'SPECIAL_EXIT', 'REVOKED']);

/** Whether a job in this state has no process left (a job squeue no longer lists is ended too). */
export function isEndedSlurmState(state: string): boolean {
  return ENDED_STATES.has(state);
}

/** The signal's name as `scancel --signal` takes it: SIGTERM → TERM. */
export function scancelSignalName(signal: NodeJS.Signals): string {
  return signal.startsWith('SIG') ? signal.slice(3) : signal;
}
