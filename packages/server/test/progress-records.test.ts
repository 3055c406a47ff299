import { describe, expect, it } from 'vitest';
import { checkProgressFields, parseProgressLine } from '../src/progress-tail.ts';

describe('progress records', () => {
  it('reads a printed record: gauges kept, other output ignored', () => {
    expect(parseProgressLine('{"tutti": {"step": 120, "loss": 0.42, "checkpoint": "/ckpt/step-120", "warm": true}}')).toEqual({ step: 120, loss: 0.42, checkpoint: '/ckpt/step-120', warm: true });
    expect(parseProgressLine('epoch 3 done')).toBeUndefined();
    expect(parseProgressLine('{"tutti": {}}')).toBeUndefined();
    expect(parseProgressLine('{"tutti": not json')).toBeUndefined();
  });

  it('drops a printed field it cannot keep, but refuses the whole record for a bad step or checkpoint', () => {
    expect(parseProgressLine('{"tutti": {"step": 3, "nested": {"a": 1}, "9lives": 1}}')).toEqual({ step: 3 });
    expect(parseProgressLine('{"tutti": {"step": -1, "loss": 0.5}}')).toBeUndefined();
    expect(parseProgressLine('{"tutti": {"step": 2, "checkpoint": 7}}')).toBeUndefined();
  });

  it('names every refused field, with why (what the progress API answers with)', () => {
    const { values, problems } = checkProgressFields({ step: 1.5, loss: [1], checkpoint: '/c', 'bad name': 1 });
    expect(values).toEqual({ checkpoint: '/c' });
    expect(problems).toEqual([
      { field: 'step', message: 'must be a whole number ≥ 0' },
      { field: 'loss', message: 'must be a number, a string or a boolean' },
      { field: 'bad name', message: expect.stringMatching(/field names are letters/) },
    ]);
  });
});
