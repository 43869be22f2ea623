/**
 * Tuned register blocks (src/ops/tuning.ts, `voxseg tune`): the cache is per adapter, is read
 * by the kernels, survives bad files, and tuning stores a block whose results match.
 */

import assert, { deepStrictEqual, equal, ok } from "node:assert";
import { join } from "node:path";
import { fromArray, gpu, initGpu, readTensors } from "../../src/gpu/mod.ts";
import * as ops from "../../src/ops/mod.ts";
import {
  adapterFingerprint,
  adapterKind,
  builtinTiles,
  CONV_TILES,
  type ConvTiles,
  convTiles,
  forceInputBinding,
  forgetTunedTiles,
  inputBinding,
  reloadTunedTiles,
  saveTunedTiles,
  tileCachePath,
  type TunedTiles,
  tunedTiles,
  validTiles,
  weightGradTiles,
  WGRAD_TILES,
} from "../../src/ops/tuning.ts";
import { withForcedTiles } from "./forced_tiles.ts";
import { tune } from "../../src/cli/tune.ts";
import { Random } from "../../src/base/random.ts";
import { conv3dRef } from "./conv3d_ref.ts";
import { runCliCaptured } from "../data/cli_capture.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

/** Runs `fn` with the tile cache in a fresh temporary folder. */
async function withCacheDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "voxseg_tiles_" });
  const before = Deno.env.get("VOXSEG_CACHE_DIR");
  Deno.env.set("VOXSEG_CACHE_DIR", dir);
  reloadTunedTiles();
  try {
    await fn(dir);
  } finally {
    if (before === undefined) Deno.env.delete("VOXSEG_CACHE_DIR");
    else Deno.env.set("VOXSEG_CACHE_DIR", before);
    reloadTunedTiles();
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Largest |difference| of conv3d (with whatever block and bindings apply now) from the float64
 * reference on an odd shape.
 */
async function conv3dError(seed: number): Promise<number> {
  const rng = new Random(seed);
  const xShape = [2, 3, 5, 6, 12], co = 6;
  const xs = Float32Array.from({ length: 2 * 3 * 5 * 6 * 12 }, () => rng.normal());
  const ws = Float32Array.from({ length: co * 3 * 27 }, () => rng.normal());
  const x = fromArray(xShape, xs), w = fromArray([co, 3, 3, 3, 3], ws);
  const [y] = await readTensors([ops.conv3d(x, w, null)]);
  x.dispose();
  w.dispose();
  const want = conv3dRef(xShape, co, 3, false)([Float64Array.from(xs), Float64Array.from(ws)]);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(y[i] - want[i]));
  return worst;
}

// A block other than either built-in one; its pipeline is compiled once for this file.
const OTHER: ConvTiles = { cg: 1, vz: 2, vx: 8, wg: 64 };

function entry(conv3: ConvTiles, wgrad3: ConvTiles): TunedTiles {
  return {
    conv3,
    wgrad3,
    measured: { shape: "test", conv3: { tuned: 1, builtin: 1 }, wgrad3: { tuned: 1, builtin: 1 } },
    date: "2026-12-03T00:00:00.000Z",
  };
}

Deno.test("without a cache entry the built-in blocks apply", opts, async () => {
  await initGpu();
  await withCacheDir(() => {
    equal(tunedTiles(), null);
    deepStrictEqual(convTiles(3, 32, 32), builtinTiles("conv3"));
    deepStrictEqual(weightGradTiles(3, 32, 32), builtinTiles("wgrad3"));
  });
});

Deno.test(
  "a cached block is used by the convolution, which still matches the reference",
  opts,
  async () => {
    await initGpu();
    await withCacheDir(async (dir) => {
      const path = await saveTunedTiles(entry(OTHER, builtinTiles("wgrad3")));
      equal(path, join(dir, "tiles.json"));
      deepStrictEqual(convTiles(3, 32, 32), OTHER);
      // The per-shape shrinking still applies on top (4 voxels along x for W ≤ 4).
      equal(convTiles(3, 32, 4).vx, 4);

      const worst = await conv3dError(5);
      ok(worst < 1e-4, `conv3d with the cached block differs by ${worst}`);

      ok(await forgetTunedTiles());
      equal(tunedTiles(), null);
      ok(!(await forgetTunedTiles()));
    });
  },
);

Deno.test(
  "a forced block wins over the cached one until restored; K = 1 blocks are never tuned",
  opts,
  async () => {
    await initGpu();
    await withCacheDir(async () => {
      await saveTunedTiles(entry(OTHER, OTHER));
      deepStrictEqual(convTiles(3, 32, 32), OTHER);
      const builtin = { conv3: builtinTiles("conv3"), wgrad3: builtinTiles("wgrad3") };
      await withForcedTiles(builtin, async () => {
        deepStrictEqual(convTiles(3, 32, 32), builtin.conv3);
        deepStrictEqual(weightGradTiles(3, 32, 32), builtin.wgrad3);
        // Nested: the inner block applies, and leaving it restores the outer one.
        await withForcedTiles({ conv3: OTHER }, () => {
          deepStrictEqual(convTiles(3, 32, 32), OTHER);
          // A kernel left out of the forced set reads the cache.
          deepStrictEqual(weightGradTiles(3, 32, 32), OTHER);
        });
        deepStrictEqual(convTiles(3, 32, 32), builtin.conv3);
      });
      deepStrictEqual(convTiles(3, 32, 32), OTHER);
      // K = 1 (transposed convolutions, 1×1×1 heads) keeps the built-in table whatever is
      // cached or forced, so tests of those paths need nothing forced.
      await withForcedTiles({ conv3: OTHER, wgrad3: OTHER }, () => {
        deepStrictEqual(convTiles(1, 32, 32), CONV_TILES[adapterKind()][1]);
        deepStrictEqual(weightGradTiles(1, 32, 32), WGRAD_TILES[adapterKind()][1]);
      });
    });
  },
);

Deno.test(
  "a tuned input binding applies unless one is forced, and the convolution still matches",
  opts,
  async () => {
    await initGpu();
    await withCacheDir(async () => {
      const usual = adapterKind() === "software" ? "texture" : "storage";
      const other = usual === "texture" ? "storage" : "texture";
      const conv3 = { ...builtinTiles("conv3"), input: other } as const;
      await saveTunedTiles(entry(conv3, builtinTiles("wgrad3")));
      deepStrictEqual(convTiles(3, 32, 32), conv3);
      equal(inputBinding(true, "conv3"), other);
      equal(inputBinding(true, "wgrad3"), usual, "the weight gradient keeps its own choice");
      equal(inputBinding(false, "conv3"), "storage", "a tensor too large for a texture");
      const before = forceInputBinding(usual);
      try {
        equal(inputBinding(true, "conv3"), usual, "a forced binding wins over the cache");
      } finally {
        forceInputBinding(before);
      }

      const worst = await conv3dError(11);
      ok(worst < 1e-4, `conv3d reading its input from ${other} differs by ${worst}`);
    });
  },
);

Deno.test("entries are per adapter: another adapter's entry is not used", opts, async () => {
  await initGpu();
  await withCacheDir(async () => {
    const other = { version: 1, adapters: { "some other GPU | vulkan": entry(OTHER, OTHER) } };
    await Deno.writeTextFile(tileCachePath(), JSON.stringify(other));
    equal(tunedTiles(), null);
    // Saving this adapter's entry keeps the other one.
    await saveTunedTiles(entry(builtinTiles("conv3"), OTHER));
    const file = JSON.parse(await Deno.readTextFile(tileCachePath()));
    deepStrictEqual(
      Object.keys(file.adapters).sort(),
      [adapterFingerprint(gpu().info), "some other GPU | vulkan"].sort(),
    );
    deepStrictEqual(weightGradTiles(3, 32, 32), OTHER);
  });
});

Deno.test(
  "a corrupt or invalid cache is ignored with one message naming the file",
  opts,
  async () => {
    await initGpu();
    await withCacheDir(async () => {
      const messages: string[] = [];
      const original = console.error;
      console.error = (...args: unknown[]) => messages.push(args.join(" "));
      try {
        for (
          const text of [
            "{ not json",
            JSON.stringify({ version: 2, adapters: {} }),
            JSON.stringify({
              version: 1,
              adapters: {
                [adapterFingerprint(gpu().info)]: entry({ cg: 3, vz: 9, vx: 5, wg: 7 }, OTHER),
              },
            }),
          ]
        ) {
          await Deno.writeTextFile(tileCachePath(), text);
          reloadTunedTiles();
          equal(tunedTiles(), null, text);
          deepStrictEqual(convTiles(3, 32, 32), builtinTiles("conv3"));
        }
      } finally {
        console.error = original;
      }
      equal(messages.length, 1, messages.join("\n"));
      ok(messages[0].includes(tileCachePath()), `the message names the file: ${messages[0]}`);
      ok(!validTiles({ cg: 2, vz: 4, vx: 6, wg: 64 }));
      ok(validTiles({ cg: 2, vz: 4, vx: 8, wg: 64 }));
      ok(validTiles({ cg: 2, vz: 4, vx: 8, wg: 64, input: "storage" }));
      ok(!validTiles({ cg: 2, vz: 4, vx: 8, wg: 64, input: "buffer" }));
    });
  },
);

Deno.test("tune measures the candidates, checks them, and caches the fastest", opts, async () => {
  await initGpu();
  await withCacheDir(async () => {
    const seen: string[] = [];
    const result = await tune({
      quick: true,
      shape: [1, 8, 8, 8, 16],
      candidates: { conv3: [OTHER], wgrad3: [] },
      onMeasurement: (m) => {
        ok(m.gflops !== null && m.gflops > 0, `${m.kernel} ${JSON.stringify(m.tiles)} rejected`);
        ok(m.error <= 1e-5, `error ${m.error}`);
        seen.push(`${m.kernel}:${m.builtin ? "builtin" : JSON.stringify(m.tiles)}`);
      },
    });
    deepStrictEqual(seen, ["conv3:builtin", `conv3:${JSON.stringify(OTHER)}`, "wgrad3:builtin"]);
    ok(
      [JSON.stringify(OTHER), JSON.stringify(builtinTiles("conv3"))].includes(
        JSON.stringify(result.conv3),
      ),
    );
    deepStrictEqual(result.wgrad3, builtinTiles("wgrad3"));
    deepStrictEqual(tunedTiles()?.conv3, result.conv3);
    ok(result.measured.conv3.tuned >= result.measured.conv3.builtin);
  });
});

Deno.test("voxseg info names the blocks in use; tune --forget removes them", opts, async () => {
  await initGpu();
  await withCacheDir(async () => {
    let r = await runCliCaptured(["info"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /conv blocks\s+built-in \(voxseg tune measures/);
    await saveTunedTiles(entry(OTHER, builtinTiles("wgrad3")));
    r = await runCliCaptured(["info"]);
    assert.match(r.stdout, /conv blocks\s+tuned 2026-12-03: conv CG 1 VZ 2 VX 8 WG 64, wgrad CG 2/);
    const json = JSON.parse((await runCliCaptured(["info", "--json"])).stdout);
    deepStrictEqual(json.tunedTiles.conv3, OTHER);
    r = await runCliCaptured(["tune", "--forget"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /removed the tuned blocks of .* from .*tiles\.json/);
    r = await runCliCaptured(["tune", "--forget"]);
    assert.match(r.stdout, /has no tuned blocks for/);
    equal(tunedTiles(), null);
  });
});
