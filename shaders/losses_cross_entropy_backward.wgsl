// Cross-entropy backward w.r.t. logits. For voxel i with label y and weight w = weights[y]:
//   gx[n, c, v] = gy[0] · w / W · (softmax_c − [c == y]),   W = stats[1] = Σ w
// One thread per voxel (flat over N·V) writes its C channels; layout [N, C, V].

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = threadIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  let V = params.voxels;
  let C = params.classes;
  let base = voxelBase(i, C, V);
  let ms = softmaxShift(base, C, V);
  let m = ms.x;
  let s = ms.y;
  let y = labels[i];
  let f = gy[0] * weights[y] / stats[1];
  for (var c = 0u; c < C; c++) {
    let p = exp(x[base + c * V] - m) / s;
    gx[base + c * V] = f * (p - select(0.0, 1.0, c == y));
  }
}
