// The gradient w.r.t. logits of the trainer's whole loss in one pass,
//
//   L = wT · tversky(softmax(x)) + wD · dice(softmax(x)) + wCE · crossEntropy(x),
//
// in place of four (Tversky's and Dice's gradients w.r.t. the probabilities, the softmax's
// backward, cross-entropy's backward) and the additions between them. For voxel i (flat over
// N·V) with label y, p = softmax(x[n, ·, v]) and g_c = [c == y]:
//   a_c  = gy · (wT · coefT[2·(n·C + c) + g_c] + wD · coefD[2·(n·C + c) + g_c])   (dL/dp_c)
//   gx_c = p_c · (a_c − Σ_k p_k·a_k) + gy · wCE · w_y / W · (p_c − g_c)
// where coefT and coefD come from the Tversky forward (losses_tversky_finalize.wgsl), w the
// cross-entropy class weights and W = ceStats[1] = Σ w. A term whose weight is 0 reads nothing
// (its buffers may be stand-ins). Layout [N, C, V]; one thread per voxel writes its C channels.

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
  let row = 2u * (i / V) * C;
  let g = gy[0];
  var fce = 0.0;
  if (params.ceWeight != 0.0) { fce = g * params.ceWeight * ceWeights[y] / ceStats[1]; }

  // p and a are recomputed rather than held: a private array indexed by the class is a per-lane
  // loop through memory on a CPU adapter (lavapipe), which measured 2.5× slower than this.
  var dot = 0.0;
  for (var c = 0u; c < C; c++) {
    let p = exp(x[base + c * V] - m) / s;
    dot += p * regionGrad(row + 2u * c + select(0u, 1u, c == y), g);
  }
  for (var c = 0u; c < C; c++) {
    let p = exp(x[base + c * V] - m) / s;
    let a = regionGrad(row + 2u * c + select(0u, 1u, c == y), g);
    gx[base + c * V] = p * (a - dot) + fce * (p - select(0.0, 1.0, c == y));
  }
}

// dL/dp of the region terms (Tversky and Dice) at coefficient index k.
fn regionGrad(k: u32, g: f32) -> f32 {
  var a = 0.0;
  if (params.tverskyWeight != 0.0) { a += params.tverskyWeight * coefT[k]; }
  if (params.diceWeight != 0.0) { a += params.diceWeight * coefD[k]; }
  return g * a;
}
