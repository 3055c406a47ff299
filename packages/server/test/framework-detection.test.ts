/**
 * The run lines of docs/frameworks.md, each through tutti with the framework's own code reading the environment:
 * PyTorch FSDP, Lightning's TorchElasticEnvironment, Accelerate's PartialState and DeepSpeed's init_distributed, on
 * 2 ranks (CPU, gloo; fake GPUs). A framework that cannot be imported here is skipped, and says so: Debian has
 * python3-torch but not Lightning, Accelerate or DeepSpeed (their wheels come from PyPI, which this machine cannot
 * reach), and Debian 12's torch 1.13 cannot import FSDP on Python 3.11. DDP and torchrun are tested in
 * framework-launchers.test.ts and ddp-torch-on-cpu-with-fake-gpus.test.ts, MPI in mpi-launcher.test.ts, JAX's
 * detection in packages/backends/test/jax-cluster-detection.test.ts.
 */
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { closeLeavingNothingRunning, isEnded, startTestServer, waitForJob } from './harness.ts';
import type { TestServer } from './harness.ts';

/** Debian's, or one whose environment has the frameworks (a virtualenv's bin/python in TUTTI_FRAMEWORKS_PYTHON). */
const PYTHON = process.env.TUTTI_FRAMEWORKS_PYTHON ?? '/usr/bin/python3';

function imports(python: string, module: string): boolean {
  try {
    execFileSync(python, ['-c', `import ${module}`], { stdio: 'ignore', timeout: 120_000 });
    return true;
  } catch {
    return false;
  }
}

/** Each script writes what the framework made of the environment to $OUT/seen-<RANK>.json. */
const WRITE_SEEN = `
def write_seen(seen):
    import json, os
    with open(os.path.join(os.environ["OUT"], "seen-%s.json" % os.environ["RANK"]), "w") as f:
        json.dump(seen, f)
`;

const FRAMEWORKS: Array<{ name: string; module: string; script: string; python?: string }> = [
  {
    name: 'PyTorch FSDP',
    module: 'torch.distributed.fsdp',
    script: `${WRITE_SEEN}
import torch, torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
dist.init_process_group("gloo")
model = FSDP(torch.nn.Linear(8, 8), device_id=torch.device("cpu"))  # on GPUs: device_id=LOCAL_RANK
model(torch.randn(4, 8)).sum().backward()
write_seen({"rank": dist.get_rank(), "world": dist.get_world_size()})
`,
  },
  {
    name: 'Lightning',
    module: 'lightning',
    script: `${WRITE_SEEN}
from lightning.fabric.plugins.environments import TorchElasticEnvironment
assert TorchElasticEnvironment.detect(), "Lightning does not see torchrun's variables"
env = TorchElasticEnvironment()
write_seen({"rank": env.global_rank(), "world": env.world_size()})
`,
  },
  {
    name: 'Accelerate',
    module: 'accelerate',
    script: `${WRITE_SEEN}
from accelerate import PartialState
state = PartialState(cpu=True)
write_seen({"rank": state.process_index, "world": state.num_processes})
`,
  },
  {
    name: 'DeepSpeed',
    module: 'deepspeed',
    script: `${WRITE_SEEN}
import deepspeed, torch.distributed as dist
deepspeed.init_distributed(dist_backend="gloo")
write_seen({"rank": dist.get_rank(), "world": dist.get_world_size()})
`,
  },
  {
    name: 'JAX',
    module: 'jax',
    // Its own Python: JAX and torch rarely share one environment.
    python: process.env.TUTTI_JAX_PYTHON ?? PYTHON,
    script: `${WRITE_SEEN}
import jax
jax.distributed.initialize()  # no arguments: tutti's cluster detection (packages/backends/python) answers
write_seen({"rank": jax.process_index(), "world": jax.process_count()})
jax.distributed.shutdown()
`,
  },
];

let t: TestServer | undefined;
afterEach(async () => {
  await closeLeavingNothingRunning(t);
  t = undefined;
});

describe('frameworks read the ranks\' environment as their own launchers\' (CPU, gloo; fake GPUs)', () => {
  for (const framework of FRAMEWORKS) {
    const python = framework.python ?? PYTHON;
    const available = imports(python, framework.module);
    if (!available) console.warn(`[skipped] ${framework.name} through tutti: \`import ${framework.module}\` fails with ${python} on this machine`);
    it.skipIf(!available)(`${framework.name}: run: python3 train.py, 2 ranks`, async () => {
      t = await startTestServer({ fakeGpus: '2' });
      await writeFile(path.join(t.scratch, 'train.py'), framework.script);
      const job = await t.client.submitJob({ name: 'framework', resources: { gpus: 2 }, run: [python, 'train.py'], workdir: t.scratch, env: { OUT: t.scratch } });
      const done = await waitForJob(t.client, job.id, isEnded, 180_000);
      expect(done.status, done.end_reason ?? '').toBe('succeeded');
      const seen = await Promise.all([0, 1].map(async (rank) => JSON.parse(await readFile(path.join(t!.scratch, `seen-${rank}.json`), 'utf8')) as unknown));
      expect(seen).toEqual([{ rank: 0, world: 2 }, { rank: 1, world: 2 }]);
    }, 240_000);
  }
});
