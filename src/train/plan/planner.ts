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
  channelFingerprint,
  detectIntensityConvention,
  type Fingerprint,
  fingerprintChannels,
  type IntensityConvention,
} from "../../data/fingerprint.ts";
import type { Shape3 } from "../../data/volume.ts";
import { type BudgetChoice, sizeForBudget } from "./budget.ts";
import { type NormalisationOptions, planChannels } from "./normalisation.ts";
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
  type LevelPlan,
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
  /** Input channels (default: the fingerprint's; it must agree). */
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

/**
 * One configuration of the plan's network a time budget may choose: today's UNet3D, or — with
 * `strides` and `kernels` — nnU-Net's PlainConvUNet (`depth` stages of the planned topology).
 */
export interface StepCandidate {
  baseChannels: number;
  depth: number;
  /** D, H, W. */
  patchSize: Shape3;
  batchSize: number;
  /** PlainConvUNet only: each stage's stride into it (z, y, x), stage 0's 1,1,1. */
  strides?: Shape3[];
  /** PlainConvUNet only: each stage's convolution kernel (z, y, x). */
  kernels?: Shape3[];
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
  const inChannels = fingerprintChannels(fp);
  if (options.inChannels !== undefined && options.inChannels !== inChannels) {
    throw new RangeError(
      `inChannels ${options.inChannels} differs from the dataset's ${inChannels} image ` +
        "channel(s); leave it out, the plan takes the dataset's",
    );
  }
  // Each channel decided on its own (one channel: as the dataset's intensities say).
  const planned = planChannels(fp, options);
  const { modality } = planned.channels[0];
  const intensities = { normalisation: planned.channels[0].normalisation, notes: planned.notes };
  const verdicts = channelFingerprint(fp, 0).cases.map((c) => ({
    id: c.id,
    ...detectIntensityConvention(c.image),
  }));
  const spacing = options.targetSpacingMm
    ? { spacingMm: options.targetSpacingMm, reason: "given" }
    : planSpacing(cases.map((c) => c.spacingMm));
  const medianShape = medianResampledShape(cases, spacing.spacingMm);
  const limits = limitsFrom(options);
  const resampledVoxels = cases.reduce(
    (s, c) => s + voxels(c.shape.map((n, a) => (n * c.spacingMm[a]) / spacing.spacingMm[a])),
    0,
  );
  const nets = planNetworks(fp.classes.length, spacing.spacingMm, medianShape, limits, {
    ...options,
    inChannels,
  });
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
    ...(inChannels > 1 ? { channels: planned.channels } : {}),
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
      normalisation: inChannels > 1
        ? planned.channels.map((c, k) => `channel ${k} (${c.name}): ${c.normalisation.reason}`)
          .join("; ")
        : intensities.normalisation.reason,
      ...(inChannels > 1
        ? {
          channels: `${inChannels} input channels, each normalised by its own scheme: ` +
            planned.channels.map((c, k) =>
              `channel ${k} (${c.name}) by ${
                c.decidedBy === "channel_names" ? "its name" : "its intensities"
              }`
            ).join(", "),
        }
        : {}),
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
 * The plan's network and smaller variants that fit its memory limits, costliest (training
 * FLOPs) first: the base halved twice (not below 8) and the patch halved in volume up to three
 * times (each edge × 2^(−1/3)), the depth following the patch. Today's UNet3D keeps the patch
 * divisible by 2^(depth − 1); the plain network (`network: "plain"`) re-plans nnU-Net's
 * topology (per-axis strides and kernels, fewer stages as the patch shrinks, never more than
 * planned) for each patch. Fixed choices stay fixed (`maxLevels` caps the plain network's
 * stages).
 */
export function budgetCandidates(
  p: Plan,
  fixed: Pick<PlanOptions, "baseChannels" | "patchSize" | "depth" | "maxLevels"> = {},
): StepCandidate[] {
  const plain = p.network === "plain";
  const planned = plain ? plainCandidate(p) : { ...p.unet3d, batchSize: p.batchSize };
  const base0 = planned.baseChannels;
  const bases = fixed.baseChannels !== undefined
    ? [base0]
    : [base0, base0 / 2, base0 / 4].filter((b, i) => i === 0 || (Number.isInteger(b) && b >= 8));
  const seen = new Set<string>();
  const out: (StepCandidate & { flops: number })[] = [];
  for (const baseChannels of bases) {
    for (let k = 0; k <= (fixed.patchSize ? 0 : 3); k++) {
      const c: StepCandidate = plain
        ? smallerPlain(p, planned, baseChannels, k, fixed.maxLevels)
        : smallerUNet3D(p, baseChannels, k, fixed.depth);
      const key = JSON.stringify(c);
      if (seen.has(key)) continue;
      seen.add(key);
      const net = candidateNet(p, c);
      const fits = estimateTrainingMemory(net, c.batchSize, p.limits).fits;
      if (fits || out.length === 0) out.push({ ...c, flops: stepFlops(net, c.batchSize) });
    }
  }
  return out.sort((a, b) => b.flops - a.flops).map(({ flops: _, ...c }) => c);
}

/** Today's UNet3D of the plan at `baseChannels`, its patch's volume halved `k` times. */
function smallerUNet3D(
  p: Plan,
  baseChannels: number,
  k: number,
  fixedDepth: number | undefined,
): StepCandidate {
  const u = p.unet3d;
  const maxDepth = fixedDepth ?? depthCap(baseChannels, p.topology.maxChannels);
  const r = k === 0 && baseChannels === u.baseChannels ? u : roundForUNet3D(
    u.patchSize.map((e) => Math.max(8, e * 2 ** (-k / 3))) as Shape3,
    maxDepth,
  );
  return {
    baseChannels,
    depth: fixedDepth ?? r.depth,
    patchSize: r.patchSize,
    batchSize: p.batchSize,
  };
}

/** The plan's planned topology as a PlainConvUNet candidate. */
function plainCandidate(p: Plan): StepCandidate {
  const t = p.topology;
  return {
    baseChannels: t.levels[0].channels,
    depth: t.levels.length,
    patchSize: [...t.patchSize],
    batchSize: t.batchSize,
    strides: t.levels.map((l) => [...l.stride] as Shape3),
    kernels: t.levels.map((l) => [...l.kernel] as Shape3),
  };
}

/**
 * The planned topology re-planned (nnU-Net's rules at the plan's spacing) for the patch's volume
 * halved `k` times, at `baseChannels`, with at most the planned number of stages.
 */
function smallerPlain(
  p: Plan,
  planned: StepCandidate,
  baseChannels: number,
  k: number,
  maxLevels: number | undefined,
): StepCandidate {
  if (k === 0 && baseChannels === planned.baseChannels) return planned;
  const patch = planned.patchSize.map((e) =>
    k === 0 ? e : Math.max(8, Math.floor(e * 2 ** (-k / 3)))
  ) as Shape3;
  const t = poolingTopology(p.targetSpacingMm, patch, {
    baseChannels,
    maxChannels: p.topology.maxChannels,
    maxLevels: Math.min(maxLevels ?? planned.depth, planned.depth),
  });
  return {
    baseChannels,
    depth: t.levels.length,
    patchSize: t.patchSize,
    batchSize: planned.batchSize,
    strides: t.levels.map((l) => l.stride),
    kernels: t.levels.map((l) => l.kernel),
  };
}

/** A PlainConvUNet candidate's levels: channels doubling from its base, capped as planned. */
function plainLevels(c: StepCandidate, maxChannels: number): LevelPlan[] {
  const cumulative: Shape3 = [1, 1, 1];
  return c.strides!.map((stride, l): LevelPlan => {
    for (let a = 0; a < 3; a++) cumulative[a] *= stride[a];
    return {
      stride: [...stride] as Shape3,
      kernel: [...c.kernels![l]] as Shape3,
      channels: Math.min(c.baseChannels * 2 ** l, maxChannels),
      featureShape: c.patchSize.map((e, a) => e / cumulative[a]) as Shape3,
    };
  });
}

/** A candidate as the memory and FLOP estimates see it. */
function candidateNet(p: Plan, c: StepCandidate): NetworkShape {
  if (!c.strides) return unet3dNet({ ...p.unet3d, ...c });
  const { inChannels, classes, convsPerLevel } = p.unet3d;
  return {
    inChannels,
    classes,
    convsPerLevel,
    levels: plainLevels(c, p.topology.maxChannels),
    deepSupervision: true,
  };
}

/**
 * The plan training candidate `c` instead of its network: today's UNet3D (and the batch)
 * replaced, or — for a plain candidate — the planned topology, which the plain network trains.
 */
export function withCandidate(p: Plan, c: StepCandidate): Plan {
  if (c.strides) {
    const levels = plainLevels(c, p.topology.maxChannels);
    const divisibleBy = [0, 1, 2].map((a) => levels.reduce((m, l) => m * l.stride[a], 1)) as Shape3;
    return {
      ...p,
      topology: {
        ...p.topology,
        patchSize: [...c.patchSize],
        batchSize: c.batchSize,
        divisibleBy,
        levels,
        memory: brief(estimateTrainingMemory(candidateNet(p, c), c.batchSize, p.limits)),
      },
    };
  }
  const u = { ...p.unet3d, baseChannels: c.baseChannels, depth: c.depth, patchSize: c.patchSize };
  return {
    ...p,
    unet3d: { ...u, memory: unet3dMemory(u, c.batchSize, p.limits) },
    batchSize: c.batchSize,
  };
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
  const before = c.strides ? plainCandidate(p) : p.unet3d;
  const changed = c.baseChannels !== before.baseChannels || c.depth !== before.depth ||
    c.patchSize.some((e, i) => e !== before.patchSize[i]);
  const smaller = changed ? "; made smaller to train enough steps in time" : "";
  return {
    ...withCandidate(p, c),
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
      ...(c.strides
        ? { topology: p.reasons.topology + smaller }
        : { unet3d: p.reasons.unet3d + smaller }),
      schedule: choice.reason,
    },
  };
}

/** {@link plan}'s budget step: candidates timed by `msPerStep`, or estimated from FLOPs. */
function budgetPlan(p: Plan, o: PlanOptions): Plan {
  const rate = o.flopsPerSecond ?? 1e12;
  const estimate = (c: StepCandidate) => (1000 * candidateFlops(p, c)) / rate;
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
  return stepFlops(candidateNet(p, c), c.batchSize);
}

/** A candidate in a reason string. */
export function describeCandidate(c: StepCandidate): string {
  const net = c.strides
    ? `plain, ${c.depth} stages, base ${c.baseChannels}`
    : `base ${c.baseChannels}, depth ${c.depth}`;
  return `${net}, patch ${c.patchSize.join("×")}, batch ${c.batchSize}`;
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
  const kinds = (p.channels ?? [{ normalisation: p.normalisation }]).map((c) => {
    const n = c.normalisation;
    return n.scheme === "ct-window" && n.window
      ? "ct-window"
      : n.scheme === "zscore-per-case"
      ? "zscore-case"
      : "zscore";
  });
  // The exact normalisations reach the trainer apart (run_plan.ts: planChannelNormalizations);
  // the flags name them as closely as one kind can: one kind for every channel, else `auto`
  // (the CT window for CT channels, z-score per case for the others).
  const kind = kinds.every((k) => k === kinds[0]) ? kinds[0] : "auto";
  const window = [p.normalisation, ...(p.channels ?? []).map((c) => c.normalisation)]
    .find((n) => n.scheme === "ct-window" && n.window)?.window;
  return {
    "data.normalisation": kind,
    ...(window && (kind === "ct-window" || kind === "auto")
      ? { "data.window": window.join(",") }
      : {}),
  };
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
  const normalisationRow: [string, string, string] = [
    "normalisation",
    normalisationText(p.normalisation),
    r.normalisation,
  ];
  const rows: [string, string, string][] = [
    [
      "dataset",
      `${p.dataset.name}: ${p.dataset.cases} cases`,
      `${p.dataset.trainingCases} planned on`,
    ],
    ["classes", p.dataset.classes.join(", "), ""],
    ...channelRows(p),
    ["spacing", `${x(p.targetSpacingMm)} mm`, r.spacing],
    ["median shape", x(p.medianShape), "median case after resampling"],
    // Several channels: each channel's normalisation is in its rows above.
    ...(p.channels ? [] : [normalisationRow]),
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

/**
 * The modality, intensity and (several channels) per-channel normalisation rows of the table:
 * for each channel its name, what decided it, its intensity conventions and its scheme, with
 * the reasons.
 */
function channelRows(p: Plan): [string, string, string][] {
  const r = p.reasons;
  if (!p.channels) {
    return [
      ["modality", p.modality.isCT ? "CT" : p.modality.modality, r.modality],
      ["intensities", conventionCounts(p.normalisation.conventions), r.conventions],
    ];
  }
  return [
    [
      "channels",
      `${p.channels.length}: ${p.channels.map((c) => c.name).join(", ")}`,
      r.channels ?? "",
    ],
    ...p.channels.flatMap((c, k): [string, string, string][] => [
      [
        `  channel ${k}`,
        `${c.name}: ${c.modality.isCT ? "CT" : c.modality.modality}`,
        `${c.decidedBy === "channel_names" ? "by name" : "by intensities"}: ${c.modality.reason}`,
      ],
      [
        "    intensities",
        conventionCounts(c.normalisation.conventions),
        "each case's convention (HU, 0..255, 0..1, other)",
      ],
      ["    normalisation", normalisationText(c.normalisation), c.normalisation.reason],
    ]),
  ];
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
