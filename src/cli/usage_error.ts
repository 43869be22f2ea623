/**
 * The error a command throws for a bad invocation. Its own module so the commands and
 * `args.ts` need not import `main.ts`, which loads them.
 */

/** A usage error: printed without a stack trace, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}
