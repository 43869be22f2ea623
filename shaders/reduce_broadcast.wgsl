// Backward of a full reduction: every element of y is scale · g[0] (g holds the upstream
// gradient of the [1] result). One thread per element; the grid may be folded (grid1d).

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = threadIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  y[i] = params.scale * g[0];
}
