/**
 * How long the loader's workers spend decoding one chunk: a 64³ int16 chunk of a CT-like
 * phantom (air, body, lungs, noise), compressed with zstd at voxseg's level (3) by numcodecs
 * (as voxseg writes it), decoded by numcodecs' WebAssembly zstd, by Deno's native one told the
 * decoded size, and by the system's libzstd into a buffer of that size (as
 * src/data/ome_zarr/codecs.ts reads it where libzstd loads; the others are its fallbacks).
 * Prints one JSON line per decoder: wall and process-CPU milliseconds per decode (CPU time
 * holds on a shared machine), and the bytes.
 *
 *   deno run -A bench/zstd_decode.ts
 *
 * A 64³ patch at a random offset covers up to 8 image chunks (and 8 label chunks), so when
 * the chunk cache misses, decoding alone costs about 8 × this per patch and worker.
 */

import zlib from "node:zlib";
import Zstd from "numcodecs/zstd";
import { Random } from "../src/base/random.ts";
import { processCpuMs } from "../src/cli/bench/ops.ts";
import { systemZstd } from "../src/data/ome_zarr/libzstd.ts";

const side = 64, n = side ** 3;
const rng = new Random(0);
const chunk = new Int16Array(n);
for (let z = 0, i = 0; z < side; z++) {
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++, i++) {
      const lung = ((y - 32) / 20) ** 2 + ((Math.abs(x - 32) - 14) / 10) ** 2 < 1;
      const body = ((y - 32) / 30) ** 2 + ((x - 32) / 31) ** 2 < 1;
      chunk[i] = (lung ? -850 : body ? 40 : -1000) + Math.round(rng.normal(0, 20));
    }
  }
}
const zstd = Zstd.fromConfig({ id: "zstd", level: 3 });
const encoded = new Uint8Array(await zstd.encode(new Uint8Array(chunk.buffer)));
const decoders: [string, () => unknown][] = [
  ["numcodecs (WebAssembly)", () => zstd.decode(encoded)],
  ["Deno native", () => zlib.zstdDecompressSync(encoded, { chunkSize: n * 2 })],
];
const libzstd = systemZstd();
if (libzstd) decoders.push(["system libzstd (FFI)", () => libzstd(encoded, new Uint8Array(n * 2))]);
else console.error("the system's libzstd is not loadable here: its row is left out");
for (const [decoder, decode] of decoders) {
  for (let i = 0; i < 10; i++) await decode(); // warm-up: WASM compilation
  const reps = 200;
  const cpu0 = processCpuMs(), t0 = performance.now();
  for (let i = 0; i < reps; i++) await decode();
  const wallMs = (performance.now() - t0) / reps, cpuMs = (processCpuMs() - cpu0) / reps;
  console.log(JSON.stringify({
    name: `zstd decode 64³ int16 chunk, ${decoder}`,
    decoded_kib: (n * 2) / 1024,
    compressed_kib: +(encoded.length / 1024).toFixed(1),
    ms: +wallMs.toFixed(2),
    cpu_ms: +cpuMs.toFixed(2),
    mb_per_cpu_s: +((n * 2) / 1e3 / cpuMs).toFixed(0),
  }));
}
