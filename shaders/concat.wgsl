// Channel block copy, the kernel behind channel concat and its backward (channel slices).
// Copies channels [srcOffset, srcOffset + count) of every batch item of src into channels
// [dstOffset, dstOffset + count) of dst. Both are [N, C, …spatial] contiguous, so one batch
// item's channel block is a contiguous run of `block` = count·spatial elements; strides and
// offsets below are in elements (channels × spatial size).

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= params.total) { return; }
  let n = i / params.block;
  let r = i - n * params.block;
  dst[n * params.dstStride + params.dstOffset + r] = src[n * params.srcStride + params.srcOffset + r];
}
