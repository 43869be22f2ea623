// First pass of the sum of squares over several tensors ("sets") in one dispatch: the partial
// sums of reduce.wgsl's pass with SQUARE = 1 over one row per tensor, each tensor's written
// from its own offset (src/ops/reduce.ts sumSquaresPartials).
//
// Set k binds x_k of len_k values, which reduce.wgsl splits into ceil(len_k / (WG · ITEMS))
// tiles; workgroup wg of the grid sums tile j = wg − end(k−1) of set k when end(k−1) ≤ wg <
// end(k) (end = prefix sums of the tile counts, end(−1) = 0) and writes y[off_k + j]. The line
// //@sets becomes one branch per set (src/ops/multi_tensor.ts) that adds up the tile's values
// in reduce.wgsl's order; the tree is reduce.wgsl's, so every partial has the bits of the
// per-tensor pass. The branch depends only on the workgroup index: uniform control flow.
// WG must be a power of two (the tree halves it).

override ITEMS: u32 = 4;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let wg = workgroupIndex(wid, nwg);
  if (wg >= params.total) { return; }
  var acc = 0.0;
  var out = 0u;
  //@sets
  partial[lid] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { partial[lid] = partial[lid] + partial[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) { y[out] = partial[0]; }
}
