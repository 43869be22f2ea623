/**
 * The description of an intensity normalisation: a small serialisable value stored in
 * checkpoint metadata (so inference normalises exactly as training did) and applied by
 * src/data/normalize.ts. It lives here, below both, because the checkpoint format (src/nn) and
 * the data column each need it and neither may use the other.
 */

/** The normalisation kinds, in help order. */
export const NORMALIZATION_KINDS = ["ct-window", "zscore", "zscore-case", "none"] as const;

/**
 * - `ct-window`: clip to lo…hi (HU) and scale to 0…1.
 * - `zscore`: clip, then subtract `mean` and divide by `std` (one set for the whole dataset).
 * - `zscore-case`: each case by its own image mean and std (nnU-Net's scheme for MR and other
 *   modalities without absolute units); resolved into a `zscore` per case before use.
 * - `none`: values as they are.
 */
export type Normalization =
  | { kind: "ct-window"; lo: number; hi: number }
  | { kind: "zscore"; clipLo: number; clipHi: number; mean: number; std: number }
  | { kind: "zscore-case" }
  | { kind: "none" };

export type NormalizationKind = (typeof NORMALIZATION_KINDS)[number];

/**
 * Checks an untrusted value (e.g. from checkpoint metadata) and returns it as a
 * {@link Normalization}; the error names the bad field.
 */
export function parseNormalization(value: unknown): Normalization {
  const v = value as Record<string, unknown>;
  const num = (k: string) => {
    if (typeof v[k] !== "number" || !Number.isFinite(v[k])) {
      throw new Error(`normalisation ${v.kind}: ${k} must be a finite number, got ${v[k]}`);
    }
    return v[k] as number;
  };
  if (typeof v !== "object" || v === null) throw new Error("normalisation must be an object");
  if (v.kind === "none") return { kind: "none" };
  if (v.kind === "zscore-case") return { kind: "zscore-case" };
  if (v.kind === "ct-window") {
    const lo = num("lo"), hi = num("hi");
    if (!(lo < hi)) throw new Error(`normalisation ct-window: lo ${lo} must be below hi ${hi}`);
    return { kind: "ct-window", lo, hi };
  }
  if (v.kind === "zscore") {
    const clipLo = num("clipLo"), clipHi = num("clipHi"), mean = num("mean"), std = num("std");
    if (!(clipLo <= clipHi)) {
      throw new Error(`normalisation zscore: clipLo ${clipLo} must not exceed clipHi ${clipHi}`);
    }
    if (!(std > 0)) throw new Error(`normalisation zscore: std must be > 0, got ${std}`);
    return { kind: "zscore", clipLo, clipHi, mean, std };
  }
  throw new Error(`unknown normalisation kind ${JSON.stringify(v.kind)}`);
}
