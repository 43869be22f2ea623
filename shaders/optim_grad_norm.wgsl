// Gradient-norm control from the global sum of squares ss[0] of all gradients:
//   control = [scale, finite, norm],  norm = √ss,
//   scale = min(1, maxNorm / (norm + 1e-6)) when clipping (clip = 1), else 1,
//   finite = 1 when norm is neither NaN nor ±Inf (exponent bits not all ones), else 0.
// The finite test reads the bits, so it holds under fast-math compilation of NaN compares.
// A sum of squares past f32 range (norm > ~1.8e19) also counts as not finite.

@compute @workgroup_size(1)
fn main() {
  let norm = sqrt(ss[0]);
  let finite = (bitcast<u32>(norm) & 0x7f800000u) != 0x7f800000u;
  var scale = 1.0;
  if (finite && params.clip == 1u) { scale = min(1.0, params.maxNorm / (norm + 1e-6)); }
  control[0] = scale;
  control[1] = select(0.0, 1.0, finite);
  control[2] = norm;
}
