/** Exhaustiveness check for string-literal unions: a new member that is not handled fails to compile. */
export function assertNever(value: never, what = 'value'): never {
  throw new Error(`unexpected ${what}: ${JSON.stringify(value)}`);
}
