import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import { gzipSync, zstdCompressSync, zstdDecompressSync } from "node:zlib";
import * as zarr from "zarrita";
import Zstd from "numcodecs/zstd";
import { Random } from "../../src/base/random.ts";
import { useNativeCodecs, zstdContentSize } from "../../src/data/ome_zarr/codecs.ts";
import { systemZstd } from "../../src/data/ome_zarr/libzstd.ts";

const native = useNativeCodecs();

/** CT-like int16 bytes: runs of air and noisy tissue (compressible, not trivially). */
function ctBytes(n: number, seed: number): Uint8Array {
  const rng = new Random(seed);
  const v = Int16Array.from(
    { length: n },
    (_, i) => ((i >> 6) % 3 === 0 ? -1000 : 40) + rng.int(-20, 21),
  );
  return new Uint8Array(v.buffer);
}

async function codec(name: string, meta: { dataType: string; shape: number[] }) {
  const entry = await zarr.registry.get(name)!();
  return entry.fromConfig(
    { level: 3, checksum: false },
    {
      ...meta,
      codecs: [],
      fillValue: 0,
    } as Parameters<typeof entry.fromConfig>[1],
  );
}

Deno.test("native codecs: zarrita's zstd and gzip decode natively, the same bytes as numcodecs", async () => {
  ok(native, "this Deno has node:zlib's zstd");
  const numcodecs = Zstd.fromConfig({ id: "zstd", level: 3 });
  for (const [shape, seed] of [[[4, 4, 4], 1], [[16, 16, 8], 2], [[64, 64, 64], 3]] as const) {
    const n = shape[0] * shape[1] * shape[2];
    const raw = ctBytes(n, seed);
    const meta = { dataType: "int16", shape: [...shape] };
    const zstd = await codec("zstd", meta), gzip = await codec("gzip", meta);
    const encoded = new Uint8Array(await numcodecs.encode(raw));
    const decoded = await zstd.decode(encoded);
    deepStrictEqual(decoded, new Uint8Array(await numcodecs.decode(encoded)));
    deepStrictEqual(decoded, raw);
    strictEqual(decoded.byteOffset % 2, 0);
    // Encoding is numcodecs' own: the bytes the writer produces.
    deepStrictEqual(new Uint8Array(await zstd.encode(raw)), encoded);
    deepStrictEqual(await gzip.decode(new Uint8Array(gzipSync(raw))), raw);
    // Without a declared content size (a streaming encoder), and a wrong size guess.
    const streamed = new Uint8Array(zstdCompressSync(raw));
    strictEqual(zstdContentSize(streamed), undefined);
    deepStrictEqual(await zstd.decode(streamed), raw);
    const guess = await codec("zstd", { dataType: "uint8", shape: [3] });
    deepStrictEqual(await guess.decode(encoded), raw);
  }
});

Deno.test("native codecs: truncated or corrupt data is rejected, not decoded short", async () => {
  const raw = ctBytes(8 * 16 * 16, 4);
  const meta = { dataType: "int16", shape: [8, 16, 16] };
  const zstd = await codec("zstd", meta), gzip = await codec("gzip", meta);
  const encoded = new Uint8Array(await Zstd.fromConfig({ id: "zstd", level: 3 }).encode(raw));
  for (const cut of [0, 3, 5, 9, encoded.length >> 1, encoded.length - 1]) {
    throws(() => zstd.decode(encoded.subarray(0, cut)), /truncated zstd data/);
  }
  const notZstd = encoded.slice();
  notZstd[0] ^= 0xff;
  throws(() => zstd.decode(notZstd), /corrupt zstd data: no frame magic number/);
  const gz = new Uint8Array(gzipSync(raw));
  throws(() => gzip.decode(gz.subarray(0, gz.length >> 1)));
});

Deno.test("zstdContentSize: frames, skippable frames, declared sizes", async () => {
  const numcodecs = Zstd.fromConfig({ id: "zstd", level: 3 });
  for (const n of [0, 1, 255, 256, 300, 65791, 65792, 70_000, 1 << 20]) {
    const one = new Uint8Array(await numcodecs.encode(new Uint8Array(n).map((_, i) => i % 7)));
    strictEqual(zstdContentSize(one), n);
    const skippable = new Uint8Array([0x5a, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
    strictEqual(zstdContentSize(new Uint8Array([...one, ...skippable, ...one])), 2 * n);
    throws(
      () => zstdContentSize(new Uint8Array([...one, ...skippable.subarray(0, 9)])),
      /truncated/,
    );
  }
});

Deno.test("system libzstd: the codec's decoder where it loads, the same bytes as Deno's", async () => {
  const libzstd = systemZstd();
  // Debian ships libzstd.so.1 with apt itself: on Linux here it must load.
  if (Deno.build.os === "linux") ok(libzstd, "libzstd.so.1 loads through FFI");
  if (!libzstd) return;
  const numcodecs = Zstd.fromConfig({ id: "zstd", level: 3 });
  const raw = ctBytes(32 * 24 * 40, 5);
  const encoded = new Uint8Array(await numcodecs.encode(raw));
  const out = new Uint8Array(raw.length);
  strictEqual(libzstd(encoded, out), raw.length);
  deepStrictEqual(out, raw);
  deepStrictEqual(out, new Uint8Array(zstdDecompressSync(encoded)));
  // Two frames with a skippable one between them decode as one buffer.
  const skippable = new Uint8Array([0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 7, 7]);
  const twice = new Uint8Array(2 * raw.length);
  strictEqual(libzstd(new Uint8Array([...encoded, ...skippable, ...encoded]), twice), twice.length);
  deepStrictEqual(twice, new Uint8Array([...raw, ...raw]));
  // Too small a buffer, or bytes that are not zstd, fail with zstd's reason.
  throws(() => libzstd(encoded, new Uint8Array(100)), /corrupt zstd data: .*buffer/i);
  throws(() => libzstd(raw, out), /corrupt zstd data: /);
});
