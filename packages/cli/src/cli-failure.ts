/** The exit codes every command keeps (the README's CLI section): scripts branch on them. */
export const EXIT = {
  ok: 0,
  /** The server refused the request, the job failed, or the command could not do its work. */
  failed: 1,
  /** Bad usage: an unknown command or option, a missing or malformed argument. */
  usage: 2,
  /** No tutti server answers at --server. */
  noServer: 3,
} as const;

/** A failure the CLI explains in one message; `code` is the `error.code` of its JSON form under --json. */
export class CliFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failed,
    readonly code: string = exitCode === EXIT.usage ? 'usage' : 'failed',
  ) {
    super(message);
  }
}
