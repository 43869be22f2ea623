// Packs convolution weights for conv3d.wgsl: for channel tiles of GW output channels and Ci
// padded to CiPad input channels,
//
//   pw[((tc·CiPad + i)·K³ + t)·GW + j] = W(tc·GW + j, i, t),   zero past Co and Ci,
//
// with W read through strides, W(o, i, t) = w[wBase + o·wO + i·wI + t·wT] (see conv3d.wgsl),
// so the convolution loads the GW channels of a tap as CG consecutive vec4s. One thread per
// packed value; the weights are small next to the activations.

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let e = (wid.x + wid.y * nwg.x) * WG + lid;
  if (e >= params.total) { return; }
  let j = e % params.gw;
  var r = e / params.gw;
  let t = r % params.kt;
  r /= params.kt;
  let i = r % params.ciPad;
  let o = (r / params.ciPad) * params.gw + j;
  let at = params.wBase + i32(min(o, params.co - 1u)) * params.wO +
    i32(min(i, params.ci - 1u)) * params.wI + i32(t) * params.wT;
  pw[e] = select(0.0, wgt[u32(at)], o < params.co && i < params.ci);
}
