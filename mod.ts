/**
 * voxseg: 3D U-Net training and inference for volumetric segmentation on WebGPU.
 *
 * As a library it exposes the GPU runtime, differentiable ops, the UNet3D model, the data
 * layer, training, inference and the HTTP app — the same functions the CLI calls. Run as the
 * main module it is the `voxseg` CLI.
 * @module
 */

export * from "./src/gpu/mod.ts";
export * as autograd from "./src/autograd/mod.ts";
export { type Parameter, UNet3D, type UNet3DConfig } from "./src/nn/unet3d.ts";
export { readNifti, writeNifti } from "./src/data/nifti.ts";
export { openCase } from "./src/data/ome_zarr/reader.ts";
export { writeCase } from "./src/data/ome_zarr/writer.ts";
export { readDataset } from "./src/data/dataset.ts";
export { createLoader } from "./src/data/loader.ts";
export { synthCase } from "./src/data/synth.ts";
export { resolveConfig, type TrainConfig } from "./src/train/config.ts";
export { train, type TrainEvent, type TrainOptions } from "./src/train/trainer.ts";
export { loadCheckpoint, saveCheckpoint } from "./src/nn/checkpoint.ts";
export * as infer from "./src/infer/mod.ts";
export { createApp } from "./src/server/app.ts";
export { runCli } from "./src/cli/main.ts";

if (import.meta.main) {
  const { runCli } = await import("./src/cli/main.ts");
  Deno.exit(await runCli(Deno.args));
}
