/**
 * Instance norm and batch norm (affine), forward and backward.
 *
 * Both normalise x [N, C, …spatial] by a mean and biased variance per statistics group:
 * per (n, c) for instance norm, per channel over N and space for batch norm. The statistics
 * travel as one tensor `stats` [groups, 2] of (mean, 1/sqrt(var + eps)), saved for backward.
 * The stages of `shaders/norm.wgsl` are documented there; this file plans the chunking of
 * the two-pass reductions and binds buffers.
 */

import normWgsl from "../../shaders/norm.wgsl" with { type: "text" };
import { defineKernel, gpu, grid1d, recorder, Tensor } from "../gpu/mod.ts";
import { assertSameShape, numel } from "./shape.ts";

export const normKernel = defineKernel({
  name: "norm",
  body: normWgsl,
  uniforms: {
    groups: "u32",
    channels: "u32",
    spatial: "u32",
    slabStride: "u32",
    chunk: "u32",
    chunks: "u32",
    parts: "u32",
    count: "u32",
    total: "u32",
    perChannel: "u32",
    groupsPerChannel: "u32",
    flags: "u32",
    eps: "f32",
    momentum: "f32",
  },
  bindings: [
    { name: "x", access: "read" },
    { name: "gy", access: "read" },
    { name: "gamma", access: "read" },
    { name: "beta", access: "read" },
    { name: "stats", access: "read_write" },
    { name: "part", access: "read_write" },
    { name: "out", access: "read_write" },
    { name: "out2", access: "read_write" },
  ],
  workgroupSize: 256,
  constants: { STAGE: 0 },
});

/** Elements one workgroup reduces in a partial pass (16 per invocation). */
const CHUNK = normKernel.workgroupSize * 16;

const Stage = {
  statsPartial: 0,
  statsFinal: 1,
  runningStats: 2,
  normalize: 3,
  gradPartial: 4,
  gradFinal: 5,
  affineGrad: 6,
  inputGrad: 7,
} as const;

const Flag = { hasGamma: 1, hasBeta: 2, updateRunning: 4, batchStats: 8 } as const;

/** Instance norm keeps statistics per (n, c); batch norm per channel. */
export type NormKind = "instance" | "batch";

type Uniforms = Parameters<typeof normKernel.packUniforms>[2];

/** Uniforms describing x's statistics groups and their chunking (flags, eps, momentum 0). */
function plan(shape: readonly number[], kind: NormKind): Uniforms {
  const [n, c] = shape;
  const spatial = numel(shape.slice(2));
  const slabs = kind === "instance" ? 1 : n;
  const chunks = Math.max(1, Math.ceil(spatial / CHUNK));
  return {
    groups: kind === "instance" ? n * c : c,
    channels: c,
    spatial,
    slabStride: c * spatial,
    chunk: CHUNK,
    chunks,
    parts: slabs * chunks,
    count: slabs * spatial,
    total: n * c * spatial,
    perChannel: kind === "instance" ? 0 : 1,
    groupsPerChannel: kind === "instance" ? n : 1,
    flags: 0,
    eps: 0,
    momentum: 0,
  };
}

let unused: GPUBuffer | undefined;

/** A small buffer for read-write bindings a stage leaves unused. */
function unusedBuffer(): GPUBuffer {
  return unused ??= gpu().device.createBuffer({
    label: "norm: unused binding",
    size: 256,
    usage: GPUBufferUsage.STORAGE,
  });
}

interface Buffers {
  x: Tensor;
  gy?: Tensor;
  gamma?: Tensor | null;
  beta?: Tensor | null;
  stats?: Tensor;
  part?: Tensor;
  out?: Tensor;
  out2?: Tensor;
}

/**
 * Records one stage over `grid` (a workgroup per statistics part, or {@link normKernel}'s grid
 * for a thread per value). Unused read bindings get x's buffer, unused writable ones a dummy.
 */
function stage(
  which: keyof typeof Stage,
  u: Uniforms,
  b: Buffers,
  grid: readonly [number, number, number],
): void {
  const ro = (t?: Tensor | null) => (t ?? b.x).buffer;
  const rw = (t?: Tensor) => t?.buffer ?? unusedBuffer();
  recorder().dispatch(
    normKernel,
    u,
    [ro(b.x), ro(b.gy), ro(b.gamma), ro(b.beta), rw(b.stats), rw(b.part), rw(b.out), rw(b.out2)],
    grid,
    { STAGE: Stage[which] },
  );
}

const fmt = (s: readonly number[]) => `[${s.join(", ")}]`;

function checkPerChannel(op: string, what: string, t: Tensor | null | undefined, x: Tensor) {
  if (t && (t.shape.length !== 1 || t.shape[0] !== x.shape[1])) {
    throw new Error(
      `${op}: ${what} must be [${x.shape[1]}] (one per channel of x ${fmt(x.shape)}), ` +
        `got ${fmt(t.shape)}`,
    );
  }
}

function checkInput(op: string, x: Tensor, minRank: number) {
  if (x.shape.length < minRank) {
    const dims = minRank === 2 ? "[N, C, …]" : "[N, C, D, …]";
    throw new Error(`${op}: x must be ${dims}, got ${fmt(x.shape)}`);
  }
}

/** Computes batch statistics of x into a new stats tensor, optionally updating running ones. */
function batchStats(
  x: Tensor,
  u: Uniforms,
  running?: { mean: Tensor; var: Tensor; momentum: number },
): Tensor {
  const stats = new Tensor([u.groups, 2]);
  const part = new Tensor([u.groups * u.parts * 3]);
  const uu = {
    ...u,
    flags: running ? Flag.updateRunning : 0,
    momentum: running?.momentum ?? 0,
  };
  stage("statsPartial", uu, { x, stats, part }, grid1d(u.groups * u.parts));
  stage(
    "statsFinal",
    uu,
    { x, stats, part, out: running?.mean, out2: running?.var },
    grid1d(u.groups),
  );
  part.dispose();
  return stats;
}

function normalize(
  x: Tensor,
  gamma: Tensor | null,
  beta: Tensor | null,
  stats: Tensor,
  u: Uniforms,
): Tensor {
  const y = new Tensor(x.shape);
  const flags = (gamma ? Flag.hasGamma : 0) | (beta ? Flag.hasBeta : 0);
  stage(
    "normalize",
    { ...u, flags },
    { x, gamma, beta, stats, out: y },
    normKernel.grid(u.total),
  );
  return y;
}

/**
 * Instance norm of x [N, C, D, …]: each (n, c) volume normalised by its own mean and biased
 * variance, then scaled by gamma [C] and shifted by beta [C] (either may be null).
 * Returns y and `stats` [N·C, 2] (mean, inverse std) for {@link normBackward}.
 */
export function instanceNorm(
  x: Tensor,
  gamma: Tensor | null,
  beta: Tensor | null,
  eps = 1e-5,
): { y: Tensor; stats: Tensor } {
  checkInput("instanceNorm", x, 3);
  checkPerChannel("instanceNorm", "gamma", gamma, x);
  checkPerChannel("instanceNorm", "beta", beta, x);
  const u = { ...plan(x.shape, "instance"), eps };
  const stats = batchStats(x, u);
  return { y: normalize(x, gamma, beta, stats, u), stats };
}

export interface BatchNormOptions {
  eps?: number;
  momentum?: number;
  /** Normalise with batch statistics (true, default) or with the running ones (false). */
  training?: boolean;
  /** Per-channel running mean [C], updated in place in training mode. */
  runningMean?: Tensor;
  /** Per-channel running variance [C] (unbiased), updated in place in training mode. */
  runningVar?: Tensor;
}

/**
 * Batch norm of x [N, C, …] per channel, with gamma [C] and beta [C] (either may be null).
 * Training mode uses the batch mean and biased variance over N and space and, when running
 * tensors are given, updates them like PyTorch: r ← (1 − momentum)·r + momentum·batch value,
 * with the unbiased variance for the running variance. Eval mode uses the running statistics.
 * Returns y and `stats` [C, 2] (mean, inverse std) for {@link normBackward}.
 */
export function batchNorm(
  x: Tensor,
  gamma: Tensor | null,
  beta: Tensor | null,
  opts: BatchNormOptions = {},
): { y: Tensor; stats: Tensor } {
  const { eps = 1e-5, momentum = 0.1, training = true, runningMean, runningVar } = opts;
  checkInput("batchNorm", x, 2);
  checkPerChannel("batchNorm", "gamma", gamma, x);
  checkPerChannel("batchNorm", "beta", beta, x);
  checkPerChannel("batchNorm", "runningMean", runningMean, x);
  checkPerChannel("batchNorm", "runningVar", runningVar, x);
  if (!runningMean !== !runningVar) {
    throw new Error("batchNorm: give both runningMean and runningVar, or neither");
  }
  const u = { ...plan(x.shape, "batch"), eps };
  let stats: Tensor;
  if (training) {
    if (u.count < 2) {
      throw new Error(
        `batchNorm: training needs more than one value per channel, x is ${fmt(x.shape)}`,
      );
    }
    const running = runningMean && runningVar
      ? { mean: runningMean, var: runningVar, momentum }
      : undefined;
    stats = batchStats(x, u, running);
  } else {
    if (!runningMean || !runningVar) {
      throw new Error("batchNorm: eval mode (training: false) needs runningMean and runningVar");
    }
    stats = new Tensor([u.groups, 2]);
    stage(
      "runningStats",
      u,
      { x, stats, out: runningMean, out2: runningVar },
      normKernel.grid(u.groups),
    );
  }
  return { y: normalize(x, gamma, beta, stats, u), stats };
}

/**
 * Gradients of instance or batch norm from the upstream gy, the forward input x, gamma and
 * the forward's stats. `batchStats` says the forward normalised with statistics of x itself
 * (instance norm, batch norm in training), so gx includes the paths through mean and
 * variance; otherwise (batch norm eval) gx = γ·invStd·gy. Entries of `needs` (x, gamma, beta)
 * that are false come back null.
 */
export function normBackward(
  gy: Tensor,
  x: Tensor,
  gamma: Tensor | null,
  stats: Tensor,
  kind: NormKind,
  batchStats: boolean,
  needs: readonly boolean[],
): [Tensor | null, Tensor | null, Tensor | null] {
  assertSameShape(`${kind}Norm backward`, gy.shape, x.shape);
  const u = plan(x.shape, kind);
  const [needX, needGamma, needBeta] = needs;
  const sumsNeeded = needGamma || needBeta || (needX && batchStats);
  let sums: Tensor | undefined;
  if (sumsNeeded) {
    const part = new Tensor([u.groups * u.parts * 2]);
    sums = new Tensor([u.groups, 2]);
    stage("gradPartial", u, { x, gy, stats, part }, grid1d(u.groups * u.parts));
    stage("gradFinal", u, { x, stats, part, out: sums }, grid1d(u.groups));
    part.dispose();
  }
  let ggamma: Tensor | null = null;
  let gbeta: Tensor | null = null;
  if (needGamma || needBeta) {
    ggamma = needGamma ? new Tensor([u.channels]) : null;
    gbeta = needBeta ? new Tensor([u.channels]) : null;
    const flags = (ggamma ? Flag.hasGamma : 0) | (gbeta ? Flag.hasBeta : 0);
    stage(
      "affineGrad",
      { ...u, flags },
      { x, stats, part: sums, out: ggamma ?? undefined, out2: gbeta ?? undefined },
      normKernel.grid(u.channels),
    );
  }
  let gx: Tensor | null = null;
  if (needX) {
    gx = new Tensor(x.shape);
    const flags = (gamma ? Flag.hasGamma : 0) | (batchStats ? Flag.batchStats : 0);
    stage(
      "inputGrad",
      { ...u, flags },
      { x, gy, gamma, stats, part: sums, out: gx },
      normKernel.grid(u.total),
    );
  }
  sums?.dispose();
  return [gx, ggamma, gbeta];
}
