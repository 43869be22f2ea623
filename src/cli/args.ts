/** Flag parsing shared by the commands, on `node:util` parseArgs with voxseg's error style. */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { parseDuration } from "../base/duration.ts";
import { UsageError } from "./usage_error.ts";

type Options = NonNullable<ParseArgsConfig["options"]>;

/**
 * Parses `argv` strictly; unknown flags and missing values become a {@link UsageError} whose
 * message names the flag and shows `help`.
 *
 * @example
 * const { values } = parseFlags(argv, { out: { type: "string" } }, "--out DIR");
 */
export function parseFlags<O extends Options>(
  argv: string[],
  options: O,
  help: string,
): { values: Record<keyof O, string | boolean | string[] | undefined>; positionals: string[] } {
  try {
    const parsed = parseArgs({
      args: argv,
      options: { ...options, help: { type: "boolean", short: "h" } } as Options,
      allowPositionals: true,
      strict: true,
    });
    const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
    if (values.help) {
      console.log(help);
      Deno.exit(0);
    }
    return {
      values: values as Record<keyof O, string | boolean | string[] | undefined>,
      positionals: parsed.positionals,
    };
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${help}`);
  }
}

/**
 * {@link parseFlags} for a command that takes flags alone: a positional argument is a
 * {@link UsageError}, and so is a missing flag of `required` (checked in order).
 *
 * @example
 * const { values } = parseNamedFlags(argv, { out: { type: "string" } }, "--out DIR", ["out"]);
 */
export function parseNamedFlags<O extends Options>(
  argv: string[],
  options: O,
  help: string,
  required: readonly (keyof O & string)[] = [],
): { values: Record<keyof O, string | boolean | string[] | undefined> } {
  const { values, positionals } = parseFlags(argv, options, help);
  if (positionals.length) {
    throw new UsageError(`unexpected argument "${positionals[0]}"\n\n${help}`);
  }
  for (const name of required) {
    if (!values[name]) throw new UsageError(`--${name} is required\n\n${help}`);
  }
  return { values };
}

/** Reads a numeric flag, with a clear message when it is not a number in range. */
export function numberFlag(
  value: unknown,
  name: string,
  fallback: number,
  { min = -Infinity, max = Infinity, integer = false } = {},
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    const kind = integer ? "an integer" : "a number";
    throw new UsageError(`--${name} must be ${kind} in [${min}, ${max}], got "${value}"`);
  }
  return n;
}

/**
 * Reads a flag that takes one of a few words: `fallback` when absent, else one of `choices`.
 *
 * @example
 * const codec = choiceFlag(values.codec, "codec", ["zstd", "gzip"], "zstd");
 */
export function choiceFlag<T extends string>(
  value: unknown,
  name: string,
  choices: readonly T[],
  fallback: T,
): T {
  if (value === undefined) return fallback;
  if (!choices.includes(value as T)) {
    throw new UsageError(`--${name} must be ${choices.join(" or ")}, got "${value}"`);
  }
  return value as T;
}

/** Parses "D,H,W" (or one number for all three) into a 3-tuple of positive integers. */
export function shapeFlag(value: unknown, name: string, fallback: [number, number, number]) {
  if (value === undefined) return fallback;
  const parts = String(value).split(",").map((s) => Number(s.trim()));
  const dims = parts.length === 1 ? [parts[0], parts[0], parts[0]] : parts;
  if (dims.length !== 3 || dims.some((d) => !Number.isInteger(d) || d <= 0)) {
    throw new UsageError(`--${name} must be D,H,W (positive integers), got "${value}"`);
  }
  return dims as [number, number, number];
}

/**
 * Parses a duration: "15m", "90s", "1h30m", "1.5h", or plain seconds; returns seconds.
 *
 * @example
 * durationFlag("15m", "time-budget") // 900
 */
export function durationFlag(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  const seconds = parseDuration(String(value));
  if (seconds === undefined) {
    throw new UsageError(`--${name} must be a duration such as 15m, 90s or 1h30m, got "${value}"`);
  }
  if (!(seconds > 0)) throw new UsageError(`--${name} must be more than 0, got "${value}"`);
  return seconds;
}
