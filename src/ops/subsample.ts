/**
 * Strided subsampling of a volume's three trailing axes (D, H, W): every s-th voxel from the
 * first, s one stride for all three axes or one per axis. It makes the label maps of deep supervision's lower resolutions, so it has no
 * backward (labels carry no gradient); any 32-bit element type is copied bit for bit.
 */

import subsampleWgsl from "../../shaders/subsample.wgsl" with { type: "text" };
import { defineKernel, recorder, Tensor } from "../gpu/mod.ts";

export const subsampleKernel = defineKernel({
  name: "subsample3d",
  body: subsampleWgsl,
  uniforms: {
    total: "u32",
    d: "u32",
    h: "u32",
    w: "u32",
    od: "u32",
    oh: "u32",
    ow: "u32",
    sd: "u32",
    sh: "u32",
    sw: "u32",
  },
  bindings: [
    { name: "x", access: "read", type: "u32" },
    { name: "y", access: "read_write", type: "u32" },
  ],
  workgroupSize: 256,
});

/**
 * x [..., D, H, W] → y [..., ⌊D/sd⌋, ⌊H/sh⌋, ⌊W/sw⌋] with y[..., z, y, x] = x[..., sd·z, sh·y,
 * sw·x] (z, y, x order), `stride` one number s for all three axes or [sd, sh, sw]: the voxel at
 * the corner of each sd×sh×sw block, the one that the strided convolutions or 2×2×2 max
 * poolings making that resolution map first into an output voxel. Same dtype as x.
 *
 * @example
 * const half = subsample3d(labels, 2); // u32 [N, 16, 16, 16] → [N, 8, 8, 8]
 * const inPlane = subsample3d(labels, [1, 2, 2]); // u32 [N, 8, 16, 16] → [N, 8, 8, 8]
 */
export function subsample3d(x: Tensor, stride: number | readonly number[]): Tensor {
  if (x.shape.length < 3) {
    throw new Error(`subsample3d: x must have at least 3 axes (…, D, H, W), got [${x.shape}]`);
  }
  const s = typeof stride === "number" ? [stride, stride, stride] : [...stride];
  const shown = typeof stride === "number" ? `${stride}` : `[${stride.join(", ")}]`;
  if (s.length !== 3 || s.some((v) => !Number.isInteger(v) || v < 1)) {
    const per = typeof stride === "number" ? "" : " per axis (z, y, x)";
    throw new Error(`subsample3d: stride must be a positive integer${per}, got ${shown}`);
  }
  const [d, h, w] = x.shape.slice(-3);
  const [od, oh, ow] = [d, h, w].map((e, i) => Math.floor(e / s[i]));
  if (od === 0 || oh === 0 || ow === 0) {
    throw new Error(
      `subsample3d: stride ${shown} is larger than the volume ${d}×${h}×${w}; use a stride ` +
        `no larger than its edge on each axis`,
    );
  }
  const y = new Tensor([...x.shape.slice(0, -3), od, oh, ow], x.dtype);
  const total = y.size;
  recorder().dispatch(
    subsampleKernel,
    { total, d, h, w, od, oh, ow, sd: s[0], sh: s[1], sw: s[2] },
    [x.buffer, y.buffer],
    subsampleKernel.grid(total),
  );
  return y;
}
