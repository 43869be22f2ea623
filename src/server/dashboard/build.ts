/**
 * Builds the dashboard's browser assets into dist/ (committed, so the server and the compiled
 * binary embed them without a build step): `app.js`, app.ts and its imports — Niivue and uPlot
 * included — bundled and minified by `deno bundle`; `app.css`, uPlot's stylesheet followed by
 * style.css.
 *
 *   deno task dashboard                    # rebuild dist/
 *   deno run -A src/server/dashboard/build.ts --out DIR   # build elsewhere (the freshness test)
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import uplotCss from "uplot/dist/uPlot.min.css" with { type: "text" };
import denoJson from "../../../deno.json" with { type: "json" };

const HERE = new URL(".", import.meta.url);
const REPO = fileURLToPath(new URL("../../../", import.meta.url));
/** Where the committed assets live. */
export const DIST_DIR = fileURLToPath(new URL("dist/", HERE));

/** The stylesheet served as /dashboard/app.css. */
export async function dashboardCss(): Promise<string> {
  const own = await Deno.readTextFile(new URL("style.css", HERE));
  return `/* ${denoJson.imports.uplot} (MIT licence) */\n${uplotCss.trim()}\n\n${own}`;
}

/** Bundles app.ts into `outDir/app.js` and writes `outDir/app.css`. */
export async function buildDashboard(outDir: string): Promise<void> {
  await Deno.mkdir(outDir, { recursive: true });
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--config",
      join(REPO, "deno.json"),
      "--platform",
      "browser",
      "--minify",
      "--output",
      join(outDir, "app.js"),
      fileURLToPath(new URL("app.ts", HERE)),
    ],
    cwd: REPO,
    stdout: "inherit",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    throw new Error(`deno bundle failed (${code}):\n${new TextDecoder().decode(stderr)}`);
  }
  await Deno.writeTextFile(join(outDir, "app.css"), await dashboardCss());
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { out: { type: "string" } } });
  const out = values.out ?? DIST_DIR;
  await buildDashboard(out);
  for (const file of ["app.js", "app.css"]) {
    const { size } = await Deno.stat(join(out, file));
    console.log(`${join(out, file)}  ${(size / 1024).toFixed(0)} KiB`);
  }
}
