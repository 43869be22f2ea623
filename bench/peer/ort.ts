/**
 * Peer: onnxruntime-node on the CPU against voxseg, on the same sliding-window inference.
 *
 * The reference U-Net (base 16, depth 4, 1 input channel, 3 classes, ReLU, no norm; random
 * weights, seed 0) is exported with `voxseg export-onnx`'s code into a temp folder and
 * segments a chest-CT phantom of 128×256×256 (`quick`: 64×128×128) with 64³ windows, overlap
 * 0.5, Gaussian importance weighting (σ = patch/8):
 *
 * - voxseg: {@link predictVolume} end to end (normalisation, windows on the GPU, blending,
 *   arg-max), after a warm-up prediction that compiles the pipelines.
 * - onnxruntime: the same window plan and blending written here on the host (window starts and
 *   importance map from src/infer/gaussian.ts, windows in voxseg's order), one window per
 *   `run`, 2 intra-op threads, after a warm-up run; the session's creation is timed apart.
 *
 * Accuracy: the share of voxels whose labels agree, and the largest difference of the class
 * probabilities of single windows (the first and a central one) between voxseg's GPU forward
 * and onnxruntime — the blended probabilities are weighted means of those, so their
 * difference is no larger.
 *
 * `deno run -A bench/peer/ort.ts [--quick]` prints the results as JSON lines; `voxseg bench
 * peers` calls {@link ortPeer}.
 */

import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { softmaxChannels } from "../../src/autograd/functional.ts";
import type { BenchResult } from "../../src/cli/bench/suite.ts";
import { checkpointMeta, phantomCt } from "../../src/cli/bench/infer.ts";
import { referenceConfig } from "../../src/cli/bench/train.ts";
import { agreedRatio, labelsAgreement } from "../../src/cli/bench/agreement.ts";
import { checkpointToOnnx } from "../../src/cli/export_onnx.ts";
import { normalizeInPlace, normalizeValue, padIntensity } from "../../src/data/normalize.ts";
import type { Shape3 } from "../../src/data/volume.ts";
import { fromArray, initGpu, readTensors, scope } from "../../src/gpu/mod.ts";
import { gaussianImportance, windowStarts } from "../../src/infer/gaussian.ts";
import { type LoadedModel, predictVolume } from "../../src/infer/predict.ts";
import { UNet3D } from "../../src/nn/unet3d.ts";
import type { CheckpointMeta } from "../../src/nn/checkpoint.ts";
import { readWeights } from "../../src/nn/weights.ts";

const OVERLAP = 0.5;
const THREADS = 2;

/** One window's origin (z, y, x) in the padded grid. */
type Window = Shape3;

/** Windows in voxseg's order: rows along z, then y, then x (see sliding_window.ts). */
function windowPlan(shape: Shape3, patch: Shape3): { grid: Shape3; windows: Window[] } {
  const grid = shape.map((s, i) => Math.max(s, patch[i])) as Shape3;
  const [zs, ys, xs] = grid.map((g, i) => windowStarts(g, patch[i], OVERLAP));
  const windows: Window[] = [];
  for (const z of zs) for (const y of ys) for (const x of xs) windows.push([z, y, x]);
  return { grid, windows };
}

/** A window of `image` (normalised, shape D, H, W) as [1, 1, pd, ph, pw], padded outside. */
function gather(
  image: Float32Array,
  shape: Shape3,
  patch: Shape3,
  [z0, y0, x0]: Window,
  padValue: number,
  out: Float32Array,
): Float32Array {
  const [D, H, W] = shape, [pd, ph, pw] = patch;
  for (let z = 0; z < pd; z++) {
    for (let y = 0; y < ph; y++) {
      const dst = pw * (y + ph * z);
      if (z0 + z >= D || y0 + y >= H) {
        out.fill(padValue, dst, dst + pw);
        continue;
      }
      const src = W * (y0 + y + H * (z0 + z)) + x0;
      const inside = Math.max(0, Math.min(pw, W - x0));
      out.set(image.subarray(src, src + inside), dst);
      if (inside < pw) out.fill(padValue, dst + inside, dst + pw);
    }
  }
  return out;
}

async function runWindow(session: ort.InferenceSession, x: Float32Array, patch: Shape3) {
  const out = await session.run({ image: new ort.Tensor("float32", x, [1, 1, ...patch]) });
  return out.probabilities.data as Float32Array;
}

/**
 * Sliding-window labels with onnxruntime: raw HU → normalised, every window run and blended
 * with the Gaussian map into a padded-grid accumulator, arg-max (ties to the lower class, as
 * voxseg; dividing by the summed weights would not change it).
 */
async function ortSlidingWindow(
  session: ort.InferenceSession,
  raw: Int16Array,
  shape: Shape3,
  meta: CheckpointMeta,
): Promise<Uint8Array> {
  const norm = meta.normalisation, patch = meta.patchSize, classes = meta.model.classes;
  const image = normalizeInPlace(Float32Array.from(raw), norm);
  const padValue = normalizeValue(padIntensity(norm), norm);
  const { grid, windows } = windowPlan(shape, patch);
  const [PD, PH, PW] = grid, [pd, ph, pw] = patch;
  const weights = gaussianImportance(patch);
  const classStride = PD * PH * PW, patchVox = pd * ph * pw;
  const acc = new Float32Array(classes * classStride);
  const x = new Float32Array(patchVox);
  for (const w of windows) {
    const probs = await runWindow(session, gather(image, shape, patch, w, padValue, x), patch);
    const [z0, y0, x0] = w;
    for (let c = 0; c < classes; c++) {
      for (let z = 0; z < pd; z++) {
        for (let y = 0; y < ph; y++) {
          const wi = pw * (y + ph * z), src = c * patchVox + wi;
          const dst = c * classStride + PW * (y0 + y + PH * (z0 + z)) + x0;
          for (let i = 0; i < pw; i++) acc[dst + i] += probs[src + i] * weights[wi + i];
        }
      }
    }
  }
  const [D, H, W] = shape;
  const labels = new Uint8Array(D * H * W);
  for (let z = 0, o = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let xi = 0; xi < W; xi++, o++) {
        const i = PW * (y + PH * z) + xi;
        let best = 0, bestP = acc[i];
        for (let c = 1; c < classes; c++) {
          const p = acc[c * classStride + i];
          if (p > bestP) {
            bestP = p;
            best = c;
          }
        }
        labels[o] = best;
      }
    }
  }
  return labels;
}

/** Largest |Δp| between voxseg's GPU forward and onnxruntime on single windows. */
async function windowDifference(
  net: UNet3D,
  session: ort.InferenceSession,
  raw: Int16Array,
  shape: Shape3,
  meta: CheckpointMeta,
): Promise<number> {
  const norm = meta.normalisation, patch = meta.patchSize;
  const image = normalizeInPlace(Float32Array.from(raw), norm);
  const padValue = normalizeValue(padIntensity(norm), norm);
  const { windows } = windowPlan(shape, patch);
  let max = 0;
  for (const w of [windows[0], windows[windows.length >> 1]]) {
    const x = gather(
      image,
      shape,
      patch,
      w,
      padValue,
      new Float32Array(patch[0] * patch[1] * patch[2]),
    );
    const p = scope(() =>
      softmaxChannels(net.forward(fromArray([1, 1, ...patch], x), { training: false }))
    );
    const [mine] = await readTensors([p]);
    p.dispose();
    const theirs = await runWindow(session, x, patch);
    for (let i = 0; i < mine.length; i++) max = Math.max(max, Math.abs(mine[i] - theirs[i]));
  }
  return max;
}

/**
 * voxseg vs onnxruntime-node (CPU, 2 threads) on sliding-window inference of the reference
 * U-Net; see the module comment. Yields `infer.voxseg.<D>x<H>x<W>` and `infer.ort.<D>x<H>x<W>`
 * with ms, voxels_per_s, ratio (onnxruntime ms / voxseg ms: > 1 means voxseg is faster),
 * max_abs_diff and label_agreement.
 */
export async function* ortPeer(options: { quick: boolean }): AsyncIterable<BenchResult> {
  const shape: Shape3 = options.quick ? [64, 128, 128] : [128, 256, 256];
  const config = referenceConfig();
  const patch = config.data.patchSize as Shape3;
  const g = await initGpu();
  const net = new UNet3D(config.model, 0);
  const meta = checkpointMeta(net, patch, [1, 1, 1]);
  const loaded: LoadedModel = { model: net, meta, dispose: () => net.dispose() };
  const dir = await Deno.makeTempDir({ prefix: "voxseg_bench_ort_" });
  let session: ort.InferenceSession | undefined;
  try {
    const t0 = performance.now();
    const onnx = checkpointToOnnx({ weights: await readWeights(net), meta });
    const onnxPath = join(dir, "reference_unet.onnx");
    await Deno.writeFile(onnxPath, onnx);
    const exportMs = performance.now() - t0;
    const { image } = phantomCt(shape, [1, 1, 1]);
    const raw = image.data as Int16Array;
    const voxels = shape[0] * shape[1] * shape[2];
    const windows = windowPlan(shape, patch).windows.length;

    // voxseg, after a warm-up window that compiles the pipelines (onnxruntime: one warm-up
    // window below). Both timers cover the CT window's normalisation of the raw HU volume:
    // predictVolume applies it inside, ortSlidingWindow too.
    await predictVolume(loaded, phantomCt(patch, [1, 1, 1]).image, { overlap: OVERLAP });
    const v0 = performance.now();
    const mine = await predictVolume(loaded, image, { overlap: OVERLAP });
    const voxsegMs = performance.now() - v0;

    // onnxruntime, after a warm-up run.
    const s0 = performance.now();
    session = await ort.InferenceSession.create(onnxPath, {
      intraOpNumThreads: THREADS,
      interOpNumThreads: 1,
      executionMode: "sequential",
      graphOptimizationLevel: "all",
    });
    const sessionMs = performance.now() - s0;
    await runWindow(session, new Float32Array(patch[0] * patch[1] * patch[2]), patch);
    const o0 = performance.now();
    const theirs = await ortSlidingWindow(session, raw, shape, meta);
    const ortMs = performance.now() - o0;

    let same = 0;
    for (let i = 0; i < voxels; i++) if (theirs[i] === mine.labels.data[i]) same++;
    // At least 99.9 % of the labels equal (agreement.ts LABELS_TOLERANCE).
    const agreement = labelsAgreement(mine.labels.data, theirs);
    const maxAbsDiff = await windowDifference(net, session, raw, shape, meta);
    const common = {
      // > 1: voxseg is faster; null when the labels disagree beyond the tolerance.
      ratio: agreedRatio(ortMs, voxsegMs, agreement),
      agree: agreement.agree,
      agreement: agreement.agreement,
      max_abs_diff: maxAbsDiff,
      label_agreement: same / voxels,
      windows,
      patch: patch.join("x"),
      overlap: OVERLAP,
    };
    const tag = shape.join("x");
    yield {
      name: `infer.voxseg.${tag}`,
      ms: voxsegMs,
      voxels_per_s: voxels / (voxsegMs / 1000),
      ...common,
      adapter: g.info.description,
      fallback_adapter: g.info.isFallbackAdapter,
    };
    yield {
      name: `infer.ort.${tag}`,
      ms: ortMs,
      voxels_per_s: voxels / (ortMs / 1000),
      ...common,
      session_ms: sessionMs,
      export_ms: exportMs,
      onnx_mb: onnx.length / 1e6,
      threads: THREADS,
      peer: `onnxruntime-node ${ort.env.versions.node ?? "?"} cpu`,
    };
  } finally {
    await session?.release();
    net.dispose();
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  for await (const r of ortPeer({ quick: Deno.args.includes("--quick") })) {
    console.log(JSON.stringify(r));
  }
}
