/**
 * The registry: every plugin a profile may name at an extension point is built there, under that name, and a cycle
 * runs with it.
 */
import { describe, expect, it } from 'vitest';
import { compileProfile, EXTENSION_POINTS, parseProfile, PLUGINS_AT, type ExtensionPoint } from '../src/index.ts';
import { cycle, makeCluster, makeJob, makeNode, placedIds } from './builders.ts';

/** A profile with `name` at `point`, on a base it is valid with (order-preemption needs a ranking queue sort). */
function profileWith(point: ExtensionPoint, name: string) {
  const list = point === 'queueSort' || point === 'gang' || point === 'backfill' ? name : [name];
  const base = name === 'order-preemption' ? 'tiresias' : 'tutti';
  const parsed = parseProfile({ name: `with-${name}`, base, plugins: { [point]: list } });
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.profile;
}

describe('the plugin registry', () => {
  const cases = EXTENSION_POINTS.flatMap((point) => PLUGINS_AT[point].map((name) => [point, name] as const));

  it.each(cases)('builds %s plugin %s, and a cycle runs with it', (point, name) => {
    const profile = profileWith(point, name);
    const built = compileProfile(profile).cycle[point];
    const names = (Array.isArray(built) ? built : [built]).map((p: { name: string }) => p.name);
    expect(names).toEqual([name]);
    const result = cycle(makeCluster(makeNode('n1').gpus(4, 'H100')), [makeJob(1).gpus(2), makeJob(2).gpus(4)], profile);
    expect(placedIds(result)).toEqual(['1']);
    expect(result.diagnoses.get('2')?.code).toBeDefined();
  });
});
