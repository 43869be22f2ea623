// Tversky backward: gx[n, c, v] = gy[0] · coef[2·(n·C + c) + g], g = (labels[n, v] == c).
// Layout [N, C, V]; one thread per element; the grid may be folded (grid1d).

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = threadIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  let nc = i / params.voxels;
  let v = i - nc * params.voxels;
  let n = nc / params.classes;
  let c = nc - n * params.classes;
  let g = select(0u, 1u, labels[n * params.voxels + v] == c);
  gx[i] = gy[0] * coef[2u * nc + g];
}
