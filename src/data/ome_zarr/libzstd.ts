/**
 * zstd decoding through the system's libzstd, called over FFI, straight into a buffer of the
 * size the frame declares.
 *
 * Decoding chunks is most of a loader worker's time (./codecs.ts). Deno's `node:zlib` zstd
 * takes about 1.3× the time of libzstd's own `ZSTD_decompressDCtx` for a 64³ int16 CT chunk on
 * one Zen 3 core (1.33 ms against 1.03 ms, bench/zstd_decode.ts), and hands back a Node Buffer
 * the codec then re-wraps; through FFI the decoder writes into the Uint8Array that becomes the
 * cached chunk, with one decompression context per thread, reused. The loader's 64³ patches
 * came 1.17× faster for it (2 workers, median of 5 runs side by side on that machine).
 *
 * Only where it applies: the library loads (Debian and Ubuntu ship libzstd.so.1 with apt itself,
 * so every image voxseg's Dockerfile builds has it; macOS with Homebrew's zstd) and FFI is
 * permitted (`--allow-ffi`, part of `-A` and of the compiled binary's permissions). Elsewhere
 * {@link systemZstd} is null and the codec keeps `node:zlib`. `VOXSEG_ZSTD=node` turns it off
 * (for comparing the two).
 */

/** Decodes one or more whole zstd frames into `out`, returning the bytes written. */
export type ZstdDecodeInto = (src: Uint8Array, out: Uint8Array) => number;

const SYMBOLS = {
  ZSTD_createDCtx: { parameters: [], result: "pointer" },
  ZSTD_decompressDCtx: {
    parameters: ["pointer", "buffer", "usize", "buffer", "usize"],
    result: "usize",
  },
  ZSTD_isError: { parameters: ["usize"], result: "u32" },
  ZSTD_getErrorName: { parameters: ["usize"], result: "pointer" },
} as const;

/** Where each platform's loader finds libzstd (names first, then common install paths). */
const LIBRARY_NAMES: Partial<Record<typeof Deno.build.os, string[]>> = {
  linux: ["libzstd.so.1", "libzstd.so"],
  darwin: [
    "libzstd.1.dylib",
    "/opt/homebrew/lib/libzstd.1.dylib",
    "/usr/local/lib/libzstd.1.dylib",
  ],
  windows: ["zstd.dll", "libzstd.dll"],
};

let loaded: ZstdDecodeInto | null | undefined;

/** The system libzstd's decoder, or null where it cannot be used (see the module comment). */
export function systemZstd(): ZstdDecodeInto | null {
  if (loaded === undefined) loaded = load();
  return loaded;
}

function load(): ZstdDecodeInto | null {
  try {
    if (Deno.env.get("VOXSEG_ZSTD") === "node") return null;
  } catch {
    // no permission to read the environment: the default applies
  }
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
  } catch {
    return null;
  }
  for (const name of LIBRARY_NAMES[Deno.build.os] ?? []) {
    let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
    try {
      lib = Deno.dlopen(name, SYMBOLS);
    } catch {
      continue; // not here under this name
    }
    const { ZSTD_createDCtx, ZSTD_decompressDCtx, ZSTD_isError, ZSTD_getErrorName } = lib.symbols;
    const context = ZSTD_createDCtx();
    if (context === null) {
      lib.close();
      return null;
    }
    return (src, out) => {
      const result = BigInt(
        ZSTD_decompressDCtx(context, out, BigInt(out.byteLength), src, BigInt(src.byteLength)),
      );
      if (ZSTD_isError(result)) {
        const name = ZSTD_getErrorName(result);
        const why = name === null ? "unknown error" : new Deno.UnsafePointerView(name).getCString();
        throw new Error(`corrupt zstd data: ${why}`);
      }
      return Number(result);
    };
  }
  return null;
}
