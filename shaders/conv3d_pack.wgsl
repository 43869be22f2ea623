// Packs convolution weights for conv3d.wgsl: for channel tiles of GW output channels and Ci
// padded to CiPad input channels,
//
//   pw[((tc·CiPad + i)·K³ + t)·GW + j] = W(tc·GW + j, i, t),   zero past Co and Ci,
//
// with W read through strides, W(o, i, t) = w[wBase + o·wO + i·wI + t·wT] (see conv3d.wgsl),
// so the convolution loads the GW channels of a tap as consecutive vec4s. Thread (tc, i)
// writes its K³·GW values in order: one index split per thread rather than per value, since
// integer division by a uniform is a per-lane loop on a CPU adapter.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let g = threadIndex(wid, nwg, lid);
  if (g >= params.tilesC * params.ciPad) { return; }
  let i = g % params.ciPad;
  let o0 = (g / params.ciPad) * params.gw;
  let ok = i < params.ci;
  let wi = params.wBase + i32(min(i, params.ci - 1u)) * params.wI;
  var e = g * params.kt * params.gw;
  for (var t = 0u; t < params.kt; t++) {
    let wt = wi + i32(t) * params.wT;
    for (var j = 0u; j < params.gw; j++) {
      let o = o0 + j;
      let at = wt + i32(min(o, params.co - 1u)) * params.wO;
      pw[e] = select(0.0, wgt[u32(at)], ok && o < params.co);
      e++;
    }
  }
}
