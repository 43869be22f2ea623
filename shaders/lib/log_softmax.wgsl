// The channels of one voxel of logits x [N, C, V] for the cross-entropy kernels: voxel i is
// flat over N·V, its C values are V apart from `voxelBase`. A kernel that uses it binds `x`.

fn voxelBase(i: u32, C: u32, V: u32) -> u32 {
  let n = i / V;
  return n * C * V + (i - n * V);
}

// The stable softmax of a voxel's channels: (m, s) with m = max_c x and s = Σ_c exp(x − m), so
// softmax_c = exp(x_c − m) / s and −log softmax_c = m + log(s) − x_c.
fn softmaxShift(base: u32, C: u32, V: u32) -> vec2<f32> {
  var m = x[base];
  for (var c = 1u; c < C; c++) { m = max(m, x[base + c * V]); }
  var s = 0.0;
  for (var c = 0u; c < C; c++) { s += exp(x[base + c * V] - m); }
  return vec2<f32>(m, s);
}
