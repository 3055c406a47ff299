/**
 * The live server and the simulator drive the same control core (@tutti/control's JobLifecycle): on the same small
 * scenarios they make the same decisions about a job's whole life, in the same order — starts, stops and why,
 * requeues, ends (see live-vs-sim-helpers.ts for how each side's decisions are read). Timings are not compared.
 *
 * Each scenario runs on a real server with one node of 4 fake GPUs, where each attempt of a job waits for its own
 * release file (`release-<job>-<attempt>`), so the test decides when each attempt ends; and through `runSimulation`
 * on the server's own node, with run times and scripted failures, hangs and cancels (`TraceJob.scenario`) that give
 * the same order. Where a decision depends on time (a grace, a backoff), the live test does its part well inside it.
 *
 * 1. Preemption with grace: v1, v2 (2 GPUs each, priority 10, preemption_grace 30 s, checkpointing for their whole
 *    grace) fill the node; urgent (2 GPUs, priority 90) preempts one of them; late (1 GPU) arrives during the victim's
 *    grace, and its cycle, which sees the victim marked as being stopped for urgent, stops no second job. urgent
 *    starts once the victim is gone; the victim goes back to the queue (`preempted`) and starts again on urgent's
 *    GPUs when urgent ends; late gets one of the other's GPUs when that one ends.
 * 2. Restart backoff: flaky (4 GPUs, so 4 ranks, max_restarts 1, restart_backoff 5 s) fails in its first attempt
 *    (rank 0 exits 3 first, in the simulator, and the other ranks are stopped) while other (4 GPUs) waits: flaky is
 *    requeued `restarting`, other starts during flaky's backoff although flaky is older, and flaky starts again when
 *    other ends, and succeeds.
 * 3. A hang: hangs (hang_timeout 2 s, restart_on [hang], max_restarts 1) prints one progress record and goes quiet:
 *    it is stopped as hung, restarted, and its second attempt (reporting progress) succeeds. Then stuck, the same
 *    but restart_on [failure]: stopped as hung, and fails.
 * 4. A cancel during a preemption: low (4 GPUs, priority 10, preemption_grace 30 s) is preempted by high and
 *    cancelled during its grace: it ends `cancelled`, not back in the queue, and high starts.
 * 5. A team that is not configured: with teams vision and speech, a job of team robotics is refused live (422 naming
 *    the configured teams, no job created) and unplaceable in the simulator (`team_without_capacity`); the other jobs
 *    are placed the same way by both.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobView, TuttiClient } from '@tutti/client';
import type { ClusterConfig, NodeInfo, TeamConfig } from '@tutti/model';
import { UNPLACEABLE_REASONS, type TraceJob } from '../src/index.ts';
import { closeLeavingNothingRunning, expectApiError, isEnded, nodeScript, startTestServer, touch, waitForJob, type TestServer } from '../../server/test/harness.ts';
import { formatSimDecision, liveDecisions, liveNode, simulateDecisions, simulateWithDecisions, type Decision } from './live-vs-sim-helpers.ts';

/** How a live rank behaves in each attempt; it ends its attempt when `<release>-<attempt>` exists. */
interface RankBehaviour {
  /** Exit code per attempt (attempt 1 first); 0 beyond the list. */
  exitCodes?: number[];
  /** On SIGTERM, keep running until released (a job checkpointing for its whole grace); else SIGTERM ends it. */
  holdsOnStop?: boolean;
  /** Print a progress record every 100 ms (what keeps a job with hang_timeout from being declared hung). */
  reportsProgress?: boolean;
  /** Attempts that print one progress record, then nothing, and never end by themselves. */
  hangsInAttempts?: number[];
}

function rank(release: string, behaviour: RankBehaviour): string[] {
  return nodeScript(
    `const fs=require('fs');const b=JSON.parse(process.argv[2]);const attempt=Number(process.env.TUTTI_ATTEMPT);` +
      `const file=process.argv[1]+'-'+attempt;const code=(b.exitCodes||[])[attempt-1]||0;let step=0;` +
      `const report=()=>console.log(JSON.stringify({tutti:{step:step++}}));` +
      // Marked armed only once the handler is installed: a SIGTERM before that would end the rank at once.
      `if(b.holdsOnStop){process.on('SIGTERM',()=>console.log('SIGTERM: checkpointing until released'));` +
      `fs.writeFileSync(process.argv[1]+'-armed-'+attempt+'-'+process.env.RANK,'')}` +
      `report();` +
      `if((b.hangsInAttempts||[]).includes(attempt))setInterval(()=>{},1000);` +
      `else(function w(){if(fs.existsSync(file))process.exit(code);if(b.reportsProgress)report();setTimeout(w,100)})()`,
    release,
    JSON.stringify(behaviour),
  );
}

/** The live side of a scenario: submits jobs by name, ends their attempts with release files. */
function liveScenario(t: TestServer) {
  const ids = new Map<string, string>();
  const release = (name: string): string => path.join(t.scratch, `release-${name}`);
  const job = (name: string): string => ids.get(name) as string;
  return {
    ids,
    job,
    submit: async (name: string, spec: Record<string, unknown>, behaviour: RankBehaviour = {}): Promise<string> => {
      const view = await t.client.submitJob({ name, ...spec, run: rank(release(name), behaviour) });
      ids.set(name, view.id);
      return view.id;
    },
    /** Waits until each of the `ranks` ranks of attempt `attempt` of `name` (a job that holds on stop) has its SIGTERM handler. */
    armed: async (name: string, attempt: number, ranks: number): Promise<void> => {
      const marks = Array.from({ length: ranks }, (_, r) => `${release(name)}-armed-${attempt}-${r}`);
      const deadline = Date.now() + 20_000;
      while (!marks.every((mark) => existsSync(mark))) {
        if (Date.now() > deadline) throw new Error(`${name}'s ranks never installed their SIGTERM handler`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    },
    /** Lets attempt `attempt` of `name` end (with its exit code). */
    release: (name: string, attempt: number): Promise<void> => touch(`${release(name)}-${attempt}`),
  };
}

const isRunning = (j: JobView): boolean => j.status === 'running';
const isRunningAttempt = (attempt: number) => (j: JobView): boolean => j.status === 'running' && j.attempt === attempt;
const isWaiting = (j: JobView): boolean => j.status === 'pending' && j.pending_diagnosis !== null;

/** The `stopping` events of a job, as recorded (cause, grace). */
async function stopsOf(client: TuttiClient, id: string): Promise<Array<Record<string, unknown>>> {
  return (await client.listJobEvents(id)).events.filter((e) => e.type === 'stopping').map((e) => (e.data ?? {}) as Record<string, unknown>);
}

/** Waits until one of `names` is being stopped; answers its name. */
async function waitForAStop(client: TuttiClient, ids: ReadonlyMap<string, string>, names: readonly string[]): Promise<string> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    for (const name of names) if ((await stopsOf(client, ids.get(name) as string)).length > 0) return name;
    if (Date.now() > deadline) throw new Error(`none of ${names.join(', ')} was stopped`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const job = (traceId: string, submitS: number, durationS: number, numGpus: number, extra: Partial<TraceJob> = {}): TraceJob => ({ traceId, submitS, durationS, numGpus, gpuType: '', user: '', queue: '', status: '', ...extra });
const config = (node: NodeInfo, teams: TeamConfig[] = []): ClusterConfig => ({ nodes: [node], teams, scheduler: { profile: 'tutti', fairShareHalfLifeMs: 24 * 3_600_000, args: {} } });
const simulate = (trace: TraceJob[], node: NodeInfo, teams: TeamConfig[] = []): Decision[] => simulateDecisions(trace, config(node, teams), 'tutti', 'lifecycle');

let t: TestServer | undefined;
afterEach(async () => {
  await closeLeavingNothingRunning(t);
  t = undefined;
});

describe('live server and simulator, over a job\'s whole life', () => {
  it('stop one victim for a preemption, with its own grace, and start the preemptor once it is gone', async () => {
    t = await startTestServer({ fakeGpus: '4' });
    const { client } = t;
    const { ids, job: id, submit, release, armed } = liveScenario(t);
    const victimSpec = { priority: 10, resources: { gpus: 2 }, preemption_grace: '30s' };
    await waitForJob(client, await submit('v1', victimSpec, { holdsOnStop: true }), isRunning);
    await waitForJob(client, await submit('v2', victimSpec, { holdsOnStop: true }), isRunning);
    await Promise.all([armed('v1', 1, 2), armed('v2', 1, 2)]);
    await submit('urgent', { priority: 90, resources: { gpus: 2 } });
    const victim = await waitForAStop(client, ids, ['v1', 'v2']);
    const other = victim === 'v1' ? 'v2' : 'v1';
    // During the victim's grace (it holds on until released): a cycle for late stops no second job.
    await waitForJob(client, await submit('late', { priority: 10, resources: { gpus: 1 } }), isWaiting);
    expect((await client.getJob(id('urgent'))).status).toBe('pending');
    await release(victim, 1);
    await waitForJob(client, id('urgent'), isRunning);
    await release('urgent', 1);
    await waitForJob(client, id(victim), isRunningAttempt(2));
    await release(other, 1);
    await waitForJob(client, id('late'), isRunning);
    await release(victim, 2);
    await waitForJob(client, id(victim), isEnded);
    await release('late', 1);
    await waitForJob(client, id('late'), isEnded);

    // The victim's stop had its own grace, as recorded before it was signalled.
    const [stop] = await stopsOf(client, id(victim));
    expect(stop).toMatchObject({ grace_ms: 30_000, grace_source: 'job', cause: { kind: 'preempted', forJobId: id('urgent') } });
    expect(await stopsOf(client, id(other))).toEqual([]);

    // Simulated: urgent arrives at 10 s; the victim checkpoints for its whole grace and is gone at 40 s; late arrives
    // at 20 s, during it. urgent ends at 140 s, v1 at 2000 s, v2's second run (30 s restart overhead, nothing kept
    // since its last periodic checkpoint) at 3169 s, late at 4000 s.
    const grace = { scenario: { spec: { preemptionGraceMs: 30_000 } } };
    const trace = [
      job('v1', 0, 2000, 2, { priority: 10, ...grace }),
      job('v2', 1, 2999, 2, { priority: 10, ...grace }),
      job('urgent', 10, 100, 2, { priority: 90 }),
      job('late', 20, 2000, 1, { priority: 10 }),
    ];
    const node = await liveNode(client);
    const { decisions: simulated } = simulateWithDecisions(trace, config(node), 'tutti');
    const live = await liveDecisions(client, ids, 'lifecycle');
    expect(live).toEqual([
      'start v1 0,1', 'start v2 2,3', 'preempt v2', 'requeue v2 (preempted)', 'start urgent 2,3', 'finish urgent succeeded',
      'start v2 2,3', 'finish v1 succeeded', 'start late 0', 'finish v2 succeeded', 'finish late succeeded',
    ]);
    expect(simulated.map(formatSimDecision)).toEqual(live);
    // In simulated time, too, the victim was gone at the end of its own grace, not the profile's default.
    const urgentStart = simulated.find((d) => d.kind === 'start' && d.traceId === 'urgent');
    expect(urgentStart?.timeS).toBe(40);
  }, 60_000);

  it('requeue a failed attempt as restarting, start another job during its backoff, then start it again', async () => {
    t = await startTestServer({ fakeGpus: '4' });
    const { client } = t;
    const { ids, job: id, submit, release } = liveScenario(t);
    await waitForJob(client, await submit('flaky', { resources: { gpus: 4 }, max_restarts: 1, restart_backoff: '5s' }, { exitCodes: [3] }), isRunning);
    await waitForJob(client, await submit('other', { resources: { gpus: 4 } }), isWaiting);
    await release('flaky', 1);
    await waitForJob(client, id('other'), isRunning);
    expect((await client.getJob(id('flaky'))).status).toBe('pending');
    await release('other', 1);
    await waitForJob(client, id('flaky'), isRunningAttempt(2));
    await release('flaky', 2);
    const done = await waitForJob(client, id('flaky'), isEnded);
    expect(done.restarts).toBe(1);

    const trace = [
      job('flaky', 0, 100, 4, { scenario: { spec: { maxRestarts: 1, restartBackoffMs: 5_000 }, attempts: [{ fail: { afterS: 5, exitCode: 3 } }], exitsOnSignal: true } }),
      job('other', 1, 100, 4),
    ];
    const live = await liveDecisions(client, ids, 'lifecycle');
    expect(live).toEqual(['start flaky 0,1,2,3', 'stop flaky (rank_failed)', 'requeue flaky (restarting)', 'start other 0,1,2,3', 'finish other succeeded', 'start flaky 0,1,2,3', 'finish flaky succeeded']);
    expect(simulate(trace, await liveNode(client))).toEqual(live);
  }, 60_000);

  it('stop a job that stops reporting progress as hung, and restart it or fail it per restart_on', async () => {
    t = await startTestServer({ fakeGpus: '4' });
    const { client } = t;
    const { ids, job: id, submit, release } = liveScenario(t);
    const hangSpec = { resources: { gpus: 1 }, hang_timeout: '2s', max_restarts: 1, restart_backoff: '0s' };
    await submit('hangs', { ...hangSpec, restart_on: ['hang'] }, { reportsProgress: true, hangsInAttempts: [1] });
    await waitForJob(client, id('hangs'), isRunningAttempt(2));
    await release('hangs', 2);
    await waitForJob(client, id('hangs'), isEnded);
    const stuck = await waitForJob(client, await submit('stuck', { ...hangSpec, restart_on: ['failure'] }, { reportsProgress: true, hangsInAttempts: [1] }), isEnded);
    expect(stuck.status).toBe('failed');

    const hangs = { spec: { hangTimeoutMs: 2_000, maxRestarts: 1, restartBackoffMs: 0 }, attempts: [{ hang: { afterS: 1 } }], exitsOnSignal: true };
    const trace = [
      job('hangs', 0, 100, 1, { scenario: { ...hangs, spec: { ...hangs.spec, restartOn: ['hang'] } } }),
      job('stuck', 1000, 100, 1, { scenario: { ...hangs, spec: { ...hangs.spec, restartOn: ['failure'] } } }),
    ];
    const live = await liveDecisions(client, ids, 'lifecycle');
    expect(live).toEqual([
      'start hangs 0', 'stop hangs (hung)', 'requeue hangs (restarting)', 'start hangs 0', 'finish hangs succeeded',
      'start stuck 0', 'stop stuck (hung)', 'finish stuck failed',
    ]);
    expect(simulate(trace, await liveNode(client))).toEqual(live);
  }, 60_000);

  it('end a job cancelled during its preemption as cancelled, not back in the queue', async () => {
    t = await startTestServer({ fakeGpus: '4' });
    const { client } = t;
    const { ids, job: id, submit, release, armed } = liveScenario(t);
    await waitForJob(client, await submit('low', { priority: 10, resources: { gpus: 4 }, preemption_grace: '30s' }, { holdsOnStop: true }), isRunning);
    await armed('low', 1, 4);
    await submit('high', { priority: 90, resources: { gpus: 4 } });
    await waitForAStop(client, ids, ['low']);
    await client.cancelJob(id('low'));
    await release('low', 1);
    expect((await waitForJob(client, id('low'), isEnded)).status).toBe('cancelled');
    await waitForJob(client, id('high'), isRunning);
    await release('high', 1);
    await waitForJob(client, id('high'), isEnded);

    const trace = [
      job('low', 0, 1000, 4, { priority: 10, scenario: { spec: { preemptionGraceMs: 30_000 }, cancelAtS: 20 } }),
      job('high', 10, 100, 4, { priority: 90 }),
    ];
    const live = await liveDecisions(client, ids, 'lifecycle');
    expect(live).toEqual(['start low 0,1,2,3', 'preempt low', 'finish low cancelled', 'start high 0,1,2,3', 'finish high succeeded']);
    expect(simulate(trace, await liveNode(client))).toEqual(live);
  }, 60_000);

  it('refuse (live) and never place (simulated) a job of a team that is not configured, and place the others alike', async () => {
    const teams: TeamConfig[] = [
      { name: 'vision', weight: 1, nominal: {} },
      { name: 'speech', weight: 1, nominal: {} },
    ];
    t = await startTestServer({ fakeGpus: '4', config: { nodes: [], teams, scheduler: { profile: 'tutti', fairShareHalfLifeMs: 24 * 3_600_000, args: {} } } });
    const { client } = t;
    const { ids, job: id, submit, release } = liveScenario(t);
    await waitForJob(client, await submit('a', { team: 'vision', resources: { gpus: 2 } }), isRunning);
    const refused = await expectApiError(submit('robot', { team: 'robotics', resources: { gpus: 1 } }));
    expect(refused.status).toBe(422);
    expect(refused.message).toContain("the configured teams are 'speech', 'vision'");
    expect((await client.listJobs({ limit: 1000 })).jobs.map((j) => j.name)).toEqual(['a']);
    await waitForJob(client, await submit('b', { team: 'speech', resources: { gpus: 2 } }), isRunning);
    await waitForJob(client, await submit('c', { team: 'vision', resources: { gpus: 1 } }), isWaiting);
    await release('a', 1);
    await waitForJob(client, id('c'), isRunning);
    await release('b', 1);
    await waitForJob(client, id('b'), isEnded);
    await release('c', 1);
    await waitForJob(client, id('c'), isEnded);

    // Simulated, robotics's job (1 GPU) arrives between a and b: were it placed, it would take GPU 2 and keep b waiting.
    const trace = [job('a', 0, 1000, 2, { queue: 'vision' }), job('robot', 5, 1000, 1, { queue: 'robotics' }), job('b', 10, 2000, 2, { queue: 'speech' }), job('c', 20, 3000, 1, { queue: 'vision' })];
    const { decisions, result } = simulateWithDecisions(trace, config(await liveNode(client), teams), 'tutti');
    expect([...result.jobs.unplaceable].map((reason) => UNPLACEABLE_REASONS[reason] ?? 'placeable')).toEqual(['placeable', 'team_without_capacity', 'placeable', 'placeable']);
    const live = await liveDecisions(client, ids, 'lifecycle');
    expect(live).toEqual(['start a 0,1', 'start b 2,3', 'finish a succeeded', 'start c 0', 'finish b succeeded', 'finish c succeeded']);
    expect(decisions.map(formatSimDecision)).toEqual(live);
  }, 60_000);
});
