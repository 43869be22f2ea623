/**
 * nnU-Net-style self-configuration: from a dataset {@link Fingerprint} to a {@link Plan} —
 * target spacing, intensity normalisation, the planned network topology (anisotropic pooling
 * and kernels), what today's UNet3D runs, patch and batch fitted to GPU memory, and the
 * training length fitted to a time budget. Pure: no I/O, no GPU, no clock; timings and limits
 * come in as inputs. Shapes and spacings are z, y, x (D, H, W).
 *
 * The rules live in ./topology.ts (geometry, memory), ./normalisation.ts (intensities) and
 * ./budget.ts (time); this file puts them together and prints the result.
 */

import {
  detectIntensityConvention,
  type Fingerprint,
  inferModality,
  type IntensityConvention,
} from "../../data/fingerprint.ts";
import type { Shape3 } from "../../data/volume.ts";
import { type BudgetChoice, sizeForBudget } from "./budget.ts";
import { type NormalisationOptions, planNormalisation } from "./normalisation.ts";
import {
  DEFAULT_PLAN_LIMITS,
  estimateTrainingMemory,
  fitPatch,
  GiB,
  medianResampledShape,
  MiB,
  type NetworkShape,
  num,
  type PlanLimits,
  planSpacing,
  poolingTopology,
  roundForUNet3D,
  stepFlops,
  unet3dDepth,
  unet3dLevels,
} from "./topology.ts";
import {
  type MemoryEstimate,
  type Plan,
  PLAN_FORMAT,
  PLAN_VERSION,
  type PlanNetwork,
  type PlanNormalisation,
  type TopologyPlan,
  type UNet3DPlan,
} from "./types.ts";

/** Every choice {@link plan} makes can be fixed here instead. */
export interface PlanOptions extends NormalisationOptions {
  /** z, y, x mm; default: the per-axis median (10th percentile on an anisotropic axis). */
  targetSpacingMm?: Shape3;
  /** D, H, W; default: the median resampled shape, shrunk until it fits memory. */
  patchSize?: Shape3;
  /** Default 2, grown while memory and 5% of the dataset's voxels allow. */
  batchSize?: number;
  /** Channels at level 0 (default 32, as nnU-Net). */
  baseChannels?: number;
  /** Feature cap of the planned network (default 320, as nnU-Net); also caps today's depth. */
  maxChannels?: number;
  /** Today's UNet3D depth (default: as deep as the patch and the channel cap allow). */
  depth?: number;
  /** Most levels of the planned network (default 8). */
  maxLevels?: number;
  /** Convolutions per block (default 2). */
  convsPerLevel?: number;
  /** Input channels (default 1). */
  inChannels?: number;
  /** The network to train (default `unet3d`; see {@link Plan.network}). */
  network?: PlanNetwork;
  /** GPU memory for training, bytes (default 4 GiB). */
  gpuMemoryBytes?: number;
  /** The adapter's limits, bytes (default: WebGPU's guaranteed 128 MiB and 256 MiB). */
  maxStorageBufferBindingSize?: number;
  maxBufferSize?: number;
  /** Size epochs × itersPerEpoch (and, when too slow, base and patch) to this many seconds. */
  timeBudgetSeconds?: number;
  spentSeconds?: number;
  overheadSeconds?: number;
  /** Seconds one validation takes (default 0). */
  validationSeconds?: number;
  valEvery?: number;
  /** Measured milliseconds per training step of a candidate (default: a FLOP estimate). */
  msPerStep?: (candidate: StepCandidate) => number;
  /** Effective training FLOP/s for the estimate when `msPerStep` is absent (default 1e12). */
  flopsPerSecond?: number;
  /** Fewest useful optimizer steps (default 250). */
  minSteps?: number;
  /** Without a budget: the epochs to plan; with one: the most epochs (default 1000). */
  epochs?: number;
  /** Without a budget: the steps per epoch; with one: the preferred steps (default 250). */
  itersPerEpoch?: number;
}

/** One configuration of today's network a time budget may choose. */
export interface StepCandidate {
  baseChannels: number;
  depth: number;
  /** D, H, W. */
  patchSize: Shape3;
  batchSize: number;
}

/**
 * Plans training for a fingerprinted dataset (training and validation cases; test cases only
 * when there are no others). Every choice can be fixed through `options`.
 *
 * @example
 * const p = plan(await fingerprintDataset(dataset), { gpuMemoryBytes: 8 * 2 ** 30 });
 * const config = resolveConfig(file, { ...planOverrides(p), ...flags });
 */
export function plan(fp: Fingerprint, options: PlanOptions = {}): Plan {
  const training = fp.cases.filter((c) => c.split !== "test");
  const cases = training.length ? training : fp.cases;
  if (cases.length === 0) throw new RangeError(`dataset "${fp.name}" has no cases to plan for`);
  const verdicts = fp.cases.map((c) => ({ id: c.id, ...detectIntensityConvention(c.image) }));
  const conventions: Record<string, IntensityConvention> = Object.fromEntries(
    verdicts.map((v) => [v.id, v.convention]),
  );
  const modality = inferModality(fp.modality, Object.values(conventions));
  const spacing = options.targetSpacingMm
    ? { spacingMm: options.targetSpacingMm, reason: "given" }
    : planSpacing(cases.map((c) => c.spacingMm));
  const medianShape = medianResampledShape(cases, spacing.spacingMm);
  const intensities = planNormalisation(fp, modality, conventions, options);
  const limits = limitsFrom(options);
  const resampledVoxels = cases.reduce(
    (s, c) => s + voxels(c.shape.map((n, a) => (n * c.spacingMm[a]) / spacing.spacingMm[a])),
    0,
  );
  const nets = planNetworks(fp.classes.length, spacing.spacingMm, medianShape, limits, options);
  const batchSize = options.batchSize ?? growBatch(nets.unet3d, resampledVoxels, limits);
  const base: Plan = {
    format: PLAN_FORMAT,
    version: PLAN_VERSION,
    dataset: {
      name: fp.name,
      classes: [...fp.classes],
      cases: fp.cases.length,
      trainingCases: cases.length,
    },
    modality,
    targetSpacingMm: spacing.spacingMm,
    medianShape,
    normalisation: intensities.normalisation,
    topology: nets.topology,
    unet3d: { ...nets.unet3d, memory: unet3dMemory(nets.unet3d, batchSize, limits) },
    batchSize,
    limits,
    epochs: options.epochs ?? null,
    itersPerEpoch: options.itersPerEpoch ?? null,
    budget: null,
    reasons: {
      modality: modality.reason,
      conventions: conventionSummary(verdicts),
      spacing: spacing.reason,
      normalisation: intensities.normalisation.reason,
      topology: nets.topologyReason,
      unet3d: nets.unet3dReason,
      batch: options.batchSize !== undefined ? "given" : batchReason(batchSize),
      schedule: options.epochs || options.itersPerEpoch
        ? "given"
        : "no time budget: the trainer's defaults",
    },
    notes: [...intensities.notes, ...nets.notes],
    ...(options.network ? { network: options.network } : {}),
  };
  return options.timeBudgetSeconds === undefined ? base : budgetPlan(base, options);
}

function limitsFrom(o: PlanOptions): PlanLimits {
  const d = DEFAULT_PLAN_LIMITS;
  return {
    gpuMemoryBytes: o.gpuMemoryBytes ?? d.gpuMemoryBytes,
    maxStorageBufferBindingSize: o.maxStorageBufferBindingSize ?? d.maxStorageBufferBindingSize,
    maxBufferSize: o.maxBufferSize ?? d.maxBufferSize,
  };
}

function voxels(s: number[]): number {
  return s[0] * s[1] * s[2];
}

function conventionSummary(verdicts: { id: string; convention: string; reason: string }[]) {
  const groups = new Map<string, string[]>();
  for (const v of verdicts) {
    groups.set(v.convention, [...(groups.get(v.convention) ?? []), `${v.id}: ${v.reason}`]);
  }
  return [...groups].map(([c, ids]) => `${ids.length} ${c} (e.g. ${ids[0]})`).join("; ");
}

function batchReason(batch: number): string {
  return batch > 2
    ? `grown from 2 while memory and 5% of the dataset's voxels per step allow`
    : "nnU-Net's minimum of 2";
}

/** The deepest UNet3D whose bottleneck stays within the channel cap. */
function depthCap(base: number, maxChannels: number): number {
  return Math.max(1, Math.min(8, 1 + Math.floor(Math.log2(maxChannels / base))));
}

/** The planned topology, then today's UNet3D, each fitted to memory at batch 2 (or as given). */
function planNetworks(
  classes: number,
  spacingMm: Shape3,
  median: Shape3,
  limits: PlanLimits,
  o: PlanOptions,
) {
  const base = o.baseChannels ?? 32, maxChannels = o.maxChannels ?? 320;
  const shape = {
    inChannels: o.inChannels ?? 1,
    classes,
    convsPerLevel: o.convsPerLevel ?? 2,
    deepSupervision: true,
  };
  const batch = o.batchSize ?? 2, fixed = o.patchSize !== undefined;
  const topo = (p: Shape3) => {
    const t = poolingTopology(spacingMm, p, {
      baseChannels: base,
      maxChannels,
      maxLevels: o.maxLevels ?? 8,
    });
    const memory = estimateTrainingMemory({ ...shape, levels: t.levels }, batch, limits);
    return { ...t, step: t.divisibleBy, memory: brief(memory) };
  };
  const t = fixed ? { result: topo(o.patchSize!), shrunk: false } : fitPatch(median, median, topo);
  const { step: _, ...fitted } = t.result;
  const topology: TopologyPlan = { ...fitted, maxChannels, batchSize: batch };
  const maxDepth = o.depth ?? depthCap(base, maxChannels);
  const build = (p: Shape3) => {
    const r = fixed
      ? { patchSize: p, depth: unet3dDepth(p, maxDepth) }
      : roundForUNet3D(p, maxDepth);
    const net = { ...shape, depth: o.depth ?? r.depth, baseChannels: base, patchSize: r.patchSize };
    const m = 2 ** (net.depth - 1);
    return { ...net, memory: unet3dMemory(net, batch, limits), step: [m, m, m] as Shape3 };
  };
  const start = fixed ? o.patchSize! : topology.patchSize;
  const u = fixed ? { result: build(start), shrunk: false } : fitPatch(start, median, build);
  const { step: __, ...unet3d } = u.result;
  const notes: string[] = [];
  for (const [name, r] of [["planned network", topology], ["UNet3D", unet3d]] as const) {
    if (!r.memory.fits) {
      notes.push(`${name}: patch ${r.patchSize.join("×")} does not fit the memory limits`);
    }
  }
  const how = fixed ? "given" : t.shrunk ? "median shape shrunk to fit memory" : "median shape";
  const pools = topology.divisibleBy.map((d) => Math.log2(d)).join(",");
  return {
    topology,
    unet3d,
    notes,
    topologyReason: `${topology.levels.length} levels for patch ${topology.patchSize.join("×")} ` +
      `(${how}); pools per axis (z,y,x) ${pools}; channels ≤ ${maxChannels}`,
    unet3dReason: `isotropic 2× pooling: depth ${unet3d.depth} keeps every patch edge divisible ` +
      `by ${2 ** (unet3d.depth - 1)} and ≥ 4 at the bottleneck` +
      (o.depth ? " (depth given)" : `, bottleneck ≤ ${maxChannels} channels`) +
      (fixed
        ? "; patch given"
        : u.shrunk
        ? "; the planned patch, shrunk further to fit memory"
        : "; the planned network's patch, rounded"),
  };
}

function brief(m: MemoryEstimate): MemoryEstimate {
  return { totalBytes: m.totalBytes, largestBufferBytes: m.largestBufferBytes, fits: m.fits };
}

function unet3dNet(u: Omit<UNet3DPlan, "memory">): NetworkShape {
  const { inChannels, classes, convsPerLevel } = u;
  return {
    inChannels,
    classes,
    convsPerLevel,
    levels: unet3dLevels(u.patchSize, u.depth, u.baseChannels),
    deepSupervision: true, // planOverrides trains every plan with deep supervision
  };
}

function unet3dMemory(
  u: Omit<UNet3DPlan, "memory">,
  batch: number,
  limits: PlanLimits,
): MemoryEstimate {
  return brief(estimateTrainingMemory(unet3dNet(u), batch, limits));
}

/** Grows the batch from 2 while memory and nnU-Net's 5%-of-the-dataset cap allow. */
function growBatch(u: UNet3DPlan, datasetVoxels: number, limits: PlanLimits): number {
  let batch = 2;
  if (!u.memory.fits) return batch;
  const patchVoxels = voxels(u.patchSize);
  while (batch < 512 && (batch + 1) * patchVoxels <= 0.05 * datasetVoxels) {
    if (!unet3dMemory(u, batch + 1, limits).fits) break;
    batch++;
  }
  return batch;
}

// ---------------------------------------------------------------------------------------------
// Time budget

/**
 * Today's network of a plan and smaller variants that fit its memory limits, costliest
 * (training FLOPs) first: the base halved twice (not below 8) and the patch halved in volume
 * up to three times (each edge × 2^(−1/3), kept divisible). Fixed choices stay fixed.
 */
export function budgetCandidates(
  p: Plan,
  fixed: Pick<PlanOptions, "baseChannels" | "patchSize" | "depth"> = {},
): StepCandidate[] {
  const u = p.unet3d;
  const bases = fixed.baseChannels !== undefined
    ? [u.baseChannels]
    : [u.baseChannels, u.baseChannels / 2, u.baseChannels / 4]
      .filter((b, i) => i === 0 || (Number.isInteger(b) && b >= 8));
  const seen = new Set<string>();
  const out: (StepCandidate & { flops: number })[] = [];
  for (const baseChannels of bases) {
    const maxDepth = fixed.depth ?? depthCap(baseChannels, p.topology.maxChannels);
    for (let k = 0; k <= (fixed.patchSize ? 0 : 3); k++) {
      const r = k === 0 && baseChannels === u.baseChannels ? u : roundForUNet3D(
        u.patchSize.map((e) => Math.max(8, e * 2 ** (-k / 3))) as Shape3,
        maxDepth,
      );
      const depth = fixed.depth ?? r.depth;
      const c = { baseChannels, depth, patchSize: r.patchSize, batchSize: p.batchSize };
      const key = JSON.stringify(c);
      if (seen.has(key)) continue;
      seen.add(key);
      const net = unet3dNet({ ...u, ...c });
      const fits = estimateTrainingMemory(net, p.batchSize, p.limits).fits;
      if (fits || out.length === 0) out.push({ ...c, flops: stepFlops(net, p.batchSize) });
    }
  }
  return out.sort((a, b) => b.flops - a.flops).map(({ flops: _, ...c }) => c);
}

/**
 * The plan with a budget choice applied: today's network becomes the chosen candidate, epochs
 * and itersPerEpoch come from the choice, and the reason is recorded.
 */
export function applyBudget(
  p: Plan,
  choice: BudgetChoice<StepCandidate>,
  budgetSeconds: number,
  timing: "measured" | "estimated",
): Plan {
  const c = choice.candidate;
  const u = { ...p.unet3d, baseChannels: c.baseChannels, depth: c.depth, patchSize: c.patchSize };
  const changed = c.baseChannels !== p.unet3d.baseChannels ||
    c.patchSize.some((e, i) => e !== p.unet3d.patchSize[i]);
  return {
    ...p,
    unet3d: { ...u, memory: unet3dMemory(u, c.batchSize, p.limits) },
    batchSize: c.batchSize,
    epochs: choice.epochs,
    itersPerEpoch: choice.itersPerEpoch,
    budget: {
      budgetSeconds,
      msPerStep: choice.msPerStep,
      timing,
      steps: choice.steps,
      estimatedSeconds: choice.estimatedSeconds,
      reason: choice.reason,
    },
    reasons: {
      ...p.reasons,
      unet3d: p.reasons.unet3d + (changed ? "; made smaller to train enough steps in time" : ""),
      schedule: choice.reason,
    },
  };
}

/** {@link plan}'s budget step: candidates timed by `msPerStep`, or estimated from FLOPs. */
function budgetPlan(p: Plan, o: PlanOptions): Plan {
  const rate = o.flopsPerSecond ?? 1e12;
  const estimate = (c: StepCandidate) =>
    (1000 * stepFlops(unet3dNet({ ...p.unet3d, ...c }), c.batchSize)) / rate;
  const choice = sizeForBudget({
    budgetSeconds: o.timeBudgetSeconds!,
    spentSeconds: o.spentSeconds,
    overheadSeconds: o.overheadSeconds,
    candidates: budgetCandidates(p, o),
    msPerStep: o.msPerStep ?? estimate,
    validationSeconds: o.validationSeconds,
    valEvery: o.valEvery,
    minSteps: o.minSteps,
    itersPerEpoch: o.itersPerEpoch,
    maxEpochs: o.epochs,
    describe: describeCandidate,
  });
  const out = applyBudget(p, choice, o.timeBudgetSeconds!, o.msPerStep ? "measured" : "estimated");
  if (!o.msPerStep) {
    out.notes = [
      ...out.notes,
      `step time estimated at ${rate.toExponential(1)} FLOP/s; measure it for a real budget`,
    ];
  }
  return out;
}

/** Training FLOPs of one optimizer step of a candidate of the plan's network. */
export function candidateFlops(p: Plan, c: StepCandidate): number {
  return stepFlops(unet3dNet({ ...p.unet3d, ...c }), c.batchSize);
}

/** A candidate in a reason string. */
export function describeCandidate(c: StepCandidate): string {
  return `base ${c.baseChannels}, depth ${c.depth}, patch ${
    c.patchSize.join("×")
  }, batch ${c.batchSize}`;
}

// ---------------------------------------------------------------------------------------------
// Output

/**
 * The plan as the trainer's dotted flags (`resolveConfig(file, flags)`): model shape, patch,
 * batch, normalisation and, when planned, epochs and itersPerEpoch. `ct-zscore`'s moments and
 * the per-case HU maps have no flag: the trainer takes them from the plan (run_plan.ts).
 *
 * @example
 * planOverrides(p) // { "model.depth": "4", "data.patchSize": "32,64,64", … }
 */
export function planOverrides(p: Plan): Record<string, string> {
  if (p.network === "plain") return { ...plainOverrides(p), ...scheduleOverrides(p) };
  const u = p.unet3d;
  const flags: Record<string, string> = {
    "model.inChannels": String(u.inChannels),
    "model.classes": String(u.classes),
    "model.baseChannels": String(u.baseChannels),
    "model.depth": String(u.depth),
    "model.convsPerLevel": String(u.convsPerLevel),
    "data.patchSize": u.patchSize.join(","),
    "data.batchSize": String(p.batchSize),
    // nnU-Net trains with deep supervision; it changes nothing below depth 4 (one scale).
    "model.deepSupervision": "true",
  };
  return { ...flags, ...normalisationOverrides(p), ...scheduleOverrides(p) };
}

/**
 * The planned topology as nnU-Net's PlainConvUNet (`--model.arch plain`): per-stage strides
 * and kernels, instance norm and leaky ReLU, deep supervision, the topology's patch.
 */
function plainOverrides(p: Plan): Record<string, string> {
  const t = p.topology;
  const stages = (f: (l: (typeof t.levels)[number]) => number[]) =>
    t.levels.map((l) => f(l).join(",")).join("/");
  return {
    "model.arch": "plain",
    "model.inChannels": String(p.unet3d.inChannels),
    "model.classes": String(p.unet3d.classes),
    "model.depth": String(t.levels.length),
    "model.baseChannels": String(t.levels[0].channels),
    "model.maxChannels": String(t.maxChannels),
    "model.strides": stages((l) => l.stride),
    "model.kernels": stages((l) => l.kernel),
    "model.convsPerLevel": String(p.unet3d.convsPerLevel),
    "model.norm": "instance",
    "model.activation": "leaky_relu",
    "model.deepSupervision": "true",
    "data.patchSize": t.patchSize.join(","),
    "data.batchSize": String(t.batchSize),
    ...normalisationOverrides(p),
  };
}

function normalisationOverrides(p: Plan): Record<string, string> {
  const n = p.normalisation;
  if (n.scheme === "ct-window" && n.window) {
    return { "data.normalisation": "ct-window", "data.window": n.window.join(",") };
  }
  return { "data.normalisation": n.scheme === "zscore-per-case" ? "zscore-case" : "zscore" };
}

function scheduleOverrides(p: Plan): Record<string, string> {
  const flags: Record<string, string> = {};
  if (p.epochs !== null) flags.epochs = String(p.epochs);
  if (p.itersPerEpoch !== null) flags.itersPerEpoch = String(p.itersPerEpoch);
  if (p.budget?.valEvery) flags.valEvery = String(p.budget.valEvery);
  return flags;
}

/** A readable table of the plan's choices and why, for `voxseg plan`. */
export function formatPlanTable(p: Plan): string {
  const x = (s: number[]) => s.map(num).join("×");
  const u = p.unet3d, t = p.topology, r = p.reasons;
  const schedule = p.epochs !== null || p.itersPerEpoch !== null
    ? `${p.epochs ?? "default"} epochs × ${p.itersPerEpoch ?? "default"} steps`
    : "trainer defaults";
  const rows: [string, string, string][] = [
    [
      "dataset",
      `${p.dataset.name}: ${p.dataset.cases} cases`,
      `${p.dataset.trainingCases} planned on`,
    ],
    ["classes", p.dataset.classes.join(", "), ""],
    ["modality", p.modality.isCT ? "CT" : p.modality.modality, r.modality],
    ["intensities", conventionCounts(p.normalisation.conventions), r.conventions],
    ["spacing", `${x(p.targetSpacingMm)} mm`, r.spacing],
    ["median shape", x(p.medianShape), "median case after resampling"],
    ["normalisation", normalisationText(p.normalisation), r.normalisation],
    ["planned net", `${t.levels.length} levels, patch ${x(t.patchSize)}`, r.topology],
    ...t.levels.map((l, i): [string, string, string] => [
      `  level ${i}`,
      `stride ${x(l.stride)}, kernel ${x(l.kernel)}, ${l.channels} ch`,
      `features ${x(l.featureShape)}`,
    ]),
    ["  memory", memoryText(t.memory), `batch ${t.batchSize}, ${limitText(p)}`],
    ["UNet3D", `depth ${u.depth}, base ${u.baseChannels}, patch ${x(u.patchSize)}`, r.unet3d],
    ["  memory", memoryText(u.memory), `batch ${p.batchSize}, ${limitText(p)}`],
    ["batch", String(p.batchSize), r.batch],
    ["schedule", schedule, r.schedule],
  ];
  const w0 = Math.max(...rows.map((row) => row[0].length));
  const w1 = Math.max(...rows.map((row) => row[1].length));
  const lines = rows.map(([a, b, c]) => `${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c}`.trimEnd());
  return [...lines, ...p.notes.map((note) => `note: ${note}`)].join("\n");
}

function memoryText(m: MemoryEstimate): string {
  const tooBig = m.fits ? "" : " — too big";
  return `${bytes(m.totalBytes)}, largest buffer ${bytes(m.largestBufferBytes)}${tooBig}`;
}

function limitText(p: Plan): string {
  const l = p.limits;
  return `limits ${bytes(l.gpuMemoryBytes)} / buffer ` +
    bytes(Math.min(l.maxStorageBufferBindingSize, l.maxBufferSize));
}

function normalisationText(n: PlanNormalisation): string {
  const maps = Object.keys(n.huMaps).length;
  const extra = maps ? ` (+${maps} cases mapped onto HU)` : "";
  if (n.scheme === "ct-window" && n.window) {
    return `ct-window ${n.window[0]}..${n.window[1]} HU${extra}`;
  }
  if (n.scheme === "ct-zscore" && n.zscore) {
    return `ct-zscore ${num(n.zscore.clipLo)}..${num(n.zscore.clipHi)} HU${extra}`;
  }
  return n.scheme + extra;
}

function conventionCounts(conventions: Record<string, IntensityConvention>): string {
  const counts = new Map<string, number>();
  for (const c of Object.values(conventions)) counts.set(c, (counts.get(c) ?? 0) + 1);
  return [...counts].map(([c, k]) => `${k} ${c}`).join(", ");
}

function bytes(b: number): string {
  return b >= GiB ? `${(b / GiB).toFixed(2)} GiB` : `${(b / MiB).toFixed(1)} MiB`;
}
