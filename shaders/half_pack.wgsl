// Packs f32 values into IEEE binary16 pairs: dst[i] = (src[4i], src[4i+1]) and
// (src[4i+2], src[4i+3]) as two pack2x16float words, values clamped to ±65504 (binary16's
// largest finite value; pack2x16float leaves larger ones undefined). `n4` counts vec4s.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = threadIndex(wid, nwg, lid);
  if (i >= params.n4) { return; }
  let v = clamp(src[i], vec4<f32>(-65504.0), vec4<f32>(65504.0));
  dst[i] = vec2<u32>(pack2x16float(v.xy), pack2x16float(v.zw));
}
