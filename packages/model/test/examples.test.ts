/** Every job spec under examples/ parses: a user's first copy-paste must not meet a validation error. */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseJobSpecYaml } from '@tutti/model';

const EXAMPLES = fileURLToPath(new URL('../../../examples/', import.meta.url));

function jobSpecFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return name === 'clusters' ? [] : jobSpecFiles(full);
    return /\.ya?ml$/.test(name) ? [full] : [];
  });
}

describe('examples', () => {
  const files = jobSpecFiles(EXAMPLES);

  it('include the distributed training examples', () => {
    const names = files.map((f) => path.relative(EXAMPLES, f));
    expect(names).toEqual(expect.arrayContaining(['ddp-node/job.yaml', 'ddp-torch/job.yaml', 'hello.yaml']));
  });

  it.each(files.map((f) => [path.relative(EXAMPLES, f), f]))('%s is a valid job spec', (_name, file) => {
    const parsed = parseJobSpecYaml(readFileSync(file, 'utf8'));
    expect(parsed.ok ? [] : parsed.errors).toEqual([]);
  });
});
