// Cross-entropy statistics, first pass. For each voxel i (flat over N·V, V = D·H·W) with
// logits x[n, ·, v] (layout [N, C, V]) and label y = labels[i]:
//   nll = logsumexp_c x_c − x_y   (stable: max subtracted first),   w = weights[y]
// Each workgroup sums w·nll and w over one tile of voxels; output layout [2, groups], which
// reduceRows sums to [Σ w·nll, Σ w]. Labels are assumed in 0..C−1.

override ITEMS: u32 = 4;

var<workgroup> lossPart: array<f32, WG>;
var<workgroup> weightPart: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let wg = workgroupIndex(wid, nwg);
  if (wg >= params.groups) { return; }
  let V = params.voxels;
  let C = params.classes;

  var acc = 0.0;
  var accW = 0.0;
  for (var k = 0u; k < ITEMS; k++) {
    let i = wg * WG * ITEMS + k * WG + lid;
    if (i < params.total) {
      let base = voxelBase(i, C, V);
      let ms = softmaxShift(base, C, V);
      let m = ms.x;
      let s = ms.y;
      let y = labels[i];
      let w = weights[y];
      acc += w * (m + log(s) - x[base + y * V]);
      accW += w;
    }
  }
  lossPart[lid] = acc;
  weightPart[lid] = accW;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) {
      lossPart[lid] = lossPart[lid] + lossPart[lid + s];
      weightPart[lid] = weightPart[lid] + weightPart[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    partials[wg] = lossPart[0];
    partials[params.groups + wg] = weightPart[0];
  }
}
