/**
 * Per-job secrets. A job's ranks get `TUTTI_JOB_TOKEN`, with which they may post progress records for that job
 * and no other. The token is an HMAC of the job id under a key kept in the data dir (mode 0600), so it survives a
 * server restart (re-adopted ranks keep theirs), needs no table, and cannot be forged or moved to another job.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { link, readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

const KEY_FILE = 'job-token.key';
const TOKEN_PREFIX = 'tjt_';

export class JobTokens {
  private constructor(private readonly key: Buffer) {}

  /** Reads the data dir's key, creating it on first use. */
  static async open(dataDir: string): Promise<JobTokens> {
    const file = path.join(dataDir, KEY_FILE);
    const existing = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    if (existing !== undefined && /^[0-9a-f]{64}$/.test(existing.trim())) return new JobTokens(Buffer.from(existing.trim(), 'hex'));
    const key = randomBytes(32);
    if (existing !== undefined) {
      await writeFile(file, key.toString('hex'), { mode: 0o600 });
      return new JobTokens(key);
    }
    // Replicas sharing the data dir may start at once: the key is written whole under another name and linked into
    // place, which fails if another replica's key got there first — then that one is everybody's.
    const draft = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
    await writeFile(draft, key.toString('hex'), { mode: 0o600, flag: 'wx' });
    try {
      await link(draft, file);
      return new JobTokens(key);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      return new JobTokens(Buffer.from((await readFile(file, 'utf8')).trim(), 'hex'));
    } finally {
      await unlink(draft).catch(() => undefined);
    }
  }

  tokenFor(jobId: string): string {
    return TOKEN_PREFIX + createHmac('sha256', this.key).update(`job:${jobId}`).digest('base64url');
  }

  /** Whether `token` is the token of `jobId` (constant-time). */
  verify(jobId: string, token: string): boolean {
    const expected = Buffer.from(this.tokenFor(jobId));
    const given = Buffer.from(token);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}
