/** Fixtures for the inference tests: tiny random-weight checkpoints, temp folders, volumes. */

import { join } from "node:path";
import type { Shape3, Volume } from "../../src/data/volume.ts";
import { Random } from "../../src/base/random.ts";
import { type TinyCheckpointOptions, writeTinyCheckpoint } from "../fixtures/tiny_checkpoint.ts";

export const opts = { sanitizeResources: false, sanitizeOps: false };

/**
 * Writes a checkpoint of a tiny random U-Net (base 4, depth 2, 3 classes) to `dir/name` and
 * returns its path. Random weights are enough for geometry, equivalence and error tests.
 */
export async function tinyCheckpoint(
  dir: string,
  name = "tiny.safetensors",
  o: TinyCheckpointOptions = {},
): Promise<string> {
  const path = join(dir, name);
  await writeTinyCheckpoint(path, o);
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
