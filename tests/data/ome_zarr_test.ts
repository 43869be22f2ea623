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

/** A lookup table over int16 voxels (index v + 32768) for readImageMapped. */
const TABLE = Float32Array.from({ length: 65536 }, (_, i) => (i - 32768) * 0.5 + 3);

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
        // Into given arrays (stale contents overwritten), and through a lookup table.
        const n = size[0] * size[1] * size[2];
        const into = new Float32Array(n).fill(NaN), labInto = new Uint8Array(n).fill(7);
        strictEqual(await c.readImage(start, size, -1024, into), into);
        deepStrictEqual(into, img);
        strictEqual(await c.readLabel(start, size, 255, labInto), labInto);
        deepStrictEqual(labInto, lab);
        const mapped = await c.readImageMapped(start, size, [TABLE], [-7], into.fill(NaN));
        strictEqual(mapped, into);
        deepStrictEqual(
          Array.from(mapped),
          crop(image.data, start, size, NaN).map((v) => Number.isNaN(v) ? -7 : TABLE[v + 32768]),
          `mapped ${start} ${size}`,
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

// ---------------------------------------------------------------------------------------------
// Channels

/** SHA-256 over every file of a folder (sorted relative path, NUL, bytes, NUL). */
async function folderDigest(dir: string): Promise<string> {
  const files: string[] = [];
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = join(d, e.name);
      if (e.isDirectory) await walk(p);
      else files.push(p);
    }
  };
  await walk(dir);
  files.sort();
  const enc = new TextEncoder();
  const parts = [];
  for (const f of files) {
    parts.push(
      enc.encode(f.slice(dir.length + 1) + "\0"),
      await Deno.readFile(f),
      enc.encode("\0"),
    );
  }
  const all = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  parts.reduce((o, p) => (all.set(p, o), o + p.length), 0);
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A fixed one-channel case: int16 image with labels, and a float32 image. */
function fixedOneChannel() {
  const [D, H, W] = [7, 19, 23];
  const image = new Int16Array(D * H * W), label = new Uint8Array(D * H * W);
  const float = new Float32Array(D * H * W);
  for (let i = 0; i < image.length; i++) {
    image[i] = ((i * 7919) % 2001) - 1000;
    label[i] = i % 5 === 0 ? 1 + (i % 3) % 2 : 0;
    float[i] = Math.sin(i / 7) * 3.25;
  }
  const geometry = {
    shape: [D, H, W] as Shape3,
    spacingMm: [2.5, 0.8, 0.7] as Shape3,
    affine: [-0.7, 0, 0, 10, 0, 0.8, 0, -20, 0, 0, 2.5, 30, 0, 0, 0, 1],
  };
  return {
    image: { ...geometry, data: image },
    float: { ...geometry, data: float },
    label: { ...geometry, data: label },
  };
}

Deno.test("ome-zarr one channel: files byte-identical to the writer before channels existed", async () => {
  await withTempDir(async (dir) => {
    const p = fixedOneChannel();
    const classNames = ["background", "lung", "infection"];
    // Digests of the same cases written by the one-channel writer (git HEAD eb8a14b).
    const expected = [
      "da0041af4c788130f178e8e368c5a628add8b3628dd6f4b9580b34767a7013d7",
      "54c208ed952bb04ea34a1b36b8e41543cd94efc3690748e82e34504f85a7a783",
    ];
    for (const asList of [false, true]) {
      const a = join(dir, `a${asList}.zarr`), b = join(dir, `b${asList}.zarr`);
      const image = asList ? [p.image] : p.image;
      await writeCase(a, { image, label: p.label, chunks: 8, name: "a", classNames });
      await writeCase(b, {
        image: asList ? [p.float] : p.float,
        chunks: [4, 8, 16],
        codec: "gzip",
      });
      deepStrictEqual([await folderDigest(a), await folderDigest(b)], expected);
      const meta = JSON.parse(await Deno.readTextFile(join(a, "0", "zarr.json")));
      deepStrictEqual(meta.dimension_names, ["z", "y", "x"]);
      deepStrictEqual(meta.shape, [7, 19, 23]);
      const c = await openCase(a);
      strictEqual(c.channels, 1);
      deepStrictEqual((await c.readFullChannels())[0].data, p.image.data);
    }
  });
});

Deno.test("ome-zarr two channels: axes c,z,y,x, one channel per chunk, read back bit-exact", async () => {
  await withTempDir(async (dir) => {
    const ct = ctVolume(3);
    // An MRI-like channel: fractional values, so the image is stored float32.
    const rng = new Random(9);
    const mr = { ...ct, data: Float32Array.from(ct.data, () => 100 + 30 * rng.normal()) };
    const path = join(dir, "two.zarr");
    await writeCase(path, {
      image: [ct, mr],
      label: labelVolume(),
      chunks: 16,
      channelNames: ["CT", "T2"],
      name: "two",
    });
    const group = JSON.parse(await Deno.readTextFile(join(path, "zarr.json"))).attributes;
    const ms = group.ome.multiscales[0];
    deepStrictEqual(ms.axes.map((a: { name: string; type: string }) => [a.name, a.type]), [
      ["c", "channel"],
      ["z", "space"],
      ["y", "space"],
      ["x", "space"],
    ]);
    deepStrictEqual(ms.datasets[0].coordinateTransformations[0].scale, [1, ...SPACING]);
    deepStrictEqual(group.voxseg.channels, ["CT", "T2"]);
    const array = JSON.parse(await Deno.readTextFile(join(path, "0", "zarr.json")));
    deepStrictEqual(array.shape, [2, ...SHAPE]);
    deepStrictEqual(array.chunk_grid.configuration.chunk_shape, [1, 16, 16, 16]);
    deepStrictEqual(array.dimension_names, ["c", "z", "y", "x"]);
    strictEqual(array.data_type, "float32");
    ok((await Deno.stat(join(path, "0", "c", "1", "0", "0", "0"))).isFile);

    const c = await openCase(path);
    strictEqual(c.channels, 2);
    deepStrictEqual(c.channelNames, ["CT", "T2"]);
    deepStrictEqual(c.shape, SHAPE);
    deepStrictEqual(c.chunks, [16, 16, 16]);
    deepStrictEqual(c.spacingMm, SPACING);
    const full = await c.readFullChannels();
    deepStrictEqual(full.map((v) => v.shape), [SHAPE, SHAPE]);
    deepStrictEqual(Array.from(full[0].data), Array.from(ct.data));
    deepStrictEqual(full[1].data, mr.data);
    await rejects(c.readFullImage(), /has 2 image channels; read them with readFullChannels/);
    // A box across chunks and past the edge: channel-major, each channel padded by its fill.
    const start: Shape3 = [30, -3, 20], size: Shape3 = [9, 12, 13];
    const box = await c.readImage(start, size, [-1024, 7]);
    const n = size[0] * size[1] * size[2];
    strictEqual(box.length, 2 * n);
    deepStrictEqual(Array.from(box.subarray(0, n)), crop(ct.data, start, size, -1024));
    deepStrictEqual(box.subarray(n), Float32Array.from(crop(mr.data, start, size, 7)));
    deepStrictEqual(
      await c.readLabel(start, size),
      Uint8Array.from(crop(labelVolume().data, start, size, 0)),
    );
    await rejects(c.readImage(start, size, [1, 2, 3]), /fill has 3 values for the 2 channels/);
  });
});

Deno.test("ome-zarr channels must share one grid", async () => {
  await withTempDir(async (dir) => {
    const ct = ctVolume();
    const other = { ...ct, shape: [SHAPE[0], SHAPE[2], SHAPE[1]] as Shape3 };
    await rejects(
      writeCase(join(dir, "x.zarr"), { image: [ct, other] }),
      /image channel 1: shape \[37,29,41\] differs from channel 0's \[37,41,29\]/,
    );
    const moved = { ...ct, affine: ct.affine.map((v, i) => (i === 3 ? v + 1 : v)) };
    await rejects(
      writeCase(join(dir, "x.zarr"), { image: [ct, moved] }),
      /image channel 1: spacing or affine differs from channel 0's/,
    );
    await rejects(
      writeCase(join(dir, "x.zarr"), { image: [ct, ct], channelNames: ["CT"] }),
      /channelNames has 1 names for 2 channels/,
    );
  });
});
