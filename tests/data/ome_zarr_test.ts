import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { ChunkCache } from "../../src/data/chunk_cache.ts";
import { type CaseCodec } from "../../src/data/ome_zarr/metadata.ts";
import { openCase } from "../../src/data/ome_zarr/reader.ts";
import { writeCase } from "../../src/data/ome_zarr/writer.ts";
import { Random } from "../../src/base/random.ts";
import {
  affineFromSpacing,
  type Shape3,
  type Volume,
  type VoxelArray,
} from "../../src/data/volume.ts";
import { withStaticServer } from "./static_server.ts";
import { withTempDir } from "./temp_dir.ts";

const SHAPE: Shape3 = [37, 41, 29];
const SPACING: Shape3 = [2.5, 0.8, 0.7];

function ctVolume(seed = 1): Volume {
  const rng = new Random(seed);
  const data = Int16Array.from(
    { length: SHAPE[0] * SHAPE[1] * SHAPE[2] },
    () => rng.int(-1024, 2000),
  );
  return { shape: SHAPE, spacingMm: SPACING, affine: affineFromSpacing(SPACING), data };
}

function labelVolume(): Volume {
  const [D, H, W] = SHAPE;
  const data = new Uint8Array(D * H * W);
  // A box of class 1 and a slab of class 2: most chunks stay all background (and unwritten).
  for (let z = 5; z < 20; z++) {
    for (let y = 10; y < 30; y++) for (let x = 3; x < 12; x++) data[x + W * (y + H * z)] = 1;
  }
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data[x + W * (y + H * 33)] = 2;
  return { shape: SHAPE, spacingMm: SPACING, affine: affineFromSpacing(SPACING), data };
}

/** The reference crop: voxels of `src` in the box, `fill` outside the volume. */
function crop(src: VoxelArray, start: Shape3, size: Shape3, fill: number): number[] {
  const out: number[] = [];
  const [D, H, W] = SHAPE;
  for (let z = start[0]; z < start[0] + size[0]; z++) {
    for (let y = start[1]; y < start[1] + size[1]; y++) {
      for (let x = start[2]; x < start[2] + size[2]; x++) {
        const inside = z >= 0 && z < D && y >= 0 && y < H && x >= 0 && x < W;
        out.push(inside ? src[x + W * (y + H * z)] : fill);
      }
    }
  }
  return out;
}

const REGIONS: [Shape3, Shape3][] = [
  [[0, 0, 0], [37, 41, 29]], // everything
  [[3, 5, 7], [16, 16, 16]], // straddles chunk borders
  [[-5, -3, -8], [20, 12, 16]], // starts before the volume
  [[30, 35, 20], [16, 16, 16]], // ends past it
  [[-4, -4, -4], [45, 49, 37]], // larger than the volume on every side
  [[40, 0, 0], [4, 4, 4]], // wholly outside
  [[36, 40, 28], [1, 1, 1]], // the last voxel
];

for (const codec of ["zstd", "gzip"] as CaseCodec[]) {
  Deno.test(`ome-zarr ${codec} 37×41×29 chunks 16: region reads equal crops of the source`, async () => {
    await withTempDir(async (dir) => {
      const image = ctVolume(), label = labelVolume();
      const path = join(dir, "a.zarr");
      await writeCase(path, { image, label, chunks: 16, codec, name: "a" });
      const c = await openCase(path);
      deepStrictEqual(c.shape, SHAPE);
      deepStrictEqual(c.spacingMm, SPACING);
      deepStrictEqual(c.chunks, [16, 16, 16]);
      deepStrictEqual(c.affine, image.affine);
      strictEqual(c.imageDtype, "int16");
      strictEqual(c.hasLabel, true);
      for (const [start, size] of REGIONS) {
        const img = await c.readImage(start, size, -1024);
        ok(img instanceof Float32Array);
        deepStrictEqual(
          Array.from(img),
          crop(image.data, start, size, -1024),
          `image ${start} ${size}`,
        );
        const lab = await c.readLabel(start, size, 255);
        ok(lab instanceof Uint8Array);
        deepStrictEqual(
          Array.from(lab),
          crop(label.data, start, size, 255),
          `label ${start} ${size}`,
        );
      }
      const full = await c.readFullImage();
      ok(full.data instanceof Int16Array);
      deepStrictEqual(full.data, image.data);
      deepStrictEqual((await c.readFullLabel()).data, label.data);
      const meta = JSON.parse(await Deno.readTextFile(join(path, "0", "zarr.json")));
      strictEqual(meta.codecs[1].name, codec);
    });
  });
}

Deno.test("ome-zarr metadata: OME 0.5 multiscales, image-label, labels listing", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "a.zarr");
    await writeCase(path, {
      image: ctVolume(),
      label: labelVolume(),
      chunks: [16, 32, 32],
      name: "a",
      classNames: ["background", "lung", "infection"],
    });
    const root = JSON.parse(await Deno.readTextFile(join(path, "zarr.json")));
    strictEqual(root.zarr_format, 3);
    strictEqual(root.attributes.ome.version, "0.5");
    const ms = root.attributes.ome.multiscales[0];
    deepStrictEqual(ms.axes.map((a: { name: string; unit: string }) => [a.name, a.unit]), [
      ["z", "millimeter"],
      ["y", "millimeter"],
      ["x", "millimeter"],
    ]);
    deepStrictEqual(ms.datasets[0], {
      path: "0",
      coordinateTransformations: [{ type: "scale", scale: SPACING }],
    });
    deepStrictEqual(root.attributes.voxseg.affine, affineFromSpacing(SPACING));
    const labels = JSON.parse(await Deno.readTextFile(join(path, "labels", "zarr.json")));
    deepStrictEqual(labels.attributes.ome.labels, ["seg"]);
    const seg = JSON.parse(await Deno.readTextFile(join(path, "labels", "seg", "zarr.json")));
    const il = seg.attributes.ome["image-label"];
    deepStrictEqual(il.properties, [
      { "label-value": 1, name: "lung" },
      { "label-value": 2, name: "infection" },
    ]);
    deepStrictEqual(il.source, { image: "../../" });
    const arr = JSON.parse(await Deno.readTextFile(join(path, "labels", "seg", "0", "zarr.json")));
    strictEqual(arr.data_type, "uint8");
    deepStrictEqual(arr.chunk_grid.configuration.chunk_shape, [16, 32, 32]);
    deepStrictEqual(arr.dimension_names, ["z", "y", "x"]);
    const c = await openCase(path);
    deepStrictEqual(c.classNames, ["background", "lung", "infection"]);
  });
});

Deno.test("ome-zarr region read touches only the chunks it overlaps", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "a.zarr");
    await writeCase(path, { image: ctVolume(), label: labelVolume(), chunks: 16 });
    const c = await openCase(path);
    // Chunk grid is 3×3×2. One chunk, then a box across 2×2×2 chunks, then a repeat (all hits).
    await c.readImage([0, 0, 0], [16, 16, 16]);
    deepStrictEqual([c.cache.misses, c.cache.hits], [1, 0]);
    await c.readImage([8, 8, 8], [16, 16, 16]);
    deepStrictEqual([c.cache.misses, c.cache.hits], [8, 1]);
    await c.readImage([8, 8, 8], [16, 16, 16]);
    deepStrictEqual([c.cache.misses, c.cache.hits], [8, 9]);
    // Outside voxels cost nothing: this box overlaps only chunk (2, 2, 1).
    await c.readImage([35, 40, 27], [16, 16, 16]);
    deepStrictEqual([c.cache.misses, c.cache.hits], [9, 9]);
    // Labels share the cache but have their own keys.
    await c.readLabel([0, 0, 0], [16, 16, 16]);
    deepStrictEqual([c.cache.misses, c.cache.hits], [10, 9]);
  });
});

Deno.test("ome-zarr LRU cache evicts under a small byte budget and stays within it", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "a.zarr");
    await writeCase(path, { image: ctVolume(), chunks: 16 });
    const chunkBytes = 16 ** 3 * 2; // int16
    const c = await openCase(path, { cacheBytes: 2 * chunkBytes });
    await c.readImage([0, 0, 0], [1, 1, 1]); // chunk A
    await c.readImage([0, 0, 16], [1, 1, 1]); // chunk B
    await c.readImage([0, 0, 0], [1, 1, 1]); // A again: hit, A most recent
    await c.readImage([0, 16, 0], [1, 1, 1]); // C evicts B (least recent)
    deepStrictEqual(c.cache.stats(), {
      hits: 1,
      misses: 3,
      evictions: 1,
      bytes: 2 * chunkBytes,
      entries: 2,
    });
    await c.readImage([0, 0, 0], [1, 1, 1]); // A still cached
    strictEqual(c.cache.hits, 2);
    await c.readImage([0, 0, 16], [1, 1, 1]); // B was evicted: a miss
    strictEqual(c.cache.misses, 4);
    ok(c.cache.stats().bytes <= 2 * chunkBytes);
  });
});

Deno.test("ome-zarr cases can share one cache; keys do not collide across cases", async () => {
  await withTempDir(async (dir) => {
    const a = ctVolume(1), b = ctVolume(2);
    await writeCase(join(dir, "a.zarr"), { image: a, chunks: 16 });
    await writeCase(join(dir, "b.zarr"), { image: b, chunks: 16 });
    const cache = new ChunkCache(2 ** 20);
    const ca = await openCase(join(dir, "a.zarr"), { cache });
    const cb = await openCase(join(dir, "b.zarr"), { cache });
    const box: [Shape3, Shape3] = [[0, 0, 0], [4, 4, 4]];
    deepStrictEqual(Array.from(await ca.readImage(...box)), crop(a.data, ...box, 0));
    deepStrictEqual(Array.from(await cb.readImage(...box)), crop(b.data, ...box, 0));
    strictEqual(cache.misses, 2);
  });
});

Deno.test("ome-zarr over HTTP: same voxels, and a region fetches only its chunks", async () => {
  await withTempDir(async (dir) => {
    const image = ctVolume(), label = labelVolume();
    await writeCase(join(dir, "a.zarr"), { image, label, chunks: 16, codec: "zstd" });
    await withStaticServer(dir, async (url, requests) => {
      const c = await openCase(`${url}/a.zarr`);
      deepStrictEqual(c.shape, SHAPE);
      strictEqual(c.hasLabel, true);
      requests.length = 0;
      const start: Shape3 = [8, 8, 8], size: Shape3 = [16, 16, 16];
      deepStrictEqual(Array.from(await c.readImage(start, size)), crop(image.data, start, size, 0));
      deepStrictEqual(requests.sort(), [
        "/a.zarr/0/c/0/0/0",
        "/a.zarr/0/c/0/0/1",
        "/a.zarr/0/c/0/1/0",
        "/a.zarr/0/c/0/1/1",
        "/a.zarr/0/c/1/0/0",
        "/a.zarr/0/c/1/0/1",
        "/a.zarr/0/c/1/1/0",
        "/a.zarr/0/c/1/1/1",
      ]);
      // Unwritten (all-background) label chunks come back 404 and read as 0.
      deepStrictEqual(Array.from(await c.readLabel(start, size)), crop(label.data, start, size, 0));
      deepStrictEqual((await c.readFullLabel()).data, label.data);
    });
  });
});

Deno.test("ome-zarr image dtype: integer-valued floats → int16, fractional → float32", async () => {
  await withTempDir(async (dir) => {
    const n = SHAPE[0] * SHAPE[1] * SHAPE[2];
    const hu = Float32Array.from({ length: n }, (_, i) => (i % 3000) - 1024);
    const mr = Float32Array.from({ length: n }, (_, i) => i * 0.37);
    const base = { shape: SHAPE, spacingMm: SPACING, affine: affineFromSpacing(SPACING) };
    await writeCase(join(dir, "hu.zarr"), { image: { ...base, data: hu } });
    await writeCase(join(dir, "mr.zarr"), { image: { ...base, data: mr } });
    const a = await openCase(join(dir, "hu.zarr"));
    const b = await openCase(join(dir, "mr.zarr"));
    strictEqual(a.imageDtype, "int16");
    strictEqual(b.imageDtype, "float32");
    deepStrictEqual(Array.from((await a.readFullImage()).data), Array.from(hu));
    deepStrictEqual((await b.readFullImage()).data, mr);
  });
});

Deno.test("ome-zarr writes are atomic: no temp folder left, a rewrite replaces the case", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "a.zarr");
    await writeCase(path, { image: ctVolume(1), label: labelVolume(), chunks: 16 });
    await writeCase(path, { image: ctVolume(2), chunks: 16 });
    deepStrictEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["a.zarr"]);
    const c = await openCase(path);
    strictEqual(c.hasLabel, false); // the old label did not survive the rewrite
    deepStrictEqual((await c.readFullImage()).data, ctVolume(2).data);
    // A failed write (bad label) leaves the previous case untouched and no temp folder.
    const bad = {
      ...labelVolume(),
      data: new Float32Array(SHAPE[0] * SHAPE[1] * SHAPE[2]).fill(0.5),
    };
    await rejects(
      writeCase(path, { image: ctVolume(3), label: bad }),
      /not an integer in 0\.\.255/,
    );
    deepStrictEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["a.zarr"]);
    deepStrictEqual((await (await openCase(path)).readFullImage()).data, ctVolume(2).data);
  });
});

Deno.test("ome-zarr errors name the problem", async () => {
  await withTempDir(async (dir) => {
    await rejects(openCase(join(dir, "nope.zarr")), /case not found: .*nope\.zarr does not exist/);
    await Deno.mkdir(join(dir, "empty.zarr"));
    await rejects(openCase(join(dir, "empty.zarr")), /not a voxseg case: .*empty\.zarr/);
    const path = join(dir, "a.zarr");
    await writeCase(path, { image: ctVolume(), chunks: 16 });
    const c = await openCase(path);
    await rejects(c.readLabel([0, 0, 0], [2, 2, 2]), /has no label array .*--label/);
    await rejects(c.readImage([0, 0, 0], [0, 2, 2]), /size must be 3 positive integers/);
    await rejects(
      writeCase(path, { image: ctVolume(), label: { ...labelVolume(), shape: [29, 41, 37] } }),
      /label shape \[29,41,37\] differs from image shape \[37,41,29\]/,
    );
  });
});
