import assert from "node:assert/strict";
import { returnFreedHeap } from "../../src/gpu/host_heap.ts";

/** VmRSS of this process in MB (Linux). */
function rssMb(): number {
  const kb = Deno.readTextFileSync("/proc/self/status").match(/^VmRSS:\s+(\d+) kB/m);
  return Number(kb![1]) / 1024;
}

const linux = Deno.build.os === "linux";

Deno.test("returnFreedHeap: does its work on Linux (glibc, FFI granted), nothing elsewhere", () => {
  assert.equal(returnFreedHeap(), linux);
});

Deno.test({
  name: "returnFreedHeap: freed heap memory under a live allocation goes back to the system",
  ignore: !linux,
  fn() {
    // What an LLVM compile leaves: many blocks malloc'd and written, then freed, with small
    // live allocations between them, so that the heap can neither merge them nor shrink from
    // its top. 3000 × 64 KiB (below glibc's mmap threshold, so in the heap) = 188 MiB.
    const libc = Deno.dlopen("libc.so.6", {
      malloc: { parameters: ["usize"], result: "pointer" },
      free: { parameters: ["pointer"], result: "void" },
      memset: { parameters: ["pointer", "i32", "usize"], result: "pointer" },
    });
    const pins: Deno.PointerValue[] = [];
    try {
      const size = 64 * 1024;
      const blocks = Array.from({ length: 3000 }, () => {
        const p = libc.symbols.malloc(BigInt(size));
        libc.symbols.memset(p, 1, BigInt(size));
        pins.push(libc.symbols.malloc(64n));
        return p;
      });
      for (const p of blocks) libc.symbols.free(p);
      const before = rssMb();
      assert(returnFreedHeap());
      const after = rssMb();
      assert(
        before - after > 100,
        `RSS ${before.toFixed(0)} MB → ${after.toFixed(0)} MB: the freed 188 MiB stayed resident`,
      );
    } finally {
      for (const p of pins) libc.symbols.free(p);
      libc.close();
    }
  },
});
