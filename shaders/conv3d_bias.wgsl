// Per-channel partial sums of gy [N, C, V] (V voxels): workgroup (c, s) adds voxels
// v ≡ lid (mod WG) of slice s = [s·L, s·L + L) over every batch item, then reduces across the
// workgroup, writing part[s·C + c]. conv3d_reduce.wgsl adds the slices.

override WG: u32 = 64u;

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let g = wid.x + wid.y * nwg.x;
  if (g >= params.c * params.slices) { return; }
  let c = g % params.c;
  let s = g / params.c;
  let v0 = s * params.len;
  let v1 = min(v0 + params.len, params.v);
  var acc = 0.0;
  for (var n = 0u; n < params.n; n++) {
    let base = (n * params.c + c) * params.v;
    for (var v = v0 + lid; v < v1; v += WG) {
      acc += gy[base + v];
    }
  }
  red[lid] = acc;
  for (var k = WG / 2u; k > 0u; k >>= 1u) {
    workgroupBarrier();
    if (lid < k) { red[lid] += red[lid + k]; }
  }
  if (lid == 0u) { part[s * params.c + c] = red[0]; }
}
