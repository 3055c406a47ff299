/**
 * `npm run bench:launchers`: what tutti's three launchers cost over the framework's own launcher, on the same script
 * and the same machine (issue 17; the figures go to docs/benchmarks.md).
 *
 * A real tutti server runs in-process (startTuttiServer, the local backend on BENCH_LAUNCHER_GPUS fake GPUs, 2 by
 * default, a temporary data dir, a BENCH_TICK_MS tick). The bench writes two small Python scripts into a temporary
 * directory: a PyTorch one (`init_process_group("gloo")`, then 5 steps of one all_reduce each) and an MPI one
 * (mpi4py's COMM_WORLD, 5 steps of an allreduce and a barrier). Each prints one `{"tutti": {"step": N}}` line per
 * step, and rank 0 writes the wall-clock time of its first step into a file named on its command line. Pairs:
 *   - `per-gpu` (run: python3 script.py, one process per GPU) vs `torchrun --nproc_per_node=N script.py` alone,
 *   - `per-node` (run: torchrun script.py, one process per node) vs `torchrun --nproc_per_node=N script.py` alone,
 *   - `mpi` (run: python3 script_mpi.py, started by mpirun through tutti) vs `mpirun -np N python3 script_mpi.py`.
 * Timed for each run:
 *   - "submit → first step": from just before submitJob (the reference: just before spawn) to rank 0's first step,
 *     by the time the script wrote (one machine, one clock);
 *   - "total wall": from the same start to the job's end as tutti records it (`finished_at`; the reference: to the
 *     launcher's exit).
 * The runs interleave (tutti, reference, tutti, reference, ...) after one untimed warm-up round (the first import of
 * torch reads it from disk), and each figure is the median of the rounds with its min and max, the ratio
 * tutti ÷ reference and the difference. A mode whose tutti run fails, or whose tools are missing, is printed as
 * "n/a: why" and the rest goes on.
 *
 * Both sides start from the same small environment: tutti's ranks from its allow-list (a sane PATH, HOME, locale),
 * the references from the same variables of this process. Debian 12's torch 1.13 on Python 3.11 crashes in torchrun's
 * default `--redirects 0 --tee 0`: where it does, `--redirects 1 --tee 1` is passed to both torchruns (the
 * reference's and the per-node job's), as packages/server/test/framework-launchers.test.ts does.
 *
 * Options (env): BENCH_LAUNCHER_ROUNDS (default 5), BENCH_LAUNCHER_GPUS (ranks per job, default 2), BENCH_TICK_MS
 * (the server's tick, default 200), BENCH_LAUNCHER_STEPS (default 5), BENCH_LAUNCHER_MODES (a comma list of per-gpu,
 * per-node, mpi; default all), BENCH_PYTHON (default /usr/bin/python3, Debian's, which has torch).
 */
import { execFile, spawn } from 'node:child_process';
import { access, constants, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { SANE_PATH } from '@tutti/backends';
import { TuttiClient } from '@tutti/client';
import type { JobView } from '@tutti/client';
import { silentLogger, startTuttiServer } from '@tutti/server';

const execFileAsync = promisify(execFile);
const ROUNDS = Number(process.env.BENCH_LAUNCHER_ROUNDS ?? 5);
const RANKS = Number(process.env.BENCH_LAUNCHER_GPUS ?? 2);
const TICK_MS = Number(process.env.BENCH_TICK_MS ?? 200);
const STEPS = Number(process.env.BENCH_LAUNCHER_STEPS ?? 5);
const MODES = (process.env.BENCH_LAUNCHER_MODES ?? 'per-gpu,per-node,mpi').split(',').map((m) => m.trim());
const PYTHON = process.env.BENCH_PYTHON ?? '/usr/bin/python3';
/** Torchrun of the same Python (Debian's python3-torch installs it beside it). */
const TORCHRUN = path.join(path.dirname(PYTHON), 'torchrun');
/** One run that takes longer than this failed (a hung rendezvous, an mpirun that never starts its ranks). */
const RUN_TIMEOUT_MS = 180_000;

const say = (line: string) => process.stdout.write(`${line}\n`);

/** The PyTorch script: gloo over the launcher's variables (MASTER_ADDR, RANK, ...: torchrun's or tutti's). */
const TORCH_SCRIPT = `import json, sys, time
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank = dist.get_rank()
tensor = torch.ones(1024)
for step in range(1, ${STEPS} + 1):
    dist.all_reduce(tensor)
    now = time.time()
    if step == 1 and rank == 0:
        with open(sys.argv[1], "w") as f:
            f.write(repr(now))
    print(json.dumps({"tutti": {"step": step, "time": now}}), flush=True)
dist.destroy_process_group()
`;

/**
 * The MPI script. A rank started without an MPI launcher is a singleton (COMM_WORLD of size 1) and would "succeed"
 * alone: the expected size is checked so that such a run fails instead of timing something else.
 */
const MPI_SCRIPT = `import json, sys, time
from mpi4py import MPI

comm = MPI.COMM_WORLD
expected = int(sys.argv[2])
if comm.Get_size() != expected:
    print("COMM_WORLD has %d ranks, expected %d: not started by an MPI launcher" % (comm.Get_size(), expected), file=sys.stderr)
    sys.exit(3)
for step in range(1, ${STEPS} + 1):
    comm.allreduce(step)
    comm.Barrier()
    now = time.time()
    if step == 1 and comm.Get_rank() == 0:
        with open(sys.argv[1], "w") as f:
            f.write(repr(now))
    print(json.dumps({"tutti": {"step": step, "time": now}}), flush=True)
`;

/** One timed run: both figures from the same start. */
interface Sample {
  firstStepMs: number;
  wallMs: number;
}

/** One side of a pair: runs once and times it, or throws why it could not. */
type Runner = () => Promise<Sample>;

interface Pair {
  mode: string;
  what: string;
  referenceName: string;
  /** Why the mode cannot be timed at all on this machine (a missing tool); its runs are skipped. */
  unavailable?: string;
  tutti: Runner;
  reference: Runner;
}

/** Samples of one side, or why it stopped being timed (its first failure). */
interface Side {
  samples: Sample[];
  failure?: string;
}

/** A command's trimmed stdout, or undefined when it cannot run (the tool is missing or fails). */
async function probe(file: string, args: string[]): Promise<string | undefined> {
  try {
    const { stdout } = await execFileAsync(file, args, { timeout: 120_000, encoding: 'utf8' });
    return stdout.trim();
  } catch {
    return undefined;
  }
}

async function isExecutable(file: string): Promise<boolean> {
  return access(file, constants.X_OK).then(() => true, () => false);
}

/**
 * The references' environment: what tutti's ranks get of the server's environment (its allow-list, a sane PATH), so
 * that neither side pays for, or profits from, this shell's variables (a pyenv PATH, npm's).
 */
function referenceEnvironment(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: SANE_PATH };
  for (const [name, value] of Object.entries(process.env)) {
    if (value !== undefined && (['HOME', 'USER', 'LOGNAME', 'TMPDIR', 'LANG', 'TZ'].includes(name) || name.startsWith('LC_'))) env[name] = value;
  }
  return env;
}

/** Epoch milliseconds rank 0 wrote at its first step. */
async function firstStepAt(file: string): Promise<number> {
  const text = await readFile(file, 'utf8').catch(() => undefined);
  const seconds = text === undefined ? NaN : Number(text);
  if (!Number.isFinite(seconds)) throw new Error('rank 0 reported no first step');
  return seconds * 1000;
}

/** Spawns a launcher, waits for its exit; a non-zero exit throws with the end of its output. */
async function runReference(file: string, args: string[], cwd: string, firstStepFile: string): Promise<Sample> {
  const startedAt = Date.now();
  const child = spawn(file, args, { cwd, env: referenceEnvironment(), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-2000));
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (exitCode) => resolve(exitCode));
  }).finally(() => clearTimeout(timer));
  const exitedAt = Date.now();
  if (code !== 0) throw new Error(`${path.basename(file)} exited with ${code}: ${output.trim().split('\n').slice(-3).join(' | ')}`);
  return { firstStepMs: (await firstStepAt(firstStepFile)) - startedAt, wallMs: exitedAt - startedAt };
}

/** Rank 0's last line of output (" (rank 0: ...)"), which says why a run failed where the exit code does not. */
async function lastLogLine(client: TuttiClient, id: string): Promise<string> {
  let last = '';
  try {
    for await (const line of client.logLines(id, { rank: 0 })) if (line.trim() !== '') last = line.trim();
  } catch {
    return '';
  }
  return last === '' ? '' : ` (rank 0: ${last.slice(-300)})`;
}

/** Submits a job, waits for it to end; a job that does not succeed throws with its reason. */
async function runJob(client: TuttiClient, spec: Record<string, unknown>, firstStepFile: string): Promise<Sample> {
  const submittedAt = Date.now();
  const submitted = await client.submitJob(spec);
  const deadline = submittedAt + RUN_TIMEOUT_MS;
  let job: JobView = submitted;
  while (!['succeeded', 'failed', 'cancelled'].includes(job.status)) {
    if (Date.now() > deadline) {
      await client.cancelJob(job.id).catch(() => undefined);
      throw new Error(`job ${job.id} did not end in ${RUN_TIMEOUT_MS / 1000} s (${job.status})`);
    }
    await sleep(20);
    job = await client.getJob(job.id);
  }
  if (job.status !== 'succeeded') throw new Error(`job ${job.id} ${job.status}: ${job.end_reason ?? 'no reason given'}${await lastLogLine(client, job.id)}`);
  return { firstStepMs: (await firstStepAt(firstStepFile)) - submittedAt, wallMs: Date.parse(job.finished_at!) - submittedAt };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/** "1.23 s (min 1.10, max 1.40)": one side's figure over its rounds. */
function spread(values: readonly number[]): string {
  return `${seconds(median(values))} (min ${(Math.min(...values) / 1000).toFixed(2)}, max ${(Math.max(...values) / 1000).toFixed(2)})`;
}

/** One figure of one pair: both medians, the ratio and the difference; or why a side has none. */
function compare(figure: string, pick: (s: Sample) => number, pair: Pair, tutti: Side, reference: Side): string {
  const tuttiValues = tutti.samples.map(pick);
  const referenceValues = reference.samples.map(pick);
  const tuttiText = tutti.failure !== undefined ? `n/a: ${tutti.failure}` : spread(tuttiValues);
  const referenceText = reference.failure !== undefined ? `n/a: ${reference.failure}` : spread(referenceValues);
  let line = `  ${figure}: tutti ${pair.mode} ${tuttiText}; ${pair.referenceName} ${referenceText}`;
  if (tutti.failure === undefined && reference.failure === undefined && tuttiValues.length > 0 && referenceValues.length > 0) {
    const [ours, theirs] = [median(tuttiValues), median(referenceValues)];
    const difference = Math.round(ours - theirs);
    line += `; ratio ${(ours / theirs).toFixed(2)}, ${difference >= 0 ? '+' : ''}${difference} ms`;
  }
  return line;
}

async function main(): Promise<void> {
  const root = await mkdtemp(path.join(tmpdir(), 'tutti-bench-launchers-'));
  const work = path.join(root, 'work');
  await mkdir(work, { recursive: true });
  const torchScript = path.join(work, 'script.py');
  const mpiScript = path.join(work, 'script_mpi.py');
  await writeFile(torchScript, TORCH_SCRIPT);
  await writeFile(mpiScript, MPI_SCRIPT);

  const torchVersion = await probe(PYTHON, ['-c', 'import torch; print(torch.__version__)']);
  const hasTorchrun = torchVersion !== undefined && (await isExecutable(TORCHRUN));
  const mpi4pyVersion = await probe(PYTHON, ['-c', 'import mpi4py; print(mpi4py.__version__)']);
  const mpirunVersion = (await probe('mpirun', ['--version']))?.split('\n')[0];
  const torchrunWorkaround = torchVersion !== undefined
    && (await probe(PYTHON, ['-c', 'from torch.distributed.elastic.multiprocessing.api import Std; print(Std.from_str("0") is None)'])) === 'True'
    ? ['--redirects', '1', '--tee', '1']
    : [];
  // Open MPI refuses root without the flag; binding would pin both ranks' threads where tutti's would float.
  const mpirunFlags = [...(process.getuid?.() === 0 ? ['--allow-run-as-root'] : []), '--bind-to', 'none', ...(RANKS > cpus().length ? ['--oversubscribe'] : [])];

  const server = await startTuttiServer({ dataDir: path.join(root, 'data'), port: 0, fakeGpus: String(RANKS), logger: silentLogger, tickMs: TICK_MS, stopGraceMs: 5000 });
  const client = new TuttiClient({ baseUrl: server.url });
  let runs = 0;
  /** A fresh file per run, so that a run that never reaches its first step cannot read an earlier run's. */
  const nextFirstStepFile = () => path.join(work, `first-step-${++runs}`);
  const torchrunAlone: Runner = () => {
    const file = nextFirstStepFile();
    return runReference(TORCHRUN, [...torchrunWorkaround, `--nproc_per_node=${RANKS}`, torchScript, file], work, file);
  };
  const noTorch = torchVersion === undefined ? `no torch in ${PYTHON}` : !hasTorchrun ? `no ${TORCHRUN}` : undefined;
  const pairs: Pair[] = [
    {
      mode: 'per-gpu', what: `run: python3 script.py, ${RANKS} processes started by tutti`, referenceName: 'torchrun', unavailable: noTorch,
      tutti: () => {
        const file = nextFirstStepFile();
        return runJob(client, { name: 'bench-per-gpu', resources: { gpus: RANKS }, run: [PYTHON, torchScript, file], workdir: work }, file);
      },
      reference: torchrunAlone,
    },
    {
      mode: 'per-node', what: `run: torchrun ${[...torchrunWorkaround, 'script.py'].join(' ')}, 1 process per node started by tutti`, referenceName: 'torchrun', unavailable: noTorch,
      tutti: () => {
        const file = nextFirstStepFile();
        return runJob(client, { name: 'bench-per-node', resources: { gpus: RANKS }, launcher: 'per-node', run: [TORCHRUN, ...torchrunWorkaround, torchScript, file], workdir: work }, file);
      },
      reference: torchrunAlone,
    },
    {
      mode: 'mpi', what: `run: python3 script_mpi.py, ${RANKS} ranks started by mpirun through tutti`, referenceName: 'mpirun',
      unavailable: mpirunVersion === undefined ? 'no mpirun (apt-get install openmpi-bin)' : mpi4pyVersion === undefined ? `no mpi4py in ${PYTHON} (apt-get install python3-mpi4py)` : undefined,
      tutti: () => {
        const file = nextFirstStepFile();
        return runJob(client, { name: 'bench-mpi', resources: { gpus: RANKS }, launcher: 'mpi', run: [PYTHON, mpiScript, file, String(RANKS)], workdir: work }, file);
      },
      reference: () => {
        const file = nextFirstStepFile();
        return runReference('mpirun', [...mpirunFlags, '-np', String(RANKS), PYTHON, mpiScript, file, String(RANKS)], work, file);
      },
    },
  ].filter((pair) => MODES.includes(pair.mode));

  say(`launchers: ${ROUNDS} interleaved rounds (tutti, reference, tutti, reference, ...) after 1 untimed warm-up round; ${RANKS} ranks of a ${STEPS}-step script (gloo all_reduce / MPI allreduce + barrier), CPU only`);
  say(`tutti: in-process server, local backend, ${RANKS} fake GPUs, tick ${TICK_MS} ms`);
  say(`machine: ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${PYTHON}: torch ${torchVersion ?? 'missing'}, mpi4py ${mpi4pyVersion ?? 'missing'}, ${mpirunVersion ?? 'mpirun missing'}`);
  say(`references: torchrun ${[...torchrunWorkaround, `--nproc_per_node=${RANKS}`].join(' ')} script.py (its agent's default --monitor_interval: it notices its workers' exit by polling); mpirun ${[...mpirunFlags, '-np', String(RANKS)].join(' ')} python3 script_mpi.py`);

  const results = new Map<Pair, { tutti: Side; reference: Side }>(pairs.map((pair) => [pair, { tutti: { samples: [], failure: pair.unavailable }, reference: { samples: [], failure: pair.unavailable } }]));
  /** Runs one side once unless it already failed; the first failure ends that side's timing, with its reason. */
  const runSide = async (side: Side, runner: Runner, label: string, timed: boolean): Promise<string> => {
    if (side.failure !== undefined) return `${label} n/a`;
    try {
      const sample = await runner();
      if (timed) side.samples.push(sample);
      return `${label} ${seconds(sample.firstStepMs)} / ${seconds(sample.wallMs)}`;
    } catch (error) {
      side.failure = error instanceof Error ? error.message : String(error);
      return `${label} failed: ${side.failure}`;
    }
  };
  try {
    for (let round = 0; round <= ROUNDS; round++) {
      const timed = round > 0;
      const roundName = timed ? `round ${round}` : 'warm-up';
      for (const pair of pairs) {
        const result = results.get(pair)!;
        const ours = await runSide(result.tutti, pair.tutti, `tutti ${pair.mode}`, timed);
        const theirs = await runSide(result.reference, pair.reference, pair.referenceName, timed);
        say(`  ${roundName.padEnd(8)} ${pair.mode.padEnd(8)} first step / total wall: ${ours}; ${theirs}`);
      }
    }
    say('');
    for (const pair of pairs) {
      const { tutti, reference } = results.get(pair)!;
      say(`${pair.mode} (${pair.what}) vs ${pair.referenceName} alone, median of ${ROUNDS}:`);
      say(compare('submit → first step', (s) => s.firstStepMs, pair, tutti, reference));
      say(compare('total wall         ', (s) => s.wallMs, pair, tutti, reference));
    }
  } finally {
    // A failed run may leave a job behind (a timed-out mpi job is cancelled above): nothing outlives the bench.
    for (const job of (await client.listJobs({ status: 'running' }).catch(() => ({ jobs: [] }))).jobs) await client.cancelJob(job.id).catch(() => undefined);
    await server.close();
    await rm(root, { recursive: true, force: true });
  }
}

await main();
