/**
 * The database was written by a newer tutti (its schema version is above every migration this build knows).
 * Platform-caused: the operator must upgrade tutti or point it at another data dir; the store refuses to touch it.
 */
export class SchemaTooNewError extends Error {
  override readonly name = 'SchemaTooNewError';
  constructor(
    readonly databaseVersion: number,
    readonly knownVersion: number,
    where?: string,
  ) {
    super(
      `the database${where ? ` ${where}` : ''} has schema version ${databaseVersion}, newer than this tutti knows (${knownVersion}); ` +
        'upgrade tutti, or use a different --data-dir',
    );
  }
}

/** A `listJobs` cursor that no page of this store produced. User-caused (a tampered or foreign cursor). */
export class InvalidCursorError extends Error {
  override readonly name = 'InvalidCursorError';
  constructor(readonly cursor: string) {
    super(`invalid job list cursor: ${JSON.stringify(cursor)}`);
  }
}
