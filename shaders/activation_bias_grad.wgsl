// The backward of an activation fused into a convolution together with its bias gradient, in
// one pass over gy [N, C, V] and the convolution's output y (the activation's output):
//   g = act'(y) ⊙ gy         (as elementwise.wgsl's "from output" ops: y > 0 exactly where
//                              x > 0, and for ELU α·eˣ = y + α)
//   part[c·S + s] = Σ g over voxels [s·L, s·L + L) of channel c, every batch item
// reduceRows then adds the S slices of each channel into the bias gradient. Thread (c, s)
// reads one contiguous run (see conv3d_bias.wgsl for why); with VEC = 1 (V % 4 == 0,
// L % 4 == 0) as vec4s through gyv and yv, the same buffers as gy and y; g is written through
// gv, an array of vec4s, by component where VEC = 0 (a buffer written through one binding
// cannot also be bound as another). It saves the
// bias gradient's own pass over g, and a dispatch per convolution.
//
// params.act: 1 ReLU, 2 leaky ReLU (slope params.p), 3 ELU (alpha params.p), as conv3d.wgsl.

override VEC: u32 = 0u;

fn grad4(gy: vec4<f32>, y: vec4<f32>) -> vec4<f32> {
  let pos = y > vec4<f32>(0.0);
  if (params.act == 1u) { return select(vec4<f32>(0.0), gy, pos); }
  if (params.act == 2u) { return select(params.p * gy, gy, pos); }
  return select((y + params.p) * gy, gy, pos);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = threadIndex(wid, nwg, lid);
  if (t >= params.c * params.slices) { return; }
  let c = t % params.c;
  let s = t / params.c;
  let v0 = min(s * params.len, params.v);
  let v1 = min(v0 + params.len, params.v);
  var acc = 0.0;
  for (var n = 0u; n < params.n; n++) {
    let base = (n * params.c + c) * params.v;
    if (VEC == 1u) {
      var a4 = vec4<f32>();
      for (var v = (base + v0) / 4u; v < (base + v1) / 4u; v++) {
        let g = grad4(gyv[v], yv[v]);
        gv[v] = g;
        a4 += g;
      }
      acc += (a4.x + a4.y) + (a4.z + a4.w);
    } else {
      for (var v = base + v0; v < base + v1; v++) {
        let g = grad4(vec4<f32>(gy[v]), vec4<f32>(y[v])).x;
        gv[v / 4u][v % 4u] = g;
        acc += g;
      }
    }
  }
  part[c * params.slices + s] = acc;
}
