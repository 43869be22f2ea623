/**
 * WebGPU runtime: device, buffer pool, kernels, command recording and tensors.
 * @module
 */
export * from "./device.ts";
export * from "./kernel.ts";
export * from "./pool.ts";
export * from "./recorder.ts";
export * from "./tensor.ts";
