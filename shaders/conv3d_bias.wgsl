// Per-channel partial sums of gy [N, C, V] (V voxels): thread (c, s) adds voxels [s·L, s·L + L)
// of channel c over every batch item and writes part[s·C + c]; conv3d_reduce.wgsl adds the
// slices. Each thread reads one contiguous run: on a CPU adapter the SIMD groups of a
// workgroup run one after another, so a loop striding across the workgroup would sweep the
// whole slice once per group. With VEC = 1 (V % 4 == 0, L % 4 == 0) the run is read as vec4s
// through gyv, the same buffer as gy (a vec4 load costs about what a float load does there).

override VEC: u32 = 0u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let g = threadIndex(wid, nwg, lid);
  if (g >= params.c * params.slices) { return; }
  let c = g % params.c;
  let s = g / params.c;
  let v0 = min(s * params.len, params.v);
  let v1 = min(v0 + params.len, params.v);
  var acc = 0.0;
  for (var n = 0u; n < params.n; n++) {
    let base = (n * params.c + c) * params.v;
    if (VEC == 1u) {
      var a4 = vec4<f32>();
      for (var v = (base + v0) / 4u; v < (base + v1) / 4u; v++) {
        a4 += gyv[v];
      }
      acc += (a4.x + a4.y) + (a4.z + a4.w);
    } else {
      for (var v = base + v0; v < base + v1; v++) {
        acc += gy[v];
      }
    }
  }
  part[s * params.c + c] = acc;
}
