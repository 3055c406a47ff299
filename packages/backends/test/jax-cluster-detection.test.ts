/**
 * tutti's cluster detection for JAX (packages/backends/python/): with that directory on PYTHONPATH, as tutti's ranks
 * have it, `jax.distributed.initialize()` with no arguments takes tutti's JAX_* variables, also where JAX's own Slurm
 * or Open MPI detection would answer otherwise; and a program that never imports JAX, or runs its own
 * sitecustomize, notices nothing.
 *
 * Real `python3` processes throughout. JAX itself cannot be installed on this machine (no PyPI), so most tests run
 * against a stand-in `jax` package that each test writes into a temporary directory: it reproduces, in a few lines,
 * the code paths of JAX that the detection relies on (see `writeJaxStandIn`), for three generations of JAX's API.
 * The real JAX is used where a Python that imports it is found (`TUTTI_JAX_PYTHON`, else `python3`): two processes
 * then really initialize JAX's distributed runtime with no arguments.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

/** packages/backends/python: the directory tutti puts first on the ranks' PYTHONPATH. */
const PLUGIN_DIR = fileURLToPath(new URL('../python/', import.meta.url)).replace(/\/$/, '');
const PYTHON = 'python3';

const scratch = mkdtempSync(join(os.tmpdir(), 'tutti-jax-cluster-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let scratchDirs = 0;
function scratchDir(name: string): string {
  const dir = join(scratch, `${++scratchDirs}-${name}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

function writeFiles(root: string, files: Record<string, string>): void {
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
}

/**
 * The generations of JAX's cluster API (jax/_src/clusters/cluster.py, slurm_cluster.py and jax/_src/distributed.py
 * in JAX's sources):
 * - `0.4.1`: 0.4.1 to 0.4.25. `get_coordinator_address()` takes no argument; auto-detection takes the first
 *   registered environment that is present; JAX reads JAX_COORDINATOR_ADDRESS itself but not JAX_LOCAL_DEVICE_IDS;
 *   Slurm is "present" wherever SLURM_JOB_ID is set.
 * - `0.4.32`: 0.4.36 to 0.8.0 (0.4.26 to 0.4.35 lie between the two). `get_coordinator_address(timeout_secs=…)`
 *   (0.4.26); `cluster_detection_method` picks an environment by its `name` and auto-detection skips
 *   `opt_in_only_method` ones (0.4.31); JAX reads JAX_LOCAL_DEVICE_IDS (0.4.32); "deactivate" and detection only
 *   while an argument is unknown (0.4.36).
 * - `0.8.1`: 0.8.1 to 0.11 (the newest seen). Also `override_coordinator_port=` (JAX_COORDINATOR_PORT), and Slurm is
 *   present only where all five of its variables are.
 */
type JaxGeneration = '0.4.1' | '0.4.32' | '0.8.1';
const GENERATIONS: JaxGeneration[] = ['0.4.1', '0.4.32', '0.8.1'];

/**
 * Writes a stand-in `jax` package under `root`, for a machine where JAX cannot be installed. It is not JAX's code but
 * does what JAX does on the paths tutti's detection depends on:
 * - `import jax` imports `jax._src.distributed`, which imports the package `jax._src.clusters`; that package imports
 *   `cluster` (ClusterEnv) first, then each built-in environment (Open MPI, then Slurm), whose class definitions
 *   register them: `ClusterEnv.__init_subclass__` appends every subclass to the list `ClusterEnv._cluster_types`;
 * - `ClusterEnv.auto_detect_unset_distributed_params` picks an environment as JAX does (by `name` when
 *   `cluster_detection_method` is given, else the first in that list that `is_env_present()`, skipping opt-in ones),
 *   calls `get_coordinator_address` with the generation's arguments, and turns `get_local_process_id()` into
 *   `local_device_ids = [id]` when the program gave none;
 * - `jax.distributed.initialize` reads JAX_COORDINATOR_ADDRESS (and, from 0.4.32, JAX_LOCAL_DEVICE_IDS) before
 *   detecting, and raises JAX's errors for what stays unknown. Where JAX would start its coordination service it
 *   answers the settings instead, and `jax._src.clusters.cluster.detected_by` names the environment that answered.
 */
function writeJaxStandIn(root: string, generation: JaxGeneration, options: { clustersWithoutClusterEnv?: boolean } = {}): void {
  const picksByName = generation !== '0.4.1';
  const coordinatorCall = {
    '0.4.1': 'env.get_coordinator_address()',
    '0.4.32': 'env.get_coordinator_address(timeout_secs=initialization_timeout)',
    '0.8.1': 'env.get_coordinator_address(timeout_secs=initialization_timeout, override_coordinator_port=os.environ.get("JAX_COORDINATOR_PORT"))',
  }[generation];
  const clusterPy = [
    '# Stand-in for jax/_src/clusters/cluster.py (see jax-cluster-detection.test.ts).',
    'import os',
    'detected_by = None',
    '',
    'class ClusterEnv:',
    '    _cluster_types = []',
    '    opt_in_only_method = False',
    ...(generation === '0.8.1' ? ['    name = ""'] : []),
    '',
    '    def __init_subclass__(cls, **kwargs):',
    '        super().__init_subclass__(**kwargs)',
    '        cls._cluster_types.append(cls)',
    '',
    '    @classmethod',
    '    def auto_detect_unset_distributed_params(cls, coordinator_address, num_processes, process_id, local_device_ids,',
    '                                             cluster_detection_method=None, initialization_timeout=None):',
    '        global detected_by',
    '        if cluster_detection_method is not None:',
    '            env = None',
    '            for candidate in cls._cluster_types:',
    '                if candidate.name == cluster_detection_method:',
    '                    env = candidate if candidate.is_env_present() else None',
    '                    break',
    '        else:',
    '            env = None',
    '            for candidate in cls._cluster_types:',
    `                if ${picksByName ? 'not candidate.opt_in_only_method and ' : ''}candidate.is_env_present():`,
    '                    env = candidate',
    '                    break',
    '        if env is None:',
    '            return coordinator_address, num_processes, process_id, local_device_ids',
    '        detected_by = env.__name__',
    '        if coordinator_address is None:',
    `            coordinator_address = ${coordinatorCall}`,
    '        if num_processes is None:',
    '            num_processes = env.get_process_count()',
    '        if process_id is None:',
    '            process_id = env.get_process_id()',
    '        if local_device_ids is None:',
    '            local_id = env.get_local_process_id()',
    '            if local_id is not None:',
    '                local_device_ids = [local_id]',
    '        return coordinator_address, num_processes, process_id, local_device_ids',
    '',
    '    @classmethod',
    '    def get_local_process_id(cls):',
    '        return None',
    '',
  ].join('\n');
  const slurmPy = [
    '# Stand-in for jax/_src/clusters/slurm_cluster.py.',
    'import os',
    'from jax._src import clusters',
    '',
    'class SlurmCluster(clusters.ClusterEnv):',
    '    name = "slurm"',
    '',
    '    @classmethod',
    '    def is_env_present(cls):',
    generation !== '0.8.1'
      ? '        return "SLURM_JOB_ID" in os.environ'
      : '        return all(v in os.environ for v in ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID"))',
    '',
    '    @classmethod',
    '    def get_coordinator_address(cls, timeout_secs=None, override_coordinator_port=None):',
    '        port = override_coordinator_port or str(int(os.environ["SLURM_JOB_ID"]) % 4096 + 61440)',
    '        first = os.environ["SLURM_STEP_NODELIST"].split(",")[0]',
    '        if "[" in first:',
    '            prefix, ranges = first.split("[", 1)',
    '            first = prefix + ranges.replace("-", ",").split(",")[0].rstrip("]")',
    '        return "%s:%s" % (first, port)',
    '',
    '    @classmethod',
    '    def get_process_count(cls):',
    '        return int(os.environ["SLURM_NTASKS"])',
    '',
    '    @classmethod',
    '    def get_process_id(cls):',
    '        return int(os.environ["SLURM_PROCID"])',
    '',
    '    @classmethod',
    '    def get_local_process_id(cls):',
    '        return int(os.environ["SLURM_LOCALID"])',
    '',
  ].join('\n');
  const ompiPy = [
    '# Stand-in for jax/_src/clusters/ompi_cluster.py: first in the registry, as in JAX from 0.4.2 on.',
    'import os',
    'from jax._src import clusters',
    '',
    'class OmpiCluster(clusters.ClusterEnv):',
    '    name = "ompi"',
    '',
    '    @classmethod',
    '    def is_env_present(cls):',
    '        return "OMPI_MCA_orte_hnp_uri" in os.environ',
    '',
    '    @classmethod',
    '    def get_coordinator_address(cls, timeout_secs=None, override_coordinator_port=None):',
    '        return "mpi-launcher:%s" % (override_coordinator_port or "64000")',
    '',
    '    @classmethod',
    '    def get_process_count(cls):',
    '        return int(os.environ["OMPI_COMM_WORLD_SIZE"])',
    '',
    '    @classmethod',
    '    def get_process_id(cls):',
    '        return int(os.environ["OMPI_COMM_WORLD_RANK"])',
    '',
    '    @classmethod',
    '    def get_local_process_id(cls):',
    '        return int(os.environ["OMPI_COMM_WORLD_LOCAL_RANK"])',
    '',
  ].join('\n');
  const distributedPy = [
    '# Stand-in for jax/_src/distributed.py: where JAX would connect, it answers the settings.',
    'import os',
    'from jax._src import clusters',
    '',
    'def initialize(coordinator_address=None, num_processes=None, process_id=None, local_device_ids=None,',
    '               cluster_detection_method=None, initialization_timeout=300):',
    ...(generation === '0.4.1'
      ? ['    if cluster_detection_method is not None:', '        raise TypeError("initialize() got an unexpected keyword argument \'cluster_detection_method\'")']
      : []),
    '    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")',
    '    if isinstance(local_device_ids, int):',
    '        local_device_ids = [local_device_ids]',
    ...(generation !== '0.4.1'
      ? ['    env_ids = os.environ.get("JAX_LOCAL_DEVICE_IDS")', '    if local_device_ids is None and env_ids:', '        local_device_ids = [int(i) for i in env_ids.split(",")]']
      : []),
    ...(generation !== '0.4.1' ? ['    if cluster_detection_method != "deactivate" and None in (coordinator_address, num_processes, process_id, local_device_ids):'] : ['    if True:']),
    ...(generation === '0.4.1'
      ? ['        settings = clusters.ClusterEnv.auto_detect_unset_distributed_params(coordinator_address, num_processes, process_id, local_device_ids)']
      : ['        settings = clusters.ClusterEnv.auto_detect_unset_distributed_params(coordinator_address, num_processes, process_id, local_device_ids, cluster_detection_method, initialization_timeout)']),
    '        coordinator_address, num_processes, process_id, local_device_ids = settings',
    '    if coordinator_address is None:',
    '        raise ValueError("coordinator_address should be defined.")',
    '    if num_processes is None:',
    '        raise ValueError("Number of processes must be defined.")',
    '    if process_id is None:',
    '        raise ValueError("The process id of the current process must be defined.")',
    '    return {"coordinator_address": coordinator_address, "num_processes": num_processes, "process_id": process_id,',
    '            "local_device_ids": None if local_device_ids is None else list(local_device_ids)}',
    '',
  ].join('\n');
  writeFiles(root, {
    'jax/__init__.py': '# Stand-in for JAX (see jax-cluster-detection.test.ts): importing it imports its cluster registry.\nfrom jax import distributed\n',
    'jax/distributed.py': 'from jax._src.distributed import initialize\n',
    'jax/_src/__init__.py': '',
    'jax/_src/distributed.py': distributedPy,
    'jax/_src/clusters/__init__.py': options.clustersWithoutClusterEnv
      ? '# A JAX whose registry is not where tutti looks for it.\n'
      : 'from .cluster import ClusterEnv\nfrom .ompi_cluster import OmpiCluster\nfrom .slurm_cluster import SlurmCluster\n',
    'jax/_src/clusters/cluster.py': clusterPy,
    'jax/_src/clusters/slurm_cluster.py': slurmPy,
    'jax/_src/clusters/ompi_cluster.py': ompiPy,
  });
}

interface PythonRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `python -c code` with only `env` (and PATH, HOME) in its environment, so that no SLURM_*, JAX_* or TUTTI_*
 * variable of the machine running the tests leaks in. Byte-code is not written, least of all into the plugin dir.
 */
function runPython(code: string, env: Record<string, string>, python = PYTHON): PythonRun {
  const result = spawnSync(python, ['-c', code], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', PYTHONDONTWRITEBYTECODE: '1', ...env },
    encoding: 'utf8',
    cwd: scratch,
  });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** The JSON a test program printed as its last line; fails with the program's output when there is none. */
function lastJson<T>(run: PythonRun): T {
  const line = run.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new Error(`the Python program printed no JSON (exit ${run.status}):\n${run.stdout}\n${run.stderr}`);
  }
}

/** tutti's variables for rank `rank` of a 4-rank job, 2 per node: what rank-environment.ts gives a per-GPU rank. */
function tuttiRankEnv(rank: number, extra: Record<string, string> = {}): Record<string, string> {
  return {
    TUTTI_JOB_ID: 'job-17', RANK: String(rank), LOCAL_RANK: String(rank % 2), WORLD_SIZE: '4',
    JAX_COORDINATOR_ADDRESS: '10.0.0.1:29501', JAX_NUM_PROCESSES: '4', JAX_PROCESS_ID: String(rank), JAX_LOCAL_DEVICE_IDS: String(rank % 2),
    ...extra,
  };
}

/** Slurm's variables as `srun` sets them, numbered otherwise than tutti's ranks (what JAX's SlurmCluster reads). */
const SLURM_STEP_ENV = { SLURM_JOB_ID: '4242', SLURM_STEP_NODELIST: 'n[4-6]', SLURM_NTASKS: '9', SLURM_PROCID: '7', SLURM_LOCALID: '0' };

/** The program a rank runs: `jax.distributed.initialize(**kwargs)`, then what it resolved and who answered. */
function initializeProgram(kwargs = ''): string {
  return [
    'import json, sys',
    'import jax',
    'from jax._src.clusters import cluster',
    'from jax._src import clusters',
    'out = {"registry": [c.__name__ for c in clusters.ClusterEnv._cluster_types]}',
    'try:',
    `    out["settings"] = jax.distributed.initialize(${kwargs})`,
    'except Exception as error:',
    '    out["error"] = "%s: %s" % (type(error).__name__, error)',
    'out["detected_by"] = cluster.detected_by',
    'print(json.dumps(out))',
  ].join('\n');
}

interface InitializeOutcome {
  registry: string[];
  settings?: { coordinator_address: string; num_processes: number; process_id: number; local_device_ids: number[] | null };
  detected_by?: string | null;
  error?: string;
}

function standIn(generation: JaxGeneration, options?: { clustersWithoutClusterEnv?: boolean }): string {
  const dir = scratchDir(`jax-${generation}`);
  writeJaxStandIn(dir, generation, options);
  return dir;
}

describe.each(GENERATIONS)('tutti\'s JAX cluster detection, with a stand-in for JAX %s\'s API (JAX cannot be installed here)', (generation) => {
  const jaxDir = standIn(generation);
  const onPath = { PYTHONPATH: `${PLUGIN_DIR}:${jaxDir}` };

  it('makes jax.distributed.initialize() with no arguments take tutti\'s variables, over Slurm\'s numbering in a Slurm step', () => {
    const outcome = lastJson<InitializeOutcome>(runPython(initializeProgram(), { ...onPath, ...tuttiRankEnv(3), ...SLURM_STEP_ENV }));
    expect(outcome.error).toBeUndefined();
    expect(outcome.registry[0]).toBe('TuttiCluster');
    expect(outcome.detected_by).toBe('TuttiCluster');
    expect(outcome.settings).toEqual({ coordinator_address: '10.0.0.1:29501', num_processes: 4, process_id: 3, local_device_ids: [1] });
  });

  it('wins over JAX\'s Open MPI detection too (a rank started by mpirun)', () => {
    const ompi = { OMPI_MCA_orte_hnp_uri: '1531576320.0;tcp://10.96.0.1:34911', OMPI_COMM_WORLD_SIZE: '8', OMPI_COMM_WORLD_RANK: '5', OMPI_COMM_WORLD_LOCAL_RANK: '1' };
    const outcome = lastJson<InitializeOutcome>(runPython(initializeProgram(), { ...onPath, ...tuttiRankEnv(2), ...ompi }));
    expect(outcome.detected_by).toBe('TuttiCluster');
    expect(outcome.settings).toMatchObject({ num_processes: 4, process_id: 2 });
  });

  it('leaves every GPU of a per-node rank visible and restricts none of a CPU-only rank', () => {
    const perNode = { ...tuttiRankEnv(1, { JAX_NUM_PROCESSES: '2', JAX_PROCESS_ID: '1', JAX_LOCAL_DEVICE_IDS: '0,1,2,3' }) };
    delete perNode.LOCAL_RANK;
    delete perNode.RANK;
    const gpus = lastJson<InitializeOutcome>(runPython(initializeProgram(), { ...onPath, ...perNode }));
    // JAX from 0.4.32 on reads JAX_LOCAL_DEVICE_IDS itself; before, tutti's answer leaves JAX's default: every device
    // of CUDA_VISIBLE_DEVICES, which for a per-node rank are exactly its GPUs.
    expect(gpus.settings).toEqual({ coordinator_address: '10.0.0.1:29501', num_processes: 2, process_id: 1, local_device_ids: generation === '0.4.1' ? null : [0, 1, 2, 3] });

    const cpuOnly = tuttiRankEnv(0);
    delete cpuOnly.JAX_LOCAL_DEVICE_IDS;
    const cpu = lastJson<InitializeOutcome>(runPython(initializeProgram(), { ...onPath, ...cpuOnly }));
    expect(cpu.settings).toEqual({ coordinator_address: '10.0.0.1:29501', num_processes: 4, process_id: 0, local_device_ids: null });
  });

  it('does not claim a process that is not a tutti rank: JAX\'s own Slurm detection answers there, or nothing does', () => {
    const slurm = lastJson<InitializeOutcome>(runPython(initializeProgram(), { ...onPath, ...SLURM_STEP_ENV }));
    expect(slurm.detected_by).toBe('SlurmCluster');
    expect(slurm.settings).toEqual({ coordinator_address: `n4:${4242 % 4096 + 61440}`, num_processes: 9, process_id: 7, local_device_ids: [0] });

    // JAX_* variables alone (a user's own launch script) are not a tutti rank.
    const notTutti = tuttiRankEnv(1);
    delete notTutti.TUTTI_JOB_ID;
    const alone = lastJson<InitializeOutcome>(runPython(initializeProgram(), { ...onPath, ...notTutti }));
    expect(alone.detected_by).toBeNull();
    expect(alone.error).toBe('ValueError: Number of processes must be defined.');
  });

  it('leaves a program that never imports JAX without JAX, and with nothing of tutti\'s but the import hook', () => {
    const run = runPython(
      'import json, sys\nprint(json.dumps({"jax": sorted(m for m in sys.modules if m == "jax" or m.startswith("jax.")), "hooks": [type(f).__name__ for f in sys.meta_path if type(f).__module__ == "tutti_jax_cluster"]}))',
      { ...onPath, ...tuttiRankEnv(0) },
    );
    expect(lastJson(run)).toEqual({ jax: [], hooks: ['_PostImportHook'] });
    expect(run.stderr).toBe('');
  });

  it('does not break `import jax` when a variable is malformed: initialize() then says which one', () => {
    const run = runPython(initializeProgram(), { ...onPath, ...tuttiRankEnv(1, { JAX_NUM_PROCESSES: 'four' }) });
    expect(run.status).toBe(0);
    expect(lastJson<InitializeOutcome>(run).error).toBe('ValueError: tutti\'s JAX cluster detection: JAX_NUM_PROCESSES is \'four\', not a whole number >= 0');
  });

  it('answers the arguments the program gives itself, and the detection it names', () => {
    const given = lastJson<InitializeOutcome>(runPython(initializeProgram('process_id=0, local_device_ids=[3]'), { ...onPath, ...tuttiRankEnv(2) }));
    expect(given.settings).toEqual({ coordinator_address: '10.0.0.1:29501', num_processes: 4, process_id: 0, local_device_ids: [3] });
    if (generation === '0.4.1') return; // no cluster_detection_method before 0.4.31
    const slurmChosen = lastJson<InitializeOutcome>(runPython(initializeProgram('cluster_detection_method="slurm"'), { ...onPath, ...tuttiRankEnv(2), ...SLURM_STEP_ENV }));
    expect(slurmChosen.detected_by).toBe('SlurmCluster');
    expect(slurmChosen.settings).toMatchObject({ num_processes: 9, process_id: 7 });
    const tuttiChosen = lastJson<InitializeOutcome>(runPython(initializeProgram('cluster_detection_method="tutti"'), { ...onPath, ...tuttiRankEnv(2), ...SLURM_STEP_ENV }));
    expect(tuttiChosen.detected_by).toBe('TuttiCluster');
  });
});

describe('tutti\'s JAX hook, with a stand-in for JAX (JAX cannot be installed here)', () => {
  it('answers JAX\'s questions in the call form of every generation (get_coordinator_address took no argument before 0.4.26)', () => {
    const onPath = { PYTHONPATH: `${PLUGIN_DIR}:${standIn('0.8.1')}` };
    // JAX reads JAX_COORDINATOR_ADDRESS itself before it detects anything, so it seldom asks the detection for it;
    // when it does, with JAX_COORDINATOR_PORT set (0.8.1 and later), that port goes with tutti's coordinator host.
    const program = [
      'import json',
      'import jax',
      'from jax._src import clusters',
      'tutti = clusters.ClusterEnv._cluster_types[0]',
      'print(json.dumps({"name": tutti.name, "optIn": tutti.opt_in_only_method, "present": tutti.is_env_present(),',
      '  "address": [tutti.get_coordinator_address(), tutti.get_coordinator_address(timeout_secs=300),',
      '              tutti.get_coordinator_address(timeout_secs=300, override_coordinator_port=None),',
      '              tutti.get_coordinator_address(timeout_secs=300, override_coordinator_port="40001")],',
      '  "count": tutti.get_process_count(), "id": tutti.get_process_id(), "localProcess": tutti.get_local_process_id(),',
      '  "localRank": tutti.get_local_rank(), "localDevices": tutti.get_local_device_ids()}))',
    ].join('\n');
    expect(lastJson(runPython(program, { ...onPath, ...tuttiRankEnv(3) }))).toEqual({
      name: 'tutti', optIn: false, present: true,
      address: ['10.0.0.1:29501', '10.0.0.1:29501', '10.0.0.1:29501', '10.0.0.1:40001'],
      count: 4, id: 3, localProcess: 1, localRank: 1, localDevices: [1],
    });
  });

  it('never breaks `import jax`, even where JAX keeps its registry elsewhere, and says why when TUTTI_DEBUG_JAX is set', () => {
    const jaxDir = standIn('0.8.1', { clustersWithoutClusterEnv: true });
    const run = runPython('import jax\nprint("imported")', { PYTHONPATH: `${PLUGIN_DIR}:${jaxDir}`, ...tuttiRankEnv(0), TUTTI_DEBUG_JAX: '1' });
    expect(run.status).toBe(0);
    expect(run.stdout.trim()).toBe('imported');
    expect(run.stderr).toContain('tutti-jax: could not register with JAX\'s cluster detection: AttributeError');
    const quiet = runPython('import jax\nprint("imported")', { PYTHONPATH: `${PLUGIN_DIR}:${jaxDir}`, ...tuttiRankEnv(0) });
    expect(quiet.stderr).toBe('');
  });

  it('registers once, also when the job\'s PYTHONPATH names tutti\'s directory a second time', () => {
    const jaxDir = standIn('0.8.1');
    const outcome = lastJson<InitializeOutcome>(runPython(initializeProgram(), { PYTHONPATH: `${PLUGIN_DIR}:${jaxDir}:${PLUGIN_DIR}/`, ...tuttiRankEnv(1) }));
    expect(outcome.registry.filter((name) => name === 'TuttiCluster')).toHaveLength(1);
    expect(outcome.detected_by).toBe('TuttiCluster');
  });
});

describe('tutti\'s sitecustomize', () => {
  it('still runs the sitecustomize that comes after it on the path, as `sitecustomize`', () => {
    const other = scratchDir('other-site');
    writeFiles(other, { 'sitecustomize.py': 'import os\nos.environ["OTHER_SITECUSTOMIZE_RAN"] = "yes"\n' });
    const run = runPython(
      'import json, os, sys\nprint(json.dumps({"ran": os.environ.get("OTHER_SITECUSTOMIZE_RAN"), "module": sys.modules["sitecustomize"].__file__, "hooked": any(type(f).__module__ == "tutti_jax_cluster" for f in sys.meta_path)}))',
      { PYTHONPATH: `${PLUGIN_DIR}:${other}`, ...tuttiRankEnv(0) },
    );
    expect(lastJson(run)).toEqual({ ran: 'yes', module: join(other, 'sitecustomize.py'), hooked: true });
  });

  it('lets the program start when that other sitecustomize fails, reporting it as Python does', () => {
    const other = scratchDir('failing-site');
    writeFiles(other, { 'sitecustomize.py': 'raise RuntimeError("the site\'s own hook is broken")\n' });
    const run = runPython('print("started")', { PYTHONPATH: `${PLUGIN_DIR}:${other}` });
    expect(run.status).toBe(0);
    expect(run.stdout.trim()).toBe('started');
    expect(run.stderr).toContain('Error in sitecustomize; set PYTHONVERBOSE for traceback:\nRuntimeError: the site\'s own hook is broken');
  });

  const debianPython = ['/usr/bin/python3'].find((path) => existsSync(path));
  const debianSite = debianPython ? spawnSync(debianPython, ['-c', 'import sitecustomize; print(sitecustomize.__file__)'], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } }).stdout.trim() : '';
  it.skipIf(!debianSite)('runs Debian\'s own sitecustomize of /usr/bin/python3 as well', () => {
    const run = runPython('import json, sys\nprint(json.dumps(sys.modules["sitecustomize"].__file__))', { PYTHONPATH: PLUGIN_DIR }, debianPython);
    expect(lastJson(run)).toBe(debianSite);
    expect(run.stderr).toBe('');
  });
});

// ---- the real JAX, where a Python that imports it is found ----------------------------------------------------------

const REAL_JAX_PYTHON = process.env.TUTTI_JAX_PYTHON ?? PYTHON;
const realJaxVersion = (() => {
  const probe = spawnSync(REAL_JAX_PYTHON, ['-c', 'import jax; print(jax.__version__)'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', JAX_PLATFORMS: 'cpu' } });
  return probe.status === 0 ? probe.stdout.trim() : undefined;
})();
if (realJaxVersion === undefined) {
  console.warn(`jax-cluster-detection.test.ts: the tests with the real JAX are skipped: \`${REAL_JAX_PYTHON} -c 'import jax'\` fails here (JAX cannot be installed on this machine); set TUTTI_JAX_PYTHON to a Python that has JAX to run them. The stand-in tests above cover the detection.`);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

function runPythonAsync(code: string, env: Record<string, string>): Promise<PythonRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(REAL_JAX_PYTHON, ['-c', code], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', PYTHONDONTWRITEBYTECODE: '1', ...env },
      cwd: scratch,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe.skipIf(realJaxVersion === undefined)(`tutti's JAX cluster detection with the real JAX ${realJaxVersion ?? ''}`, () => {
  it('lets two tutti ranks run jax.distributed.initialize() with no arguments, also inside a Slurm step that numbers them otherwise', async () => {
    const port = await freePort();
    const program = [
      'import json',
      'import jax',
      'from jax._src import clusters',
      'jax.distributed.initialize()',
      'print(json.dumps({"first": clusters.ClusterEnv._cluster_types[0].__name__, "process": jax.process_index(), "processes": jax.process_count()}))',
      'jax.distributed.shutdown()',
    ].join('\n');
    const ranks = [0, 1].map((rank) => runPythonAsync(program, {
      PYTHONPATH: PLUGIN_DIR, JAX_PLATFORMS: 'cpu',
      TUTTI_JOB_ID: 'job-17', RANK: String(rank), LOCAL_RANK: String(rank), WORLD_SIZE: '2',
      JAX_COORDINATOR_ADDRESS: `127.0.0.1:${port}`, JAX_NUM_PROCESSES: '2', JAX_PROCESS_ID: String(rank),
      // What JAX's own Slurm detection would read: another numbering, which tutti's must win over.
      SLURM_JOB_ID: '4242', SLURM_STEP_NODELIST: 'n[4-6]', SLURM_NTASKS: '3', SLURM_PROCID: String(2 - rank), SLURM_LOCALID: '0',
    }));
    const outcomes = await Promise.all(ranks);
    for (const run of outcomes) expect(run.status, run.stderr).toBe(0);
    expect(outcomes.map((run) => lastJson(run))).toEqual([
      { first: 'TuttiCluster', process: 0, processes: 2 },
      { first: 'TuttiCluster', process: 1, processes: 2 },
    ]);
  }, 120_000);

  it('imports nothing of JAX into a program that does not import it', () => {
    const run = spawnSync(REAL_JAX_PYTHON, ['-c', 'import json, sys; print(json.dumps([m for m in sys.modules if m.split(".")[0] == "jax"]))'], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PYTHONPATH: PLUGIN_DIR, PYTHONDONTWRITEBYTECODE: '1', TUTTI_JOB_ID: 'j', JAX_COORDINATOR_ADDRESS: '127.0.0.1:1' },
      encoding: 'utf8',
    });
    expect(JSON.parse(run.stdout)).toEqual([]);
  });
});
