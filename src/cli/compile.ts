/**
 * `deno task compile`: builds the single-file `voxseg` binary with `deno compile`.
 *
 * Shaders are imported as text modules and so are embedded with the code; the patch-loader
 * worker is loaded by URL and must be included explicitly. `deno compile` embeds a runtime
 * (`denort`) it downloads from Deno's release server; where that server is unreachable, set
 * DENORT_BIN to a denort binary of the same Deno version (from denort-<target>.zip of that
 * release).
 */

import { parseArgs } from "node:util";

/** Files loaded at run time by URL rather than by static import. */
export const RUNTIME_INCLUDES = ["src/data/loader_worker.ts"];

export const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
] as const;

/** The `deno compile` arguments for a target and output path. */
export function compileArgs(output: string, target?: string): string[] {
  return [
    "compile",
    "--allow-all",
    "--unstable-webgpu",
    // Only the npm packages the program imports (not every package in deno.lock: tests and
    // peers use some).
    "--exclude-unused-npm",
    ...RUNTIME_INCLUDES.flatMap((f) => ["--include", f]),
    ...(target ? ["--target", target] : []),
    "--output",
    output,
    "mod.ts",
  ];
}

async function releaseServerReachable(): Promise<boolean> {
  try {
    const res = await fetch("https://dl.deno.land/release-latest.txt", {
      signal: AbortSignal.timeout(5000),
    });
    await res.body?.cancel();
    return res.ok;
  } catch {
    return false;
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { output: { type: "string", default: "dist/voxseg" }, target: { type: "string" } },
  });
  if (values.target && !TARGETS.includes(values.target as (typeof TARGETS)[number])) {
    console.error(`compile: unknown --target ${values.target}; one of ${TARGETS.join(", ")}`);
    Deno.exit(2);
  }
  const denort = Deno.env.get("DENORT_BIN");
  if (denort) {
    try {
      Deno.statSync(denort);
    } catch {
      console.error(`compile: DENORT_BIN=${denort} does not exist`);
      Deno.exit(1);
    }
  } else if (!(await releaseServerReachable())) {
    console.error(
      `compile: deno compile needs the denort runtime from Deno's release server, which is not ` +
        `reachable from here.\nOn a connected machine download denort-<target>.zip for Deno ` +
        `${Deno.version.deno} from the Deno release page, unzip it, and run:\n` +
        `  DENORT_BIN=/path/to/denort deno task compile [--target TARGET]`,
    );
    Deno.exit(1);
  }
  const cmd = new Deno.Command(Deno.execPath(), {
    args: compileArgs(values.output!, values.target),
    stdout: "inherit",
    stderr: "inherit",
  });
  const { code } = await cmd.output();
  if (code === 0) console.log(`built ${values.output}`);
  Deno.exit(code);
}
