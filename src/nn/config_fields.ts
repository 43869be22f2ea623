/**
 * Typed configuration fields: how each value is written, what it may be, and the check that
 * names the field, the value and what is allowed. The model's config (model_config.ts) and the
 * trainer's (src/train/config.ts) are both described with these.
 */

/** A bad config file or flag; the message names the field, the value and what is allowed. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** How one field's value is written and what it may be. */
export type FieldType =
  | { kind: "int"; min: number; max?: number }
  | { kind: "number"; min?: number; max?: number; exclusiveMin?: boolean; exclusiveMax?: boolean }
  | { kind: "enum"; values: readonly string[] }
  | { kind: "bool" }
  | { kind: "string" }
  /** D,H,W positive integers; one number means all three. */
  | { kind: "shape3" }
  /** [low, high] with low < high. */
  | { kind: "range" }
  /** A list of numbers ≥ 0; may be left unset. */
  | { kind: "weights" }
  /**
   * One z,y,x triple per network stage, each value one of `values`; may be left unset. On the
   * command line stages are separated by "/" and axes by "," (`1,1,1/1,2,2/2,2,2`; a stage of
   * one number means all three axes); in JSON, a list of [z, y, x] lists.
   */
  | { kind: "zyxStages"; values: readonly number[] };

/** One configurable field: its dotted path, type and a line of help. */
export interface ConfigField {
  path: string;
  type: FieldType;
  help: string;
}

export const int = (min: number, max?: number): FieldType => ({ kind: "int", min, max });
export const num = (
  min?: number,
  max?: number,
  exclusiveMin = false,
  exclusiveMax = false,
): FieldType => ({
  kind: "number",
  min,
  max,
  exclusiveMin,
  exclusiveMax,
});

/** One of the given values (pass an `as const` list, so the type and the list are one). */
export const oneOf = (values: readonly string[]): FieldType => ({ kind: "enum", values });
export const bool: FieldType = { kind: "bool" };
/** Per-stage z,y,x triples, each value one of `values` (see {@link FieldType}). */
export const zyxStages = (values: readonly number[]): FieldType => ({ kind: "zyxStages", values });
export const field = (path: string, type: FieldType, help: string): ConfigField => ({
  path,
  type,
  help,
});

/** What a value of this type must be, for messages. */
export function describeType(t: FieldType): string {
  switch (t.kind) {
    case "int":
      return `an integer in [${t.min}, ${t.max ?? "∞"}]`;
    case "number": {
      const lo = t.min === undefined ? "(-∞" : `${t.exclusiveMin ? "(" : "["}${t.min}`;
      const hi = t.max === undefined ? "∞)" : `${t.max}${t.exclusiveMax ? ")" : "]"}`;
      return `a number in ${lo}, ${hi}`;
    }
    case "enum":
      return `one of ${t.values.join(", ")}`;
    case "bool":
      return "true or false";
    case "string":
      return "a non-empty string";
    case "shape3":
      return "D,H,W positive integers (or one for all three)";
    case "range":
      return "LOW,HIGH numbers with LOW < HIGH";
    case "weights":
      return "a list of numbers ≥ 0";
    case "zyxStages":
      return `z,y,x triples of ${t.values.join(" or ")}, one per stage, joined by "/" ` +
        `(e.g. 1,1,1/1,2,2/2,2,2; one number stands for all three axes)`;
  }
}

/**
 * The stages of a `zyxStages` value: a list of [z, y, x] lists is returned as is, the command
 * line's text (`1,1,1/1,2,2`, `1/2/2`) parsed into one; anything else gives undefined.
 */
function zyxStagesOf(value: unknown): unknown {
  if (typeof value !== "string") return value;
  if (value.trim() === "") return undefined;
  return value.split("/").map((stage) => {
    const n = stage.split(",").map((p) => (p.trim() === "" ? NaN : Number(p)));
    return n.length === 1 ? [n[0], n[0], n[0]] : n;
  });
}

/**
 * Checks a value against its field's type and range; returns it (a `zyxStages` value given as
 * command-line text comes back parsed into its [z, y, x] lists).
 */
export function checkRange(
  field: ConfigField,
  value: unknown,
  raw: unknown,
  source: string,
): unknown {
  const t = field.type;
  let ok: boolean;
  switch (t.kind) {
    case "int":
      ok = typeof value === "number" && Number.isSafeInteger(value) && value >= t.min &&
        (t.max === undefined || value <= t.max);
      break;
    case "number":
      ok = typeof value === "number" && Number.isFinite(value) &&
        (t.min === undefined || (t.exclusiveMin ? value > t.min : value >= t.min)) &&
        (t.max === undefined || (t.exclusiveMax ? value < t.max : value <= t.max));
      break;
    case "enum":
      ok = typeof value === "string" && t.values.includes(value);
      break;
    case "bool":
      ok = typeof value === "boolean";
      break;
    case "string":
      ok = typeof value === "string" && value.length > 0;
      break;
    case "shape3":
      ok = Array.isArray(value) && value.length === 3 &&
        value.every((d) => Number.isSafeInteger(d) && d > 0);
      break;
    case "range":
      ok = Array.isArray(value) && value.length === 2 &&
        value.every((d) => typeof d === "number" && Number.isFinite(d)) && value[0] < value[1];
      break;
    case "weights":
      ok = value === undefined || (Array.isArray(value) && value.length > 0 &&
        value.every((d) => typeof d === "number" && Number.isFinite(d) && d >= 0));
      break;
    case "zyxStages": {
      value = zyxStagesOf(value);
      const values = t.values;
      ok = Array.isArray(value) && value.length > 0 &&
        value.every((stage) =>
          Array.isArray(stage) && stage.length === 3 &&
          stage.every((v) => values.includes(v as number))
        );
      break;
    }
  }
  if (!ok) {
    throw new ConfigError(
      `${field.path} must be ${describeType(t)}, got ${JSON.stringify(raw)} (${source})`,
    );
  }
  return value;
}
