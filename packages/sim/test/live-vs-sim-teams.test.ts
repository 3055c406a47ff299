/**
 * More evidence that the simulator and the live server make the same decisions (see live-vs-sim.test.ts for the
 * first scenario, priority preemption and EASY backfill): fair share between two teams, and fractional GPUs. Each
 * scenario runs on a real server with 4 fake GPUs (each rank waits for its own release file, so the test decides the
 * order in which jobs end) and through `runSimulation` on the server's own node, with the same profile (`tutti`) and
 * the same teams; the ordered starts (with their GPUs, and the share of a fractional job) must be the same.
 *
 * 1. Fair share: two teams of weight 1 with no guaranteed GPUs (`nominal: {}`), so every job borrows from the shared
 *    pool (the `quota` plugin admits each job the free GPUs can hold, and there is nothing to reclaim: no quota
 *    preemption), and the order in which waiting jobs get freed GPUs is fair share's: lowest team share first.
 *      v1 2 GPUs  vision                → 0,1
 *      v2 1 GPU   vision                → 2
 *      v3 1 GPU   vision                → 3       (vision holds the whole node)
 *      v4 1 GPU   vision                → waits
 *      v5 1 GPU   vision                → waits
 *      s1 1 GPU   speech                → waits
 *      s2 1 GPU   speech                → waits
 *    v2 ends → GPU 2 free: vision holds 3 GPUs, speech none, so s1 starts on 2 although v4 and v5 are older.
 *    v3 ends → GPU 3 free: vision holds 2, speech 1, so s2 starts on 3; v4 and v5 still wait.
 *    v1 ends → GPUs 0,1 free: vision holds none, speech 2: v4 and v5 start on 0 and 1.
 *    Then s1, s2, v4, v5 end. A FIFO order (priority, then submission) gives GPU 2 to v4 and GPU 3 to v5 instead,
 *    and s1, s2 start only when v1 ends: the simulator with the `fifo-backfill` profile decides
 *    `start v4 2, start v5 3, start s1 0, start s2 1` there. Decayed past use (GPU-seconds / the 24 h half-life)
 *    is far below one GPU in both runs, so it never decides a turn here.
 *    Simulator: v1..v3 at 0, 10, 20 s, v4, v5, s1, s2 at 30..60 s; v2 ends at 1000, v3 at 2000, v1 at 3000, then
 *    s1 at 4000, s2 at 5000, v4 at 6000, v5 at 7000.
 *
 * 2. Fractional GPUs (one team): halves share one GPU, and a whole-GPU job never takes a shared GPU.
 *      w1 2 GPUs                        → 0,1
 *      h1 0.5                           → half of 2
 *      h2 0.5                           → the other half of 2 (best fit packs it beside h1, keeping 3 whole)
 *      w2 1 GPU                         → 3
 *      h3 0.5                           → waits (GPU 2 is full)
 *      w3 1 GPU                         → waits
 *    h1 ends → h3 starts on half of GPU 2 (beside h2); w3, behind it, still waits: half a GPU is not a GPU.
 *    h2 ends → half of GPU 2 is free; w3 still waits. h4 (0.5) arrives and starts beside h3: it does not delay w3,
 *              whose reservation is on w1's GPUs (w1 started first, so it is assumed to end first).
 *    w1 ends → w3 starts on GPU 0 (GPUs 0 and 1 are free; the lower index wins).
 *    Then w2, h3, h4, w3 end.
 *    Simulator: w1, h1, h2, w2, h3, w3 at 0..50 s; h1 ends at 1000, h2 at 2000, h4 arrives at 2010, w1 ends at
 *    3000, then w2 at 4000, h3 at 5000, h4 at 6000, w3 at 7000.
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobView } from '@tutti/client';
import type { ClusterConfig, NodeInfo, TeamConfig } from '@tutti/model';
import type { TraceJob } from '../src/index.ts';
import { closeLeavingNothingRunning, isEnded, startTestServer, touch, waitForFileThenExit, waitForJob, type TestServer } from '../../server/test/harness.ts';
import { liveDecisions, liveNode, simulateDecisions, type Decision } from './live-vs-sim-helpers.ts';

interface ScenarioJob {
  name: string;
  /** '' for the default team. */
  team: string;
  /** Whole GPUs, or a share of one GPU (0 < gpus < 1). */
  gpus: number;
  /** Simulator: submission second and run time, chosen so that the jobs end in the order the live test releases them. */
  submitS: number;
  durationS: number;
}

const TEAMS: TeamConfig[] = [
  { name: 'vision', weight: 1, nominal: {} },
  { name: 'speech', weight: 1, nominal: {} },
];

const FAIR_SHARE: readonly ScenarioJob[] = [
  { name: 'v1', team: 'vision', gpus: 2, submitS: 0, durationS: 3000 },
  { name: 'v2', team: 'vision', gpus: 1, submitS: 10, durationS: 990 },
  { name: 'v3', team: 'vision', gpus: 1, submitS: 20, durationS: 1980 },
  { name: 'v4', team: 'vision', gpus: 1, submitS: 30, durationS: 3000 },
  { name: 'v5', team: 'vision', gpus: 1, submitS: 40, durationS: 4000 },
  { name: 's1', team: 'speech', gpus: 1, submitS: 50, durationS: 3000 },
  { name: 's2', team: 'speech', gpus: 1, submitS: 60, durationS: 3000 },
];

const FRACTIONAL: readonly ScenarioJob[] = [
  { name: 'w1', team: '', gpus: 2, submitS: 0, durationS: 3000 },
  { name: 'h1', team: '', gpus: 0.5, submitS: 10, durationS: 990 },
  { name: 'h2', team: '', gpus: 0.5, submitS: 20, durationS: 1980 },
  { name: 'w2', team: '', gpus: 1, submitS: 30, durationS: 3970 },
  { name: 'h3', team: '', gpus: 0.5, submitS: 40, durationS: 4000 },
  { name: 'w3', team: '', gpus: 1, submitS: 50, durationS: 4000 },
  { name: 'h4', team: '', gpus: 0.5, submitS: 2010, durationS: 3990 },
];

const config = (teams: TeamConfig[], nodes: NodeInfo[] = []): ClusterConfig => ({ nodes, teams, scheduler: { profile: 'tutti', fairShareHalfLifeMs: 24 * 3_600_000, args: {} } });

function simulate(scenario: readonly ScenarioJob[], node: NodeInfo, teams: TeamConfig[], profile = 'tutti'): Decision[] {
  const trace: TraceJob[] = scenario.map((j) => ({
    traceId: j.name,
    submitS: j.submitS,
    durationS: j.durationS,
    numGpus: Math.ceil(j.gpus),
    gpuType: '',
    user: '',
    queue: j.team,
    status: '',
    ...(j.gpus < 1 ? { gpuFraction: j.gpus } : {}),
  }));
  return simulateDecisions(trace, config(teams, [node]), profile);
}

const isRunning = (j: JobView): boolean => j.status === 'running';
const isWaiting = (j: JobView): boolean => j.status === 'pending' && j.pending_diagnosis !== null;

/** Submits scenario jobs by name on the live server; each rank waits for its release file. */
function liveScenario(t: TestServer, scenario: readonly ScenarioJob[]) {
  const release = (name: string): string => path.join(t.scratch, `release-${name}`);
  const ids = new Map<string, string>();
  return {
    ids,
    submit: async (name: string): Promise<string> => {
      const j = scenario.find((s) => s.name === name) as ScenarioJob;
      const view = await t.client.submitJob({ name, ...(j.team !== '' ? { team: j.team } : {}), resources: { gpus: j.gpus }, run: waitForFileThenExit(release(name)) });
      ids.set(name, view.id);
      return view.id;
    },
    job: (name: string): string => ids.get(name) as string,
    end: async (name: string): Promise<void> => {
      await touch(release(name));
      await waitForJob(t.client, ids.get(name) as string, isEnded);
    },
  };
}

let t: TestServer | undefined;
afterEach(async () => {
  await closeLeavingNothingRunning(t);
  t = undefined;
});

describe('live server and simulator, with teams and shared GPUs', () => {
  it('give freed GPUs to the team with the lower share, not to the older job, in the same order on the same GPUs', async () => {
    t = await startTestServer({ fakeGpus: '4', config: config(TEAMS) });
    const { client } = t;
    const { ids, submit, job, end } = liveScenario(t, FAIR_SHARE);
    for (const name of ['v1', 'v2', 'v3']) await waitForJob(client, await submit(name), isRunning);
    for (const name of ['v4', 'v5', 's1', 's2']) await submit(name);
    for (const name of ['v4', 'v5', 's1', 's2']) await waitForJob(client, job(name), isWaiting);
    await end('v2');
    await waitForJob(client, job('s1'), isRunning);
    await end('v3');
    await waitForJob(client, job('s2'), isRunning);
    for (const name of ['v4', 'v5']) expect((await client.getJob(job(name))).status).toBe('pending');
    await end('v1');
    for (const name of ['v4', 'v5']) await waitForJob(client, job(name), isRunning);
    for (const name of ['s1', 's2', 'v4', 'v5']) await end(name);

    const live = await liveDecisions(client, ids);
    const simulated = simulate(FAIR_SHARE, await liveNode(client), TEAMS);
    expect(live).toEqual(['start v1 0,1', 'start v2 2', 'start v3 3', 'start s1 2', 'start s2 3', 'start v4 0', 'start v5 1']);
    expect(simulated).toEqual(live);
  });

  it('put two halves on one GPU and keep whole-GPU jobs off it, the same way live and simulated', async () => {
    t = await startTestServer({ fakeGpus: '4' });
    const { client } = t;
    const { ids, submit, job, end } = liveScenario(t, FRACTIONAL);
    for (const name of ['w1', 'h1', 'h2', 'w2']) await waitForJob(client, await submit(name), isRunning);
    for (const name of ['h3', 'w3']) await submit(name);
    for (const name of ['h3', 'w3']) await waitForJob(client, job(name), isWaiting);
    await end('h1');
    await waitForJob(client, job('h3'), isRunning);
    await end('h2');
    await waitForJob(client, await submit('h4'), isRunning);
    expect((await client.getJob(job('w3'))).status).toBe('pending');
    await end('w1');
    await waitForJob(client, job('w3'), isRunning);
    for (const name of ['w2', 'h3', 'h4', 'w3']) await end(name);

    const live = await liveDecisions(client, ids);
    const simulated = simulate(FRACTIONAL, await liveNode(client), []);
    expect(live).toEqual(['start w1 0,1', 'start h1 2x0.5', 'start h2 2x0.5', 'start w2 3', 'start h3 2x0.5', 'start h4 2x0.5', 'start w3 0']);
    expect(simulated).toEqual(live);
    // Two halves on one GPU index, on both sides.
    const gpuOf = (decisions: Decision[], name: string): string | undefined => decisions.find((d) => d.startsWith(`start ${name} `))?.split(' ')[2];
    for (const decisions of [live, simulated]) {
      expect(gpuOf(decisions, 'h1')).toBe(gpuOf(decisions, 'h2'));
      expect(gpuOf(decisions, 'h3')).toBe(gpuOf(decisions, 'h4'));
    }
  });
});
