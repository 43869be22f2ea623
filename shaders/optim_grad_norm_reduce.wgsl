// Gradient-norm control from the partial sums of squares of all gradients, in one workgroup:
// the last pass of the reduction (reduce.wgsl's, one row of len ≤ WG · ITEMS values, so the
// sum has the bits of reduceRows over the same partials) followed by optim_grad_norm.wgsl:
//   control = [scale, finite, norm],  norm = √ss,
//   scale = min(1, maxNorm / (norm + 1e-6)) when clipping (clip = 1), else 1,
//   finite = 1 when norm is neither NaN nor ±Inf (exponent bits not all ones), else 0.
// WG must be a power of two (the tree halves it).

override ITEMS: u32 = 4;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var k = 0u; k < ITEMS; k++) {
    let i = k * WG + lid;
    if (i < params.len) {
      acc += ss[i];
    }
  }
  partial[lid] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { partial[lid] = partial[lid] + partial[lid + s]; }
    workgroupBarrier();
  }
  if (lid != 0u) { return; }
  let norm = sqrt(partial[0]);
  let finite = (bitcast<u32>(norm) & 0x7f800000u) != 0x7f800000u;
  var scale = 1.0;
  if (finite && params.clip == 1u) { scale = min(1.0, params.maxNorm / (norm + 1e-6)); }
  control[0] = scale;
  control[1] = select(0.0, 1.0, finite);
  control[2] = norm;
}
