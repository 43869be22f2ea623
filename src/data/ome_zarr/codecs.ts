/**
 * Native chunk decompression for zarrita. zarrita decodes zstd with numcodecs' WebAssembly
 * build and gzip through a DecompressionStream; both are slow next to the zstd and zlib that
 * Deno ships natively (`node:zlib`), and Deno's zstd is itself slower than the system's
 * libzstd (./libzstd.ts). Decoding is most of what the training loader's workers do (a 64³
 * patch touches up to 8 image and 8 label chunks, and a cache a fraction of the dataset misses
 * most of them): a 64³ int16 CT chunk takes ~2.8–4.4 ms of CPU through numcodecs, ~1.3–2.0 ms
 * through `node:zlib` and ~1.0–1.6 ms through libzstd on a Zen 3 core (bench/zstd_decode.ts;
 * the ranges are two runs on a machine whose speed drifts). {@link useNativeCodecs} swaps the
 * decoders in zarrita's codec registry; the bytes are the same (zstd and gzip are lossless
 * formats with one decoding), encoding is left to numcodecs as before, and a runtime without
 * the native functions keeps zarrita's own.
 */

import * as zarr from "zarrita";
import * as zlib from "node:zlib";
import Zstd from "numcodecs/zstd";
import { systemZstd } from "./libzstd.ts";

type CodecEntry = Awaited<ReturnType<NonNullable<ReturnType<typeof zarr.registry.get>>>>;

/**
 * A native decompressor's result as a Uint8Array. Small results are copied out of Node's
 * shared buffer pool, so that a cached chunk does not pin the pool; larger ones own their
 * buffer (possibly a byte longer than the result, see {@link decodedBytes}) and are returned as
 * they are.
 */
function ownBytes(out: Uint8Array): Uint8Array {
  return out.byteLength < 8192
    ? new Uint8Array(out)
    : new Uint8Array(out.buffer as ArrayBuffer, out.byteOffset, out.byteLength);
}

const ITEM_BYTES: Record<string, number> = {
  bool: 1,
  int8: 1,
  uint8: 1,
  int16: 2,
  uint16: 2,
  float16: 2,
  int32: 4,
  uint32: 4,
  float32: 4,
  int64: 8,
  uint64: 8,
  float64: 8,
};

/**
 * The bytes a chunk of `meta` decodes to when the compressor follows the `bytes` codec, as
 * voxseg writes them; undefined for other element types.
 */
function decodedBytes(
  meta: { dataType?: string; shape?: number[] } | undefined,
): number | undefined {
  const item = ITEM_BYTES[meta?.dataType ?? ""];
  if (!item || !meta?.shape) return undefined;
  return meta.shape.reduce((n, s) => n * s, item);
}

/**
 * The output buffer size to hand the native decoder: one byte more than the expected result,
 * so a chunk decodes into one buffer (Deno's zlib otherwise decodes 64 KiB at a time and
 * concatenates, ~20% slower for a 512 KiB chunk). A wrong guess only costs that.
 */
function chunkSize(expected: number | undefined): { chunkSize: number } | undefined {
  return expected && expected < 2 ** 30 ? { chunkSize: Math.max(64, expected + 1) } : undefined;
}

/**
 * zstd: decoded by the system's libzstd where it can be loaded (./libzstd.ts), else by Deno's
 * native zstd; encoded by numcodecs (as zarrita would).
 */
class NativeZstd {
  readonly kind = "bytes_to_bytes";
  #encoder: ReturnType<typeof Zstd.fromConfig>;
  #options?: { chunkSize: number };

  constructor(level: number, expected?: number) {
    this.#encoder = Zstd.fromConfig({ id: "zstd", level });
    this.#options = chunkSize(expected);
  }

  static fromConfig(
    config: { level?: number } | undefined,
    meta?: { dataType?: string; shape?: number[] },
  ): NativeZstd {
    return new NativeZstd(config?.level ?? 0, decodedBytes(meta));
  }

  async encode(data: Uint8Array): Promise<Uint8Array> {
    return await this.#encoder.encode(data);
  }

  decode(data: Uint8Array): Uint8Array {
    // Deno's decoder ends quietly where truncated input ends; numcodecs rejects such input, so
    // check the frames are whole first, and the output is the size their headers declare.
    const declared = zstdContentSize(data);
    const libzstd = declared ? systemZstd() : null;
    if (libzstd) {
      // Straight into the chunk's own buffer (./libzstd.ts); it fails on data that overruns it.
      const out = new Uint8Array(declared!);
      const written = libzstd(data, out);
      if (written !== declared) {
        throw new Error(
          `corrupt zstd data: the frame header declares ${declared} bytes but it decodes to ` +
            `${written}`,
        );
      }
      return out;
    }
    const out = zlib.zstdDecompressSync(data, this.#options);
    if (declared !== undefined && out.byteLength !== declared) {
      throw new Error(
        `corrupt zstd data: the frame header declares ${declared} bytes but it decodes to ` +
          `${out.byteLength}`,
      );
    }
    return ownBytes(out);
  }
}

const ZSTD_MAGIC = 0xfd2fb528;

/**
 * Walks the frames of zstd data without decoding them (RFC 8878: frame header, then block
 * headers, each giving its block's size, then the optional checksum) and returns the bytes
 * they decode to as their headers declare it (undefined when a frame does not declare it).
 * Throws when the data ends inside a frame or is not zstd.
 */
export function zstdContentSize(data: Uint8Array): number | undefined {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const end = data.byteLength;
  const need = (at: number, bytes: number, what: string) => {
    if (at + bytes > end) {
      throw new Error(
        `truncated zstd data: ${what} at byte ${at} runs past the end of the ${end} bytes`,
      );
    }
  };
  let at = 0, total: number | undefined = 0;
  need(0, 4, "the frame magic number");
  while (at < end) {
    need(at, 4, "a frame magic number");
    const magic = view.getUint32(at, true);
    if ((magic & 0xfffffff0) === 0x184d2a50) { // skippable frame
      need(at + 4, 4, "a skippable frame's size");
      const size = view.getUint32(at + 4, true);
      need(at + 8, size, "a skippable frame");
      at += 8 + size;
      continue;
    }
    if (magic !== ZSTD_MAGIC) {
      throw new Error(`corrupt zstd data: no frame magic number at byte ${at}`);
    }
    need(at + 4, 1, "a frame header");
    const descriptor = data[at + 4];
    const fcsFlag = descriptor >> 6, singleSegment = (descriptor >> 5) & 1;
    const checksum = (descriptor >> 2) & 1, didFlag = descriptor & 3;
    if (descriptor & 8) throw new Error(`corrupt zstd data: reserved header bit set at ${at}`);
    const fcsBytes = [singleSegment, 2, 4, 8][fcsFlag];
    const didBytes = [0, 1, 2, 4][didFlag];
    let p = at + 5 + (singleSegment ? 0 : 1) + didBytes;
    need(p, fcsBytes, "a frame header");
    if (fcsBytes === 0) total = undefined;
    else if (total !== undefined) {
      total += fcsBytes === 1
        ? data[p]
        : fcsBytes === 2
        ? view.getUint16(p, true) + 256
        : fcsBytes === 4
        ? view.getUint32(p, true)
        : Number(view.getBigUint64(p, true));
    }
    p += fcsBytes;
    for (let last = 0; !last;) {
      need(p, 3, "a block header");
      const header = data[p] | (data[p + 1] << 8) | (data[p + 2] << 16);
      last = header & 1;
      const type = (header >> 1) & 3, size = header >>> 3;
      if (type === 3) throw new Error(`corrupt zstd data: reserved block type at byte ${p}`);
      const bytes = type === 1 ? 1 : size; // an RLE block holds one byte
      need(p + 3, bytes, "a block");
      p += 3 + bytes;
    }
    if (checksum) need(p, 4, "a frame checksum");
    at = p + (checksum ? 4 : 0);
  }
  return total;
}

/** gzip: decoded by Deno's native zlib (zarrita's gzip codec cannot encode either). */
class NativeGzip {
  readonly kind = "bytes_to_bytes";
  #options?: { chunkSize: number };

  constructor(expected?: number) {
    this.#options = chunkSize(expected);
  }

  static fromConfig(_config: unknown, meta?: { dataType?: string; shape?: number[] }): NativeGzip {
    return new NativeGzip(decodedBytes(meta));
  }

  encode(): Uint8Array {
    throw new Error("gzip encoding is not supported by the reader's codec");
  }

  decode(data: Uint8Array): Uint8Array {
    return ownBytes(zlib.gunzipSync(data, this.#options));
  }
}

let installed = false;

/**
 * Registers the native zstd and gzip decoders in zarrita's codec registry (once; arrays opened
 * afterwards use them). Returns whether native zstd is in use.
 */
export function useNativeCodecs(): boolean {
  if (installed) return true;
  if (typeof zlib.zstdDecompressSync !== "function" || typeof zlib.gunzipSync !== "function") {
    return false;
  }
  const zstd = () => Promise.resolve(NativeZstd as unknown as CodecEntry);
  const gzip = () => Promise.resolve(NativeGzip as unknown as CodecEntry);
  for (const name of ["zstd", "numcodecs.zstd"]) zarr.registry.set(name, zstd);
  for (const name of ["gzip", "numcodecs.gzip"]) zarr.registry.set(name, gzip);
  installed = true;
  return true;
}
