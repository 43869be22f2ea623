/**
 * Texel textures: a tensor's buffer copied, unchanged, into an rgba32float texture so that a
 * kernel reads it with `textureLoad` instead of storage loads (a binding declared with
 * `texture: true`, src/gpu/kernel.ts). Texel t (floats 4t .. 4t + 3 of the buffer) lies at
 * (t % TEXEL_ROW, t / TEXEL_ROW); WGSL computes that with a mask and a shift by
 * TEXEL_ROW_SHIFT. On a CPU adapter (llvmpipe/lavapipe) a texel fetch is a 16-byte load per
 * lane while a storage load is a loop over the lanes, so kernels whose cost is their loads run
 * faster this way (see inputBinding in src/ops/tuning.ts). The texture's width is fixed and its
 * height limited by the device's maxTextureDimension2D ({@link texelsFit}: at WebGPU's default
 * 8192, 32M texels, a 512 MiB tensor); larger tensors stay in storage.
 *
 * Memory: the idle textures stay allocated (as the buffer pool's buffers do) until
 * {@link trimTexelTextures}; with conv3d that is two textures, each as large as the largest
 * input (or gy) a convolution or weight gradient read as texels.
 *
 * Textures are few and reused: {@link texelTexture} records the copy, the caller records the
 * dispatches that read the texture and then releases it, and the next caller may copy over it
 * at once. That is safe without fences for the same reason as the buffer pool's reuse: one
 * queue runs the recorded commands in order, so a copy recorded later runs after the
 * dispatches recorded before it. There are as many textures as were ever in use at once (one
 * per input a kernel reads this way), each as large as the largest tensor it held: a texture too
 * small for a request is replaced by a larger one, the old destroyed after submission.
 */

import { gpu } from "./device.ts";
import { recorder } from "./recorder.ts";

/** Texels per texture row: bytesPerRow 64 KiB, a multiple of the 256 bytes copies need. */
export const TEXEL_ROW = 4096;
/** log2 of {@link TEXEL_ROW}, for the WGSL index math. */
export const TEXEL_ROW_SHIFT = 12;

/** A texture holding a buffer's texels, until {@link TexelTexture.release}. */
export interface TexelTexture {
  view: GPUTextureView;
  /** Returns the texture for reuse by later recorded commands; safe to call twice. */
  release(): void;
}

interface Held {
  texture: GPUTexture;
  view: GPUTextureView;
}

/** Idle textures. The device is the process's one (src/gpu/device.ts never replaces it). */
let free: Held[] = [];
let empty: GPUTextureView | undefined;

/** Whether a buffer of `texels` texels fits one texel texture on this device. */
export function texelsFit(texels: number): boolean {
  return Math.ceil(texels / TEXEL_ROW) <= gpu().device.limits.maxTextureDimension2D;
}

/**
 * Records a copy of the first `texels` 16-byte texels of `src` (e.g. a tensor's buffer with
 * 4·texels floats) into a texel texture, in order with the other recorded commands.
 */
export function texelTexture(src: GPUBuffer, texels: number): TexelTexture {
  if (!texelsFit(texels)) {
    throw new Error(`texelTexture: ${texels} texels exceed the adapter's texture size`);
  }
  const held = take(Math.max(1, Math.ceil(texels / TEXEL_ROW)));
  if (texels > 0) recorder().copyToTexture(src, held.texture, texels);
  let released = false;
  return {
    view: held.view,
    release() {
      if (released) return;
      released = true;
      free.push(held);
    },
  };
}

/**
 * A 1×1 texture view for a texture binding that a kernel variant leaves unread (a bind group
 * needs every binding of its layout).
 */
export function emptyTexelView(): GPUTextureView {
  return empty ??= gpu().device.createTexture({
    label: "texels (unused)",
    size: [1, 1],
    format: "rgba32float",
    usage: GPUTextureUsage.TEXTURE_BINDING,
  }).createView();
}

/** Bytes held by idle texel textures. */
export function idleTexelBytes(): number {
  return free.reduce((sum, h) => sum + h.texture.width * h.texture.height * 16, 0);
}

/** Destroys the idle texel textures (after the commands recorded so far are submitted). */
export function trimTexelTextures(): void {
  for (const h of free) recorder().destroyAfterSubmit(h.texture);
  free = [];
}

/**
 * An idle texture of at least `rows` rows (the smallest), else a new one; when every idle one
 * is too small, the largest of them is replaced, so that the number of textures stays the
 * number in use at once.
 */
function take(rows: number): Held {
  let best = -1;
  for (let i = 0; i < free.length; i++) {
    const h = free[i].texture.height;
    if (h >= rows && (best < 0 || h < free[best].texture.height)) best = i;
  }
  if (best >= 0) return free.splice(best, 1)[0];
  if (free.length > 0) {
    let largest = 0;
    free.forEach((h, i) => {
      if (h.texture.height > free[largest].texture.height) largest = i;
    });
    recorder().destroyAfterSubmit(free.splice(largest, 1)[0].texture);
  }
  const texture = gpu().device.createTexture({
    label: "texels",
    size: [TEXEL_ROW, rowClass(rows)],
    format: "rgba32float",
    usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST,
  });
  return { texture, view: texture.createView() };
}

/**
 * Rows rounded up like the buffer pool's size classes (1/8 steps within a power of two), so a
 * texture serves tensors a little larger than the one it was made for.
 */
function rowClass(rows: number): number {
  const step = Math.max(1, 2 ** (Math.floor(Math.log2(rows)) - 3));
  const max = gpu().device.limits.maxTextureDimension2D;
  return Math.min(max, Math.ceil(rows / step) * step);
}
