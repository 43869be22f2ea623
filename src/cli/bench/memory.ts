/**
 * Peak resident memory, measured the same way on both sides of a side-by-side benchmark: the
 * peak is reset (`/proc/self/clear_refs` ← 5) right before the measured work and read
 * (`VmHWM`) right after it, so neither side's figure includes its start-up, its warm-up or its
 * inputs' loading. The Python peers do the same (bench/peer/*.py). What the figure includes
 * besides the measured work is what the process holds: `bench train` and `bench infer`
 * therefore run voxseg's side of a row in a fresh process of its own (train.ts, infer.ts), as
 * the peer always is.
 */

const MB = 1e6;

/** A field of /proc/self/status (or another pid's) in MB; undefined off Linux. */
export function procStatusMb(
  field: "VmHWM" | "VmRSS",
  pid: number | "self" = "self",
): number | undefined {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kb = text.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
    return kb ? (Number(kb[1]) * 1024) / MB : undefined;
  } catch {
    return undefined;
  }
}

/** Resets this process's peak RSS (Linux ≥ 4.0); false where that is not possible. */
export function resetPeakRss(): boolean {
  try {
    Deno.writeTextFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false;
  }
}
