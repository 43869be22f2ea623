/** Test helpers for inference: tiny checkpoints with random weights, temp folders, volumes. */

import { join } from "node:path";
import { initGpu } from "../../src/gpu/mod.ts";
import type { Normalization } from "../../src/data/normalize.ts";
import type { Shape3, Volume } from "../../src/data/volume.ts";
import { Random } from "../../src/data/random.ts";
import { UNet3D, type UNet3DConfig } from "../../src/nn/unet3d.ts";
import { saveCheckpoint } from "../../src/train/checkpoint.ts";
import { readWeights } from "../../src/train/trainer.ts";

export const opts = { sanitizeResources: false, sanitizeOps: false };

export interface TinyCheckpointOptions {
  spacingMm?: Shape3;
  patchSize?: Shape3;
  model?: Partial<UNet3DConfig>;
  normalisation?: Normalization;
  seed?: number;
}

/**
 * Writes a checkpoint of a tiny random U-Net (base 4, depth 2, 3 classes) to `dir/name` and
 * returns its path. Random weights are enough for geometry, equivalence and error tests.
 */
export async function tinyCheckpoint(
  dir: string,
  name = "tiny.safetensors",
  o: TinyCheckpointOptions = {},
): Promise<string> {
  await initGpu();
  const net = new UNet3D({ baseChannels: 4, depth: 2, classes: 3, ...o.model }, o.seed ?? 1);
  const path = join(dir, name);
  try {
    await saveCheckpoint(path, {
      weights: await readWeights(net),
      meta: {
        model: net.config,
        classNames: ["background", "lung", "infection", "extra"].slice(0, net.config.classes),
        normalisation: o.normalisation ??
          { kind: "zscore", clipLo: -5, clipHi: 5, mean: 0, std: 1 },
        patchSize: o.patchSize ?? [16, 16, 16],
        spacingMm: o.spacingMm ?? [1, 1, 1],
        training: { epoch: 0, step: 0, monitor: "dice", bestMetric: null, metrics: {} },
      },
    });
  } finally {
    net.dispose();
  }
  return path;
}

/** A temp folder removed when the test module unloads. */
export function tempRoot(prefix: string): string {
  const root = Deno.makeTempDirSync({ prefix });
  globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
  return root;
}

/**
 * A float32 volume of smooth structure plus noise, values about −2…2 — enough to give a
 * random network varied, non-degenerate predictions.
 */
export function blobVolume(shape: Shape3, seed = 0, spacingMm: Shape3 = [1, 1, 1]): Volume {
  const [D, H, W] = shape;
  const rng = new Random(seed);
  const data = new Float32Array(D * H * W);
  for (let z = 0, i = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++, i++) {
        data[i] = 1.5 * Math.sin(z / 3 + seed) * Math.cos(y / 4) + Math.sin(x / 5) +
          0.3 * rng.normal();
      }
    }
  }
  const [sz, sy, sx] = spacingMm;
  return {
    shape,
    spacingMm,
    affine: [-sx, 0, 0, 12.5, 0, sy, 0, -30, 0, 0, sz, 7, 0, 0, 0, 1],
    data,
  };
}

/** Flips a [D, H, W] array (x fastest) along one axis. */
export function flipVolume<T extends { length: number; [i: number]: number }>(
  data: T,
  shape: Shape3,
  axis: 0 | 1 | 2,
  make: (n: number) => T,
): T {
  const [D, H, W] = shape;
  const out = make(data.length);
  for (let z = 0, i = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++, i++) {
        const [fz, fy, fx] = axis === 0
          ? [D - 1 - z, y, x]
          : axis === 1
          ? [z, H - 1 - y, x]
          : [z, y, W - 1 - x];
        out[(fz * H + fy) * W + fx] = data[i];
      }
    }
  }
  return out;
}
