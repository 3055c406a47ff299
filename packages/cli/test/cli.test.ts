/** The `tutti` command as a person runs it: the real binary against a real server on 4 fake GPUs. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger, startTuttiServer } from '@tutti/server';
import type { TuttiServer } from '@tutti/server';
import { runTutti } from './run-cli.ts';

const EXAMPLES = fileURLToPath(new URL('../../../examples/', import.meta.url));

function tutti(args: string[], env: Record<string, string> = {}) {
  return runTutti(args, { env });
}

let server: TuttiServer;
let root: string;
beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'tutti-cli-'));
  server = await startTuttiServer({ dataDir: path.join(root, 'data'), port: 0, fakeGpus: '4:H100:80GB', logger: silentLogger, tickMs: 200, stopGraceMs: 2000 });
});
afterAll(async () => {
  await server?.close();
  await rm(root, { recursive: true, force: true });
});

describe('tutti CLI with fake GPUs', () => {
  it('says when no server is running, and how to start one', async () => {
    const run = await tutti(['ps', '--server', 'http://127.0.0.1:9']);
    expect(run.code).toBe(3);
    expect(run.stderr).toContain('no tutti server answers at http://127.0.0.1:9');
    expect(run.stderr).toContain('npx tutti up');
  });

  it('runs the 2-rank example with submit --watch and exits with its exit code', async () => {
    const run = await tutti(['submit', path.join(EXAMPLES, 'ddp-hello.yaml'), '--watch'], { TUTTI_SERVER: server.url });
    expect(run.stderr).toMatch(/succeeded/);
    expect(run.stdout).toContain('rank 0: all 2 ranks joined the rendezvous');
    expect(run.code).toBe(0);
  });

  it('reports a failing job through the exit code of submit --watch', async () => {
    const spec = path.join(root, 'fail.yaml');
    await writeFile(spec, 'name: fails\nrun: exit 4\n');
    const run = await tutti(['submit', spec, '--watch', '--server', server.url]);
    expect(run.code).toBe(4);
    expect(run.stderr).toContain('failed');
  });

  it('shows the field, line and column of a bad spec', async () => {
    const spec = path.join(root, 'bad.yaml');
    await writeFile(spec, 'name: bad\nresources:\n  gpus: eight\nrun: "true"\n');
    const run = await tutti(['submit', spec, '--server', server.url]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('resources.gpus');
    expect(run.stderr).toContain('line 3, column 9');
  });

  it('lists, shows, cancels and prints nodes for people and as JSON for scripts', async () => {
    const spec = path.join(root, 'sleeper.yaml');
    await writeFile(spec, 'name: sleeper\nresources:\n  gpus: 1\nrun: sleep 30\n');
    const submitted = await tutti(['submit', spec, '--json', '--server', server.url]);
    expect(submitted.code).toBe(0);
    const job = JSON.parse(submitted.stdout) as { id: string; name: string };
    expect(job.name).toBe('sleeper');

    const ps = await tutti(['ps', '--server', server.url]);
    expect(ps.stdout).toMatch(/^ID\s+NAME\s+TEAM\s+USER\s+PRI\s+STATUS/m);
    expect(ps.stdout).toMatch(new RegExp(`^${job.id}\\s+sleeper\\s+default\\s+${os.userInfo().username}\\s+50\\s+(pending|running)`, 'm'));

    const nodes = JSON.parse((await tutti(['nodes', '--json', '--server', server.url])).stdout) as { nodes: { gpus: { type: string }[] }[] };
    expect(nodes.nodes[0]!.gpus.map((g) => g.type)).toEqual(['H100', 'H100', 'H100', 'H100']);

    const cancel = await tutti(['cancel', job.id, '--server', server.url]);
    expect(cancel.code).toBe(0);
    expect(cancel.stdout).toMatch(new RegExp(`job ${job.id} (cancelled|is stopping)`));
    for (let i = 0; i < 100; i++) {
      const shown = JSON.parse((await tutti(['show', job.id, '--json', '--server', server.url])).stdout) as { status: string };
      if (shown.status === 'cancelled') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const show = await tutti(['show', job.id, '--server', server.url]);
    expect(show.stdout).toContain('status     cancelled');
    expect(show.stdout).toContain('cancel_requested');
    const missing = await tutti(['show', '999999', '--server', server.url]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no job with id 999999');
  });

  it('exports its own history as a trace that tutti sim replays', async () => {
    for (const [team, code] of [['research', 0], ['product', 3]] as const) {
      const spec = path.join(root, `${team}.yaml`);
      await writeFile(spec, `name: ${team}-job\nteam: ${team}\nresources:\n  gpus: 2\nrun: sleep 0.2; exit ${code}\n`);
      await tutti(['submit', spec, '--watch', '--server', server.url]);
    }
    const exported = await tutti(['export', 'history', '--server', server.url]);
    expect(exported.code).toBe(0);
    const lines = exported.stdout.trim().split('\n');
    expect(lines[0]).toBe('job_id,submit_time_s,duration_s,num_gpus,gpu_type,user,queue,status');
    const rows = lines.slice(1).map((line) => line.split(','));
    const research = rows.find((r) => r[6] === 'research')!;
    const product = rows.find((r) => r[6] === 'product')!;
    expect([research[3], research[7]]).toEqual(['2', 'succeeded']);
    // The CLI says who submits: the OS user is recorded and exported.
    expect(research[5]).toBe(os.userInfo().username);
    const mine = JSON.parse((await tutti(['ps', '--all', '--mine', '--json', '--server', server.url])).stdout) as { jobs: Array<{ user: string | null; team: string }> };
    expect(mine.jobs.some((j) => j.team === 'research')).toBe(true);
    expect(mine.jobs.every((j) => j.user === os.userInfo().username)).toBe(true);
    const nobody = JSON.parse((await tutti(['ps', '--all', '--user', 'nobody-else', '--json', '--server', server.url])).stdout) as { jobs: unknown[] };
    expect(nobody.jobs).toEqual([]);
    expect([product[3], product[7]]).toEqual(['2', 'failed']);
    expect(Number(research[2])).toBeGreaterThanOrEqual(0.2);
    expect(rows.map((r) => Number(r[1]))).toEqual([...rows.map((r) => Number(r[1]))].sort((a, b) => a - b));

    const trace = path.join(root, 'history.csv');
    await writeFile(trace, exported.stdout);
    const sim = await tutti(['sim', '--trace', trace, '--cluster', path.join(EXAMPLES, 'clusters/tiny.yaml'), '--policies', 'tutti', '--json']);
    expect(sim.code).toBe(0);
    const result = JSON.parse(sim.stdout) as { policies: { tutti: { jobs: number; unplaceable: number } } };
    // Every exported job is replayed or reported as unplaceable, never dropped (tiny.yaml is one shared pool, so the
    // jobs of team default, which has no quota there, borrow and run too).
    expect(result.policies.tutti.jobs + result.policies.tutti.unplaceable).toBe(rows.length);
    expect(result.policies.tutti.jobs).toBeGreaterThanOrEqual(2);
  });
});

