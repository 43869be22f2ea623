/**
 * Returning the host heap that pipeline compilation freed to the operating system.
 *
 * A software adapter (lavapipe, llvmpipe) compiles each compute pipeline with LLVM inside this
 * process, and one large convolution kernel takes several hundred MB of malloc'd memory while
 * it compiles (about 650 MB for the 3×3×3 texel kernel on Mesa 22.3, measured by VmRSS around
 * `createComputePipeline`). glibc keeps such freed memory in the heap, so the process's resident
 * size stayed at the compile's peak for its whole life: `voxseg infer` on a 64×512×512 case held
 * 1.26 GB at the end where 0.72 GB were in use. `malloc_trim(0)` after each compile hands the
 * freed pages back (the compile's own peak remains).
 *
 * Only where it applies: Linux with glibc, and FFI permitted (`--allow-ffi`, part of `-A` and
 * of the compiled binary's permissions). Elsewhere, or when the library cannot be opened, this
 * does nothing.
 */

type Trim = (pad: number | bigint) => number;

let trim: Trim | null | undefined;

function load(): Trim | null {
  if (Deno.build.os !== "linux") return null;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
    const lib = Deno.dlopen("libc.so.6", {
      malloc_trim: { parameters: ["usize"], result: "i32" },
    });
    return (pad) => lib.symbols.malloc_trim(BigInt(pad)) as number;
  } catch {
    return null; // not glibc (musl, …) or no FFI in this runtime
  }
}

/**
 * Returns freed heap pages to the operating system (glibc `malloc_trim(0)`); true when that was
 * possible on this platform. Cheap next to a pipeline compile (a walk of the heap's free lists).
 */
export function returnFreedHeap(): boolean {
  trim ??= load();
  if (!trim) return false;
  trim(0);
  return true;
}
