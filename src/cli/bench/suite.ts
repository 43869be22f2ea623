/**
 * What a benchmark suite is and yields, shared by the suites in this folder, `voxseg bench`
 * (../bench.ts, which loads them) and the peer scripts in bench/peer/.
 */

/** One measurement. Suites add their own fields (gflops, patches_per_s, rss_mb, ratio…). */
import { fileURLToPath } from "node:url";

export interface BenchResult {
  name: string;
  [field: string]: string | number | boolean | null;
}

export interface BenchSuite {
  summary: string;
  run(options: { quick: boolean }): AsyncIterable<BenchResult>;
}

/** Median of a list of numbers. */
export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * The arguments that run this CLI again with `cli` in a child process (`Deno.execPath()`): the
 * binary itself when compiled, else `deno run` on this repository's mod.ts and config.
 */
export function selfArgs(cli: string[]): string[] {
  if (Deno.build.standalone) return cli;
  return [
    "run",
    "-A",
    "--config",
    fileURLToPath(new URL("../../../deno.json", import.meta.url)),
    fileURLToPath(new URL("../../../mod.ts", import.meta.url)),
    ...cli,
  ];
}
