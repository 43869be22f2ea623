/**
 * The few assertions these tests use, on `node:assert/strict` (no @std here): deep equality
 * (typed arrays compared element-wise, NaN equal to NaN) and thrown errors checked by class and
 * by a substring of the message, so a test names the words a user would read.
 */

import assert from "node:assert/strict";

/** Deep strict equality. */
export function assertEquals<T>(actual: unknown, expected: T, message?: string): void {
  assert.deepStrictEqual(actual, expected, message);
}

type ErrorClass = abstract new (...args: never[]) => Error;

function check(e: unknown, cls: ErrorClass, includes: string): Error {
  if (!(e instanceof cls)) {
    throw new assert.AssertionError({
      message: `expected ${cls.name}, got ${e instanceof Error ? `${e.name}: ${e.message}` : e}`,
    });
  }
  if (!e.message.includes(includes)) {
    throw new assert.AssertionError({
      message: `expected the message to include ${JSON.stringify(includes)}, got ${
        JSON.stringify(e.message)
      }`,
    });
  }
  return e;
}

/** `fn` throws an instance of `cls` whose message contains `includes`; returns the error. */
export function assertThrows(fn: () => unknown, cls: ErrorClass, includes = ""): Error {
  try {
    fn();
  } catch (e) {
    return check(e, cls, includes);
  }
  throw new assert.AssertionError({ message: `expected ${cls.name} to be thrown` });
}

/** `fn` rejects with an instance of `cls` whose message contains `includes`. */
export async function assertRejects(
  fn: () => Promise<unknown>,
  cls: ErrorClass,
  includes = "",
): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    return check(e, cls, includes);
  }
  throw new assert.AssertionError({ message: `expected ${cls.name} to be thrown` });
}
