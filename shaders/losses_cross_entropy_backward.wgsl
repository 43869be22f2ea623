// Cross-entropy backward w.r.t. logits. For voxel i with label y and weight w = weights[y]:
//   gx[n, c, v] = gy[0] · w / W · (softmax_c − [c == y]),   W = stats[1] = Σ w
// One thread per voxel (flat over N·V) writes its C channels; layout [N, C, V].

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= params.total) { return; }
  let V = params.voxels;
  let C = params.classes;
  let n = i / V;
  let base = n * C * V + (i - n * V);
  var m = x[base];
  for (var c = 1u; c < C; c++) { m = max(m, x[base + c * V]); }
  var s = 0.0;
  for (var c = 0u; c < C; c++) { s += exp(x[base + c * V] - m); }
  let y = labels[i];
  let f = gy[0] * weights[y] / stats[1];
  for (var c = 0u; c < C; c++) {
    let p = exp(x[base + c * V] - m) / s;
    gx[base + c * V] = f * (p - select(0.0, 1.0, c == y));
  }
}
