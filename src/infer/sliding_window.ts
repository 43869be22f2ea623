/**
 * Sliding-window prediction over a whole volume: overlapping patch-sized windows, several per
 * GPU batch, blended with a Gaussian importance map into class probabilities.
 *
 * The volume is padded to at least one patch per axis (with the normalised air value) and the
 * result cropped back, so volumes smaller than a patch work.
 */

import { fromArray, readTensors, scope, type Tensor } from "../gpu/mod.ts";
import { flip, softmaxChannels } from "../autograd/functional.ts";
import { gaussianImportance, windowStarts } from "./gaussian.ts";

type Shape3 = [number, number, number];

export interface SlidingWindowOptions {
  patchSize: Shape3;
  /** Fraction of a patch adjacent windows share (0 ≤ overlap < 1). Default 0.5. */
  overlap?: number;
  /** Windows per GPU batch. Default 1. */
  batchSize?: number;
  /** Value the volume is padded with (normalised intensity of air). Default 0. */
  padValue?: number;
  /** Test-time flips: each entry is a list of spatial axes (0 = z, 1 = y, 2 = x). */
  flips?: number[][];
  /** Called after each batch of windows with (done, total). */
  onProgress?: (done: number, total: number) => void;
}

/** A network mapping [B, 1, d, h, w] to logits [B, C, d, h, w]. */
export type Predictor = (x: Tensor) => Tensor;

/**
 * Class probabilities [C, D, H, W] (flat, x fastest) for a normalised single-channel volume.
 *
 * @example
 * const probs = await slidingWindow((x) => net.forward(x, { training: false }), img, shape, 3,
 *   { patchSize: [32, 64, 64], overlap: 0.5, batchSize: 2 });
 */
export async function slidingWindow(
  predict: Predictor,
  image: Float32Array,
  shape: Shape3,
  classes: number,
  opts: SlidingWindowOptions,
): Promise<Float32Array> {
  const { patchSize: patch, overlap = 0.5, batchSize = 1, padValue = 0, flips = [] } = opts;
  if (!(overlap >= 0 && overlap < 1)) throw new Error(`overlap must be in [0, 1), got ${overlap}`);
  const [D, H, W] = shape;
  if (image.length !== D * H * W) {
    throw new Error(
      `image has ${image.length} voxels but shape ${shape.join("×")} needs ${D * H * W}`,
    );
  }
  // Pad to at least one patch per axis.
  const padded: Shape3 = [Math.max(D, patch[0]), Math.max(H, patch[1]), Math.max(W, patch[2])];
  const [PD, PH, PW] = padded;
  const [pd, ph, pw] = patch;
  const weights = gaussianImportance(patch);
  const acc = new Float32Array(classes * PD * PH * PW);
  const wsum = new Float32Array(PD * PH * PW);

  const starts: Shape3[] = [];
  for (const z of windowStarts(PD, pd, overlap)) {
    for (const y of windowStarts(PH, ph, overlap)) {
      for (const x of windowStarts(PW, pw, overlap)) starts.push([z, y, x]);
    }
  }
  const patchVox = pd * ph * pw;
  const views = [[], ...flips];
  for (let b0 = 0; b0 < starts.length; b0 += batchSize) {
    const batch = starts.slice(b0, b0 + batchSize);
    const input = new Float32Array(batch.length * patchVox);
    batch.forEach(([z0, y0, x0], b) => {
      for (let z = 0; z < pd; z++) {
        for (let y = 0; y < ph; y++) {
          const dst = b * patchVox + pw * (y + ph * z);
          const sz = z0 + z, sy = y0 + y;
          for (let x = 0; x < pw; x++) {
            const sx = x0 + x;
            input[dst + x] = sz < D && sy < H && sx < W ? image[sx + W * (sy + H * sz)] : padValue;
          }
        }
      }
    });
    const probs = scope(() => {
      const x = fromArray([batch.length, 1, pd, ph, pw], input);
      // Average softmax over the identity and each flip (flipped back before averaging).
      return views.map((axes) => {
        const spatial = axes.map((a) => a + 2);
        const xin = spatial.length ? flip(x, spatial) : x;
        const p = softmaxChannels(predict(xin));
        return spatial.length ? flip(p, spatial) : p;
      });
    });
    const host = await readTensors(probs);
    for (const p of probs) p.dispose();
    batch.forEach(([z0, y0, x0], b) => {
      for (let z = 0; z < pd; z++) {
        for (let y = 0; y < ph; y++) {
          for (let x = 0; x < pw; x++) {
            const pi = x + pw * (y + ph * z);
            const vi = x0 + x + PW * (y0 + y + PH * (z0 + z));
            const wgt = weights[pi] / views.length;
            wsum[vi] += weights[pi];
            for (let c = 0; c < classes; c++) {
              let s = 0;
              for (const h of host) s += h[(b * classes + c) * patchVox + pi];
              acc[c * PD * PH * PW + vi] += s * wgt;
            }
          }
        }
      }
    });
    opts.onProgress?.(Math.min(b0 + batchSize, starts.length), starts.length);
  }
  // Normalise and crop to the input grid.
  const out = new Float32Array(classes * D * H * W);
  for (let c = 0; c < classes; c++) {
    for (let z = 0; z < D; z++) {
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          const vi = x + PW * (y + PH * z);
          out[c * D * H * W + x + W * (y + H * z)] = acc[c * PD * PH * PW + vi] / wsum[vi];
        }
      }
    }
  }
  return out;
}

/** Arg-max over classes of probabilities [C, V] → labels [V]. */
export function argmaxClasses(probs: Float32Array, classes: number): Uint8Array {
  const v = probs.length / classes;
  const out = new Uint8Array(v);
  for (let i = 0; i < v; i++) {
    let best = 0, bestP = probs[i];
    for (let c = 1; c < classes; c++) {
      const p = probs[c * v + i];
      if (p > bestP) {
        bestP = p;
        best = c;
      }
    }
    out[i] = best;
  }
  return out;
}
