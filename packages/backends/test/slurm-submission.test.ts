/**
 * One tutti attempt as one Slurm job (slurm-submission.ts): what sbatch is asked, the host file that puts rank r on
 * its node, and the batch script's srun line, run by sh for real with a stand-in `srun` that writes down its argv and
 * environment (so the quoting is what a shell makes of it, not what a regex thinks of it).
 */
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LaunchRequest, RankLaunch } from '../src/execution-backend.ts';
import { makeSlurmSubmission, slurmJobLayout, type SlurmJobLayout, type SlurmSubmissionInput } from '../src/slurm/slurm-submission.ts';
import { sbatchArguments } from '../src/slurm/slurm-control.ts';

const run = promisify(execFile);

/** 2 nodes x 2 ranks with 2 GPUs each, node rank 0 on n3 (the reverse of Slurm's node order), ranks listed shuffled. */
const GANG: RankLaunch[] = [
  { rank: 2, localRank: 0, nodeRank: 1, node: 'n2', gpus: [0, 1] },
  { rank: 0, localRank: 0, nodeRank: 0, node: 'n3', gpus: [2, 3] },
  { rank: 3, localRank: 1, nodeRank: 1, node: 'n2', gpus: [0, 1] },
  { rank: 1, localRank: 1, nodeRank: 0, node: 'n3', gpus: [2, 3] },
];

function layoutOf(ranks: readonly RankLaunch[]): SlurmJobLayout {
  const layout = slurmJobLayout(ranks);
  if ('error' in layout) throw new Error(layout.error);
  return layout;
}

function submission(overrides: Partial<SlurmSubmissionInput> = {}, request: Partial<LaunchRequest> = {}) {
  const fullRequest: LaunchRequest = { jobId: 'j-1', jobName: 'train', env: {}, attempt: 2, run: { kind: 'shell', command: 'python train.py' }, ranks: GANG, ...request };
  return makeSlurmSubmission({ request: fullRequest, layout: layoutOf(fullRequest.ranks), jobName: 'tutti.abcd1234.j-1.2', attemptDir: '/shared/tutti/jobs/j-1/attempt-2', workdir: '/shared/work', ...overrides });
}

describe('slurmJobLayout', () => {
  it('lists the nodes in node-rank order with their ranks and GPUs, and rank r\'s node on line r', () => {
    expect(layoutOf(GANG)).toEqual({
      nodes: [{ node: 'n3', nodeRank: 0, ranks: 2, gpus: 2 }, { node: 'n2', nodeRank: 1, ranks: 2, gpus: 2 }],
      nodeOfRank: ['n3', 'n3', 'n2', 'n2'],
    });
  });

  it('refuses a node that appears under two node ranks', () => {
    const ranks: RankLaunch[] = [{ rank: 0, localRank: 0, nodeRank: 0, node: 'n2', gpus: [0] }, { rank: 1, localRank: 0, nodeRank: 1, node: 'n2', gpus: [1] }];
    expect(slurmJobLayout(ranks)).toEqual({ error: 'node n2 has ranks of node ranks 0 and 1' });
  });
});

describe('makeSlurmSubmission', () => {
  it('asks sbatch for the placed nodes, ranks per node and GPUs per node, never to requeue; nothing else unless told', () => {
    expect(sbatchArguments(submission().job)).toEqual([
      '--parsable', '--job-name=tutti.abcd1234.j-1.2', '--nodes=2', '--nodelist=n3,n2', '--ntasks-per-node=2', '--gres=gpu:2',
      '--no-requeue', '--chdir=/shared/work', '--output=/shared/tutti/jobs/j-1/attempt-2/slurm-batch.log', '--open-mode=append', '--export=ALL',
      '/shared/tutti/jobs/j-1/attempt-2/slurm-batch.sh',
    ]);
  });

  it('adds the partition, the account, the time limit (whole minutes, rounded up) and the GPU type when given', () => {
    const args = sbatchArguments(submission({ partition: 'gpu-a100', account: 'vision', timeLimitMs: 90 * 60_000 + 1, gpuType: 'a100' }).job);
    expect(args).toEqual(expect.arrayContaining(['--partition=gpu-a100', '--account=vision', '--time=91', '--gres=gpu:a100:2']));
    expect(args.filter((a) => a.startsWith('--gres'))).toEqual(['--gres=gpu:a100:2']);
    expect(sbatchArguments(submission({ timeLimitMs: 60_000 }).job)).toContain('--time=1');
    expect(sbatchArguments(submission({ timeLimitMs: 1 }).job)).toContain('--time=1');
    expect(submission({ gpuType: 'a100' }).job.batchScript).toContain("'--gres=gpu:a100:2'");
  });

  it('asks for no GPU for a CPU-only job', () => {
    const cpu = GANG.map((r) => ({ ...r, gpus: [] }));
    const made = submission({}, { ranks: cpu });
    expect(sbatchArguments(made.job).some((a) => a.startsWith('--gres'))).toBe(false);
    expect(made.job.batchScript).not.toContain('--gres');
  });

  it('writes the host file in rank order: rank r on line r+1, whatever order the ranks came in', () => {
    expect(submission().hostFile).toBe('n3\nn3\nn2\nn2\n');
  });

  describe('the batch script, run by sh', () => {
    let dir = '';
    beforeAll(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'tutti-slurm-submission-'));
      // A stand-in srun: each argument on its own NUL-terminated record, then the host file it was given.
      await writeFile(path.join(dir, 'srun'), `#!/bin/sh\nprintf '%s\\0' "$@" > "${dir}/argv"\nprintf '%s' "$SLURM_HOSTFILE" > "${dir}/hostfile-var"\n`);
      await chmod(path.join(dir, 'srun'), 0o755);
    });
    afterAll(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    async function srunArgv(made: ReturnType<typeof submission>): Promise<string[]> {
      await writeFile(path.join(dir, 'batch.sh'), made.job.batchScript);
      await run('sh', [path.join(dir, 'batch.sh')], { env: { ...process.env, PATH: `${dir}:${process.env['PATH'] ?? ''}` } });
      return (await readFile(path.join(dir, 'argv'), 'utf8')).split('\0').slice(0, -1);
    }

    it('hands a command with quotes, $ and backslashes to the ranks unchanged, with one task per rank from the host file', async () => {
      const command = `echo "it's \\"$HOME\\"" '$(id)' \`date\` \\\\ done`;
      const argv = await srunArgv(submission({ attemptDir: `${dir}/it's $here` }, { run: { kind: 'shell', command } }));
      expect(argv.slice(-3)).toEqual(['/bin/sh', '-c', command]);
      expect(argv).toEqual(expect.arrayContaining(['--distribution=arbitrary', '--ntasks=4', `--output=${dir}/it's $here/rank-%t.log`, '--gres=gpu:2']));
      expect(argv.at(-4)).toBe(`${dir}/it's $here/rank-shim.sh`);
      expect(await readFile(path.join(dir, 'hostfile-var'), 'utf8')).toBe(`${dir}/it's $here/slurm-hostfile`);
    });

    it('passes an argv command word for word', async () => {
      const argv = await srunArgv(submission({}, { run: { kind: 'argv', argv: ['python', '-c', 'print("a b")', '$X', "'"] } }));
      expect(argv.slice(-5)).toEqual(['python', '-c', 'print("a b")', '$X', "'"]);
    });
  });
});
