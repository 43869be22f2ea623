// Adds partial sums: out[m] = Σ_j part[j·M + m] for j < slots, m < M. One thread per output
// element, so neighbouring threads read neighbouring addresses of each slot.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let m = threadIndex(wid, nwg, lid);
  if (m >= params.m) { return; }
  var s0 = 0.0;
  var s1 = 0.0;
  var j = 0u;
  // Two independent sums halve the dependency chain.
  for (; j + 1u < params.slots; j += 2u) {
    s0 += part[j * params.m + m];
    s1 += part[(j + 1u) * params.m + m];
  }
  if (j < params.slots) { s0 += part[j * params.m + m]; }
  out[m] = s0 + s1;
}
