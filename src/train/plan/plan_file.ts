/**
 * `plans.json`: a {@link Plan} on disk, written atomically next to a dataset or a run and read
 * back with every field checked, so a hand-edited or truncated file fails with the field named.
 * A plan of several input channels lists each one's normalisation in `channels`; a plan without
 * them (every plan written before channels were planned) is a one-channel plan.
 */

import { join } from "node:path";
import { writeFileAtomic } from "../../base/atomic.ts";
import {
  CHANNEL_DECISIONS,
  NORMALISATION_SCHEMES,
  type Plan,
  PLAN_FORMAT,
  PLAN_NETWORKS,
  PLAN_VERSION,
} from "./types.ts";
import { parseJson } from "../../base/json.ts";

/** The plan's file name inside a dataset or run folder. */
export const PLAN_FILE = "plans.json";

/**
 * Validates `plan` and writes `dir/plans.json` atomically; returns the file's path.
 *
 * @example
 * await writePlan("data/covid", plan(fingerprint));
 */
export async function writePlan(dir: string, plan: Plan): Promise<string> {
  const path = join(dir, PLAN_FILE);
  validatePlan(plan, PLAN_FILE);
  await writeFileAtomic(path, JSON.stringify(plan, null, 2) + "\n");
  return path;
}

/**
 * Reads and validates a plan from a `plans.json` path or the folder holding one.
 *
 * @example
 * const p = await readPlan("data/covid"); // data/covid/plans.json
 */
export async function readPlan(path: string): Promise<Plan> {
  const isDir = await Deno.stat(path).then((s) => s.isDirectory, () => false);
  const file = isDir ? join(path, PLAN_FILE) : path;
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    throw new Error(`no ${PLAN_FILE} at ${file} — write one with \`voxseg plan\``);
  }
  const json = parseJson(
    text,
    (where) => new Error(`${file} is not valid JSON${where}; write it again with \`voxseg plan\``),
  );
  validatePlan(json, file);
  return json;
}

/** Field checkers that throw with the field's path and what was wrong. */
function checkers(where: string) {
  const fail = (path: string, msg: string): never => {
    throw new Error(`${where}: ${path} ${msg}`);
  };
  const obj = (v: unknown, path: string) => {
    if (typeof v !== "object" || v === null || Array.isArray(v)) fail(path, "must be an object");
    return v as Record<string, unknown>;
  };
  const num = (v: unknown, path: string, min = -Infinity) => {
    if (typeof v !== "number" || !Number.isFinite(v) || v < min) {
      fail(path, `must be a number${min > -Infinity ? ` ≥ ${min}` : ""}, got ${show(v)}`);
    }
    return v as number;
  };
  const int = (v: unknown, path: string, min = 1) => {
    if (!Number.isInteger(v) || (v as number) < min) {
      fail(path, `must be an integer ≥ ${min}, got ${show(v)}`);
    }
    return v as number;
  };
  const str = (v: unknown, path: string) => {
    if (typeof v !== "string") fail(path, `must be a string, got ${show(v)}`);
    return v as string;
  };
  const triple = (v: unknown, path: string, integer = false) => {
    if (!Array.isArray(v) || v.length !== 3) fail(path, `must be 3 numbers, got ${show(v)}`);
    (v as unknown[]).forEach((
      x,
      i,
    ) => (integer ? int(x, `${path}[${i}]`) : num(x, `${path}[${i}]`, 0)));
  };
  const memory = (v: unknown, path: string) => {
    const m = obj(v, path);
    num(m.totalBytes, `${path}.totalBytes`, 0);
    num(m.largestBufferBytes, `${path}.largestBufferBytes`, 0);
    if (typeof m.fits !== "boolean") fail(`${path}.fits`, "must be true or false");
  };
  return { fail, obj, num, int, str, triple, memory };
}

/** Throws with the offending field's path when `value` is not a valid plan. */
export function validatePlan(value: unknown, where = PLAN_FILE): asserts value is Plan {
  const c = checkers(where);
  const p = c.obj(value, "the plan");
  if (p.format !== PLAN_FORMAT) c.fail("format", `must be "${PLAN_FORMAT}", got ${show(p.format)}`);
  if (p.version !== PLAN_VERSION) {
    c.fail(
      "version",
      `must be ${PLAN_VERSION} (this voxseg reads version 1), got ${show(p.version)}`,
    );
  }
  const d = c.obj(p.dataset, "dataset");
  c.str(d.name, "dataset.name");
  if (!Array.isArray(d.classes) || d.classes.length < 2) {
    c.fail("dataset.classes", `must list at least 2 class names, got ${show(d.classes)}`);
  }
  c.int(d.cases, "dataset.cases", 0);
  c.int(d.trainingCases, "dataset.trainingCases", 0);
  validateModality(p.modality, c, "modality");
  c.triple(p.targetSpacingMm, "targetSpacingMm");
  c.triple(p.medianShape, "medianShape", true);
  validateNormalisation(p.normalisation, c);
  validateNetworks(p, c);
  validateChannels(p, c);
  const l = c.obj(p.limits, "limits");
  for (const k of ["gpuMemoryBytes", "maxStorageBufferBindingSize", "maxBufferSize"]) {
    c.num(l[k], `limits.${k}`, 0);
  }
  for (const k of ["epochs", "itersPerEpoch"]) if (p[k] !== null) c.int(p[k], k);
  if (p.network !== undefined && !(PLAN_NETWORKS as readonly unknown[]).includes(p.network)) {
    c.fail("network", `must be ${PLAN_NETWORKS.join(" or ")}, got ${show(p.network)}`);
  }
  if (p.budget !== null) {
    const b = c.obj(p.budget, "budget");
    for (const k of ["budgetSeconds", "msPerStep", "steps", "estimatedSeconds"]) {
      c.num(b[k], `budget.${k}`, 0);
    }
    if (b.timing !== "measured" && b.timing !== "estimated") {
      c.fail("budget.timing", `must be "measured" or "estimated", got ${show(b.timing)}`);
    }
    c.str(b.reason, "budget.reason");
    if (b.valEvery !== undefined) c.int(b.valEvery, "budget.valEvery");
  }
  const reasons = c.obj(p.reasons, "reasons");
  for (const [k, v] of Object.entries(reasons)) c.str(v, `reasons.${k}`);
  if (!Array.isArray(p.notes)) c.fail("notes", "must be an array of strings");
  (p.notes as unknown[]).forEach((n, i) => c.str(n, `notes[${i}]`));
}

function validateModality(value: unknown, c: ReturnType<typeof checkers>, at: string): void {
  const m = c.obj(value, at);
  if (typeof m.isCT !== "boolean") c.fail(`${at}.isCT`, "must be true or false");
  c.str(m.modality, `${at}.modality`);
  c.str(m.reason, `${at}.reason`);
}

/**
 * `channels` (several input channels): one entry per input channel of the network, each with
 * its name, what decided it, its modality and normalisation. Without it the plan has one.
 */
function validateChannels(p: Record<string, unknown>, c: ReturnType<typeof checkers>): void {
  const inChannels = (p.unet3d as { inChannels: number }).inChannels;
  if (p.channels === undefined) {
    if (inChannels !== 1) {
      c.fail(
        "channels",
        `must list the normalisation of each of the ${inChannels} input channels ` +
          "(unet3d.inChannels); plan the dataset again with voxseg plan",
      );
    }
    return;
  }
  if (!Array.isArray(p.channels) || p.channels.length !== inChannels || inChannels < 2) {
    c.fail(
      "channels",
      `must list one entry per input channel (unet3d.inChannels ${inChannels}, at least 2), ` +
        `got ${show(p.channels)}`,
    );
  }
  (p.channels as unknown[]).forEach((v, i) => {
    const at = `channels[${i}]`, ch = c.obj(v, at);
    c.str(ch.name, `${at}.name`);
    if (!(CHANNEL_DECISIONS as readonly unknown[]).includes(ch.decidedBy)) {
      c.fail(
        `${at}.decidedBy`,
        `must be ${CHANNEL_DECISIONS.join(" or ")}, got ${show(ch.decidedBy)}`,
      );
    }
    validateModality(ch.modality, c, `${at}.modality`);
    validateNormalisation(ch.normalisation, c, `${at}.normalisation`);
  });
  const first = (p.channels as { normalisation: { scheme: unknown } }[])[0].normalisation;
  if (first.scheme !== (p.normalisation as { scheme: unknown }).scheme) {
    c.fail("normalisation", "must be channel 0's (channels[0].normalisation)");
  }
}

function validateNormalisation(
  value: unknown,
  c: ReturnType<typeof checkers>,
  at = "normalisation",
): void {
  const n = c.obj(value, at);
  if (!NORMALISATION_SCHEMES.includes(n.scheme as never)) {
    c.fail(
      `${at}.scheme`,
      `must be one of ${NORMALISATION_SCHEMES.join(", ")}, got ${show(n.scheme)}`,
    );
  }
  if (n.scheme === "ct-window") {
    if (!Array.isArray(n.window) || n.window.length !== 2) {
      c.fail(`${at}.window`, `must be [low, high] for ct-window, got ${show(n.window)}`);
    }
    const [lo, hi] = n.window as unknown[];
    if (c.num(lo, `${at}.window[0]`) >= c.num(hi, `${at}.window[1]`)) {
      c.fail(`${at}.window`, `low must be below high, got ${show(n.window)}`);
    }
  }
  if (n.scheme === "ct-zscore") {
    const z = c.obj(n.zscore, `${at}.zscore`);
    for (const k of ["clipLo", "clipHi", "mean"]) c.num(z[k], `${at}.zscore.${k}`);
    if (!(c.num(z.std, `${at}.zscore.std`) > 0)) {
      c.fail(`${at}.zscore.std`, `must be > 0, got ${show(z.std)}`);
    }
  }
  const conventions = c.obj(n.conventions, `${at}.conventions`);
  for (const [id, v] of Object.entries(conventions)) {
    if (!["hu", "byte", "unit", "other"].includes(v as string)) {
      c.fail(
        `${at}.conventions["${id}"]`,
        `must be hu, byte, unit or other, got ${show(v)}`,
      );
    }
  }
  const maps = c.obj(n.huMaps, `${at}.huMaps`);
  for (const [id, v] of Object.entries(maps)) {
    const path = `${at}.huMaps["${id}"]`, map = c.obj(v, path);
    c.num(map.scale, `${path}.scale`);
    c.num(map.offset, `${path}.offset`);
    if (!["fit", "median", "window"].includes(map.source as string)) {
      c.fail(`${path}.source`, `must be fit, median or window, got ${show(map.source)}`);
    }
  }
  c.str(n.reason, `${at}.reason`);
}

function validateNetworks(p: Record<string, unknown>, c: ReturnType<typeof checkers>): void {
  const t = c.obj(p.topology, "topology");
  c.triple(t.patchSize, "topology.patchSize", true);
  c.triple(t.divisibleBy, "topology.divisibleBy", true);
  c.int(t.maxChannels, "topology.maxChannels");
  c.int(t.batchSize, "topology.batchSize");
  if (!Array.isArray(t.levels) || t.levels.length === 0) {
    c.fail("topology.levels", "must be a non-empty array");
  }
  (t.levels as unknown[]).forEach((v, i) => {
    const path = `topology.levels[${i}]`, l = c.obj(v, path);
    c.triple(l.stride, `${path}.stride`, true);
    c.triple(l.kernel, `${path}.kernel`, true);
    c.int(l.channels, `${path}.channels`);
    c.triple(l.featureShape, `${path}.featureShape`, true);
  });
  c.memory(t.memory, "topology.memory");
  const u = c.obj(p.unet3d, "unet3d");
  for (const k of ["inChannels", "classes", "convsPerLevel", "depth", "baseChannels"]) {
    c.int(u[k], `unet3d.${k}`);
  }
  c.triple(u.patchSize, "unet3d.patchSize", true);
  const m = 2 ** ((u.depth as number) - 1);
  if ((u.patchSize as number[]).some((e) => e % m !== 0)) {
    c.fail(
      "unet3d.patchSize",
      `must be divisible by 2^(depth − 1) = ${m}, got ${show(u.patchSize)}`,
    );
  }
  c.memory(u.memory, "unet3d.memory");
  c.int(p.batchSize, "batchSize");
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? s.slice(0, 57) + "…" : s;
}
