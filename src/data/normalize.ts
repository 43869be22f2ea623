/**
 * Intensity normalisation of image patches before they reach the network. A normalisation is a
 * small serialisable description (it is stored in checkpoint metadata, so inference normalises
 * exactly as training did) applied in place to float32 voxels.
 *
 * - `ct-window`: clip to a HU window (default −1000…400, lung window) and scale to 0…1.
 * - `zscore`: nnU-Net's CT scheme: clip to the dataset's foreground 0.5 / 99.5 percentiles,
 *   then subtract the foreground mean and divide by the foreground standard deviation.
 * - `zscore-case`: each case by its own image mean and standard deviation (MR and other
 *   modalities without absolute units); {@link forCase} turns it into a `zscore` per case.
 * - `none`: leave values as they are.
 */

import type { DatasetManifest } from "./dataset.ts";
import type { ImageStats } from "./image_stats.ts";

import {
  type Normalization,
  type NormalizationKind,
  parseNormalization,
} from "../base/normalization.ts";

export { type Normalization, type NormalizationKind, parseNormalization };

/** The default lung window, −1000…400 HU. */
export const DEFAULT_CT_WINDOW: Normalization = { kind: "ct-window", lo: -1000, hi: 400 };

/** A CT window normalisation; throws unless lo < hi. */
export function ctWindow(lo = -1000, hi = 400): Normalization {
  return parseNormalization({ kind: "ct-window", lo, hi });
}

/**
 * The normalisation of `kind` for a dataset: the default window for `ct-window`, the dataset's
 * foreground intensity statistics for `zscore`.
 *
 * @example
 * const norm = normalizationFromDataset(await readDataset("data/synth"), "zscore");
 */
export function normalizationFromDataset(
  manifest: Pick<DatasetManifest, "intensity" | "name">,
  kind: NormalizationKind,
): Normalization {
  if (kind === "ct-window") return { ...DEFAULT_CT_WINDOW };
  if (kind === "none") return { kind: "none" };
  if (kind === "zscore-case") return { kind: "zscore-case" };
  if (kind !== "zscore") {
    throw new RangeError(
      `unknown normalisation "${kind}" (use ct-window, zscore, zscore-case or none)`,
    );
  }
  const s = manifest.intensity;
  if (!s) {
    throw new Error(
      `dataset "${manifest.name}" has no intensity statistics (no labelled case), so zscore ` +
        "normalisation is undefined; use ct-window",
    );
  }
  return zscore(s.p0_5, s.p99_5, s.mean, s.std);
}

/** A z-score normalisation; a constant intensity (std 0) would divide by zero, so std ≥ 1e-8
 * (nnU-Net guards the same way). */
function zscore(clipLo: number, clipHi: number, mean: number, std: number): Normalization {
  return { kind: "zscore", clipLo, clipHi, mean, std: Math.max(std, 1e-8) };
}

/**
 * The normalisation to apply to one case: `zscore-case` becomes a `zscore` with the case's own
 * mean and standard deviation (clipped to its own range, so nothing is clipped); every other
 * kind is returned as it is. Throws when a `zscore-case` case has no statistics.
 */
export function forCase(norm: Normalization, stats: ImageStats | undefined): Normalization {
  if (norm.kind !== "zscore-case") return norm;
  if (!stats) {
    throw new Error(
      "zscore-case normalisation needs each case's image statistics, and this case has none " +
        "(convert the dataset again to record them)",
    );
  }
  return zscore(stats.min, stats.max, stats.mean, stats.std);
}

/**
 * Normalises `data` in place and returns it. A `zscore-case` must be resolved per case with
 * {@link forCase} first.
 */
export function normalizeInPlace(data: Float32Array, norm: Normalization): Float32Array {
  if (norm.kind === "zscore-case") {
    throw new Error("zscore-case is resolved per case (forCase) before it is applied");
  }
  if (norm.kind === "ct-window") {
    const { lo, hi } = norm, scale = 1 / (hi - lo);
    for (let i = 0; i < data.length; i++) {
      const v = (data[i] - lo) * scale;
      data[i] = v < 0 ? 0 : v > 1 ? 1 : v;
    }
  } else if (norm.kind === "zscore") {
    const { clipLo, clipHi, mean } = norm, inv = 1 / norm.std;
    for (let i = 0; i < data.length; i++) {
      const c = data[i];
      data[i] = ((c < clipLo ? clipLo : c > clipHi ? clipHi : c) - mean) * inv;
    }
  }
  return data;
}

/** The normalised value of one raw intensity. */
export function normalizeValue(raw: number, norm: Normalization): number {
  return normalizeInPlace(Float32Array.of(raw), norm)[0];
}

/**
 * The raw intensity that stands for "outside the scan" when a patch is padded: the window's
 * low end (air, normalised 0) for `ct-window`, the lower clip (the darkest foreground
 * intensity, air-like in CT) for `zscore`, and 0 for `none`.
 */
export function padIntensity(norm: Normalization): number {
  if (norm.kind === "zscore-case") {
    throw new Error("zscore-case is resolved per case (forCase) before its padding is known");
  }
  return norm.kind === "ct-window" ? norm.lo : norm.kind === "zscore" ? norm.clipLo : 0;
}
