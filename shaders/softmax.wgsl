// Softmax over channels of a tensor [N, C, …spatial] (spatial size S), one thread per voxel.
// A voxel's C values are S apart, so neighbouring threads read neighbouring addresses.
//
// STAGE 0 (forward):  a = x → out = y, with the channel maximum subtracted before exp.
// STAGE 1 (backward): a = gy, b = y (the saved output) → out = gx = y ⊙ (gy − Σ_c gy·y).

override STAGE: u32 = 0;

fn forward(base: u32) {
  var m = a[base];
  for (var c = 1u; c < params.channels; c++) {
    m = max(m, a[base + c * params.spatial]);
  }
  var s = 0.0;
  for (var c = 0u; c < params.channels; c++) {
    s += exp(a[base + c * params.spatial] - m);
  }
  let inv = 1.0 / s;
  for (var c = 0u; c < params.channels; c++) {
    let i = base + c * params.spatial;
    out[i] = exp(a[i] - m) * inv;
  }
}

fn backward(base: u32) {
  var dot = 0.0;
  for (var c = 0u; c < params.channels; c++) {
    let i = base + c * params.spatial;
    dot += a[i] * b[i];
  }
  for (var c = 0u; c < params.channels; c++) {
    let i = base + c * params.spatial;
    out[i] = b[i] * (a[i] - dot);
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let v = threadIndex(wid, nwg, lid);
  if (v >= params.voxels) { return; }
  let n = v / params.spatial;
  let base = n * params.channels * params.spatial + (v - n * params.spatial);
  if (STAGE == 0u) { forward(base); } else { backward(base); }
}
