/**
 * voxseg: 3D U-Net training and inference for volumetric segmentation on WebGPU.
 *
 * As a library it exposes the GPU runtime, differentiable ops and (as they land) models,
 * data, training and inference. Run as the main module it is the `voxseg` CLI.
 * @module
 */

export * from "./src/gpu/mod.ts";
export * as autograd from "./src/autograd/mod.ts";
export { runCli } from "./src/cli/main.ts";

if (import.meta.main) {
  const { runCli } = await import("./src/cli/main.ts");
  Deno.exit(await runCli(Deno.args));
}
