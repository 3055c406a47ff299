/**
 * The simulator and the live server make the same decisions on the same small scenario: the same jobs arriving in
 * the same order on the same 4 (fake) GPUs, ending in the same order, give the same starts in the same order on the
 * same GPUs, and the same preemptions. Decisions are compared, not timings.
 *
 * Scenario (`tutti` profile, one team, one node of 4 GPUs):
 *   a  2 GPUs, priority 60, arrives first                → starts on GPUs 0,1
 *   b  2 GPUs, priority 50                               → starts on 2,3
 *   c  4 GPUs, priority 50                               → waits (reservation)
 *   d  1 GPU,  priority 50                               → waits
 *   e  2 GPUs, priority 100                              → preempts b (the lowest priority), starts on 2,3
 *   a ends  → b (older than c and d) restarts on 0,1; c still does not fit
 *   e ends  → 2 GPUs free, but d would delay c's reservation (no max_duration: assumed 1 h): d waits
 *   b ends  → c starts on all 4;  c ends → d starts on GPU 0
 *
 * Live, each rank waits for its own release file, so the test decides when each job ends; in the simulator the
 * same ends come from durations chosen to give the same order.
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobView } from '@tutti/client';
import type { ClusterConfig, NodeInfo } from '@tutti/model';
import type { TraceJob } from '../src/index.ts';
import { closeLeavingNothingRunning, isEnded, startTestServer, touch, waitForFileThenExit, waitForJob, type TestServer } from '../../server/test/harness.ts';
import { liveDecisions, liveNode, simulateDecisions, type Decision } from './live-vs-sim-helpers.ts';

interface ScenarioJob {
  name: string;
  gpus: number;
  priority: number;
  /** Simulator: submission second and run time, chosen so that the jobs end in the order the live test releases them. */
  submitS: number;
  durationS: number;
}

// Ends in the simulator: a at 1000; e starts at 100 (b's 60 s grace after e arrives at 40) and ends at 2000;
// b restarts at 1000 (30 s restart overhead, its work since no checkpoint lost) and ends at 3000; c runs 3000–4000.
const SCENARIO: readonly ScenarioJob[] = [
  { name: 'a', gpus: 2, priority: 60, submitS: 0, durationS: 1000 },
  { name: 'b', gpus: 2, priority: 50, submitS: 10, durationS: 1970 },
  { name: 'c', gpus: 4, priority: 50, submitS: 20, durationS: 1000 },
  { name: 'd', gpus: 1, priority: 50, submitS: 30, durationS: 1000 },
  { name: 'e', gpus: 2, priority: 100, submitS: 40, durationS: 1900 },
];

function simulate(node: NodeInfo): Decision[] {
  const cluster: ClusterConfig = { nodes: [node], teams: [], scheduler: { profile: 'tutti', fairShareHalfLifeMs: 24 * 3_600_000, args: {} } };
  const trace: TraceJob[] = SCENARIO.map((j) => ({ traceId: j.name, submitS: j.submitS, durationS: j.durationS, numGpus: j.gpus, gpuType: '', user: '', queue: '', status: '', priority: j.priority }));
  return simulateDecisions(trace, cluster, 'tutti');
}

let t: TestServer | undefined;
afterEach(async () => {
  await closeLeavingNothingRunning(t);
  t = undefined;
});

describe('live server and simulator', () => {
  it('start the same jobs in the same order on the same GPUs, and preempt the same job', async () => {
    t = await startTestServer({ fakeGpus: '4' });
    const { client, scratch } = t;
    const release = (name: string): string => path.join(scratch, `release-${name}`);
    const ids = new Map<string, string>();
    const submit = async (name: string): Promise<string> => {
      const job = SCENARIO.find((j) => j.name === name) as ScenarioJob;
      const view = await client.submitJob({ name, priority: job.priority, resources: { gpus: job.gpus }, run: waitForFileThenExit(release(name)) });
      ids.set(name, view.id);
      return view.id;
    };
    const job = (name: string): string => ids.get(name) as string;
    const isRunning = (j: JobView): boolean => j.status === 'running';
    const isWaiting = (j: JobView): boolean => j.status === 'pending' && j.pending_diagnosis !== null;

    await waitForJob(client, await submit('a'), isRunning);
    await waitForJob(client, await submit('b'), isRunning);
    await submit('c');
    await submit('d');
    await waitForJob(client, job('c'), isWaiting);
    await waitForJob(client, job('d'), isWaiting);
    await submit('e');
    await waitForJob(client, job('e'), isRunning);
    await touch(release('a'));
    await waitForJob(client, job('a'), isEnded);
    await waitForJob(client, job('b'), (j) => isRunning(j) && j.attempt === 2);
    await touch(release('e'));
    await waitForJob(client, job('e'), isEnded);
    // A cycle has seen e's GPUs free and kept d waiting for c's reservation.
    await waitForJob(client, job('d'), (j) => j.pending_diagnosis?.code === 'WaitingForReservation');
    await touch(release('b'));
    await waitForJob(client, job('c'), isRunning);
    await touch(release('c'));
    await waitForJob(client, job('d'), isRunning);
    await touch(release('d'));
    await waitForJob(client, job('d'), isEnded);

    const live = await liveDecisions(client, ids);
    const simulated = simulate(await liveNode(client));

    expect(live).toEqual(['start a 0,1', 'start b 2,3', 'preempt b', 'start e 2,3', 'start b 0,1', 'start c 0,1,2,3', 'start d 0']);
    expect(simulated).toEqual(live);
  });
});
