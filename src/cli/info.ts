/** `voxseg info`: what WebGPU adapter voxseg runs on. */

import { initGpu } from "../gpu/mod.ts";
import { describeTiles, tileCachePath, tunedTiles } from "../ops/tuning.ts";
import { parseFlags } from "./args.ts";

const HELP = `voxseg info [--json]

Prints the WebGPU adapter, backend, whether it is a software fallback, the features voxseg
uses (shader-f16, timestamp-query, subgroups), the limits that bound patch and batch size, and
the convolution blocks \`voxseg tune\` measured for this adapter, if any.`;

export async function main(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { json: { type: "boolean" } }, HELP);
  const { info } = await initGpu();
  const tuned = tunedTiles();
  if (values.json) {
    console.log(JSON.stringify({ ...info, tunedTiles: tuned }));
    return 0;
  }
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
  const rows: [string, string][] = [
    ["adapter", info.description],
    ["vendor", `${info.vendor}${info.architecture ? ` (${info.architecture})` : ""}`],
    ["backend", info.backend],
    ["fallback", info.isFallbackAdapter ? "yes (software adapter)" : "no"],
    ["features", info.features.join(", ") || "(none)"],
    ["max buffer", mib(info.limits.maxBufferSize)],
    ["max storage binding", mib(info.limits.maxStorageBufferBindingSize)],
    ["workgroup storage", `${info.limits.maxComputeWorkgroupStorageSize} bytes`],
    ["invocations/workgroup", String(info.limits.maxComputeInvocationsPerWorkgroup)],
    ["workgroups/dimension", String(info.limits.maxComputeWorkgroupsPerDimension)],
    [
      "conv blocks",
      tuned
        ? `tuned ${tuned.date.slice(0, 10)}: conv ${describeTiles(tuned.conv3)}, wgrad ${
          describeTiles(tuned.wgrad3)
        } (${tileCachePath()})`
        : "built-in (voxseg tune measures this adapter's)",
    ],
  ];
  for (const [k, v] of rows) console.log(`${k.padEnd(22)} ${v}`);
  return 0;
}
