// Adam / AdamW step, in place over flat f32 tensors (PyTorch semantics).
//
// control = [scale, finite, norm] from gradNormControl (or [1, 1, 0]): the gradient is
// multiplied by scale, and when finite is 0 the step leaves param, m and v untouched.
// Per element, with g = scale · grad:
//   Adam (DECOUPLED = 0):  g += weightDecay · p              (L2, PyTorch Adam)
//   AdamW (DECOUPLED = 1): p *= 1 − lr · weightDecay         (PyTorch AdamW)
//   m = β1·m + (1 − β1)·g;   v = β2·v + (1 − β2)·g²
//   p −= stepSize · m / (√v · invSqrtBc2 + eps),   stepSize = lr / (1 − β1ᵗ),
//   invSqrtBc2 = 1 / √(1 − β2ᵗ)
// The host computes 1 − β1, 1 − β2, 1 − lr·weightDecay and the bias corrections in float64:
// f32(1 − 0.999) is exact to 1e-8, 1 − f32(0.999) only to 1e-5.

override DECOUPLED: u32 = 0;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = threadIndex(wid, nwg, lid);
  if (i >= params.n || control[1] == 0.0) { return; }
  var g = grad[i] * control[0];
  var p = param[i];
  if (DECOUPLED == 1u) {
    p = p * params.decay;
  } else {
    g = g + params.weightDecay * p;
  }
  let mi = params.beta1 * m[i] + params.oneMinusBeta1 * g;
  let vi = params.beta2 * v[i] + params.oneMinusBeta2 * g * g;
  m[i] = mi;
  v[i] = vi;
  param[i] = p - params.stepSize * mi / (sqrt(vi) * params.invSqrtBc2 + params.eps);
}
